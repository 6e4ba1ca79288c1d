"""Incidents' issues, delivered: the outbox's `issue:*` messages, to the configured tracker.

An incident is Marvin's record first; its issue is a projection, written to the outbox in
the transaction that records the incident (`marvin.incidents`) and delivered here, with no
transaction open, by a worker of its own (`OutboxWorker(store, issue_sinks(services), ...)`):
a GitLab outage delays issues and never the chat's announcements, which have their loop.

- `issue:create` opens the issue (type `incident`, its labels as the record stands when it
  is delivered, the owner, confidential or not, the project's template or the bundled
  post-mortem) and stores its reference and link on the incident in a short write
  transaction after the call. GitLab has no idempotency key: the issue carries a hidden
  marker, and a delivery tried before (a timeout, a 5xx, a crash mid-call) looks for it
  before it opens another.
- `issue:note` adds a note (with its `/timeline` event) once the issue exists and the
  incident's earlier notes are on it (the issue reads in the order things happened), and
  retries until then, at the pace of what it waits for. A retried note looks for its marker
  first, too.
- `issue:sync` brings the issue's labels and state to the record's *as it stands when
  delivered*, so deliveries in any order, late or repeated, leave the issue right.

Every tracker error is retried with the outbox's backoff (a permanent one keeps failing
visibly, in `incident show`, rather than being dropped). The embedded tracker (`local`)
gets the same messages through `EmbeddedIncidentTracker`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from importlib import resources
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from marvin import changes, flag_log, incidents
from marvin.adapters.errors import AdapterError, NotFound, Refused
from marvin.adapters.gitlab_issues import (
    IncidentTracker,
    NewIssue,
    TimelineEvent,
    marker_comment,
)
from marvin.adapters.issues import SERVICE as LOCAL_SERVICE
from marvin.adapters.issues import Issue, LocalIssueTracker
from marvin.clock import Clock, as_utc
from marvin.outbox import DeliveryError, OutboxWorker, Sink
from marvin.services import Services
from marvin.store.db import Store, database_answers
from marvin.store.tables import (
    ChangeRequest,
    Incident,
    LocalIssue,
    LocalIssueNote,
    OutboxMessage,
)

log = structlog.get_logger(__name__)

# An issue's messages wait out a tracker's outage, however long: a month at the outbox's
# longest backoff before one is given up as failed (and shown so in `incident show`).
ISSUE_MAX_ATTEMPTS = 10_000
# How soon a note asks again whether its issue exists, when the creation isn't scheduled.
WAIT_FOR_ISSUE = 60.0
_LOCAL_REF = re.compile(r"^#?(\d{1,9})$")
# Every kind the issue loop delivers: incidents' issues and the flag log.
KINDS = (*incidents.ISSUE_KINDS, *flag_log.KINDS, *changes.KINDS)
Linked = Callable[[Incident, Issue], None]
_FALLBACK_TEMPLATE = (
    "## Summary\n\n## Impact\n\n## Detection\n\n## Timeline\n\n## Root cause\n\n"
    "## What went well\n\n## What went wrong\n\n## Corrective actions\n"
)


def bundled_template() -> str:
    """Marvin's blameless post-mortem template (`marvin/templates/postmortem.md`)."""
    try:
        return (resources.files("marvin") / "templates" / "postmortem.md").read_text("utf-8")
    except OSError:  # an install without the package data
        log.warning("incident.template_missing")
        return _FALLBACK_TEMPLATE


def describe(payload: Mapping[str, Any], template: str) -> str:
    """The issue's description: who and what, the template, what changed, the marker."""
    return "\n\n".join(
        [
            str(payload["header"]),
            template.strip(),
            str(payload["context"]),
            marker_comment(str(payload["marker"])),
        ]
    )


# --- the embedded tracker ------------------------------------------------------------------


