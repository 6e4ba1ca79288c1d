"""What Slack was told we accepted is not lost: not to a crash, not to a database outage.

A crash is simulated where it hurts most: right after the ack, before any of the work ran
(the work is dropped instead of started). Recovery is what `marvin serve` runs on start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any

import pytest

from marvin import inbox
from marvin.slack import app as slack_app
from marvin.store.tables import (
    Account,
    AuditRecord,
    FlagChange,
    InboxItem,
    LocalFlag,
    OutboxMessage,
)
from tests.slack_harness import (
    SlackRig,
    rig_factory_fixture,  # noqa: F401
    rig_fixture,  # noqa: F401
    user_id,
)

SET_STAGING = "feature set new_nav true --staging"


def crash_after_ack(rig: SlackRig, monkeypatch: pytest.MonkeyPatch) -> None:
    def dropped(work: Coroutine[Any, Any, None]) -> None:
        work.close()  # the process died: the acknowledged work never ran

    monkeypatch.setattr(rig.bot.transport, "_spawn", dropped)


async def test_work_acked_before_a_crash_is_done_on_restart(
    rig: SlackRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    crash_after_ack(rig, monkeypatch)
    ack = await rig.command("bob", SET_STAGING)
    assert ack.status == 200 and "Working on" in ack.json()["text"]
    [item] = await rig.rows(InboxItem)
    assert item.status == "pending" and item.payload["text"] == SET_STAGING
    assert await rig.rows(LocalFlag) == []

    monkeypatch.undo()  # the restarted process
    rig.clock.advance(minutes=3)
    assert await rig.bot.transport.recover() == 1
    reply = await rig.reply(ack)
    assert "`new_nav` in staging is now on for everyone" in reply["text"]
    assert len(await rig.rows(LocalFlag)) == 1
    await rig.settle()
    [item] = await rig.rows(InboxItem)
    assert item.status == "done"
    assert await rig.announce() == 1 and len(rig.posts()) == 1


async def test_work_too_old_to_answer_is_owned_up_to(
    rig: SlackRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    crash_after_ack(rig, monkeypatch)
    ack = await rig.command("bob", SET_STAGING)
    monkeypatch.undo()
    rig.clock.advance(minutes=26)  # the response_url would no longer take an answer
    assert await rig.bot.transport.recover() == 0
    [told] = rig.api.calls("chat.postEphemeral")
    assert told.params["user"] == user_id("bob")
    assert "I was restarted" in told.params["text"]
    assert rig.replies(ack) == [] and await rig.rows(LocalFlag) == []
    [item] = await rig.rows(InboxItem)
    assert item.status == "abandoned"


async def test_work_redone_after_a_late_crash_announces_once(
    rig: SlackRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The change was made but the crash came before the inbox heard it was done."""

    def crash_before_finishing(item: int) -> None:
        pass  # the process died before it could write down that the item was done

    monkeypatch.setattr(rig.bot.transport.finisher, "finish", crash_before_finishing)
    first = await rig.command("bob", SET_STAGING)
    assert "now on for everyone" in (await rig.reply(first))["text"]
    await rig.settle()
    monkeypatch.undo()
    rig.clock.advance(minutes=1)
    # The restarted server is the only one on its SQLite file: it takes up everything.
    assert await rig.bot.transport.recover(everything=True) == 1
    await rig.settle()
    replies = rig.replies(first)
    # Done before the crash: answered again from the record, not made a second time.
    assert len(replies) == 2 and replies[1]["text"] == replies[0]["text"]
    assert len(await rig.rows(FlagChange)) == 1
    assert len(await rig.rows(OutboxMessage)) == 1
    assert await rig.announce() == 1 and len(rig.posts()) == 1


async def test_a_database_outage_at_the_ack_is_said_plainly(
    rig: SlackRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(*args: Any, **kwargs: Any) -> int | None:
        raise OSError("database unreachable")

    monkeypatch.setattr(slack_app.inbox, "_insert", down)
    ack = await rig.command("bob", SET_STAGING)
    assert ack.status == 200
    assert ack.json()["text"] == slack_app.UNAVAILABLE
    await rig.settle()
    assert rig.replies(ack) == []
    assert await rig.rows(Account) == [] and await rig.rows(AuditRecord) == []


async def test_recovery_takes_up_only_its_own_transport(rig: SlackRig) -> None:
    await inbox.accept(
        rig.store,
        key="shell:1",
        transport="shell",
        kind="command",
        payload={},
        now=rig.clock.now() - timedelta(minutes=1),
        owner="gone",
        lease=timedelta(seconds=1),
    )
    assert await rig.bot.transport.recover() == 0
    [item] = await rig.rows(InboxItem)
    assert item.status == "pending"


async def test_work_taken_up_again_does_not_undo_a_later_change(
    rig: SlackRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bob asked to raise; the process died; alice turned it off; bob's raise must not come
    back from the dead and undo her kill switch."""
    assert "now on" in (await rig.run("alice", "feature set ro true --staging"))["text"]
    assert "now 1% of actors" in (await rig.run("bob", "feature set ro 1 --actors"))["text"]
    crash_after_ack(rig, monkeypatch)
    raised = await rig.command("bob", "feature set ro 0.5 --actors --user carol")
    monkeypatch.undo()
    rig.clock.advance(seconds=30)
    assert "now off" in (await rig.run("alice", "feature set ro false"))["text"]
    rig.clock.advance(seconds=30)
    await rig.settle()
    assert await rig.bot.transport.recover(everything=True) == 1
    reply = await rig.reply(raised)
    assert "was changed since you asked" in reply["text"] and "didn't do it" in reply["text"]
    [flag] = await rig.rows(LocalFlag, LocalFlag.environment == "production")
    assert (flag.enabled, flag.percentage_of_actors, flag.actors) == (False, None, [])


class BlackHole:
    """A TCP server that accepts connections and never says a word: a database whose
    packets vanish."""

    def __init__(self) -> None:
        self.server: asyncio.AbstractServer | None = None
        self.held: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> int:
        async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.held.append(writer)

        self.server = await asyncio.start_server(hold, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        for writer in self.held:
            writer.close()
        assert self.server is not None
        self.server.close()


async def test_a_black_holed_database_still_gets_an_ack_and_an_unhealthy_healthz(
    rig_factory: Any,
) -> None:
    async with BlackHole() as port:
        rig = await rig_factory(db=f"postgresql+asyncpg://marvin@127.0.0.1:{port}/marvin")
        loop = asyncio.get_running_loop()
        started = loop.time()
        ack = await rig.command("bob", SET_STAGING)
        assert ack.status == 200 and ack.json()["text"] == slack_app.UNAVAILABLE
        health = await rig.client.get("/healthz")
        assert health.status == 503
        # Well inside Slack's 3 s for the ack (a generous bound: this is not a benchmark).
        assert loop.time() - started < 6
