"""Issue trackers. `local` is an embedded tracker in Marvin's database (the default)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict
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
