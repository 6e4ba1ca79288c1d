"""Deploy slots, freezes, locks and the queue in the database: plain async functions taking
the session as a keyword. Every user value reaches SQL as a bound parameter."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from marvin.deploys.notify import tell_head
from marvin.services import Services
from marvin.store.tables import DeployFreeze, DeployLock, DeployQueueEntry, DeploySlot

# A slot's states, named once: every command and the scheduler ask these sets, so a state
# added to the lifecycle can't be forgotten in one copy of a list.
# scheduled -> announced (due) -> starting -> started -> succeeded | failed; a slot may also
# end cancelled (by hand), refused (when due) or missed (announced, never started).
# Until it is over, a slot holds its window: no other slot of its environment may overlap it.
HOLDS_WINDOW = ("scheduled", "announced", "starting", "started")
MOVABLE = ("scheduled",)
CANCELLABLE = ("scheduled", "announced")
STARTABLE = ("scheduled", "announced")
# `deploy done` ends a turn from its announcement on: a pipeline-less deploy is never started.
FINISHABLE = ("announced", "starting", "started")
# Over without a deploy having run (a calendar shows them called off).
CALLED_OFF = ("cancelled", "refused", "missed")


@dataclass(frozen=True)
class Claim:
    """The scheduler's hold on a slot: its owner, the fencing number the claim raised, and
    the state it found the slot in."""

    slot_id: int
    fence: int
    state: str
    owner: str


def held(claim: Claim) -> tuple[ColumnElement[bool], ...]:
    """The slot is still as `claim` found it: no other replica claimed it since (fence),
    and no person changed it (a command raises the fence too, and most change the state)."""
    return (
        DeploySlot.id == claim.slot_id,
        DeploySlot.fence == claim.fence,
        DeploySlot.claimed_by == claim.owner,
        DeploySlot.state == claim.state,
    )


def by_hand(slot: DeploySlot, now: datetime) -> None:
    """A person's command writes `slot` (its row locked): a scheduler's claim on it, taken
    before, must not write over it afterwards. Raising the fence makes that claim's settle
    find nothing; the claim is let go, so the slot is looked at again at once."""
    slot.fence += 1
    slot.claimed_by = None
    slot.claim_until = None
    slot.updated_at = now


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
        DeploySlot.state.in_(HOLDS_WINDOW),
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


async def finish(
    *,
    session: AsyncSession,
    services: Services,
    slot: DeploySlot,
    state: str,
    now: datetime,
    reason: str | None = None,
    claim: Claim | None = None,
    say: Callable[[AsyncSession], Awaitable[None]] | None = None,
    **values: Any,
) -> bool:
    """The end of `slot`'s turn, however it ends (done by hand, its pipeline finished or
    failed to start, its window missed): its final `state`, what `say` announces of it,
    then its booker leaves the environment's queue and the next in it is told, in one
    transaction (a command's own announcement is the pipeline's, after it).

    Written only if the slot is still as it was read: under `claim` for the scheduler, else
    in the state `slot` holds. False when it had moved: nothing is written or said."""
    if claim is not None:
        where = held(claim)
    else:
        where = (DeploySlot.id == slot.id, DeploySlot.state == slot.state)
    result = await session.execute(
        update(DeploySlot)
        .where(*where)
        .values(
            state=state,
            finished_at=now,
            updated_at=now,
            outcome_reason=reason[:500] if reason else None,
            claimed_by=None,
            claim_until=None,
            **values,
        )
        .returning(DeploySlot.id)
    )
    if result.first() is None:
        return False
    if say is not None:
        # The channel reads how the turn ended before whose turn it is now.
        await say(session)
    await leave_queue(session=session, environment=slot.environment, handle=slot.booked_by, now=now)
    await tell_head(session, services, environment=slot.environment, now=now)
    return True
