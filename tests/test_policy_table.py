"""The same rules on every backend: one table of policy cases, run through the whole pipeline
against the embedded store, GitLab's instance features, a GitLab project's feature flags and
a real Unleash, must give the same decisions and leave the same states.

The table keeps to what every backend can hold (whole percentages, user actors).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest

from marvin.wiring import close
from tests.fakes.gitlab import FakeGitLab
from tests.harness import Bot, make_bot
from tests.test_contracts import (
    FLAGS_PROJECT,
    GITLAB_DEVELOPER_TOKEN,
    GITLAB_TOKEN,
    gitlab_world,
    unleash_clean_slate,
)

BACKENDS = ["local", "gitlab_instance", "gitlab_project", "unleash"]

# (who, what they say, hours to wait first, the policy that refuses it or "ok", then what
# `feature get` shows for the flag in production afterwards (None: not checked).
TABLE: list[tuple[str, str, float, str, str | None]] = [
    # consistency: production never runs ahead of staging
    ("bob", "feature set table_flag 1 --actors", 0, "consistency", None),
    ("bob", "feature set table_flag true --staging", 0, "ok", None),
    # the ceiling: 1% at first
    ("bob", "feature set table_flag 50 --actors", 0, "ceiling", None),
    ("bob", "feature set table_flag 1 --actors", 0, "ok", "1% of actors"),
    # consistency the other way: staging can't go off while production is on
    ("bob", "feature set table_flag false --staging", 0, "consistency", None),
    # the soak, then steps
    ("bob", "feature set table_flag 30 --actors", 23, "ceiling", "1% of actors"),
    ("bob", "feature set table_flag 30 --actors", 1, "ok", "30% of actors"),
    ("bob", "feature set table_flag 100 --actors", 0, "ceiling", "30% of actors"),
    # availability: away, no raise; lowering is a kill switch
    ("bob", "status away lunch", 0, "ok", None),
    ("bob", "feature set table_flag 40 --actors", 0, "availability", "30% of actors"),
    ("bob", "feature set table_flag 10 --actors", 0, "ok", "10% of actors"),
    ("bob", "status back", 0, "ok", None),
    # the change lock (an incident is opened before this row)
    ("bob", "feature set table_flag 20 --actors", 0, "change_lock", "10% of actors"),
    ("bob", "feature set table_flag true --user bob", 0, "change_lock", "10% of actors"),
    # undoing the lowering would raise it again: the lock holds
    ("bob", "feature rollback table_flag", 0, "change_lock", "10% of actors"),
    ("bob", "feature set table_flag 5 --actors", 0, "ok", "5% of actors"),
    # lowering goes ahead during the lock, raising doesn't, however small
    ("bob", "feature set table_flag 8 --actors", 0, "change_lock", "5% of actors"),
    ("bob", "feature set table_flag 1 --actors", 0, "ok", "1% of actors"),
    ("bob", "feature rollback table_flag", 0, "change_lock", "1% of actors"),
]
INCIDENT_BEFORE = 12  # the row index at which a severity 1 incident opens


@pytest.fixture(params=BACKENDS)
async def table_bot(
    request: pytest.FixtureRequest, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Bot]:
    name = request.param
    sections: dict[str, Any] = {"flags": {"backend": name}}
    async with AsyncExitStack() as stack:
        if name == "gitlab_instance":
            urls = {}
            for env in ("staging", "production"):  # instance features: one GitLab each
                gitlab = await stack.enter_async_context(FakeGitLab())
                gitlab_world(gitlab)
                urls[env] = gitlab.url
            monkeypatch.setenv("GITLAB_TOKEN", GITLAB_TOKEN)
            sections["gitlab"] = {"instances": urls, "timeout_seconds": 5}
        elif name == "gitlab_project":
            gitlab = await stack.enter_async_context(FakeGitLab())
            gitlab_world(gitlab)
            monkeypatch.setenv("GITLAB_TOKEN", GITLAB_DEVELOPER_TOKEN)
            sections["gitlab"] = {
                "url": gitlab.url,
                "flags_project": FLAGS_PROJECT,
                "timeout_seconds": 5,
            }
        elif name == "unleash":
            unleash = request.getfixturevalue("unleash_server")
            await unleash_clean_slate(unleash)
            monkeypatch.setenv("UNLEASH_ADMIN_TOKEN", unleash.admin_token)
            sections["unleash"] = {
                "url": unleash.url,
                "project": unleash.project,
                "timeout_seconds": 5,
            }
        bot = make_bot(sqlite_url, **sections)
        try:
            yield bot
        finally:
            await close(bot.services)


async def test_every_backend_gives_the_same_decisions_and_states(table_bot: Bot) -> None:
    bot = table_bot
    seen = []
    for row, (who, text, hours, expected, state) in enumerate(TABLE):
        if row == INCIDENT_BEFORE:
            await bot.open_incident(1)
        bot.clock.advance(hours=hours)
        reply = await bot.say(who, text, dm=text.startswith("status"))
        outcome = "ok" if reply.ok else (reply.denied_by or f"error: {reply.text}")
        shown = None
        if state is not None:
            got = await bot.say("carol", "feature get table_flag --production")
            shown = got.text.split(": ", 1)[1]
        seen.append((text, outcome, shown))
    assert seen == [(text, expected, state) for _, text, _, expected, state in TABLE]
