"""The outbox: outside calls that must not be lost are stored first, then delivered.

A message is written in the same transaction as the change it reports, so either both exist
or neither does. The worker delivers due messages with retries and backoff; the idempotency
key travels with each delivery so a sink can drop a repeat after a crash mid-delivery.

A crash between the outside world receiving a message and the worker recording it would
send it again once its claim ran out. Two things keep that from doubling it: the claim is
short and renewed while the delivery is in flight (so a dead worker's messages are due again
soon, and a slow but living one keeps them), and a message tried before is first looked for
where it went (`CheckingSink`: Slack's history, by the key the message carries) before it is
sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from marvin.clock import Clock
from marvin.store.db import Store, insert_ignoring_conflicts
from marvin.store.tables import OutboxMessage

log = structlog.get_logger(__name__)

# Messages are routed by destination, not by the chat a command came through: an
# announcement is for the production channel's chat, whoever made the change and how.
ANNOUNCE = "announce"

MAX_BACKOFF = timedelta(minutes=5)
# How long a claimed message is someone's to deliver before it is due again (a crash); the
# worker renews the claim every RENEW_EVERY seconds while the delivery is in flight.
LEASE = timedelta(seconds=30)
RENEW_EVERY = 10.0


@dataclass(frozen=True)
class _Claimed:
    id: int
    kind: str
    key: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime


class DeliveryError(Exception):
    """A delivery failed; `retry` says whether trying again can help."""

    def __init__(self, message: str, *, retry: bool = True, after: float | None = None) -> None:
        super().__init__(message)
        self.retry = retry
        self.after = after


class Sink(Protocol):
    async def deliver(self, payload: Mapping[str, Any], idempotency_key: str) -> None: ...


@runtime_checkable
class CheckingSink(Sink, Protocol):
    """A sink that can tell whether messages tried before arrived after all (the worker died,
    or the answer was lost, after the outside world had them)."""

    async def arrived(
        self, items: Sequence[tuple[str, Mapping[str, Any]]], since: datetime
    ) -> set[str]:
        """The keys of `items` found delivered (sent no earlier than `since`); a
        `DeliveryError` when that can't be told now."""
        ...


@runtime_checkable
class AttemptSink(Sink, Protocol):
    """A sink told whether a message was tried before: it may have done its work unheard
    (a timeout, a crash), so one that opens something looks for it first."""

    async def deliver_attempt(
        self, payload: Mapping[str, Any], idempotency_key: str, *, tried: bool
    ) -> None: ...