class EmbeddedIncidentTracker:
    """What incidents need of the embedded tracker, on its tables (`local_issues`,
    `local_issue_notes`). It keeps no issue type and reads `/timeline` as plain text."""

    name = "local"

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def open_issue(self, new: NewIssue) -> Issue:
        now = self._clock.now()
        with database_answers():
            async with self._store.transaction(write=True) as session:
                row = LocalIssue(
                    title=new.title,
                    description=new.description,
                    labels=list(new.labels),
                    state="opened",
                    author=new.author,
                    assignee=new.assignee,
                    confidential=new.confidential,
                    created_at=now,
                    updated_at=now,
                )
                session.add(row)
                await session.flush()
                return _local_issue(row)

    async def find_marked(self, marker: str) -> Issue | None:
        with database_answers():
            async with self._store.transaction() as session:
                row = (
                    await session.scalars(
                        select(LocalIssue)
                        .where(LocalIssue.description.contains(marker_comment(marker)))
                        .limit(1)
                    )
                ).first()
        return _local_issue(row) if row is not None else None

    async def add_note(
        self, ref: str, body: str, *, marker: str, timeline: TimelineEvent | None = None
    ) -> None:
        with database_answers():
            async with self._store.transaction(write=True) as session:
                row = await _local_row(session, ref)
                session.add(
                    LocalIssueNote(
                        issue_id=row.id,
                        body=f"{body}\n\n{marker_comment(marker)}",
                        author="marvin",
                        created_at=self._clock.now(),
                    )
                )
                row.updated_at = self._clock.now()

    async def has_note(self, ref: str, marker: str) -> bool:
        with database_answers():
            async with self._store.transaction() as session:
                row = await _local_row(session, ref)
                count = await session.scalar(
                    select(func.count())
                    .select_from(LocalIssueNote)
                    .where(
                        LocalIssueNote.issue_id == row.id,
                        LocalIssueNote.body.contains(marker_comment(marker)),
                    )
                )
        return bool(count)

    async def update(
        self, ref: str, *, add_labels: list[str], remove_labels: list[str], close: bool
    ) -> Issue:
        with database_answers():
            async with self._store.transaction(write=True) as session:
                row = await _local_row(session, ref)
                kept = [label for label in row.labels if label not in remove_labels]
                row.labels = list(dict.fromkeys([*kept, *add_labels]))
                if close:
                    row.state = "closed"
                row.updated_at = self._clock.now()
                return _local_issue(row)

    async def template(self, name: str) -> str | None:
        return None  # the embedded tracker has no repository: the bundled template


def _local_issue(row: LocalIssue) -> Issue:
    return Issue(ref=f"#{row.id}", title=row.title, state=row.state, labels=tuple(row.labels))


async def _local_row(session: AsyncSession, ref: str) -> LocalIssue:
    match = _LOCAL_REF.match(ref.strip())
    if not match:
        raise Refused(LOCAL_SERVICE, f"can't read {ref[:60]!r}: it is not an issue reference")
    row = await session.get(LocalIssue, int(match.group(1)))
    if row is None:
        raise NotFound(LOCAL_SERVICE, f"has no issue {ref}")
    return row


def incident_tracker(services: Services) -> IncidentTracker:
    """The configured tracker, as incidents use it."""
    issues = services.issues
    if isinstance(issues, IncidentTracker):
        return issues
    if isinstance(issues, LocalIssueTracker):
        return EmbeddedIncidentTracker(services.store, services.clock)
    raise TypeError(f"the {issues.name} issue tracker can't hold incidents")


# --- the sinks -----------------------------------------------------------------------------


class _Sink:
    def __init__(self, deliver: Callable[[Mapping[str, Any], str], Awaitable[None]]) -> None:
        self._deliver = deliver

    async def deliver(self, payload: Mapping[str, Any], idempotency_key: str) -> None:
        await self._deliver(payload, idempotency_key)


