"""Two `marvin serve` replicas on PostgreSQL, stopped the ways a bad day stops them.

Real processes and signals against the loopback Slack: SIGTERM with a command in flight
(finished within the grace, or given back and done once by the other replica), and SIGKILL
in the middle of work whose world moved on meanwhile (a kill switch that must not be undone,
a confirmation that must still be usable).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from marvin.clock import as_utc
from marvin.store.db import Store
from marvin.store.tables import Confirmation, FlagChange, InboxItem, LocalFlag
from tests.fakes.slack_api import FakeSlackAPI
from tests.servers.marvin_serve import CHANNEL, ServeProcess, write_config
from tests.slack_harness import populate, user_id
from tests.test_replicas import answered

LEASE_SECONDS = 3
# Where what happens after a kill must come before the takeover (the kill switch, the second
# confirm), the lease leaves it time to, however loaded the machine is.
KILL_LEASE_SECONDS = 10


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlackAPI]:
    async with FakeSlackAPI(bot_token="xoxb-replicas") as api:
        populate(api)
        api.add_channel(CHANNEL, "production")
        yield api


def _config(tmp_path: Path, pg_url: str, slack: FakeSlackAPI, **inbox: Any) -> Path:
    return write_config(
        tmp_path / "marvin.yaml",
        pg_url,
        slack,
        inbox={"lease_seconds": LEASE_SECONDS} | inbox,
        slack={
            "api_base_url": slack.base_url,
            "host": "127.0.0.1",
            "presence_cache_seconds": 0,
            "timeout_seconds": 30,
        },
    )


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[list[ServeProcess]]:
    """Whatever replicas a test starts are gone when it ends."""
    started: list[ServeProcess] = []
    yield started
    for replica in started:
        if replica.proc is not None and replica.proc.poll() is None:
            replica.kill()


async def _two(
    config: Path, tmp_path: Path, started: list[ServeProcess]
) -> tuple[ServeProcess, ServeProcess]:
    first, second = (
        ServeProcess(config, tmp_path / "a.log"),
        ServeProcess(config, tmp_path / "b.log"),
    )
    started += [first, second]
    first.start()
    second.start()
    await first.healthy()
    await second.healthy()
    return first, second


async def _say(slack: FakeSlackAPI, replica: ServeProcess, who: str, text: str) -> str:
    return await replica.command(slack, who, user_id(who), text)


async def _answer(slack: FakeSlackAPI, url: str, timeout: float = 20) -> list[str]:  # noqa: ASYNC109
    return (await answered(slack, [url], timeout))[url]


async def _in_gather(slack: FakeSlackAPI, calls: int) -> None:
    """Until the replica is waiting on Slack's presence: mid-command."""
    for _ in range(200):
        if len(slack.calls("users.getPresence")) >= calls:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the command never got to asking Slack")


async def _rows(pg_url: str, model: Any, *where: Any) -> list[Any]:
    store = Store(pg_url)
    try:
        async with store.transaction() as session:
            return list(await session.scalars(select(model).where(*where)))
    finally:
        await store.dispose()


# --- SIGTERM -------------------------------------------------------------------------------


async def test_sigterm_finishes_the_command_in_flight_and_answers_it(
    pg_url: str, slack: FakeSlackAPI, tmp_path: Path, replicas: list[ServeProcess]
) -> None:
    config = _config(tmp_path, pg_url, slack, shutdown_grace_seconds=20)
    stopping, other = await _two(config, tmp_path, replicas)
    slack.delay("users.getPresence", 2)
    url = await _say(slack, stopping, "bob", "feature set sigterm_kept true --staging")
    await _in_gather(slack, 1)
    assert stopping.proc is not None
    stopping.proc.terminate()
    code = await asyncio.to_thread(stopping.proc.wait, 30)
    assert code == 0, stopping.log()
    # Answered by the replica that was stopping, before it went: once.
    got = await _answer(slack, url, timeout=5)
    assert len(got) == 1 and "now on for everyone" in got[0], got
    await asyncio.sleep(LEASE_SECONDS + 2)  # the other replica finds nothing to redo
    assert len([c for c in slack.calls("response_url") if c.context["url"] == url]) == 1
    assert len(await _rows(pg_url, FlagChange, FlagChange.name == "sigterm_kept")) == 1
    [item] = await _rows(pg_url, InboxItem, InboxItem.kind == "command")
    assert item.status == "done" and f":{stopping.proc.pid}:" in str(item.owner)
    assert other.stop() == 0


