"""The inbox: what a transport acknowledged is stored first, then worked on.

A chat waits only for the acknowledgement; the work happens after it. Writing the work down
before acknowledging means a crash (or a deploy that doesn't drain) delays the command and
never drops it.

Several replicas can share one database: each item belongs to the replica that accepted it
(`owner`) until its lease runs out. The owner renews the leases of everything it holds while
it lives; another replica takes an item over only once its lease has expired, so an item
one replica is working on is never picked up by another. An item is done only once it has
been worked on and answered.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import or_, select, update

from marvin.clock import Clock, as_utc
from marvin.store.db import Store, insert_ignoring_conflicts
from marvin.store.tables import InboxItem

log = structlog.get_logger(__name__)

MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class Item:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    received_at: datetime


async def accept(
    store: Store,
    *,
    key: str,
    transport: str,
    kind: str,
    payload: dict[str, Any],
    now: datetime,
    owner: str,
    lease: timedelta,
) -> int | None:
    """Store a delivery, held by `owner`; its id, or None when the key was already accepted."""
    row = _row(key, transport, kind, payload, now, owner, lease)
    return (await _insert(store, [row]))[key]


def _row(
    key: str,
    transport: str,
    kind: str,
    payload: dict[str, Any],
    now: datetime,
    owner: str,
    lease: timedelta,
) -> dict[str, Any]:
    return {
        "key": key,
        "transport": transport,
        "kind": kind,
        "payload": payload,
        "status": "pending",
        # Taken up by the replica that accepted it: this is its first attempt.
        "attempts": 1,
        "received_at": now,
        "owner": owner,
        "lease_until": now + lease,
    }


async def _insert(store: Store, rows: list[dict[str, Any]]) -> dict[str, int | None]:
    """Insert deliveries in one transaction: each key's new id, or None if it was there."""
    async with store.transaction(write=True, urgent=True) as session:
        result = await session.execute(
            insert_ignoring_conflicts(session, InboxItem)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(InboxItem.id, InboxItem.key)
        )
        made = {key: id_ for id_, key in result.all()}
    return {row["key"]: made.get(row["key"]) for row in rows}


class Acceptor:
    """Writes deliveries in groups: while one transaction commits, the next deliveries wait
    together for the next one. Many acks, one transaction, one trip to the disk; and the
    writes go first among everything waiting to write (the acks wait on them)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._waiting: list[tuple[dict[str, Any], asyncio.Future[int | None]]] = []
        self._writing: asyncio.Task[None] | None = None

    async def accept(
        self,
        *,
        key: str,
        transport: str,
        kind: str,
        payload: dict[str, Any],
        now: datetime,
        owner: str,
        lease: timedelta,
    ) -> int | None:
        done: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((_row(key, transport, kind, payload, now, owner, lease), done))
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._write())
        return await done

    async def _write(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            # One key twice in a group (a redelivery racing its original): one row.
            rows = list({row["key"]: row for row, _ in group}.values())
            try:
                ids = await _insert(self._store, rows)
            except Exception as exc:
                for _, done in group:
                    if not done.done():
                        done.set_exception(exc)
                continue
            given: set[str] = set()
            for row, done in group:
                key = row["key"]
                # The first in the group gets the id; a duplicate gets None, as if later.
                if not done.done():
                    done.set_result(None if key in given else ids[key])
                given.add(key)


class Finisher:
    """Marks answered items done, in groups, behind the urgent writes: a worker hands its
    item over and moves on to the next."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._done: list[int] = []
        self._writing: asyncio.Task[None] | None = None

    def finish(self, item_id: int) -> None:
        self._done.append(item_id)
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._write())

    async def flush(self) -> None:
        while self._writing is not None and not self._writing.done():
            await asyncio.shield(self._writing)

    async def _write(self) -> None:
        while self._done:
            group, self._done = self._done, []
            try:
                await _mark_done(self._store, group, self._clock.now())
            except Exception:
                log.exception("inbox.finish_failed", items=len(group))
                self._done[:0] = group  # tried again with the next group
                await asyncio.sleep(1)


async def _mark_done(store: Store, ids: list[int], now: datetime) -> None:
    async with store.transaction(write=True) as session:
        await session.execute(
            update(InboxItem)
            .where(InboxItem.id.in_(ids), InboxItem.status == "pending")
            .values(status="done", done_at=now)
        )


async def finish(store: Store, item_id: int, now: datetime, status: str = "done") -> None:
    async with store.transaction(write=True) as session:
        await session.execute(
            update(InboxItem).where(InboxItem.id == item_id).values(status=status, done_at=now)
        )


async def renew(store: Store, owner: str, now: datetime, lease: timedelta) -> int:
    """Extend the lease on everything this replica holds: it is alive and still on it."""
    async with store.transaction(write=True) as session:
        result = await session.execute(
            update(InboxItem)
            .where(InboxItem.owner == owner, InboxItem.status == "pending")
            .values(lease_until=now + lease)
        )
        return int(getattr(result, "rowcount", 0) or 0)


async def release(store: Store, owner: str, now: datetime) -> int:
    """Give back what this replica holds but did not finish (it is stopping), so that the
    next replica to look takes it over at once instead of after the lease."""
    async with store.transaction(write=True) as session:
        result = await session.execute(
            update(InboxItem)
            .where(InboxItem.owner == owner, InboxItem.status == "pending")
            .values(lease_until=now)
        )
        return int(getattr(result, "rowcount", 0) or 0)


async def release_one(store: Store, item_id: int, now: datetime) -> None:
    """Give one item back (its work failed here): recovery takes it up again."""
    async with store.transaction(write=True) as session:
        await session.execute(
            update(InboxItem)
            .where(InboxItem.id == item_id, InboxItem.status == "pending")
            .values(lease_until=now)
        )


async def take_over(
    store: Store,
    transport: str,
    *,
    owner: str,
    now: datetime,
    lease: timedelta,
    max_age: timedelta,
    everything: bool = False,
) -> tuple[list[Item], list[Item]]:
    """Claim the transport's items whose lease has run out (all pending items, when
    `everything`: the caller knows it is the only replica). Returns (to redo, given up): the
    second are too old to answer or were tried too often; the transport tells the person."""
    async with store.transaction(write=True) as session:
        query = select(InboxItem).where(
            InboxItem.transport == transport, InboxItem.status == "pending"
        )
        if not everything:
            query = query.where(or_(InboxItem.lease_until.is_(None), InboxItem.lease_until < now))
        rows = list(
            await session.scalars(query.order_by(InboxItem.id).with_for_update(skip_locked=True))
        )
        redo, expired = [], []
        for row in rows:
            item = Item(row.id, row.kind, dict(row.payload), row.attempts, as_utc(row.received_at))
            if now - item.received_at > max_age or row.attempts >= MAX_ATTEMPTS:
                row.status = "abandoned"
                row.done_at = now
                expired.append(item)
            else:
                row.owner = owner
                row.lease_until = now + lease
                row.attempts += 1
                redo.append(item)
        return redo, expired
