"""The outbox: outside calls that must not be lost are stored first, then delivered.

A message is written in the same transaction as the change it reports, so either both exist
or neither does. The worker delivers due messages with retries and backoff; the idempotency
key travels with each delivery so a sink can drop a repeat after a crash mid-delivery.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from marvin.clock import Clock
from marvin.store.db import Store, insert_ignoring_conflicts
from marvin.store.tables import OutboxMessage

log = structlog.get_logger(__name__)

MAX_BACKOFF = timedelta(minutes=5)


class DeliveryError(Exception):
    """A delivery failed; `retry` says whether trying again can help."""

    def __init__(self, message: str, *, retry: bool = True, after: float | None = None) -> None:
        super().__init__(message)
        self.retry = retry
        self.after = after


class Sink(Protocol):
    async def deliver(self, payload: Mapping[str, Any], idempotency_key: str) -> None: ...


class BatchSink(Sink, Protocol):
    """A sink that can coalesce: Slack allows about one message per second per channel, so a
    busy minute's announcements go out as one message instead of queueing for minutes."""

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
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Deliver now rather than at the next poll (something was just enqueued)."""
        self._wake.set()

    async def deliver_due(self) -> int:
        """Try every message that is due; returns how many were delivered."""
        delivered = 0
        async with self._store.transaction(write=True) as session:
            rows = list(
                await session.scalars(
                    select(OutboxMessage)
                    .where(
                        OutboxMessage.status == "pending",
                        OutboxMessage.kind.in_(list(self._sinks)),
                        OutboxMessage.next_attempt_at <= self._clock.now(),
                    )
                    .order_by(OutboxMessage.id)
                    .limit(self._batch)
                    .with_for_update(skip_locked=True)
                )
            )
            for group in self._groups(rows):
                delivered += await self._deliver(group)
        return delivered

    def _groups(self, rows: list[OutboxMessage]) -> list[list[OutboxMessage]]:
        """One group per message to send: batch sinks get a kind's rows per channel."""
        groups: dict[tuple[str, str], list[OutboxMessage]] = {}
        singles: list[list[OutboxMessage]] = []
        for row in rows:
            if hasattr(self._sinks[row.kind], "deliver_batch"):
                key = (row.kind, str(row.payload.get("channel_id", "")))
                groups.setdefault(key, []).append(row)
            else:
                singles.append([row])
        chunked = []
        for group in groups.values():
            size = int(getattr(self._sinks[group[0].kind], "max_batch", 20))
            chunked += [group[i : i + size] for i in range(0, len(group), size)]
        return [*chunked, *singles]

    async def _deliver(self, rows: list[OutboxMessage]) -> int:
        now = self._clock.now()
        sink = self._sinks[rows[0].kind]
        for row in rows:
            row.attempts += 1
        try:
            if len(rows) > 1:
                batch_sink: BatchSink = sink  # type: ignore[assignment]
                await batch_sink.deliver_batch([(r.idempotency_key, r.payload) for r in rows])
            else:
                await sink.deliver(rows[0].payload, rows[0].idempotency_key)
        except DeliveryError as exc:
            for row in rows:
                row.last_error = str(exc)[:2000]
                if not exc.retry or row.attempts >= self._max_attempts:
                    row.status = "failed"
                    log.error("outbox.failed", id=row.id, kind=row.kind, error=row.last_error)
                else:
                    wait = timedelta(seconds=exc.after) if exc.after else backoff(row.attempts)
                    row.next_attempt_at = now + wait
                    log.warning("outbox.retry", id=row.id, kind=row.kind, error=row.last_error)
            return 0
        except Exception as exc:
            # An unexpected failure is retried too: losing the message is the worse outcome.
            for row in rows:
                row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
                row.next_attempt_at = now + backoff(row.attempts)
            log.exception("outbox.error", ids=[r.id for r in rows], kind=rows[0].kind)
            return 0
        for row in rows:
            row.status = "delivered"
            row.delivered_at = now
            row.last_error = None
        return len(rows)

    async def run(self, stop: asyncio.Event, interval: float = 1.0) -> None:
        while not stop.is_set():
            try:
                await self.deliver_due()
            except Exception:
                log.exception("outbox.worker_error")
            stopping = asyncio.ensure_future(stop.wait())
            woken = asyncio.ensure_future(self._wake.wait())
            await asyncio.wait(
                {stopping, woken}, timeout=interval, return_when=asyncio.FIRST_COMPLETED
            )
            stopping.cancel()
            woken.cancel()
            self._wake.clear()
