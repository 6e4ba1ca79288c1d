"""Grants Marvin stores (given through an access-request issue): read, given, revoked.

Plain async functions taking the session as a keyword. A grant counts while it is neither
revoked nor expired (`current`), for the person its account is linked to in the registry:
it is stored on the chat account it was given to, and read by the person, so each of their
accounts holds it (`marvin.accounts.granted`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from marvin.clock import as_utc
from marvin.store.tables import Account, Grant


@dataclass(frozen=True)
class HeldGrant:
    id: int
    handle: str
    name: str
    granted_by: str | None
    issue_ref: str | None
    created_at: datetime
    expires_at: datetime | None

    def shown(self) -> str:
        parts = [f"`{self.name}`"]
        if self.granted_by:
            parts.append(f"granted by @{self.granted_by}")
        if self.issue_ref:
            parts.append(f"on {self.issue_ref}")
        parts.append(f"until {self.expires_at:%Y-%m-%d}" if self.expires_at else "with no expiry")
        return " ".join(parts)


def current(now: datetime) -> list[ColumnElement[bool]]:
    """The conditions of a grant that counts at `now`."""
    return [
        Grant.revoked_at.is_(None),
        or_(Grant.expires_at.is_(None), Grant.expires_at > now),
    ]


def _held(grant: Grant, handle: str) -> HeldGrant:
    return HeldGrant(
        id=grant.id,
        handle=handle,
        name=grant.name,
        granted_by=grant.granted_by,
        issue_ref=grant.issue_ref,
        created_at=as_utc(grant.created_at),
        expires_at=as_utc(grant.expires_at) if grant.expires_at else None,
    )


async def held(
    session: AsyncSession, *, now: datetime, handle: str | None = None
) -> list[HeldGrant]:
    """The grants that count now, of one person (by registry handle) or of everyone."""
    query = (
        select(Grant, Account.directory_handle)
        .join(Account, Account.id == Grant.account_id)
        .where(Account.directory_handle.is_not(None), *current(now))
        .order_by(Account.directory_handle, Grant.name, Grant.id)
    )
    if handle is not None:
        query = query.where(Account.directory_handle == handle)
    rows = (await session.execute(query)).all()
    return [_held(grant, str(who)) for grant, who in rows]


def _holder(account: Account) -> str:
    return account.directory_handle or account.display_name


async def _ending(
    session: AsyncSession, *where: ColumnElement[bool]
) -> list[tuple[Grant, Account]]:
    """Grants not revoked that have an expiry, soonest first, and their accounts."""
    rows = await session.execute(
        select(Grant, Account)
        .join(Account, Account.id == Grant.account_id)
        .where(Grant.revoked_at.is_(None), Grant.expires_at.is_not(None), *where)
        .order_by(Grant.expires_at)
        .limit(200)
    )
    return [(grant, account) for grant, account in rows.all()]


async def expiring(
    session: AsyncSession, *, now: datetime, until: datetime
) -> list[tuple[HeldGrant, Account]]:
    """Grants that count now and expire before `until`, whose holder was not told yet."""
    rows = await _ending(
        session, *current(now), Grant.expires_at <= until, Grant.expiry_notified_at.is_(None)
    )
    return [(_held(grant, _holder(account)), account) for grant, account in rows]


async def due(session: AsyncSession, *, until: datetime) -> list[HeldGrant]:
    """Grants not revoked that expire by `until`, those already past expiry included (the
    access review's)."""
    rows = await _ending(session, Grant.expires_at <= until)
    return [_held(grant, _holder(account)) for grant, account in rows]