class IssueDelivery:
    """Delivers an incident's issue, its notes and its label changes."""

    def __init__(
        self,
        services: Services,
        tracker: IncidentTracker | None = None,
        *,
        on_linked: Linked | None = None,
    ) -> None:
        self.services = services
        self.tracker = tracker or incident_tracker(services)
        # Told once an incident has its issue (the shell prints the link).
        self.on_linked = on_linked

    def sinks(self) -> dict[str, Sink]:
        return {
            incidents.ISSUE_CREATE: _Sink(self.create),
            incidents.ISSUE_NOTE: _Sink(self.note),
            incidents.ISSUE_SYNC: _Sink(self.sync),
        }

    async def _read(self, payload: Mapping[str, Any], key: str) -> tuple[Incident | None, int]:
        """The incident as recorded now, and how many times this message was tried."""
        async with self.services.store.transaction() as session:
            incident = await session.get(Incident, int(payload["incident_id"]))
            attempts = await session.scalar(
                select(OutboxMessage.attempts).where(OutboxMessage.idempotency_key == key)
            )
        return incident, int(attempts or 1)

    async def _after_earlier_notes(self, incident: Incident, key: str) -> None:
        """A note goes on the issue after the incident's notes written before it, so the
        issue reads in the order things happened: a retry when one of them is still due."""
        async with self.services.store.transaction() as session:
            mine = select(OutboxMessage.id).where(OutboxMessage.idempotency_key == key)
            earlier = (
                await session.scalars(
                    select(OutboxMessage.next_attempt_at)
                    .where(
                        OutboxMessage.kind == incidents.ISSUE_NOTE,
                        OutboxMessage.status == "pending",
                        OutboxMessage.idempotency_key.like(f"{incidents.key_prefix(incident.id)}%"),
                        OutboxMessage.id < mine.scalar_subquery(),
                    )
                    .order_by(OutboxMessage.id)
                    .limit(1)
                )
            ).first()
        if earlier is not None:
            until = as_utc(earlier) - self.services.clock.now()
            raise DeliveryError(
                f"waiting for {incidents.shown_ref(incident)}'s earlier notes",
                after=max(1.0, until.total_seconds() + 1.0),
            )

    async def create(self, payload: Mapping[str, Any], key: str) -> None:
        incident, attempts = await self._read(payload, key)
        if incident is None:
            log.warning("incident.issue_for_nothing", key=key)
            return
        if incident.issue_ref:
            return  # opened before (its answer was recorded)
        marker = str(payload["marker"])
        try:
            # Tried before: it may have been opened without our hearing the answer.
            issue = await self.tracker.find_marked(marker) if attempts > 1 else None
            if issue is not None:
                log.info("incident.issue_found", incident=incident.id, ref=issue.ref)
            else:
                template = await self.tracker.template(str(payload["template"]))
                issue = await self.tracker.open_issue(
                    NewIssue(
                        title=str(payload["title"]),
                        description=describe(payload, template or bundled_template()),
                        labels=tuple(incidents.issue_labels(incident, self.services.settings)),
                        issue_type="incident",
                        confidential=bool(payload["confidential"]),
                        assignee=payload.get("assignee"),
                        author=incident.declared_by,
                    )
                )
        except AdapterError as exc:
            raise DeliveryError(exc.shown()) from None
        async with self.services.store.transaction(write=True) as session:
            linked = await incidents.link_issue(
                session=session,
                services=self.services,
                incident_id=incident.id,
                ref=issue.ref,
                url=issue.url,
            )
        log.info("incident.issue_opened", incident=incident.id, ref=issue.ref)
        if linked is not None and self.on_linked is not None:
            self.on_linked(linked, issue)

    async def note(self, payload: Mapping[str, Any], key: str) -> None:
        incident, attempts = await self._read(payload, key)
        if incident is None:
            return
        ref = await self._issue_of(incident)
        await self._after_earlier_notes(incident, key)
        marker = str(payload["marker"])
        raw = payload.get("timeline")
        timeline = (
            TimelineEvent(str(raw["text"]), as_utc(datetime.fromisoformat(str(raw["at"]))))
            if isinstance(raw, Mapping)
            else None
        )
        try:
            if attempts > 1 and await self.tracker.has_note(ref, marker):
                return  # added by an attempt whose answer never came
            await self.tracker.add_note(ref, str(payload["body"]), marker=marker, timeline=timeline)
        except AdapterError as exc:
            raise DeliveryError(exc.shown()) from None

    async def sync(self, payload: Mapping[str, Any], key: str) -> None:
        incident, _ = await self._read(payload, key)
        if incident is None:
            return
        ref = await self._issue_of(incident)
        add, remove = incidents.lifecycle_labels(incident, self.services.settings)
        try:
            await self.tracker.update(
                ref,
                add_labels=add,
                remove_labels=remove,
                close=incident.state == incidents.RESOLVED,
            )
        except AdapterError as exc:
            raise DeliveryError(exc.shown()) from None

    async def _issue_of(self, incident: Incident) -> str:
        """The incident's issue; until it is opened, a retry when its creation is next tried."""
        if incident.issue_ref:
            return incident.issue_ref
        async with self.services.store.transaction() as session:
            creation = (
                await session.scalars(
                    select(OutboxMessage).where(
                        OutboxMessage.idempotency_key == incidents.create_key(incident.id)
                    )
                )
            ).first()
        wait = WAIT_FOR_ISSUE
        if creation is not None and creation.status == "pending":
            until = as_utc(creation.next_attempt_at) - self.services.clock.now()
            wait = max(1.0, until.total_seconds() + 1.0)
        raise DeliveryError(f"waiting for {incidents.shown_ref(incident)}'s issue", after=wait)


