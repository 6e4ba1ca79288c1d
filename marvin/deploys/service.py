"""Deploy slots, freezes, locks and the queue in the database: plain async functions taking
the session as a keyword. Every user value reaches SQL as a bound parameter."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from marvin.store.tables import DeployFreeze, DeployLock, DeployQueueEntry, DeploySlot

# A slot in these states holds its window: the others are over or never happen.
ACTIVE = ("scheduled", "announced", "started")
FINISHED = ("succeeded", "failed", "cancelled", "refused")


async def get_slot(*, session: AsyncSession, slot_id: int) -> DeploySlot | None:
    return await session.get(DeploySlot, slot_id)


async def overlapping(
    *,
    session: AsyncSession,
    environment: str,
    starts_at: datetime,
    ends_at: datetime,
    exclude: int | None = None,
) -> list[DeploySlot]:
    query = select(DeploySlot).where(
        DeploySlot.environment == environment,
        DeploySlot.state.in_(ACTIVE),
        DeploySlot.starts_at < ends_at,
        DeploySlot.ends_at > starts_at,
    )
    if exclude is not None:
        query = query.where(DeploySlot.id != exclude)
    return list(await session.scalars(query.order_by(DeploySlot.starts_at)))


async def slots(
    *,
    session: AsyncSession,
    environment: str | None,
    since: datetime,
    until: datetime | None,
    limit: int = 50,
    cancelled: bool = False,
) -> list[DeploySlot]:
    query = select(DeploySlot).where(DeploySlot.ends_at > since)
    if environment is not None:
        query = query.where(DeploySlot.environment == environment)
    if until is not None:
        query = query.where(DeploySlot.starts_at < until)
    if not cancelled:
        query = query.where(DeploySlot.state.not_in(("cancelled",)))
    return list(await session.scalars(query.order_by(DeploySlot.starts_at).limit(limit)))


async def book(
    *,
    session: AsyncSession,
    environment: str,
    version: str,
    starts_at: datetime,
    ends_at: datetime,
    note: str | None,
    booked_by: str,
    account_id: int | None,
    override_reason: str | None,
    now: datetime,
) -> DeploySlot:
    slot = DeploySlot(
        key=uuid.uuid4().hex,
        environment=environment,
        version=version,
        starts_at=starts_at,
        ends_at=ends_at,
        note=note,
        booked_by=booked_by,
        account_id=account_id,
        state="scheduled",
        override_reason=override_reason,
        fence=0,
        overdue=False,
        created_at=now,
        updated_at=now,
    )
    session.add(slot)
    await session.flush()
    return slot


async def freezes(
    *,
    session: AsyncSession,
    environment: str | None,
    starts_at: datetime,
    ends_at: datetime | None,
) -> list[DeployFreeze]:
    query = select(DeployFreeze).where(
        DeployFreeze.removed_at.is_(None), DeployFreeze.ends_at > starts_at
    )
    if environment is not None:
        query = query.where(DeployFreeze.environment == environment)
    if ends_at is not None:
        query = query.where(DeployFreeze.starts_at < ends_at)
    return list(await session.scalars(query.order_by(DeployFreeze.starts_at)))


async def lock_of(*, session: AsyncSession, environment: str) -> DeployLock | None:
    return await session.get(DeployLock, environment)


async def locks(*, session: AsyncSession) -> list[DeployLock]:
    return list(await session.scalars(select(DeployLock).order_by(DeployLock.environment)))


async def unlock(*, session: AsyncSession, environment: str) -> bool:
    result = await session.execute(
        delete(DeployLock).where(DeployLock.environment == environment).returning(DeployLock.reason)
    )
    return result.first() is not None


async def queue(*, session: AsyncSession, environment: str | None) -> list[DeployQueueEntry]:
    query = select(DeployQueueEntry).where(DeployQueueEntry.left_at.is_(None))
    if environment is not None:
        query = query.where(DeployQueueEntry.environment == environment)
    return list(
        await session.scalars(query.order_by(DeployQueueEntry.environment, DeployQueueEntry.id))
    )


async def leave_queue(
    *, session: AsyncSession, environment: str, handle: str, now: datetime
) -> Sequence[int]:
    result = await session.execute(
        update(DeployQueueEntry)
        .where(
            DeployQueueEntry.environment == environment,
            DeployQueueEntry.handle == handle,
            DeployQueueEntry.left_at.is_(None),
        )
        .values(left_at=now)
        .returning(DeployQueueEntry.id)
    )
    return list(result.scalars())
