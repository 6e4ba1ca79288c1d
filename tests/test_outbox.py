"""The outbox: stored with the change, delivered with retries, never lost or doubled."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marvin.outbox import DeliveryError, OutboxWorker, enqueue
from marvin.pipeline import announcement_kind
from marvin.store.tables import OutboxMessage
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
    worker = OutboxWorker(bot.services.store, {announcement_kind("test"): sink}, bot.clock)

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
    worker = OutboxWorker(bot.services.store, {announcement_kind("test"): sink}, bot.clock)
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