async def test_sigterm_past_its_grace_gives_the_command_to_the_other_replica(
    pg_url: str, slack: FakeSlackAPI, tmp_path: Path, replicas: list[ServeProcess]
) -> None:
    # A lease long enough that a claim left to run out can be told from one given back.
    config = _config(
        tmp_path, pg_url, slack, shutdown_grace_seconds=1, lease_seconds=KILL_LEASE_SECONDS
    )
    stopping, other = await _two(config, tmp_path, replicas)
    slack.delay("users.getPresence", 15)
    url = await _say(slack, stopping, "bob", "feature set sigterm_moved true --staging")
    await _in_gather(slack, 1)
    assert stopping.proc is not None
    stopping.proc.terminate()
    slack.delay("users.getPresence", 0)  # what asks from now on is answered at once
    code = await asyncio.to_thread(stopping.proc.wait, 30)
    assert code == 0, stopping.log()
    assert "work.join_timeout" in stopping.log()  # it was still working when the grace ended
    # Given back, not left to its lease: its claim ended as it stopped (or the other
    # replica has taken it already)...
    [item] = await _rows(pg_url, InboxItem, InboxItem.kind == "command")
    taken = f":{stopping.proc.pid}:" not in str(item.owner)
    assert taken or as_utc(item.lease_until) <= datetime.now(UTC), (item.owner, item.lease_until)
    # ...and the other replica does it, once.
    got = await _answer(slack, url, timeout=LEASE_SECONDS * 3 + 10)
    assert len(got) == 1 and "now on for everyone" in got[0], (got, other.log())
    await asyncio.sleep(2)
    assert len([c for c in slack.calls("response_url") if c.context["url"] == url]) == 1
    assert len(await _rows(pg_url, FlagChange, FlagChange.name == "sigterm_moved")) == 1
    [item] = await _rows(pg_url, InboxItem, InboxItem.kind == "command")
    assert other.proc is not None
    assert item.status == "done" and f":{other.proc.pid}:" in str(item.owner)
    assert other.stop() == 0


# --- SIGKILL, and the world moved on -------------------------------------------------------


async def test_a_command_taken_over_after_a_kill_does_not_undo_a_later_kill_switch(
    pg_url: str, slack: FakeSlackAPI, tmp_path: Path, replicas: list[ServeProcess]
) -> None:
    config = _config(tmp_path, pg_url, slack, lease_seconds=KILL_LEASE_SECONDS)
    doomed, survivor = await _two(config, tmp_path, replicas)
    first = await _say(slack, survivor, "alice", "feature set ro 1 --actors --staging")
    assert "now 1% of actors" in (await _answer(slack, first))[0]
    slack.delay("users.getPresence", 5)
    calls = len(slack.calls("users.getPresence"))
    raised = await _say(slack, doomed, "bob", "feature set ro 50 --actors --staging")
    await _in_gather(slack, calls + 1)
    doomed.kill()
    slack.delay("users.getPresence", 0)
    # While bob's command waits for its lease, alice pulls the kill switch.
    off = await _say(slack, survivor, "alice", "feature set ro false --staging")
    assert "now off" in (await _answer(slack, off))[0]

    got = await _answer(slack, raised, timeout=KILL_LEASE_SECONDS * 3 + 15)
    assert len(got) == 1, (got, survivor.log())
    assert "was changed since you asked" in got[0] and "didn't do it" in got[0], got
    await asyncio.sleep(1)
    assert len([c for c in slack.calls("response_url") if c.context["url"] == raised]) == 1
    [state] = await _rows(pg_url, LocalFlag, LocalFlag.name == "ro")
    assert not state.enabled and not state.percentage_of_actors  # still off
    changes = await _rows(pg_url, FlagChange, FlagChange.name == "ro")
    assert [c.actor for c in changes] == ["alice", "alice"]  # bob's never applied
    assert survivor.stop() == 0


async def test_a_confirmation_whose_change_was_killed_can_be_confirmed_again(
    pg_url: str, slack: FakeSlackAPI, tmp_path: Path, replicas: list[ServeProcess]
) -> None:
    config = _config(tmp_path, pg_url, slack, lease_seconds=KILL_LEASE_SECONDS)
    doomed, survivor = await _two(config, tmp_path, replicas)
    made = await _say(slack, survivor, "alice", "feature set gone true --staging")
    assert "now on for everyone" in (await _answer(slack, made))[0]
    asked = await _say(slack, survivor, "alice", "feature delete gone --staging")
    assert "confirm" in (await _answer(slack, asked))[0].lower()
    [confirmation] = await _rows(pg_url, Confirmation)
    slack.delay("users.getPresence", 5)
    calls = len(slack.calls("users.getPresence"))
    killed = await _say(slack, doomed, "alice", f"confirm {confirmation.token}")
    await _in_gather(slack, calls + 1)
    doomed.kill()
    slack.delay("users.getPresence", 0)

    again = await _say(slack, survivor, "alice", f"confirm {confirmation.token}")
    got = await _answer(slack, again)
    assert len(got) == 1 and "Deleted `gone` in staging" in got[0], got
    assert await _rows(pg_url, LocalFlag, LocalFlag.name == "gone") == []
    # The killed one is taken over too, and finds it done rather than doing it twice.
    late = await _answer(slack, killed, timeout=KILL_LEASE_SECONDS * 3 + 15)
    assert len(late) == 1, (late, survivor.log())
    assert "already confirmed" in late[0] or "was changed since you asked" in late[0], late
    deletes = await _rows(pg_url, FlagChange, FlagChange.name == "gone")
    assert [c.action for c in deletes] == ["set", "delete"]
    assert survivor.stop() == 0