# --- the flag log ----------------------------------------------------------------------------


def tracker_for(services: Services, project: str | None) -> IncidentTracker:
    """The tracker holding `project`'s issues (None: the configured tracker's own). The
    embedded tracker has one project: every reference is to it."""
    if project is None or services.settings.issues.backend != "gitlab":
        return incident_tracker(services)
    from marvin.adapters.gitlab import GitLabClient
    from marvin.adapters.gitlab_issues import GitLabIssueTracker
    from marvin.wiring import gitlab_token

    gitlab = services.settings.gitlab
    assert gitlab.url  # backend_problems refuses the config otherwise
    client = GitLabClient(gitlab.url, gitlab_token(), gitlab.timeout_seconds)
    return GitLabIssueTracker(client, project)


class FlagLogDelivery:
    """Each flag change as an issue in the flag log project, closed at once, and its note
    on the rollout issue (`marvin.flag_log`)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._trackers: dict[str | None, IncidentTracker] = {}

    def sinks(self) -> dict[str, Sink]:
        return {flag_log.LOG_ISSUE: _Sink(self.log), flag_log.ROLLOUT_NOTE: _Sink(self.rollout)}

    def _tracker(self, project: str | None) -> IncidentTracker:
        if project not in self._trackers:
            self._trackers[project] = tracker_for(self.services, project)
        return self._trackers[project]

    async def _attempts(self, key: str) -> int:
        async with self.services.store.transaction() as session:
            attempts = await session.scalar(
                select(OutboxMessage.attempts).where(OutboxMessage.idempotency_key == key)
            )
        return int(attempts or 1)

    async def log(self, payload: Mapping[str, Any], key: str) -> None:
        project = self.services.settings.issues.flag_log_project
        if not project:
            return  # the log was switched off since: nothing to write it to
        tracker = self._tracker(project)
        marker = str(payload["marker"])
        try:
            issue = await tracker.find_marked(marker) if await self._attempts(key) > 1 else None
            if issue is None:
                issue = await tracker.open_issue(
                    NewIssue(
                        title=str(payload["title"]),
                        description=f"{payload['description']}\n\n{marker_comment(marker)}",
                        labels=tuple(str(label) for label in payload["labels"]),
                        author=str(payload["author"]),
                    )
                )
            if issue.state != "closed":
                await tracker.update(issue.ref, add_labels=[], remove_labels=[], close=True)
        except AdapterError as exc:
            raise DeliveryError(exc.shown()) from None

    async def rollout(self, payload: Mapping[str, Any], key: str) -> None:
        found = flag_log.split_ref(str(payload["ref"]))
        if found is None:
            raise DeliveryError(f"{payload['ref']!r} names no issue", retry=False)
        project, iid = found
        tracker = self._tracker(project)
        marker = str(payload["marker"])
        try:
            if await self._attempts(key) > 1 and await tracker.has_note(f"#{iid}", marker):
                return
            await tracker.add_note(f"#{iid}", str(payload["body"]), marker=marker)
        except NotFound as exc:
            # A rollout issue that isn't there won't appear by waiting: failed, and shown.
            raise DeliveryError(exc.shown(), retry=False) from None
        except AdapterError as exc:
            raise DeliveryError(exc.shown()) from None


class ChangeDelivery:
    """A change request's issue (from the `change_checklist` template) and its labels."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.tracker = incident_tracker(services)

    def sinks(self) -> dict[str, Sink]:
        return {changes.CHANGE_CREATE: _Sink(self.create), changes.CHANGE_SYNC: _Sink(self.sync)}

    async def _read(self, payload: Mapping[str, Any], key: str) -> tuple[ChangeRequest | None, int]:
        async with self.services.store.transaction() as session:
            change = await session.get(ChangeRequest, int(payload["change_id"]))
            attempts = await session.scalar(
                select(OutboxMessage.attempts).where(OutboxMessage.idempotency_key == key)
            )
        return change, int(attempts or 1)

    async def create(self, payload: Mapping[str, Any], key: str) -> None:
        change, attempts = await self._read(payload, key)
        if change is None or change.issue_ref:
            return
        marker = str(payload["marker"])
        add, _ = changes.labels(change, self.services.settings)
        try:
            issue = await self.tracker.find_marked(marker) if attempts > 1 else None
            if issue is None:
                template = await self.tracker.template(changes.TEMPLATE)
                issue = await self.tracker.open_issue(
                    NewIssue(
                        title=str(payload["title"]),
                        description="\n\n".join(
                            [
                                str(payload["header"]),
                                (template or changes.bundled_template()).strip(),
                                marker_comment(marker),
                            ]
                        ),
                        labels=tuple(add),
                        author=change.requested_by,
                    )
                )
        except AdapterError as exc:
            raise DeliveryError(exc.shown()) from None
        async with self.services.store.transaction(write=True) as session:
            await changes.link_issue(
                session=session,
                change_id=change.id,
                ref=issue.ref,
                url=issue.url,
                now=self.services.clock.now(),
            )

    async def sync(self, payload: Mapping[str, Any], key: str) -> None:
        change, _ = await self._read(payload, key)
        if change is None:
            return
        if not change.issue_ref:
            raise DeliveryError(
                f"waiting for {changes.shown_ref(change)}'s issue", after=WAIT_FOR_ISSUE / 4
            )
        add, remove = changes.labels(change, self.services.settings)
        try:
            await self.tracker.update(
                change.issue_ref,
                add_labels=add,
                remove_labels=remove,
                close=change.state == changes.DONE,
            )
        except AdapterError as exc:
            raise DeliveryError(exc.shown()) from None


