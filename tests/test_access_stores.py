"""The access tables on SQLite and on PostgreSQL: the GitLab mirror replaced whole, grants
that expire, reviews read back per person."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from marvin.access import sync
from tests.access_world import TOKEN, gitlab, sections
from tests.fakes.gitlab import FakeGitLab
from tests.harness import Bot, make_bot

__all__ = ["gitlab"]


@pytest.fixture
async def store_bot(
    db_url: str, gitlab: FakeGitLab, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Bot]:
    monkeypatch.setenv("GITLAB_TOKEN", TOKEN)
    bot = make_bot(db_url, **sections(gitlab))
    await sync.run(bot.services)
    yield bot
    await bot.services.store.dispose()


async def test_mirror_grants_and_reviews(store_bot: Bot, gitlab: FakeGitLab) -> None:
    bot = store_bot
    await sync.run(bot.services)  # replaced whole, again
    who = await bot.say("carol", "access who production")
    assert who.data == {"roles": {"production": ["alice", "zed"]}}
    assert (await bot.say("carol", "whoami")).ok
    ref = await bot.add_issue("Access request", ["access request"])
    granted = await bot.say(
        "alice", f"access grant feature_flags @carol --issue {ref} --expires 2d"
    )
    assert granted.ok, granted.text
    assert (await bot.say("alice", "access reviewed @erin")).ok
    assert (await bot.say("alice", "access reviewed @erin")).ok
    report = await bot.say("alice", "access report")
    assert "reviewed 2026-03-02 by @alice" in report.text
    assert "@carol's `feature_flags` expires 2026-03-04" in report.text
    bot.clock.advance(days=2, seconds=1)
    assert (await bot.say("carol", "feature set new_nav true --staging")).denied_by == "roles"
