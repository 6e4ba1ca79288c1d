"""Grants Marvin stores (given through an access-request issue): read, given, revoked.

Plain async functions taking the session as a keyword. A grant counts while it is neither
revoked nor expired; only for an account linked to the registry (`marvin.accounts`).
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


async def expiring(
    session: AsyncSession, *, now: datetime, until: datetime
) -> list[tuple[HeldGrant, Account]]:
    """Grants that count now and expire before `until`, whose holder was not told yet."""
    rows = (
        await session.execute(
            select(Grant, Account)
            .join(Account, Account.id == Grant.account_id)
            .where(
                Grant.revoked_at.is_(None),
                Grant.expires_at.is_not(None),
                Grant.expires_at > now,
                Grant.expires_at <= until,
                Grant.expiry_notified_at.is_(None),
            )
            .order_by(Grant.expires_at)
            .limit(200)
        )
    ).all()
    return [
        (_held(grant, account.directory_handle or account.display_name), account)
        for grant, account in rows
    ]
