"""Several `marvin serve` processes on one PostgreSQL database, and only one on a SQLite file.

Real processes, signals included: a replica killed with SIGKILL while it works on
acknowledged commands leaves them to the survivor, which answers each exactly once after
the lease runs out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from marvin.store.db import Store
from marvin.store.tables import FlagChange, InboxItem
from tests.fakes.slack_api import FakeSlackAPI
from tests.servers.marvin_serve import CHANNEL, ServeProcess, write_config
from tests.slack_harness import populate, user_id

LEASE_SECONDS = 3


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlackAPI]:
    async with FakeSlackAPI(bot_token="xoxb-replicas") as api:
        populate(api)
        api.add_channel(CHANNEL, "production")
        yield api


async def answered(api: FakeSlackAPI, urls: list[str], timeout: float) -> dict[str, list[str]]:  # noqa: ASYNC109
    """Every response_url's answers, once each has at least one (or the time is up)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        got = {
            u: [c.params["text"] for c in api.calls("response_url") if c.context["url"] == u]
            for u in urls
        }
        if all(got.values()) or loop.time() > deadline:
            return got
        await asyncio.sleep(0.1)


async def test_a_killed_replicas_commands_are_answered_once_by_the_survivor(
    pg_url: str, slack: FakeSlackAPI, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "marvin.yaml",
        pg_url,
        slack,
        inbox={"lease_seconds": LEASE_SECONDS},
        slack={
            "api_base_url": slack.base_url,
            "host": "127.0.0.1",
            "presence_cache_seconds": 0,
            "timeout_seconds": 10,
        },
    )
    doomed = ServeProcess(config, tmp_path / "a.log")
    survivor = ServeProcess(config, tmp_path / "b.log")
    doomed.start()
    survivor.start()
    try:
        await doomed.healthy()
        await survivor.healthy()
        # Each change waits on Slack's presence; the replica dies while they wait.
        slack.delay("users.getPresence", 2.5)
        flags = [f"replica_{i}" for i in range(4)]
        people = ["bob", "alice"]  # each person's commands are worked on in turn
        urls = [
            await doomed.command(
                slack, people[i % 2], user_id(people[i % 2]), f"feature set {flag} true --staging"
            )
            for i, flag in enumerate(flags)
        ]
        for _ in range(100):
            if len(slack.calls("users.getPresence")) >= len(people):
                break
            await asyncio.sleep(0.05)
        doomed.kill()
        assert not [c for c in slack.calls("response_url") if c.context["url"] in urls]
        slack.delay("users.getPresence", 0)

        got = await answered(slack, urls, timeout=LEASE_SECONDS * 4 + 15)
        # Exactly once each, by the survivor (the other is dead), after the lease.
        assert {u: len(t) for u, t in got.items()} == dict.fromkeys(urls, 1), survivor.log()
        assert all("now on for everyone" in t[0] for t in got.values()), got
        await asyncio.sleep(1)  # nothing more arrives later either
        assert sum(c.context["url"] in urls for c in slack.calls("response_url")) == len(urls)

        store = Store(pg_url)
        try:
            async with store.transaction() as session:
                changes = list(await session.scalars(select(FlagChange)))
                items = list(await session.scalars(select(InboxItem)))
        finally:
            await store.dispose()
        assert sorted(c.name for c in changes) == sorted(flags)  # each made once
        assert {i.status for i in items} == {"done"}
        owners = {i.owner for i in items if i.kind == "command"}
        assert len(owners) == 1 and f":{survivor.proc.pid}:" in owners.pop()  # type: ignore[union-attr]
    finally:
        survivor.stop()
        if doomed.proc and doomed.proc.poll() is None:
            doomed.kill()


async def test_a_second_server_on_one_sqlite_file_refuses_to_start(
    sqlite_url: str, slack: FakeSlackAPI, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "marvin.yaml", sqlite_url, slack)
    first = ServeProcess(config, tmp_path / "first.log")
    first.start()
    try:
        await first.healthy()
        second = ServeProcess(config, tmp_path / "second.log")
        second.start()
        assert second.proc is not None
        code = await asyncio.to_thread(second.proc.wait, 30)
        assert code == 2
        assert "Another `marvin serve` is already running on" in second.log()
        assert "use PostgreSQL" in second.log()
    finally:
        assert first.stop() == 0
    # With the first one gone, the file is free again.
    again = ServeProcess(config, tmp_path / "again.log")
    again.start()
    try:
        await again.healthy()
    finally:
        assert again.stop() == 0
