"""The `gitlab` roles registry: each role's members are a GitLab group's, read from a mirror
in the database (`directory_members`), never from GitLab while a command runs.

`marvin.access.sync` fills the mirror; this module reads it and writes a snapshot whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from marvin.adapters.directory import (
    DirectoryPerson,
    Freshness,
    Holding,
    RoleInfo,
    person,
    role_infos,
)
from marvin.adapters.gitlab_groups import GitLabGroups
from marvin.clock import as_utc
from marvin.config import DirectoryConfig
from marvin.store.db import Store, database_answers
from marvin.store.tables import Account, DirectoryMember, DirectorySync

SYNC_NAME = "gitlab"
# Kept in memory per replica; a flood of strangers' e-mails only empties it.
_MAX_MISSES = 10_000
_NEVER = object()


@dataclass(frozen=True)
class MirroredMember:
    role: str
    username: str
    name: str
    email: str | None
    gitlab_user_id: int
    group_path: str
    inherited: bool


async def _rows(session: AsyncSession, *where: Any) -> list[DirectoryMember]:
    return list(
        await session.scalars(
            select(DirectoryMember)
            .where(*where)
            .order_by(DirectoryMember.username, DirectoryMember.role)
        )
    )


def _via(row: DirectoryMember) -> str:
    return f"GitLab group {row.group_path}" + (" (inherited)" if row.inherited else "")


class MirroredDirectory:
    """The roles registry as last mirrored from GitLab's groups."""

    name = "gitlab"

    def __init__(
        self, store: Store, config: DirectoryConfig, source: GitLabGroups | None = None
    ) -> None:
        self._store = store
        self._config = config
        # Where the sync reads members from (None: nothing to sync from, as in some tests).
        self.source = source
        # E-mails GitLab said nobody active has, with the mirror's sync time when it said so.
        self._misses: dict[str, datetime | None] = {}

    @property
    def config(self) -> DirectoryConfig:
        return self._config

    def _people(self, rows: Sequence[DirectoryMember]) -> list[DirectoryPerson]:
        chat_ids = {(p.gitlab_username or p.handle).lower(): p.chat_id for p in self._config.people}
        by_user: dict[str, list[DirectoryMember]] = {}
        for row in rows:
            by_user.setdefault(row.username.lower(), []).append(row)
        people = []
        for handle, held in sorted(by_user.items()):
            first = held[0]
            people.append(
                person(
                    handle=handle,
                    name=first.name,
                    email=next((r.email for r in held if r.email), None),
                    gitlab_username=first.username,
                    holdings=[Holding(role=r.role, via=_via(r)) for r in held],
                    roles=self._config.roles,
                    chat_id=chat_ids.get(handle),
                )
            )
        return people

    async def _select(self, *where: object) -> list[DirectoryPerson]:
        with database_answers():
            async with self._store.transaction() as session:
                rows = await _rows(session, *where)
        return self._people(rows)

    async def by_email(self, email: str) -> DirectoryPerson | None:
        """A group member whose public e-mail the mirror holds; anyone else by asking GitLab
        whose e-mail it is (with no transaction open). GitLab is asked about an e-mail at
        most once per sync: an unlinked person's every message comes here, and an answer of
        "nobody" holds until the groups are read again."""
        wanted = email.strip().lower()
        with database_answers():
            async with self._store.transaction() as session:
                # The person's every role, not only the rows that carried the e-mail.
                rows = await _rows(
                    session,
                    DirectoryMember.username.in_(
                        select(DirectoryMember.username).where(
                            func.lower(DirectoryMember.email) == wanted
                        )
                    ),
                )
                sync = await session.get(DirectorySync, SYNC_NAME)
        if rows:
            return self._people(rows)[0]
        synced_at = sync.synced_at if sync else None
        if self.source is None or self._misses.get(wanted, _NEVER) == synced_at:
            return None
        user = await self.source.user_by_email(wanted)
        if user is None:
            if len(self._misses) >= _MAX_MISSES:
                self._misses.clear()
            self._misses[wanted] = synced_at
            return None
        member = await self._select(func.lower(DirectoryMember.username) == user.username.lower())
        if member:
            return member[0]
        return person(
            handle=user.username.lower(),
            name=user.name,
            email=wanted,
            gitlab_username=user.username,
            holdings=[],
            roles=self._config.roles,
        )

    async def by_handle(self, handle: str) -> DirectoryPerson | None:
        """A group member, or a GitLab user an account was linked to who holds no role."""
        with database_answers():
            async with self._store.transaction() as session:
                rows = await _rows(session, func.lower(DirectoryMember.username) == handle.lower())
                account = None
                if not rows:
                    account = (
                        await session.scalars(
                            select(Account)
                            .where(Account.directory_handle == handle.lower())
                            .order_by(Account.id)
                            .limit(1)
                        )
                    ).first()
        if rows:
            return self._people(rows)[0]
        if account is None:
            return None
        return person(
            handle=handle.lower(),
            name=account.display_name,
            email=account.email,
            gitlab_username=account.gitlab_username or handle,
            holdings=[],
            roles=self._config.roles,
        )

    async def by_gitlab_username(self, username: str) -> DirectoryPerson | None:
        return await self.by_handle(username.strip())

    async def named(self, name: str) -> DirectoryPerson | None:
        # A handle here is the GitLab username, lowercased: one lookup answers both.
        return await self.by_handle(name.strip())

    async def role_members(self, role: str) -> list[DirectoryPerson] | None:
        if role not in self._config.roles:
            return None
        return [p for p in await self.people() if role in p.roles]

    async def people(self) -> list[DirectoryPerson]:
        return await self._select()

    def roles(self) -> list[RoleInfo]:
        return role_infos(self._config)

    async def freshness(self) -> Freshness:
        with database_answers():
            async with self._store.transaction() as session:
                row = await session.get(DirectorySync, SYNC_NAME)
        if row is None:
            return Freshness(live=False)
        return Freshness(
            live=False,
            synced_at=as_utc(row.synced_at) if row.synced_at else None,
            attempted_at=as_utc(row.attempted_at) if row.attempted_at else None,
            error=row.error,
        )


async def _sync_row(session: AsyncSession) -> DirectorySync:
    row = await session.get(DirectorySync, SYNC_NAME, with_for_update=True)
    if row is None:
        row = DirectorySync(name=SYNC_NAME, members=0)
        session.add(row)
    return row


async def replace(session: AsyncSession, members: Iterable[MirroredMember], now: datetime) -> int:
    """The mirror becomes `members`, whole (a short write transaction, nothing outside)."""
    rows = [
        DirectoryMember(
            role=m.role,
            username=m.username,
            name=m.name[:255],
            email=m.email,
            gitlab_user_id=m.gitlab_user_id,
            group_path=m.group_path,
            inherited=m.inherited,
            synced_at=now,
        )
        for m in members
    ]
    await session.execute(delete(DirectoryMember))
    session.add_all(rows)
    row = await _sync_row(session)
    row.synced_at = now
    row.attempted_at = now
    row.error = None
    row.members = len(rows)
    return len(rows)


async def failed(session: AsyncSession, error: str, now: datetime) -> Freshness:
    """A sync that could not read GitLab: the mirror stays as it was, the error is kept."""
    row = await _sync_row(session)
    row.attempted_at = now
    row.error = error[:1000]
    await session.flush()
    return Freshness(
        live=False,
        synced_at=as_utc(row.synced_at) if row.synced_at else None,
        attempted_at=now,
        error=row.error,
    )
