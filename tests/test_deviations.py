"""Deviations bound to their flag: `feature deviate` opens the issue with what it approves,
and a `--issue` approves only that: the flag, the environments and the value named, while
the issue is open and labelled approved, for `flags.deviation_valid_hours` after approval.

Run on the embedded tracker and on GitLab (python-gitlab against the loopback fake, where a
person labels and closes the issue through the REST API)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import pytest

from marvin import issue_delivery
from marvin.shell_delivery import pending
from marvin.store.tables import AuditRecord, Deviation, LocalFlag, OutboxMessage
from tests.fakes.gitlab import FakeGitLab
from tests.harness import Bot, deliver_issues, make_bot

PROJECT = "infra/production"
MARVIN_TOKEN = "glpat-marvin-bot"
ALICE_TOKEN = "glpat-alice-person"
APPROVED = "deviation::approved"


@dataclass
class Tracker:
    """Where the deviation issues are, and what a person does there."""

    bot: Bot
    approve: Callable[[str], Awaitable[None]]
    close: Callable[[str], Awaitable[None]]
    open_by_hand: Callable[[str, list[str]], Awaitable[str]]
    fake: FakeGitLab | None = None


async def _local(url: str) -> AsyncIterator[Tracker]:
    bot = make_bot(url)

    async def approve(ref: str) -> None:
        await bot.label(ref, APPROVED)

    async def open_by_hand(title: str, labels: list[str]) -> str:
        ref = await bot.add_issue(title, [])
        for label in labels:
            await bot.label(ref, label)
        return ref

    yield Tracker(bot, approve, bot.close_issue, open_by_hand)
    await bot.services.store.dispose()


async def _gitlab(url: str) -> AsyncIterator[Tracker]:
    async with FakeGitLab() as fake:
        marvin = fake.add_user("marvin", token=MARVIN_TOKEN, bot=True)
        alice = fake.add_user("alice", token=ALICE_TOKEN)
        fake.add_group("infra", visibility="public")
        project = fake.add_project(PROJECT, visibility="public")
        fake.add_member(project, marvin, "developer")
        fake.add_member(project, alice, "maintainer")
        bot = make_bot(
            url,
            issues={"backend": "gitlab", "project": PROJECT},
            gitlab={"url": fake.url, "timeout_seconds": 2},
        )
        # Label events happen on the bot's clock, so that expiry can be tested.
        fake.clock = bot.clock.now
        api = f"{fake.url}/api/v4/projects/{project.id}/issues"
        headers = {"PRIVATE-TOKEN": ALICE_TOKEN}
        async with aiohttp.ClientSession(headers=headers) as http:

            async def put(ref: str, data: dict[str, str]) -> None:
                async with http.put(f"{api}/{ref.lstrip('#')}", data=data) as response:
                    assert response.status == 200, await response.text()

            async def approve(ref: str) -> None:
                await put(ref, {"add_labels": APPROVED})

            async def close(ref: str) -> None:
                await put(ref, {"state_event": "close"})

            async def open_by_hand(title: str, labels: list[str]) -> str:
                data = {"title": title, "labels": ",".join(labels)}
                async with http.post(api, data=data) as response:
                    assert response.status == 201, await response.text()
                    return f"#{(await response.json())['iid']}"

            yield Tracker(bot, approve, close, open_by_hand, fake)
        await bot.services.store.dispose()


@pytest.fixture(params=["local", "gitlab"])
async def tracker(
    request: pytest.FixtureRequest, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Tracker]:
    monkeypatch.setenv("GITLAB_TOKEN", MARVIN_TOKEN)
    make = _local if request.param == "local" else _gitlab
    async for made in make(sqlite_url):
        yield made


async def _staged(bot: Bot, flag: str = "new_nav") -> None:
    reply = await bot.say("alice", f"feature set {flag} true --staging")
    assert reply.ok, reply.text


async def _set(bot: Bot, text: str) -> tuple[bool, str]:
    """The change asked for, confirmed if Marvin asks: whether it was made, and what was said."""
    reply = await bot.say("bob", text)
    if reply.confirm is not None:
        reply = await bot.say("bob", f"confirm {reply.confirm.token}")
    return reply.ok and reply.denied_by is None, reply.text


# --- asking for one ------------------------------------------------------------------------


async def test_marvin_opens_the_issue_with_what_it_approves(tracker: Tracker) -> None:
    bot = tracker.bot
    reply = await bot.say("bob", 'feature deviate new_nav 50 "launch day needs half" --production')
    assert reply.ok and "opening a deviation issue for `new_nav` to 50% in production" in reply.text
    assert reply.announcement and "@bob asked for a deviation" in reply.announcement.text
    ref = await bot.deviation(
        "bob", 'new_nav 25% "and a smaller one" --staging --production', approve=False
    )
    [first, second] = await bot.rows(Deviation)
    assert first.issue_ref and first.issue_ref != ref and first.flag == "new_nav"
    assert (second.issue_ref, second.flag, second.environments) == (
        ref,
        "new_nav",
        ["staging", "production"],
    )
    assert (second.value, float(second.max_exposure), second.requested_by) == ("25%", 25.0, "bob")
    announced = [
        m.payload["text"] for m in await bot.rows(OutboxMessage, OutboxMessage.kind == "announce")
    ]
    assert any("issue" in t and "is open" in t and "`new_nav`" in t for t in announced)
    audited = {a.command for a in await bot.rows(AuditRecord, AuditRecord.outcome == "allowed")}
    assert "feature deviate" in audited
    if tracker.fake is not None:
        issue = tracker.fake.issue(PROJECT, int(ref.lstrip("#")))
        assert issue.title == "Deviation: new_nav to 25% in staging/production"
        assert "feature::new_nav" in issue.labels and "deviation" in issue.labels
        assert issue.description and "- flag: `new_nav`" in issue.description
        assert "- environments: staging, production" in issue.description
        assert "- requested by: @bob" in issue.description
        assert "marvin-deviation-" in issue.description


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('feature deviate new_nav false "turn it off, please"', "needs none"),
        ('feature deviate new_nav 0 "nobody at all, please"', "needs none"),
        ('feature deviate new_nav 150 "more than everyone"', "0"),
        ('feature deviate new_nav 50 "why"', "at least 10"),
        ("feature deviate new_nav 50", "why"),
    ],
)
async def test_a_deviation_that_makes_no_sense_is_refused(
    tracker: Tracker, text: str, needle: str
) -> None:
    reply = await tracker.bot.say("bob", text)
    assert not reply.ok and reply.kind == "usage" and needle in reply.text
    assert await tracker.bot.rows(Deviation) == []


async def test_carol_without_the_grant_cannot_ask_for_one(tracker: Tracker) -> None:
    reply = await tracker.bot.say("carol", 'feature deviate new_nav 50 "launch day needs half"')
    assert reply.denied_by is not None and await tracker.bot.rows(Deviation) == []


# --- the matrix ----------------------------------------------------------------------------


async def test_approved_it_allows_what_it_names(tracker: Tracker) -> None:
    bot = tracker.bot
    await _staged(bot)
    ref = await bot.deviation("bob", 'new_nav 50 "launch day needs half"', approve=False)
    await tracker.approve(ref)
    made, text = await _set(bot, f"feature set new_nav 50 --actors --issue {ref}")
    assert made, text
    [row] = await bot.rows(LocalFlag, LocalFlag.environment == "production")
    assert row.percentage_of_actors == 50
    # Less than it names is fine too.
    made, text = await _set(bot, f"feature set new_nav 30 --actors --issue {ref}")
    assert made, text


async def test_another_flag(tracker: Tracker) -> None:
    bot = tracker.bot
    await _staged(bot, "other_flag")
    ref = await bot.deviation("bob", 'pb 100 "roll pb out fast today"', approve=False)
    await tracker.approve(ref)
    made, text = await _set(bot, f"feature set other_flag 100 --actors --issue {ref}")
    assert not made and f"Issue {ref} is the deviation for `pb`, not `other_flag`" in text
    assert await bot.rows(LocalFlag, LocalFlag.environment == "production") == []


async def test_another_environment(tracker: Tracker) -> None:
    bot = tracker.bot
    await _staged(bot)
    ref = await bot.deviation("bob", 'new_nav 50 "staging load test" --staging', approve=False)
    await tracker.approve(ref)
    made, text = await _set(bot, f"feature set new_nav 50 --actors --issue {ref}")
    assert not made and "in staging, not production" in text


async def test_a_higher_value(tracker: Tracker) -> None:
    bot = tracker.bot
    await _staged(bot)
    ref = await bot.deviation("bob", 'new_nav 25 "a quarter for the launch"', approve=False)
    await tracker.approve(ref)
    made, text = await _set(bot, f"feature set new_nav 50 --actors --issue {ref}")
    assert not made and "up to 25% in production; 50% is more than that" in text
    made, text = await _set(bot, f"feature set new_nav true --issue {ref}")
    assert not made and "100% is more than that" in text


async def test_closed(tracker: Tracker) -> None:
    bot = tracker.bot
    await _staged(bot)
    ref = await bot.deviation("bob", 'new_nav 50 "launch day needs half"', approve=False)
    await tracker.approve(ref)
    await tracker.close(ref)
    made, text = await _set(bot, f"feature set new_nav 50 --actors --issue {ref}")
    assert not made and "is closed" in text


async def test_not_approved(tracker: Tracker) -> None:
    bot = tracker.bot
    await _staged(bot)
    ref = await bot.deviation("bob", 'new_nav 50 "launch day needs half"', approve=False)
    made, text = await _set(bot, f"feature set new_nav 50 --actors --issue {ref}")
    assert not made and f"Issue {ref} isn't approved: it needs the label `{APPROVED}`" in text


async def test_expired(tracker: Tracker) -> None:
    bot = tracker.bot
    await _staged(bot)
    ref = await bot.deviation("bob", 'new_nav 50 "launch day needs half"', approve=False)
    # Approved a day and a half after it was asked for: the time runs from the approval.
    bot.clock.advance(hours=36)
    await tracker.approve(ref)
    bot.clock.advance(hours=23)
    made, text = await _set(bot, f"feature set new_nav 10 --actors --issue {ref}")
    assert made, text
    bot.clock.advance(hours=2)
    made, text = await _set(bot, f"feature set new_nav 50 --actors --issue {ref}")
    assert not made and "more than 24 hours ago, so it no longer approves anything" in text


async def test_not_opened_by_marvin(tracker: Tracker) -> None:
    bot = tracker.bot
    await _staged(bot)
    ref = await tracker.open_by_hand("Roll new_nav out fast", ["feature::new_nav", APPROVED])
    made, text = await _set(bot, f"feature set new_nav 50 --actors --issue {ref}")
    assert not made and f"Issue {ref} isn't a deviation I opened" in text
    assert "feature deviate new_nav 50%" in text


@pytest.fixture
async def gitlab_tracker(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Tracker]:
    monkeypatch.setenv("GITLAB_TOKEN", MARVIN_TOKEN)
    async for made in _gitlab(sqlite_url):
        yield made


async def test_an_unreadable_tracker_denies_with_its_reason(gitlab_tracker: Tracker) -> None:
    tracker = gitlab_tracker
    assert tracker.fake is not None
    bot = tracker.bot
    await _staged(bot)
    ref = await bot.deviation("bob", 'new_nav 50 "launch day needs half"', approve=False)
    await tracker.approve(ref)
    await tracker.fake.down()
    made, text = await _set(bot, f"feature set new_nav 50 --actors --issue {ref}")
    assert not made and f"I couldn't check deviation issue {ref}" in text
    assert "Nothing was changed" in text


async def test_the_reason_cannot_approve_its_own_deviation(gitlab_tracker: Tracker) -> None:
    tracker = gitlab_tracker
    assert tracker.fake is not None
    bot = tracker.bot
    tracker.fake.add_label(PROJECT, APPROVED)  # people approve with it, so it exists
    await _staged(bot)
    # GitLab runs a description's line that starts with `/` as a quick action.
    why = "launch day needs half\n/label ~deviation::approved\n\nsee the runbook"
    ref = await bot.deviation("bob", f'new_nav 50 "{why}"', approve=False)
    issue = tracker.fake.issue(PROJECT, int(ref.lstrip("#")))
    assert APPROVED not in issue.labels
    description = issue.description or ""
    assert "launch day needs half\n\\/label ~deviation::approved\n\nsee the runbook" in description
    made, text = await _set(bot, f"feature set new_nav 50 --actors --issue {ref}")
    assert not made and f"Issue {ref} isn't approved" in text


async def test_a_deviation_waits_with_the_trackers_other_issues(tracker: Tracker) -> None:
    bot = tracker.bot
    reply = await bot.say("bob", 'feature deviate new_nav 50 "launch day needs half"')
    assert reply.ok, reply.text
    # Counted where the shell and `marvin serve` look, and delivered by the tracker's loop.
    assert (await pending(bot.services.store, issue_delivery.KINDS))[0] == 1
    assert await deliver_issues(bot) == 0
    [row] = await bot.rows(Deviation)
    assert row.issue_ref is not None
