"""The tracker's issues, delivered: the outbox's issue messages, to the configured tracker.

A record (an incident, a change request, a deviation, a flag change) is Marvin's first; its
issue is a projection, written to the outbox in the transaction that records it and
delivered here, with no transaction open, by a worker of its own (`issue_worker`): a GitLab
outage delays issues and never the chat's announcements, which have their loop.

- Opening an issue (an incident's, a change request's, a deviation's, the flag log's) stores
  its reference and link on the record in a short write transaction after the call. GitLab
  has no idempotency key: the issue carries a hidden marker, and a delivery tried before (a
  timeout, a 5xx, a crash mid-call) looks for it before it opens another (`open_marked`).
- `issue:note` adds a note (with its `/timeline` event) once the issue exists and the
  incident's earlier notes are on it (the issue reads in the order things happened), and
  retries until then, at the pace of what it waits for. A retried note looks for its marker
  first, too (`add_marked_note`).
- `issue:sync` and `issue:change-sync` bring the issue's labels and state to the record's
  *as it stands when delivered*, so deliveries in any order, late or repeated, leave the
  issue right.

Every tracker error is retried with the outbox's backoff (a permanent one keeps failing
visibly, in `incident show`, rather than being dropped). The embedded tracker (`local`)
gets the same messages through `EmbeddedIncidentTracker`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from importlib import resources
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from marvin import changes, deviations, flag_log, incidents
from marvin.adapters.errors import AdapterError, NotFound, Refused
from marvin.adapters.gitlab_issues import (
    IncidentTracker,
    NewIssue,
    TimelineEvent,
    marker_comment,
)
from marvin.adapters.issue_refs import parse_issue_ref
from marvin.adapters.issues import SERVICE as LOCAL_SERVICE
from marvin.adapters.issues import Issue, LocalIssueTracker, local_id
from marvin.clock import Clock, as_utc
from marvin.models import Announcement
from marvin.outbox import ANNOUNCE, DeliveryError, OutboxWorker, Sink, enqueue
from marvin.services import Services
from marvin.store.db import Store, database_answers
from marvin.store.tables import (
    ChangeRequest,
    Deviation,
    Incident,
    LocalIssue,
    LocalIssueNote,
    OutboxMessage,
)

log = structlog.get_logger(__name__)

# An issue's messages wait out a tracker's outage, however long: a month at the outbox's
# longest backoff before one is given up as failed (and shown so in `incident show`).
ISSUE_MAX_ATTEMPTS = 10_000
# How soon a message asks again whether its issue exists, when the creation isn't scheduled.
WAIT_FOR_ISSUE = 60.0
# Every kind the issue loop delivers.
KINDS = (*incidents.ISSUE_KINDS, *flag_log.KINDS, *changes.KINDS, *deviations.KINDS)
# Told once an incident has its issue, and once a deviation's is open (the shell prints them).
Linked = Callable[[Incident, Issue], None]
Opened = Callable[[str, Issue], None]

POSTMORTEM = "postmortem"
# What a template reads as when the package data is missing.
_FALLBACK_TEMPLATES = {
    POSTMORTEM: (
        "## Summary\n\n## Impact\n\n## Detection\n\n## Timeline\n\n## Root cause\n\n"
        "## What went well\n\n## What went wrong\n\n## Corrective actions\n"
    ),
    changes.TEMPLATE: "## Change summary\n\n## Change steps\n\n## Rollback\n",
}


def bundled_template(name: str = POSTMORTEM) -> str:
    """Marvin's own description template `marvin/templates/<name>.md`: the blameless
    post-mortem, the change checklist."""
    try:
        return (resources.files("marvin") / "templates" / f"{name}.md").read_text("utf-8")
    except OSError:  # an install without the package data
        log.warning("issue.template_missing", template=name)
        return _FALLBACK_TEMPLATES.get(name, "")


def describe(payload: Mapping[str, Any], template: str) -> str:
    """An issue's description: who and what, the template, what changed (an incident's),
    the marker."""
    parts = [
        str(payload["header"]),
        template.strip(),
        str(payload.get("context") or ""),
        marker_comment(str(payload["marker"])),
    ]
    return "\n\n".join(part for part in parts if part)


# --- the embedded tracker ------------------------------------------------------------------


class EmbeddedIncidentTracker:
    """What incidents need of the embedded tracker, on its tables (`local_issues`,
    `local_issue_notes`). It keeps no issue type and reads `/timeline` as plain text."""

    name = "local"

    def __init__(self, store: Store, clock: Clock, project: str | None = None) -> None:
        self._store = store
        self._clock = clock
        # Its name in references (`issues.project`): another project's `#N` is not its `#N`.
        self._project = project

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
                row = await self._row(session, ref)
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
                row = await self._row(session, ref)
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
                row = await self._row(session, ref)
                kept = [label for label in row.labels if label not in remove_labels]
                row.labels = list(dict.fromkeys([*kept, *add_labels]))
                if close:
                    row.state = "closed"
                row.updated_at = self._clock.now()
                return _local_issue(row)

    async def template(self, name: str) -> str | None:
        return None  # the embedded tracker has no repository: the bundled template

    async def _row(self, session: AsyncSession, ref: str) -> LocalIssue:
        number = local_id(ref, self._project)
        row = await session.get(LocalIssue, number)
        if row is None:
            raise NotFound(LOCAL_SERVICE, f"has no issue #{number}")
        return row


def _local_issue(row: LocalIssue) -> Issue:
    return Issue(ref=f"#{row.id}", title=row.title, state=row.state, labels=tuple(row.labels))


def incident_tracker(services: Services) -> IncidentTracker:
    """The configured tracker, as incidents use it."""
    issues = services.issues
    if isinstance(issues, IncidentTracker):
        return issues
    if isinstance(issues, LocalIssueTracker):
        return EmbeddedIncidentTracker(
            services.store, services.clock, services.settings.issues.project
        )
    raise TypeError(f"the {issues.name} issue tracker can't hold incidents")


# --- what every delivery does ----------------------------------------------------------------


class _Sink:
    """One of a worker's deliveries, as the outbox calls it: told whether it was tried
    before (the outbox counts each attempt as it claims the message)."""

    def __init__(self, deliver: Callable[[Mapping[str, Any], str, bool], Awaitable[None]]) -> None:
        self._deliver = deliver

    async def deliver_attempt(
        self, payload: Mapping[str, Any], idempotency_key: str, *, tried: bool
    ) -> None:
        await self._deliver(payload, idempotency_key, tried)

    async def deliver(self, payload: Mapping[str, Any], idempotency_key: str) -> None:
        # Without the attempt, assume the worst: it may have been done unheard.
        await self._deliver(payload, idempotency_key, True)


@contextmanager
def tracker_errors(*, permanent: tuple[type[AdapterError], ...] = ()) -> Iterator[None]:
    """A tracker's error as the outbox's: retried with its backoff (one that keeps failing is
    shown, and given up only after ISSUE_MAX_ATTEMPTS), or, `permanent`, failed at once."""
    try:
        yield
    except permanent as exc:
        raise DeliveryError(exc.shown(), retry=False) from None
    except AdapterError as exc:
        raise DeliveryError(exc.shown()) from None


async def open_marked(
    tracker: IncidentTracker,
    marker: str,
    tried: bool,
    new: NewIssue | Callable[[], Awaitable[NewIssue]],
) -> Issue:
    """The issue carrying `marker`, opened once: a delivery `tried` before looks for it first
    (opened by an attempt whose answer never came). `new` is the issue to open, or what makes
    it (reading a template is a call too, only made when it is opened)."""
    found = await tracker.find_marked(marker) if tried else None
    if found is not None:
        log.info("issue.found_marked", marker=marker, ref=found.ref)
        return found
    return await tracker.open_issue(new if isinstance(new, NewIssue) else await new())


async def add_marked_note(
    tracker: IncidentTracker,
    ref: str,
    body: str,
    *,
    marker: str,
    tried: bool,
    timeline: TimelineEvent | None = None,
) -> None:
    """A note on `ref`, added once: a delivery `tried` before looks for it first."""
    if tried and await tracker.has_note(ref, marker):
        return
    await tracker.add_note(ref, body, marker=marker, timeline=timeline)


async def issue_of(services: Services, ref: str | None, *, create_key: str, shown: str) -> str:
    """A record's issue (`ref`); until it is opened, a retry when its creation (the outbox
    message `create_key`) is next tried."""
    if ref:
        return ref
    async with services.store.transaction() as session:
        creation = (
            await session.scalars(
                select(OutboxMessage).where(OutboxMessage.idempotency_key == create_key)
            )
        ).first()
    wait = WAIT_FOR_ISSUE
    if creation is not None and creation.status == "pending":
        until = as_utc(creation.next_attempt_at) - services.clock.now()
        wait = max(1.0, until.total_seconds() + 1.0)
    raise DeliveryError(f"waiting for {shown}'s issue", after=wait)


# --- incidents -----------------------------------------------------------------------------


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
        self.on_linked = on_linked

    def sinks(self) -> dict[str, Sink]:
        return {
            incidents.ISSUE_CREATE: _Sink(self.create),
            incidents.ISSUE_NOTE: _Sink(self.note),
            incidents.ISSUE_SYNC: _Sink(self.sync),
        }

    async def _read(self, payload: Mapping[str, Any]) -> Incident | None:
        """The incident as recorded now."""
        async with self.services.store.transaction() as session:
            return await session.get(Incident, int(payload["incident_id"]))

    async def _issue_of(self, incident: Incident) -> str:
        return await issue_of(
            self.services,
            incident.issue_ref,
            create_key=incidents.create_key(incident.id),
            shown=incidents.shown_ref(incident),
        )

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

    async def create(self, payload: Mapping[str, Any], key: str, tried: bool) -> None:
        incident = await self._read(payload)
        if incident is None:
            log.warning("incident.issue_for_nothing", key=key)
            return
        if incident.issue_ref:
            return  # opened before (its answer was recorded)
        labels = tuple(incidents.issue_labels(incident, self.services.settings))

        async def new() -> NewIssue:
            template = await self.tracker.template(str(payload["template"]))
            return NewIssue(
                title=str(payload["title"]),
                description=describe(payload, template or bundled_template()),
                labels=labels,
                issue_type="incident",
                confidential=bool(payload["confidential"]),
                assignee=payload.get("assignee"),
                author=incident.declared_by,
            )

        with tracker_errors():
            issue = await open_marked(self.tracker, str(payload["marker"]), tried, new)
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

    async def note(self, payload: Mapping[str, Any], key: str, tried: bool) -> None:
        incident = await self._read(payload)
        if incident is None:
            return
        ref = await self._issue_of(incident)
        await self._after_earlier_notes(incident, key)
        raw = payload.get("timeline")
        timeline = (
            TimelineEvent(str(raw["text"]), as_utc(datetime.fromisoformat(str(raw["at"]))))
            if isinstance(raw, Mapping)
            else None
        )
        with tracker_errors():
            await add_marked_note(
                self.tracker,
                ref,
                str(payload["body"]),
                marker=str(payload["marker"]),
                tried=tried,
                timeline=timeline,
            )

    async def sync(self, payload: Mapping[str, Any], key: str, tried: bool) -> None:
        incident = await self._read(payload)
        if incident is None:
            return
        ref = await self._issue_of(incident)
        add, remove = incidents.lifecycle_labels(incident, self.services.settings)
        with tracker_errors():
            await self.tracker.update(
                ref,
                add_labels=add,
                remove_labels=remove,
                close=incident.state == incidents.RESOLVED,
            )


# --- the flag log ----------------------------------------------------------------------------


def tracker_for(services: Services, project: str | None) -> IncidentTracker:
    """The tracker holding `project`'s issues (None: the configured tracker's own). The
    embedded tracker has one project: it holds every issue Marvin opens, and its notes go
    only on its own (`FlagLogDelivery.rollout` refuses another project's)."""
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

    async def log(self, payload: Mapping[str, Any], key: str, tried: bool) -> None:
        project = self.services.settings.issues.flag_log_project
        if not project:
            return  # the log was switched off since: nothing to write it to
        tracker = self._tracker(project)
        marker = str(payload["marker"])
        new = NewIssue(
            title=str(payload["title"]),
            description=f"{payload['description']}\n\n{marker_comment(marker)}",
            labels=tuple(str(label) for label in payload["labels"]),
            author=str(payload["author"]),
        )
        with tracker_errors():
            issue = await open_marked(tracker, marker, tried, new)
            if issue.state != "closed":
                await tracker.update(issue.ref, add_labels=[], remove_labels=[], close=True)

    async def rollout(self, payload: Mapping[str, Any], key: str, tried: bool) -> None:
        ref = str(payload["ref"])
        tracker = self._rollout_tracker(ref)
        # A rollout issue that isn't there won't appear by waiting: failed, and shown.
        with tracker_errors(permanent=(NotFound,)):
            await add_marked_note(
                tracker, ref, str(payload["body"]), marker=str(payload["marker"]), tried=tried
            )

    def _rollout_tracker(self, ref: str) -> IncidentTracker:
        """The tracker holding the issue `ref` names, failed for good when none does."""
        parsed = parse_issue_ref(ref)
        if parsed is None:
            raise DeliveryError(f"{ref!r} names no issue", retry=False)
        settings = self.services.settings.issues
        if settings.backend != "gitlab":
            # Another project's issue N is not the embedded tracker's #N.
            try:
                local_id(ref, settings.project)
            except Refused as exc:
                raise DeliveryError(exc.shown(), retry=False) from None
        return self._tracker(parsed.project)


# --- change requests -------------------------------------------------------------------------


class ChangeDelivery:
    """A change request's issue (from the `change_checklist` template) and its labels."""

    def __init__(self, services: Services, tracker: IncidentTracker | None = None) -> None:
        self.services = services
        self.tracker = tracker or incident_tracker(services)

    def sinks(self) -> dict[str, Sink]:
        return {changes.CHANGE_CREATE: _Sink(self.create), changes.CHANGE_SYNC: _Sink(self.sync)}

    async def _read(self, payload: Mapping[str, Any]) -> ChangeRequest | None:
        async with self.services.store.transaction() as session:
            return await session.get(ChangeRequest, int(payload["change_id"]))

    async def create(self, payload: Mapping[str, Any], key: str, tried: bool) -> None:
        change = await self._read(payload)
        if change is None or change.issue_ref:
            return
        add, _ = changes.labels(change, self.services.settings)
        author = change.requested_by

        async def new() -> NewIssue:
            template = await self.tracker.template(changes.TEMPLATE)
            return NewIssue(
                title=str(payload["title"]),
                description=describe(payload, template or bundled_template(changes.TEMPLATE)),
                labels=tuple(add),
                author=author,
            )

        with tracker_errors():
            issue = await open_marked(self.tracker, str(payload["marker"]), tried, new)
        async with self.services.store.transaction(write=True) as session:
            await changes.link_issue(
                session=session,
                change_id=change.id,
                ref=issue.ref,
                url=issue.url,
                now=self.services.clock.now(),
            )

    async def sync(self, payload: Mapping[str, Any], key: str, tried: bool) -> None:
        change = await self._read(payload)
        if change is None:
            return
        ref = await issue_of(
            self.services,
            change.issue_ref,
            create_key=changes.create_key(change.id),
            shown=changes.shown_ref(change),
        )
        add, remove = changes.labels(change, self.services.settings)
        with tracker_errors():
            await self.tracker.update(
                ref, add_labels=add, remove_labels=remove, close=change.state == changes.DONE
            )


# --- deviations ------------------------------------------------------------------------------


class DeviationDelivery:
    """A deviation's issue (`marvin.deviations`), with the binding Marvin checks; once it is
    open, the production channel is told where it is and what approves it."""

    def __init__(
        self,
        services: Services,
        tracker: IncidentTracker | None = None,
        *,
        on_opened: Opened | None = None,
    ) -> None:
        self.services = services
        self.tracker = tracker or incident_tracker(services)
        self.on_opened = on_opened

    def sinks(self) -> dict[str, Sink]:
        return {deviations.OPEN: _Sink(self.open)}

    async def open(self, payload: Mapping[str, Any], key: str, tried: bool) -> None:
        services = self.services
        settings = services.settings.flags
        async with services.store.transaction() as session:
            row = await session.get(Deviation, int(payload["deviation_id"]))
            if row is None or row.issue_ref:
                return  # nothing to open, or opened before (its answer was recorded)
            marker, flag = row.marker, row.flag
            new = NewIssue(
                title=deviations.title(row),
                description=deviations.description(
                    row, settings.approval_labels[0], settings.deviation_valid_hours
                ),
                labels=("deviation", deviations.label_for(row.flag)),
                author=row.requested_by,
            )
        with tracker_errors():
            issue = await open_marked(self.tracker, marker, tried, new)
        now = services.clock.now()
        async with services.store.transaction(write=True) as session:
            row = await session.get(Deviation, int(payload["deviation_id"]))
            if row is None or row.issue_ref:
                return
            row.issue_ref, row.issue_url, row.opened_at = issue.ref, issue.url, now
            text = (
                f"Deviation issue {issue.url or issue.ref} for `{flag}` is open "
                f"(asked by @{row.requested_by}: {row.value} in {', '.join(row.environments)}). "
                f"It approves once labelled `{settings.approval_labels[0]}`, for "
                f"{settings.deviation_valid_hours:g} hours"
            )
            announcement = Announcement(
                channel_id=services.settings.production_channel.id,
                text=text + ".",
                fields={"flag": flag, "issue": issue.url or issue.ref, "by": row.requested_by},
                idempotency_key=f"{deviations.key(row.id)}:announce",
            )
            await enqueue(
                session,
                kind=ANNOUNCE,
                key=announcement.idempotency_key,
                payload=announcement.model_dump(mode="json"),
                now=now,
            )
        log.info("deviation.issue_opened", flag=flag, ref=issue.ref)
        if self.on_opened is not None:
            self.on_opened(flag, issue)


# --- the loop --------------------------------------------------------------------------------


def issue_sinks(
    services: Services,
    tracker: IncidentTracker | None = None,
    *,
    on_linked: Linked | None = None,
    on_deviation: Opened | None = None,
) -> dict[str, Sink]:
    """The sinks of every kind the issue loop delivers (`KINDS`)."""
    return {
        **IssueDelivery(services, tracker, on_linked=on_linked).sinks(),
        **FlagLogDelivery(services).sinks(),
        **ChangeDelivery(services, tracker).sinks(),
        **DeviationDelivery(services, tracker, on_opened=on_deviation).sinks(),
    }


def issue_worker(
    services: Services,
    *,
    on_linked: Linked | None = None,
    on_deviation: Opened | None = None,
) -> OutboxWorker:
    """The worker that delivers the tracker's issues and notes, apart from the chat's
    announcements."""
    return OutboxWorker(
        services.store,
        issue_sinks(services, on_linked=on_linked, on_deviation=on_deviation),
        services.clock,
        max_attempts=ISSUE_MAX_ATTEMPTS,
    )
