"""Issue trackers. `local` is an embedded tracker in Marvin's database (the default)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from marvin.store.tables import LocalIssue

_LOCAL_REF = re.compile(r"^#?(\d{1,9})$")


class IssueRefError(ValueError):
    """The reference does not name an issue this tracker can look up."""


class Issue(BaseModel):
    model_config = ConfigDict(frozen=True)

    ref: str
    title: str
    state: str
    labels: tuple[str, ...]
    url: str | None = None

    @property
    def is_open(self) -> bool:
        return self.state == "opened"


class IssueTracker(Protocol):
    name: str

    async def get(self, session: AsyncSession, ref: str) -> Issue | None: ...

    async def create(
        self,
        session: AsyncSession,
        *,
        title: str,
        description: str,
        labels: list[str],
        author: str,
        now: datetime,
    ) -> Issue: ...


def _issue(row: LocalIssue) -> Issue:
    return Issue(ref=f"#{row.id}", title=row.title, state=row.state, labels=tuple(row.labels))


class LocalIssueTracker:
    name = "local"

    async def get(self, session: AsyncSession, ref: str) -> Issue | None:
        match = _LOCAL_REF.match(ref.strip())
        if not match:
            raise IssueRefError(f"{ref!r} is not an issue reference here: use #123")
        row = await session.get(LocalIssue, int(match.group(1)))
        return _issue(row) if row else None

    async def create(
        self,
        session: AsyncSession,
        *,
        title: str,
        description: str,
        labels: list[str],
        author: str,
        now: datetime,
    ) -> Issue:
        row = LocalIssue(
            title=title,
            description=description,
            labels=labels,
            state="opened",
            author=author,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        await session.flush()
        return _issue(row)

    # Administration of the embedded tracker (the `marvin issue` command). A real tracker
    # (GitLab) is administered in its own UI, so these are not part of the Protocol.

    async def _row(self, session: AsyncSession, ref: str) -> LocalIssue:
        match = _LOCAL_REF.match(ref.strip())
        row = await session.get(LocalIssue, int(match.group(1))) if match else None
        if row is None:
            raise IssueRefError(f"there is no issue {ref}")
        return row

    async def add_label(self, session: AsyncSession, ref: str, label: str, now: datetime) -> Issue:
        row = await self._row(session, ref)
        if label not in row.labels:
            row.labels = [*row.labels, label]
        row.updated_at = now
        return _issue(row)

    async def close(self, session: AsyncSession, ref: str, now: datetime) -> Issue:
        row = await self._row(session, ref)
        row.state = "closed"
        row.updated_at = now
        return _issue(row)

    async def all(self, session: AsyncSession) -> list[Issue]:
        rows = await session.scalars(select(LocalIssue).order_by(LocalIssue.id))
        return [_issue(row) for row in rows]
