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

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update

from marvin.clock import as_utc
from marvin.store.db import Store, insert_ignoring_conflicts
from marvin.store.tables import InboxItem

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
    async with store.transaction(write=True) as session:
        result = await session.execute(
            insert_ignoring_conflicts(session, InboxItem)
            .values(
                key=key,
                transport=transport,
                kind=kind,
                payload=payload,
                status="pending",
                attempts=0,
                received_at=now,
                owner=owner,
                lease_until=now + lease,
            )
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(InboxItem.id)
        )
        return result.scalar_one_or_none()


async def start(store: Store, item_id: int, owner: str, now: datetime, lease: timedelta) -> bool:
    """Begin work on an item this replica holds; False if it is done or held elsewhere."""
    async with store.transaction(write=True) as session:
        result = await session.execute(
            update(InboxItem)
            .where(
                InboxItem.id == item_id,
                InboxItem.status == "pending",
                or_(InboxItem.owner == owner, InboxItem.lease_until < now),
            )
            .values(attempts=InboxItem.attempts + 1, owner=owner, lease_until=now + lease)
            .returning(InboxItem.attempts)
        )
        return result.scalar_one_or_none() is not None


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
                redo.append(item)
        return redo, expired