@runtime_checkable
class BatchSink(Sink, Protocol):
    """A sink that can coalesce: Slack allows about one message per second per channel, so a
    busy minute's announcements go out as one message instead of queueing for minutes."""

    max_batch: int  # the most messages one delivery may carry

    async def deliver_batch(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> None: ...


async def enqueue(
    session: AsyncSession, *, kind: str, key: str, payload: dict[str, Any], now: datetime
) -> None:
    await session.execute(
        insert_ignoring_conflicts(session, OutboxMessage)
        .values(
            kind=kind,
            idempotency_key=key,
            payload=payload,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
    )


def backoff(attempts: int) -> timedelta:
    return min(timedelta(seconds=2 ** min(attempts, 10)), MAX_BACKOFF)


class OutboxWorker:
    def __init__(
        self,
        store: Store,
        sinks: Mapping[str, Sink],
        clock: Clock,
        *,
        batch: int = 20,
        max_attempts: int = 50,
    ) -> None:
        self._store = store
        self._sinks = sinks
        self._clock = clock
        self._batch = batch
        self._max_attempts = max_attempts
        # Set when something was just enqueued: the delivery job runs now, not at its poll.
        self.wakeup = asyncio.Event()
        self.renew_every = RENEW_EVERY
        self._stopped_mid_round: list[dict[int, _Claimed]] = []

    @property
    def kinds(self) -> list[str]:
        return list(self._sinks)

    def wake(self) -> None:
        self.wakeup.set()

    async def deliver_due(self) -> int:
        """Try every message that is due; returns how many were delivered.

        No transaction is open while a sink talks to the outside world: on SQLite that
        would hold the write lock every command needs, for as long as Slack takes (rate
        limits included). Claimed messages carry a short lease instead, renewed while they
        are in flight, so a crash mid-delivery makes them due again soon rather than lost.
        """
        claimed = await self._claim()
        if not claimed:
            return 0
        in_flight = {c.id: c for c in claimed}
        # Renewing and recording take turns: a renewal landing after a retry was recorded
        # would replace its backoff with a fresh claim.
        turns = asyncio.Lock()
        renewing = asyncio.create_task(self._renew(in_flight, turns))
        delivered = 0
        try:
            for group in self._groups(claimed):
                to_send, arrived, error = await self._look_first(group)
                if to_send and error is None:
                    error = await self._call(to_send)
                async with turns:
                    for item in group:
                        in_flight.pop(item.id, None)
                    if arrived:
                        delivered += await self._record(arrived, None)
                    if to_send:
                        delivered += await self._record(to_send, error)
        except asyncio.CancelledError:
            # Stopped mid-round: what is still claimed stays claimed (a crash looks the
            # same), unless a shutdown gives it back.
            self._stopped_mid_round.append(in_flight)
            raise
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
        return delivered

    async def give_back(self) -> None:
        """Shutting down after a round was stopped: what it still held is due again at
        once, for another replica or the next start, not when its claim runs out. It may
        have arrived; tried before, it is looked for before it is sent again."""
        claimed = [c for round_ in self._stopped_mid_round for c in round_.values()]
        self._stopped_mid_round.clear()
        await self._due_at(claimed, self._clock.now())

    async def _renew(self, in_flight: dict[int, _Claimed], turns: asyncio.Lock) -> None:
        """Keep the claim of what is still in flight: a slow chat is not a dead worker."""
        while True:
            await asyncio.sleep(self.renew_every)
            async with turns:
                await self._due_at(list(in_flight.values()), self._clock.now() + LEASE)

    async def _due_at(self, claimed: list[_Claimed], when: datetime) -> None:
        """Move the claim of `claimed` to `when`, only while still ours (a claim taken over
        has more attempts)."""
        if not claimed:
            return
        try:
            async with self._store.transaction(write=True) as session:
                for attempts in {c.attempts for c in claimed}:
                    await session.execute(
                        update(OutboxMessage)
                        .where(
                            OutboxMessage.id.in_([c.id for c in claimed if c.attempts == attempts]),
                            OutboxMessage.status == "pending",
                            OutboxMessage.attempts == attempts,
                        )
                        .values(next_attempt_at=when)
                    )
        except Exception:
            log.warning("outbox.claim_not_moved", ids=[c.id for c in claimed], exc_info=True)

    async def _look_first(
        self, group: list[_Claimed]
    ) -> tuple[list[_Claimed], list[_Claimed], DeliveryError | None]:
        """What of a group tried before already arrived: (to send, arrived, why not known)."""
        sink = self._sinks[group[0].kind]
        tried = [c for c in group if c.attempts > 1]
        if not tried or not isinstance(sink, CheckingSink):
            return group, [], None
        since = min(c.created_at for c in tried)
        try:
            keys = await sink.arrived([(c.key, c.payload) for c in tried], since)
        except DeliveryError as exc:
            return group, [], exc  # sending blind could double it: later, when it can be told
        except Exception as exc:
            log.exception("outbox.check_error", ids=[c.id for c in tried], kind=group[0].kind)
            return group, [], DeliveryError(f"{type(exc).__name__}: {exc}")
        if keys:
            log.info("outbox.found_delivered", keys=sorted(keys), kind=group[0].kind)
        arrived = [c for c in group if c.key in keys]
        return [c for c in group if c.key not in keys], arrived, None

    async def _claim(self) -> list[_Claimed]:
        now = self._clock.now()
        async with self._store.transaction(write=True) as session:
            rows = list(
                await session.scalars(
                    select(OutboxMessage)
                    .where(
                        OutboxMessage.status == "pending",
                        OutboxMessage.kind.in_(list(self._sinks)),
                        OutboxMessage.next_attempt_at <= now,
                    )
                    .order_by(OutboxMessage.id)
                    .limit(self._batch)
                    .with_for_update(skip_locked=True)
                )
            )
            for row in rows:
                row.attempts += 1
                row.next_attempt_at = now + LEASE
            return [
                _Claimed(r.id, r.kind, r.idempotency_key, dict(r.payload), r.attempts, r.created_at)
                for r in rows
            ]

    def _groups(self, claimed: list[_Claimed]) -> list[list[_Claimed]]:
        """One group per message to send: batch sinks get a kind's messages per channel."""
        groups: dict[tuple[str, str], list[_Claimed]] = {}
        singles: list[list[_Claimed]] = []
        for item in claimed:
            if isinstance(self._sinks[item.kind], BatchSink):
                key = (item.kind, str(item.payload.get("channel_id", "")))
                groups.setdefault(key, []).append(item)
            else:
                singles.append([item])
        chunked = []
        for group in groups.values():
            sink = self._sinks[group[0].kind]
            assert isinstance(sink, BatchSink)
            size = sink.max_batch
            chunked += [group[i : i + size] for i in range(0, len(group), size)]
        return [*chunked, *singles]

    async def _call(self, group: list[_Claimed]) -> DeliveryError | None:
        sink = self._sinks[group[0].kind]
        try:
            if len(group) > 1 and isinstance(sink, BatchSink):
                await sink.deliver_batch([(c.key, c.payload) for c in group])
            elif isinstance(sink, AttemptSink):
                item = group[0]
                await sink.deliver_attempt(item.payload, item.key, tried=item.attempts > 1)
            else:
                await sink.deliver(group[0].payload, group[0].key)
        except DeliveryError as exc:
            return exc
        except Exception as exc:
            # An unexpected failure is retried too: losing the message is the worse outcome.
            log.exception("outbox.error", ids=[c.id for c in group], kind=group[0].kind)
            return DeliveryError(f"{type(exc).__name__}: {exc}")
        return None

    async def _record(self, group: list[_Claimed], error: DeliveryError | None) -> int:
        now = self._clock.now()
        async with self._store.transaction(write=True) as session:
            for item in group:
                row = await session.get(OutboxMessage, item.id)
                if row is None:
                    continue
                if error is None:
                    row.status = "delivered"
                    row.delivered_at = now
                    row.last_error = None
                    continue
                row.last_error = str(error)[:2000]
                if not error.retry or item.attempts >= self._max_attempts:
                    row.status = "failed"
                    log.error("outbox.failed", id=item.id, kind=item.kind, error=row.last_error)
                else:
                    wait = timedelta(seconds=error.after) if error.after else backoff(item.attempts)
                    row.next_attempt_at = now + wait
                    log.warning("outbox.retry", id=item.id, kind=item.kind, error=row.last_error)
        return 0 if error is not None else len(group)
