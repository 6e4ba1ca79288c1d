"""The outbox: stored with the change, delivered with retries, never lost or doubled."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from marvin.clock import as_utc
from marvin.outbox import ANNOUNCE, LEASE, DeliveryError, OutboxWorker, enqueue
from marvin.store.tables import OutboxMessage
from marvin.supervisor import Job, Leases, Supervisor
from tests.harness import Bot


class FlakySink:
    def __init__(self, failures: list[DeliveryError | None]) -> None:
        self.failures = failures
        self.delivered: list[tuple[str, Mapping[str, Any]]] = []

    async def deliver(self, payload: Mapping[str, Any], idempotency_key: str) -> None:
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        self.delivered.append((idempotency_key, payload))


async def test_an_announcement_survives_a_chat_outage(bot: Bot) -> None:
    reply = await bot.say("alice", "feature set x true --staging")
    assert reply.announcement is not None
    sink = FlakySink([DeliveryError("503 from chat"), DeliveryError("rate limited", after=30)])
    worker = OutboxWorker(bot.services.store, {ANNOUNCE: sink}, bot.clock)

    assert await worker.deliver_due() == 0
    [row] = await bot.rows(OutboxMessage)
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "503 from chat")
    assert await worker.deliver_due() == 0  # not due yet: backing off
    bot.clock.advance(seconds=2)
    assert await worker.deliver_due() == 0  # the rate limit asks for 30 s
    bot.clock.advance(seconds=29)
    assert await worker.deliver_due() == 0
    bot.clock.advance(seconds=1)
    assert await worker.deliver_due() == 1
    [row] = await bot.rows(OutboxMessage)
    assert row.status == "delivered" and row.attempts == 3
    assert sink.delivered == [
        (reply.announcement.idempotency_key, reply.announcement.model_dump(mode="json"))
    ]
    assert await worker.deliver_due() == 0  # delivered once, never again


async def test_a_permanent_failure_is_kept_for_a_person_to_see(bot: Bot) -> None:
    await bot.say("alice", "feature set x true --staging")
    sink = FlakySink([DeliveryError("channel_not_found", retry=False)])
    worker = OutboxWorker(bot.services.store, {ANNOUNCE: sink}, bot.clock)
    assert await worker.deliver_due() == 0
    [row] = await bot.rows(OutboxMessage)
    assert row.status == "failed" and row.last_error == "channel_not_found"


async def test_the_same_key_is_stored_once(bot: Bot) -> None:
    for _ in range(2):
        async with bot.services.store.transaction(write=True) as session:
            await enqueue(session, kind="k", key="same", payload={"n": 1}, now=bot.clock.now())
    assert len(await bot.rows(OutboxMessage)) == 1


async def test_a_denied_change_leaves_nothing_to_announce(bot: Bot) -> None:
    reply = await bot.say("carol", "feature set x true --staging")
    assert reply.denied_by == "roles"
    assert await bot.rows(OutboxMessage) == []


class StuckSink:
    """A chat that does not answer until the test lets it."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def deliver(self, payload: Mapping[str, Any], idempotency_key: str) -> None:
        self.entered.set()
        await self.release.wait()


async def test_commands_do_not_wait_for_a_slow_chat(any_bot: Bot) -> None:
    bot = any_bot
    await bot.say("alice", "feature set x true --staging")
    sink = StuckSink()
    worker = OutboxWorker(bot.services.store, {ANNOUNCE: sink}, bot.clock)
    delivery = asyncio.create_task(worker.deliver_due())
    await asyncio.wait_for(sink.entered.wait(), 10)
    # The chat is still not answering: a change must go through regardless.
    reply = await asyncio.wait_for(bot.say("alice", "feature set y true --staging"), 10)
    assert reply.ok, reply.text
    sink.release.set()
    assert await delivery == 1


async def test_a_delivery_that_dies_midway_is_due_again_after_its_lease(bot: Bot) -> None:
    await bot.say("alice", "feature set x true --staging")
    sink = StuckSink()
    worker = OutboxWorker(bot.services.store, {ANNOUNCE: sink}, bot.clock)
    delivery = asyncio.create_task(worker.deliver_due())
    await asyncio.wait_for(sink.entered.wait(), 10)
    delivery.cancel()  # the process dies while the chat has the message
    with contextlib.suppress(asyncio.CancelledError):
        await delivery
    healthy = FlakySink([])
    again = OutboxWorker(bot.services.store, {ANNOUNCE: healthy}, bot.clock)
    assert await again.deliver_due() == 0  # still leased to the one that died
    bot.clock.advance(LEASE)
    assert await again.deliver_due() == 1
    [row] = await bot.rows(OutboxMessage)
    assert row.status == "delivered" and row.attempts == 2


async def test_a_shutdown_gives_back_what_a_stopped_round_held(bot: Bot) -> None:
    await bot.say("alice", "feature set x true --staging")
    sink = StuckSink()
    worker = OutboxWorker(bot.services.store, {ANNOUNCE: sink}, bot.clock)
    stop = asyncio.Event()
    leases = Leases(bot.services.store, bot.clock, "stopping", timedelta(seconds=30))
    job = Job("outbox", 60, worker.deliver_due, worker.wakeup, worker.give_back)
    running = asyncio.create_task(Supervisor(leases, [job]).run(stop, grace=0.1))
    await asyncio.wait_for(sink.entered.wait(), 10)
    stop.set()  # SIGTERM, and the chat still holds the message
    await asyncio.wait_for(running, 10)
    healthy = FlakySink([])
    again = OutboxWorker(bot.services.store, {ANNOUNCE: healthy}, bot.clock)
    assert await again.deliver_due() == 1  # at once: not when the claim would have run out
    [row] = await bot.rows(OutboxMessage)
    assert row.status == "delivered" and row.attempts == 2


async def test_a_renewal_never_replaces_a_retrys_backoff(bot: Bot) -> None:
    await bot.say("alice", "feature set x true --staging")
    sink = FlakySink([DeliveryError("rate limited", after=1)])
    worker = OutboxWorker(bot.services.store, {ANNOUNCE: sink}, bot.clock)
    worker.renew_every = 0.01
    record = worker._record

    async def record_then_linger(*args: Any) -> int:
        recorded = await record(*args)
        await asyncio.sleep(0.1)  # the renewal has its turns meanwhile
        return recorded

    worker._record = record_then_linger  # type: ignore[method-assign]
    assert await worker.deliver_due() == 0
    [row] = await bot.rows(OutboxMessage)
    assert as_utc(row.next_attempt_at) == bot.clock.now() + timedelta(seconds=1)
