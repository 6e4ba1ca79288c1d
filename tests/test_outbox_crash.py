"""An announcement is posted once, crash or no crash: a worker that dies after Slack has the
post but before it recorded so leaves it to be found in the channel's history (by the key the
post carries in its metadata), not posted again; and a slow delivery keeps its claim.

Against the Slack rig: the real `SlackAnnouncer` (slack_sdk) and the loopback Slack API."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from marvin.metrics import Metrics
from marvin.outbox import ANNOUNCE, LEASE, OutboxWorker
from marvin.slack.announce import EVENT_TYPE, SlackAnnouncer
from marvin.store.tables import OutboxMessage
from tests.slack_harness import (
    PRODUCTION,
    SlackRig,
    rig_factory_fixture,  # noqa: F401
    rig_fixture,  # noqa: F401
)


def _replica(rig: SlackRig) -> OutboxWorker:
    """Another replica's announcer: its own Slack client, the same database."""
    client = AsyncWebClient(token=rig.api.bot_token, base_url=rig.api.base_url)
    return OutboxWorker(rig.store, {ANNOUNCE: SlackAnnouncer(client, Metrics())}, rig.clock)


async def _changed(rig: SlackRig) -> OutboxMessage:
    reply = await rig.run("alice", "feature set new_nav true --staging")
    assert "now on" in reply["text"]
    [row] = await rig.rows(OutboxMessage, OutboxMessage.kind == ANNOUNCE)
    return row


def _announcements(rig: SlackRig) -> list[dict[str, Any]]:
    return [m for m in rig.api.messages(PRODUCTION) if "new_nav" in str(m.get("text"))]


async def test_each_post_carries_its_outbox_key(rig: SlackRig) -> None:
    row = await _changed(rig)
    assert await _replica(rig).deliver_due() == 1
    [posted] = _announcements(rig)
    assert posted["metadata"] == {
        "event_type": EVENT_TYPE,
        "event_payload": {"outbox_keys": row.idempotency_key},
    }


async def test_a_crash_after_slack_had_the_post_does_not_post_it_again(rig: SlackRig) -> None:
    row = await _changed(rig)
    # Slack takes the post, and the answer never comes back to the worker...
    rig.api.lose_answer("chat.postMessage", 60)
    first = _replica(rig)
    delivering = asyncio.create_task(first.deliver_due())
    for _ in range(200):
        if _announcements(rig):
            break
        await asyncio.sleep(0.02)
    assert len(_announcements(rig)) == 1
    # ...because the worker's process dies before it could record anything.
    delivering.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await delivering
    [pending] = await rig.rows(OutboxMessage, OutboxMessage.id == row.id)
    assert (pending.status, pending.attempts) == ("pending", 1)

    survivor = _replica(rig)
    assert await survivor.deliver_due() == 0  # its claim still runs
    rig.clock.advance(LEASE)
    assert await survivor.deliver_due() == 1
    assert len(_announcements(rig)) == 1  # found in the history, not posted again
    [done] = await rig.rows(OutboxMessage, OutboxMessage.id == row.id)
    assert (done.status, done.attempts) == ("delivered", 2)
    [history] = rig.api.calls("conversations.history")
    assert history.params["channel"] == PRODUCTION
    assert history.params["include_all_metadata"] in (True, "1", "true")
    assert await survivor.deliver_due() == 0


async def test_a_post_slack_never_had_is_posted_on_the_retry(rig: SlackRig) -> None:
    row = await _changed(rig)
    rig.api.fail_next("chat.postMessage", status=500, error="internal_error", retry_after=None)
    worker = _replica(rig)
    assert await worker.deliver_due() == 0
    assert _announcements(rig) == []
    rig.clock.advance(seconds=2)
    assert await worker.deliver_due() == 1
    assert len(_announcements(rig)) == 1
    assert len(rig.api.calls("conversations.history")) == 1  # looked first, found nothing
    [done] = await rig.rows(OutboxMessage, OutboxMessage.id == row.id)
    assert done.status == "delivered"


async def test_when_the_history_cant_be_read_it_waits_rather_than_doubling(
    rig: SlackRig,
) -> None:
    row = await _changed(rig)
    rig.api.fail_next("chat.postMessage", status=500, error="internal_error", retry_after=None)
    worker = _replica(rig)
    assert await worker.deliver_due() == 0
    rig.clock.advance(seconds=2)
    rig.api.fail_next("conversations.history", status=503, error="service_unavailable")
    assert await worker.deliver_due() == 0
    assert _announcements(rig) == []
    [waiting] = await rig.rows(OutboxMessage, OutboxMessage.id == row.id)
    assert waiting.status == "pending" and "history" in str(waiting.last_error)
    rig.clock.advance(seconds=4)
    assert await worker.deliver_due() == 1
    assert len(_announcements(rig)) == 1


class _SlowChat:
    """A chat that takes its time answering, and counts who asked."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def deliver(self, payload: Mapping[str, Any], idempotency_key: str) -> None:
        self.calls += 1
        self.entered.set()
        await self.release.wait()


async def test_a_slow_delivery_keeps_its_claim_past_the_lease(rig: SlackRig) -> None:
    await _changed(rig)
    slow, other = _SlowChat(), _SlowChat()
    worker = OutboxWorker(rig.store, {ANNOUNCE: slow}, rig.clock)
    worker.renew_every = 0.05
    delivering = asyncio.create_task(worker.deliver_due())
    await asyncio.wait_for(slow.entered.wait(), 10)
    rival = OutboxWorker(rig.store, {ANNOUNCE: other}, rig.clock)
    for _ in range(4):  # twice the lease, in steps shorter than it, renewed in between
        rig.clock.advance(LEASE / 2)
        await asyncio.sleep(0.3)
        assert await rival.deliver_due() == 0
    assert other.calls == 0
    slow.release.set()
    assert await delivering == 1
    # Once the worker is gone, nothing renews: a dead worker's claim runs out.
    [row] = await rig.rows(OutboxMessage, OutboxMessage.kind == ANNOUNCE)
    assert row.status == "delivered" and row.attempts == 1
