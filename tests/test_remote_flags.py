"""A remote flag backend behind the pipeline: GitLab's instance features, over python-gitlab.

What a person is told when GitLab is slow, down or times out after making the change, and
how the reconciler settles a change whose outcome nobody knew.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from marvin import intents
from marvin.store.tables import AuditRecord, ChangeIntent, FlagChange, OutboxMessage
from tests.fakes.gitlab import FakeGitLab
from tests.harness import Bot, make_bot

TOKEN = "glpat-marvin-admin"
STALE = timedelta(minutes=1)


@pytest.fixture
async def gitlab() -> AsyncIterator[FakeGitLab]:
    async with FakeGitLab() as fake:
        fake.add_user("marvin", token=TOKEN, admin=True)
        fake.add_user("bob")
        yield fake


@pytest.fixture
async def bot(
    gitlab: FakeGitLab, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Bot]:
    monkeypatch.setenv("GITLAB_TOKEN", TOKEN)
    made = make_bot(
        sqlite_url,
        flags={"backends": {"production": "gitlab_instance"}},
        gitlab={"instances": {"production": gitlab.url}, "timeout_seconds": 1},
    )
    yield made
    await made.services.store.dispose()


async def staged(bot: Bot, flag: str = "new_nav") -> None:
    reply = await bot.say("alice", f"feature set {flag} true --staging")
    assert reply.ok, reply.text


async def settle(bot: Bot) -> int:
    return await intents.settle_due(bot.services, bot.pipeline.registry, STALE)


async def test_a_change_lands_in_gitlab_and_is_recorded(bot: Bot, gitlab: FakeGitLab) -> None:
    await staged(bot)
    reply = await bot.say("bob", "feature set new_nav 1 --actors")
    assert reply.ok, reply.text
    assert "now 1% of actors" in reply.text
    assert gitlab.feature_json("new_nav")["gates"] == [
        {"key": "boolean", "value": False},
        {"key": "percentage_of_actors", "value": 1},
    ]
    [change] = await bot.rows(FlagChange, FlagChange.environment == "production")
    assert change.exposure_after == 1
    [intent] = await bot.rows(ChangeIntent)
    assert intent.status == "applied"
    reply = await bot.say("carol", "feature get new_nav")
    assert "1% of actors" in reply.text


async def test_a_change_made_behind_marvins_back_is_what_the_policies_judge(
    bot: Bot, gitlab: FakeGitLab
) -> None:
    await staged(bot)
    gitlab.set_feature("new_nav", percentage_of_actors=40)  # someone used GitLab's own API
    reply = await bot.say("bob", "feature set new_nav 50 --actors")
    # Judged on the live 40%: a raise above the ceiling without soak is refused...
    assert reply.denied_by == "ceiling", reply.text
    # ...and lowering from what GitLab holds is a lowering.
    reply = await bot.say("bob", "feature set new_nav 1 --actors")
    assert reply.ok and "(was 40% of actors)" in reply.text


async def test_gitlab_down_is_said_plainly_and_nothing_is_recorded(
    bot: Bot, gitlab: FakeGitLab
) -> None:
    await staged(bot)
    await gitlab.down()
    reply = await bot.say("bob", "feature set new_nav 1 --actors")
    assert not reply.ok and "GitLab could not be reached" in reply.text
    assert "Nothing was changed" in reply.text
    assert await bot.rows(FlagChange, FlagChange.environment == "production") == []
    await gitlab.up()


async def test_a_refusal_is_a_failure_with_its_reason(bot: Bot, gitlab: FakeGitLab) -> None:
    await staged(bot)
    gitlab.fail_next("POST /features/*", 403)
    reply = await bot.say("bob", "feature set new_nav 1 --actors")
    assert not reply.ok and "does not allow Marvin" in reply.text
    [intent] = await bot.rows(ChangeIntent)
    assert intent.status == "failed"
    assert await bot.rows(FlagChange, FlagChange.environment == "production") == []


async def test_a_timeout_after_gitlab_applied_is_unknown_then_settled_as_made(
    bot: Bot, gitlab: FakeGitLab
) -> None:
    await staged(bot)
    gitlab.hang_after_apply("POST /features/*", 3)
    reply = await bot.say("bob", "feature set new_nav 1 --actors")
    assert not reply.ok
    assert "I don't know whether it happened" in reply.text
    assert "announce the outcome in #production" in reply.text
    assert await bot.rows(FlagChange, FlagChange.environment == "production") == []
    [intent] = await bot.rows(ChangeIntent)
    assert intent.status == "unknown"
    assert [a.outcome for a in await bot.rows(AuditRecord, AuditRecord.outcome == "unknown")]

    assert await settle(bot) == 1
    [intent] = await bot.rows(ChangeIntent)
    assert intent.status == "applied"
    [change] = await bot.rows(FlagChange, FlagChange.environment == "production")
    assert (change.actor, change.exposure_after) == ("bob", 1)
    announcements = [m.payload["text"] for m in await bot.rows(OutboxMessage)]
    assert any(
        "@bob set `new_nav` in production: new → 1% of actors" in t and "confirmed later" in t
        for t in announcements
    ), announcements
    assert await settle(bot) == 0  # settled once


async def test_a_change_that_never_landed_is_settled_as_not_made(
    bot: Bot, gitlab: FakeGitLab
) -> None:
    await staged(bot)
    gitlab.fail_next("POST /features/*", 502)
    reply = await bot.say("bob", "feature set new_nav 1 --actors")
    assert "I don't know whether it happened" in reply.text
    assert await settle(bot) == 1
    [intent] = await bot.rows(ChangeIntent)
    assert intent.status == "not_applied"
    assert await bot.rows(FlagChange, FlagChange.environment == "production") == []
    texts = [m.payload["text"] for m in await bot.rows(OutboxMessage)]
    assert any("@bob's change (feature set new_nav (production)) was not made" in t for t in texts)


async def test_a_change_someone_else_overtook_is_left_for_a_person(
    bot: Bot, gitlab: FakeGitLab
) -> None:
    await staged(bot)
    gitlab.fail_next("POST /features/*", 502)
    await bot.say("bob", "feature set new_nav 1 --actors")
    gitlab.set_feature("new_nav", percentage_of_actors=7)
    assert await settle(bot) == 1
    [intent] = await bot.rows(ChangeIntent)
    assert intent.status == "diverged"
    texts = [m.payload["text"] for m in await bot.rows(OutboxMessage)]
    assert any("7% of actors" in t and "someone should look at it" in t for t in texts)


async def test_settling_waits_while_gitlab_is_down(bot: Bot, gitlab: FakeGitLab) -> None:
    await staged(bot)
    gitlab.fail_next("POST /features/*", 502)
    await bot.say("bob", "feature set new_nav 1 --actors")
    await gitlab.down()
    assert await settle(bot) == 0
    [intent] = await bot.rows(ChangeIntent)
    assert intent.status == "unknown"
    await gitlab.up()
    assert await settle(bot) == 1
