"""Issue trackers. `local` is an embedded tracker in Marvin's database (the default)."""

from __future__ import annotations

import re
from typing import Protocol

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from marvin.adapters.errors import NotFound, Refused
from marvin.clock import Clock
from marvin.store.db import Store, database_answers
from marvin.store.tables import LocalIssue

_LOCAL_REF = re.compile(r"^#?(\d{1,9})$")
SERVICE = "The issue tracker"


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

    async def get(self, ref: str) -> Issue:
        """The issue `ref` names; `NotFound` if there is none, `Refused` if `ref` is no
        reference this tracker understands."""
        ...

    async def create(
        self, *, title: str, description: str, labels: list[str], author: str
    ) -> Issue: ...

    async def open_labelled(self, label: str, search: str) -> list[Issue]:
        """The open issues labelled `label` whose title contains `search` (in any case):
        change requests for a version, for instance."""
        ...


def _issue(row: LocalIssue) -> Issue:
    return Issue(ref=f"#{row.id}", title=row.title, state=row.state, labels=tuple(row.labels))


def _local_id(ref: str) -> int:
    match = _LOCAL_REF.match(ref.strip())
    if not match:
        raise Refused(SERVICE, f"can't read {ref[:60]!r}: it is not an issue reference (use #123)")
    return int(match.group(1))


class LocalIssueTracker:
    name = "local"

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def get(self, ref: str) -> Issue:
        number = _local_id(ref)
        with database_answers():
            async with self._store.transaction() as session:
                row = await session.get(LocalIssue, number)
        if row is None:
            raise NotFound(SERVICE, f"has no issue #{number}")
        return _issue(row)

    async def create(
        self, *, title: str, description: str, labels: list[str], author: str
    ) -> Issue:
        now = self._clock.now()
        with database_answers():
            async with self._store.transaction(write=True) as session:
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

    async def open_labelled(self, label: str, search: str) -> list[Issue]:
        wanted = search.lower()
        with database_answers():
            async with self._store.transaction() as session:
                rows = await session.scalars(
                    select(LocalIssue)
                    .where(LocalIssue.state == "opened")
                    .order_by(LocalIssue.id.desc())
                    .limit(500)
                )
                # Labels are a JSON list: matched here rather than in SQL, alike everywhere.
                return [
                    _issue(row)
                    for row in rows
                    if label in row.labels and wanted in row.title.lower()
                ]

    # Administration of the embedded tracker (the `marvin issue` command). A real tracker
    # (GitLab) is administered in its own UI, so these are not part of the Protocol.

    async def _row(self, session: AsyncSession, ref: str) -> LocalIssue:
        number = _local_id(ref)
        row = await session.get(LocalIssue, number)
        if row is None:
            raise NotFound(SERVICE, f"has no issue #{number}")
        return row

    async def add_label(self, ref: str, label: str) -> Issue:
        async with self._store.transaction(write=True) as session:
            row = await self._row(session, ref)
            if label not in row.labels:
                row.labels = [*row.labels, label]
            row.updated_at = self._clock.now()
            return _issue(row)

    async def close(self, ref: str) -> Issue:
        async with self._store.transaction(write=True) as session:
            row = await self._row(session, ref)
            row.state = "closed"
            row.updated_at = self._clock.now()
            return _issue(row)

    async def all(self) -> list[Issue]:
        async with self._store.transaction() as session:
            rows = await session.scalars(select(LocalIssue).order_by(LocalIssue.id))
            return [_issue(row) for row in rows]
