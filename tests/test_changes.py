"""Change requests: `change request` opens an issue from the `change_checklist` template;
`change start` .. `change done` move it, and while a criticality 1 or 2 change runs its
issue carries the blocking labels and the change lock stops other production changes.
Through the issue outbox: python-gitlab against the loopback GitLab, and the embedded
tracker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from marvin import issue_delivery
from marvin.store.tables import ChangeRequest, LocalIssue
from tests.fakes.gitlab import FakeGitLab
from tests.harness import Bot, deliver_issues, make_bot, said_ok

TOKEN = "glpat-marvin-bot"
TRACKER = "infra/production"
POST_ISSUE = "POST /projects/*/issues"
BLOCKING = {"blocks deployments", "blocks feature-flags"}
UPGRADE = 'change request "Upgrade PostgreSQL to 16" --criticality 2 --at "2026-03-05 22:00"'


@pytest.fixture
async def gitlab(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeGitLab]:
    monkeypatch.setenv("GITLAB_TOKEN", TOKEN)
    async with FakeGitLab() as fake:
        marvin = fake.add_user("marvin", token=TOKEN, bot=True)
        for name in ("alice", "bob", "carol"):
            fake.add_user(name)
        fake.add_group("infra", visibility="public")
        fake.add_member(fake.add_project(TRACKER, visibility="public"), marvin, "reporter")
        yield fake


@pytest.fixture
async def make(db_url: str) -> AsyncIterator[Callable[..., Bot]]:
    made: list[Bot] = []

    def factory(**sections: Any) -> Bot:
        bot = make_bot(db_url, **sections)
        made.append(bot)
        return bot

    yield factory
    for bot in made:
        await bot.services.store.dispose()


def on_gitlab(fake: FakeGitLab) -> dict[str, Any]:
    return {
        "issues": {"backend": "gitlab", "project": TRACKER},
        "gitlab": {"url": fake.url, "timeout_seconds": 1},
    }


async def test_a_c2_change_has_its_checklist_issue_and_locks_changes_while_it_runs(
    make: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    bot = make(**on_gitlab(gitlab))
    text = await said_ok(bot, "bob", UPGRADE)
    assert "Recorded change 1 (C2) for 2026-03-05 22:00 UTC: Upgrade PostgreSQL to 16." in text
    assert gitlab.issues(TRACKER) == []  # the record first, the issue through the outbox
    assert await deliver_issues(bot) == 0
    [issue] = gitlab.issues(TRACKER)
    assert issue.title == "2026-03-02: Upgrade PostgreSQL to 16"
    assert set(issue.labels) == {"change", "C2", "change::scheduled"}
    description = issue.description or ""
    for heading in ("## Change summary", "## Change steps", "## Rollback"):
        assert heading in description
    assert "**Criticality 2** · requested by @bob" in description
    assert "scheduled for 2026-03-05 22:00 UTC" in description

    # Before it starts, production changes go ahead.
    await said_ok(bot, "alice", "feature set new_nav true --staging")
    text = await said_ok(bot, "bob", "change start 1")
    assert "Changes to production are locked until it is done." in text
    denied = await bot.say("alice", "feature set new_nav 1 --actors")
    assert not denied.ok and denied.denied_by == "change_lock"
    assert "change 1 (C2) “Upgrade PostgreSQL to 16” is under way" in denied.text
    assert await deliver_issues(bot) == 0
    [issue] = gitlab.issues(TRACKER)
    assert set(issue.labels) == {"change", "C2", "change::in-progress", *BLOCKING}

    text = await said_ok(bot, "bob", "change done 1")
    assert "no longer locked by it" in text
    await said_ok(bot, "alice", "feature set new_nav 1 --actors")
    assert await deliver_issues(bot) == 0
    [issue] = gitlab.issues(TRACKER)
    assert issue.state == "closed"
    assert set(issue.labels) == {"change", "C2", "change::complete"}
    [row] = await bot.rows(ChangeRequest)
    assert row.state == "done" and row.issue_ref == "#1" and row.started_by == "bob"


async def test_the_trackers_own_checklist_template_wins(
    make: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    gitlab.add_file(TRACKER, ".gitlab/issue_templates/change_checklist.md", "## Our checklist\n")
    bot = make(**on_gitlab(gitlab))
    await said_ok(bot, "bob", UPGRADE)
    assert await deliver_issues(bot) == 0
    [issue] = gitlab.issues(TRACKER)
    assert "## Our checklist" in (issue.description or "")
    assert "## Change summary" not in (issue.description or "")


async def test_c3_and_c4_changes_lock_nothing(make: Callable[..., Bot]) -> None:
    bot = make()
    await said_ok(bot, "bob", 'change request "Rotate TLS certificates" --criticality 3')
    text = await said_ok(bot, "bob", "change start 1")
    assert "locked" not in text
    await said_ok(bot, "alice", "feature set new_nav true --staging")
    await said_ok(bot, "alice", "feature set new_nav 1 --actors")


async def test_a_change_waits_for_a_serious_incident_but_finishing_never_does(
    make: Callable[..., Bot],
) -> None:
    bot = make()
    await said_ok(bot, "bob", UPGRADE)
    await said_ok(bot, "bob", 'change request "Resize the disks" --criticality 2')
    await said_ok(bot, "bob", "change start 2")
    await said_ok(bot, "bob", 'incident declare "Checkout returns 500s" --severity 1')
    refused = await bot.say("bob", "change start 1")
    assert not refused.ok and refused.denied_by == "change_lock"
    assert "incident 1" in refused.text and "change 2" in refused.text
    await said_ok(bot, "bob", "change done 2")  # finishing only releases: never stopped
    await said_ok(bot, "alice", 'change start 1 --ignore-production-check "the fix for incident 1"')


async def test_who_may_move_a_change_and_from_where(make: Callable[..., Bot]) -> None:
    bot = make()
    await said_ok(bot, "bob", UPGRADE)
    carol = await bot.say("carol", "change start 1")
    assert not carol.ok and "Only whoever requested change 1 (@bob)" in carol.text
    early = await bot.say("bob", "change done 1")
    assert not early.ok and "Change 1 is not started; nothing changed." in early.text
    past = await bot.say("bob", 'change request "Too late" --criticality 4 --at "2026-03-01 10:00"')
    assert not past.ok and "is in the past" in past.text
    bad = await bot.say("bob", 'change request "Oops" --criticality 5')
    assert not bad.ok
    await said_ok(bot, "alice", "change start 1")  # a production engineer may
    listed = await said_ok(bot, "bob", "change list")
    assert "• 1: C2, under way · locks changes" in listed


async def test_a_timeout_after_creation_leaves_one_issue(
    make: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    bot = make(**on_gitlab(gitlab))
    gitlab.hang_after_apply(POST_ISSUE, 3)  # opened, but answered after Marvin's 1 s
    await said_ok(bot, "bob", UPGRADE)
    await said_ok(bot, "bob", "change start 1")
    bot.clock.advance(seconds=60)
    assert await deliver_issues(bot) == 0
    [issue] = gitlab.issues(TRACKER)
    assert "change::in-progress" in issue.labels


async def test_the_embedded_tracker_holds_change_issues_too(make: Callable[..., Bot]) -> None:
    bot = make()
    await said_ok(bot, "bob", UPGRADE)
    await said_ok(bot, "bob", "change start 1")
    await said_ok(bot, "bob", "change done 1")
    assert await deliver_issues(bot) == 0
    [issue] = await bot.rows(LocalIssue)
    assert issue.state == "closed" and "## Change summary" in issue.description
    assert set(issue.labels) == {"change", "C2", "change::complete"}


async def test_an_issue_that_cannot_be_opened_says_why_in_the_list(
    make: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    bot = make(**on_gitlab(gitlab))
    await said_ok(bot, "bob", UPGRADE)
    listed = await said_ok(bot, "bob", "change list")
    assert listed.endswith("Issue: on its way to the tracker")  # waiting is no news
    await gitlab.down()
    assert await issue_delivery.issue_worker(bot.services).deliver_due() == 0
    listed = await said_ok(bot, "bob", "change list")
    assert "Issue: on its way to the tracker (the issue waiting; last error: GitLab" in listed
    started = await said_ok(bot, "bob", "change start 1")
    assert "(the issue waiting; last error: GitLab" in started
    await gitlab.up()
    bot.clock.advance(seconds=60)
    assert await deliver_issues(bot) == 0
    listed = await said_ok(bot, "bob", "change list")
    assert f"Issue: {gitlab.external_url}/{TRACKER}/-/issues/1" in listed
    assert "waiting" not in listed
