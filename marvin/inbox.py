"""The inbox: what a transport acknowledged is stored first, then worked on.

A chat waits only for the acknowledgement; the work happens after it. Writing the work down
before acknowledging means a crash (or a deploy that doesn't drain) delays the command and
never drops it: on start, pending items are taken up again while their answer can still
reach the person.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from marvin.clock import as_utc
from marvin.store.db import Store, insert_ignoring_conflicts
from marvin.store.tables import InboxItem


async def accept(
    store: Store, *, key: str, transport: str, kind: str, payload: dict[str, Any], now: datetime
) -> int | None:
    """Store a delivery; its id, or None when the same key was already accepted."""
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
            )
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(InboxItem.id)
        )
        return result.scalar_one_or_none()


async def start(store: Store, item_id: int) -> bool:
    """Claim an item for work; False if it is already done (a second worker, a replay)."""
    async with store.transaction(write=True) as session:
        result = await session.execute(
            update(InboxItem)
            .where(InboxItem.id == item_id, InboxItem.status == "pending")
            .values(attempts=InboxItem.attempts + 1)
            .returning(InboxItem.attempts)
        )
        return result.scalar_one_or_none() is not None


async def finish(store: Store, item_id: int, now: datetime, status: str = "done") -> None:
    async with store.transaction(write=True) as session:
        await session.execute(
            update(InboxItem).where(InboxItem.id == item_id).values(status=status, done_at=now)
        )


async def pending(
    store: Store, transport: str, now: datetime, max_age: timedelta, max_attempts: int = 3
) -> tuple[list[InboxItem], list[InboxItem]]:
    """(to redo, too old or tried too often): the second are given up, and returned so the
    transport can tell the person."""
    async with store.transaction(write=True) as session:
        rows = list(
            await session.scalars(
                select(InboxItem)
                .where(InboxItem.transport == transport, InboxItem.status == "pending")
                .order_by(InboxItem.id)
            )
        )
        redo, expired = [], []
        for row in rows:
            if now - as_utc(row.received_at) > max_age or row.attempts >= max_attempts:
                row.status = "abandoned"
                row.done_at = now
                expired.append(row)
            else:
                redo.append(row)
        return redo, expired
