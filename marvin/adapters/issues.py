"""Issue trackers. `local` is an embedded tracker in Marvin's database (the default)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from marvin.adapters.errors import NotFound, Refused
from marvin.adapters.issue_refs import parse_issue_ref
from marvin.clock import Clock, as_utc
from marvin.store.db import Store, database_answers
from marvin.store.tables import LocalIssue, LocalIssueLabelEvent

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

    async def labelled_at(self, ref: str, labels: Sequence[str]) -> datetime | None:
        """When one of `labels` was last put on the issue (UTC), None if the tracker has no
        record of it; `NotFound`/`Refused` as `get`."""

    async def open_labelled(self, label: str, search: str) -> list[Issue]:
        """The open issues labelled `label` whose title contains `search` (in any case):
        change requests for a version, for instance."""
        ...


def _issue(row: LocalIssue) -> Issue:
    return Issue(ref=f"#{row.id}", title=row.title, state=row.state, labels=tuple(row.labels))


def inert(text: str) -> str:
    """What a person wrote, as Marvin puts it in an issue's description or a note.

    GitLab runs a line that starts with `/` as a quick action, in a description as in a note
    (`/close`; `/label ~deviation::approved` would have a requester approve their own
    deviation), so no line of it starts one: its slash is escaped, which Markdown shows as a
    plain `/`. Paragraphs stay. GitLab drops carriage returns before it looks (to it,
    `\\r/close` on a line of its own is `/close`), so this drops them too."""
    lines = text.replace("\r", "").split("\n")
    return "\n".join(f"\\{line}" if line.startswith("/") else line for line in lines)


def local_id(ref: str, project: str | None) -> int:
    """The embedded tracker's issue number that `ref` names: `#3`, `3`, or `project#3` and
    its URL when `project` is the tracker's name; `Refused` for anything else."""
    parsed = parse_issue_ref(ref)
    if parsed is None:
        raise Refused(SERVICE, f"can't read {ref[:60]!r}: it is not an issue reference (use #123)")
    if not parsed.in_project(project):
        # Reading #N here for another project's issue N would be a different issue.
        raise Refused(
            SERVICE,
            f"can't read {ref[:60]!r}: the embedded tracker holds only its own issues "
            f"(use #{parsed.iid}{f' or {project}#{parsed.iid}' if project else ''})",
        )
    return parsed.iid


class LocalIssueTracker:
    name = "local"

    def __init__(self, store: Store, clock: Clock, project: str | None = None) -> None:
        self._store = store
        self._clock = clock
        # The tracker's name in references (`issues.project`), so `group/project#3` works.
        self._project = project

    async def get(self, ref: str) -> Issue:
        number = local_id(ref, self._project)
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

    async def labelled_at(self, ref: str, labels: Sequence[str]) -> datetime | None:
        number = local_id(ref, self._project)
        with database_answers():
            async with self._store.transaction() as session:
                if await session.get(LocalIssue, number) is None:
                    raise NotFound(SERVICE, f"has no issue #{number}")
                when = (
                    await session.scalars(
                        select(LocalIssueLabelEvent.created_at)
                        .where(
                            LocalIssueLabelEvent.issue_id == number,
                            LocalIssueLabelEvent.label.in_(list(labels)),
                            LocalIssueLabelEvent.action == "add",
                        )
                        .order_by(LocalIssueLabelEvent.created_at.desc())
                        .limit(1)
                    )
                ).first()
        return as_utc(when) if when is not None else None

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
        number = local_id(ref, self._project)
        row = await session.get(LocalIssue, number)
        if row is None:
            raise NotFound(SERVICE, f"has no issue #{number}")
        return row

    async def add_label(self, ref: str, label: str) -> Issue:
        async with self._store.transaction(write=True) as session:
            row = await self._row(session, ref)
            if label not in row.labels:
                row.labels = [*row.labels, label]
                # When it was put on: a deviation approves for a limited time after.
                session.add(
                    LocalIssueLabelEvent(
                        issue_id=row.id, label=label, action="add", created_at=self._clock.now()
                    )
                )
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