def issue_sinks(
    services: Services, tracker: IncidentTracker | None = None, *, on_linked: Linked | None = None
) -> dict[str, Sink]:
    """The sinks of the `issue:*` outbox kinds, for a worker of their own."""
    return {
        **IssueDelivery(services, tracker, on_linked=on_linked).sinks(),
        **FlagLogDelivery(services).sinks(),
        **ChangeDelivery(services).sinks(),
    }


def issue_worker(
    services: Services,
    *,
    on_linked: Linked | None = None,
    also: Mapping[str, Sink] | None = None,
) -> OutboxWorker:
    """The worker that delivers the tracker's issues and notes, apart from the chat's
    announcements; `also`: more sinks for the same tracker (deviation issues)."""
    return OutboxWorker(
        services.store,
        {**issue_sinks(services, on_linked=on_linked), **(also or {})},
        services.clock,
        max_attempts=ISSUE_MAX_ATTEMPTS,
    )


async def pending(store: Store) -> tuple[int, datetime | None]:
    """How many issue messages are still to be delivered, and when the next one is due."""
    async with store.transaction() as session:
        count, due = (
            await session.execute(
                select(func.count(), func.min(OutboxMessage.next_attempt_at)).where(
                    OutboxMessage.kind.in_(KINDS),
                    OutboxMessage.status == "pending",
                )
            )
        ).one()
    return int(count or 0), (as_utc(due) if due is not None else None)


async def drain(worker: OutboxWorker, store: Store, clock: Clock, *, seconds: float) -> int:
    """Deliver issue messages as they fall due, for at most `seconds` (what a shell does
    before it exits). Returns how many are still pending: `marvin serve` delivers them."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        await worker.deliver_due()
        left, due = await pending(store)
        remaining = deadline - loop.time()
        if left == 0 or due is None or remaining <= 0:
            return left
        wait = max((due - clock.now()).total_seconds(), 0.05)
        if wait > remaining:
            return left
        await asyncio.sleep(wait)


def waiting_text(count: int) -> str | None:
    if not count:
        return None
    return (
        f"{count} incident issue update(s) could not be delivered yet; `marvin serve` will "
        "deliver them (see `incident list`)."
    )
