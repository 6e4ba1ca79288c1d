"""Incidents: Marvin's own record of an outage, its timeline, and the issue it projects to.

The record comes first: an incident is a row written in the command's own transaction, so
the change lock (`marvin.facts`) sees it at once, whatever the issue tracker is doing. The
tracker's issue is its projection: the creation, every timeline note and every label change
go into the outbox in that same transaction, and `marvin.issue_delivery` delivers them
(retries, backoff, a marker against doubles) with no transaction open.

Plain async functions taking the session as a keyword, in the style of Dispatch's service
modules; the command handlers (`marvin.commands.incident`) turn commands into these calls.

States: `open` (the issue's `Incident::Active`; a serious one locks changes), `mitigated`
(the lock is released), `resolved` (the issue is closed).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from marvin import changes
from marvin.adapters.issues import inert
from marvin.clock import as_utc
from marvin.config import Settings
from marvin.flags import FlagState
from marvin.models import Announcement
from marvin.outbox import ANNOUNCE, enqueue
from marvin.services import Services
from marvin.store.tables import (
    Account,
    ChangeRequest,
    DeploySlot,
    FlagChange,
    Incident,
    IncidentEvent,
    IncidentPin,
    OutboxMessage,
    Watch,
)
from marvin.watches import dm_kind

OPEN = "open"
MITIGATED = "mitigated"
RESOLVED = "resolved"
SHOWN_STATE = {OPEN: "active", MITIGATED: "mitigated", RESOLVED: "resolved"}

# The outbox kinds of an incident's issue: one delivery loop of their own (a GitLab outage
# must not hold up the chat's announcements), whichever tracker is configured.
ISSUE_CREATE = "issue:create"
ISSUE_NOTE = "issue:note"
ISSUE_SYNC = "issue:sync"
ISSUE_KINDS = (ISSUE_CREATE, ISSUE_NOTE, ISSUE_SYNC)

# GitLab keeps a timeline event's text to 280 characters.
TIMELINE_TEXT_MAX = 280
WHEN = "%Y-%m-%d %H:%M UTC"


def shown_ref(incident: Incident) -> str:
    """How people name the incident in chat: Marvin's number, which every command takes."""
    return f"incident {incident.id}"


def issue_title(incident: Incident) -> str:
    """GitLab's production tracker's convention: `YYYY-MM-DD: <title>`."""
    return f"{as_utc(incident.created_at):%Y-%m-%d}: {incident.title}"


def new_marker() -> str:
    return f"marvin-incident-{secrets.token_hex(8)}"


def note_marker(incident: Incident, event_id: int) -> str:
    return f"{incident.marker}-note-{event_id}"


def key_prefix(incident_id: int) -> str:
    """Every outbox message of an incident has a key under this prefix."""
    return f"incident:{incident_id}:"


def create_key(incident_id: int) -> str:
    return f"{key_prefix(incident_id)}issue"


# --- labels --------------------------------------------------------------------------------


def blocks(incident: Incident, settings: Settings) -> bool:
    """Whether the incident locks changes now (and its issue carries the blocking labels)."""
    return incident.state == OPEN and incident.severity in settings.change_lock.incident_severities


def static_labels(incident: Incident, settings: Settings) -> list[str]:
    """The labels fixed at declaration: `outage`, the service, the ones asked for."""
    names = settings.incidents.labels
    labels = [names.outage]
    if incident.service:
        labels.append(names.service.replace("{service}", incident.service))
    return list(dict.fromkeys([*labels, *incident.labels]))


def lifecycle_labels(incident: Incident, settings: Settings) -> tuple[list[str], list[str]]:
    """The labels the incident's state and severity call for now, and those they exclude:
    applying both makes any issue match the record, whatever was applied before."""
    names = settings.incidents.labels
    state_label = {OPEN: names.active, MITIGATED: names.mitigated, RESOLVED: names.resolved}
    add = [state_label[incident.state], names.severity.replace("{n}", str(incident.severity))]
    remove = [label for state, label in state_label.items() if state != incident.state]
    remove += [names.severity.replace("{n}", str(n)) for n in range(1, 5) if n != incident.severity]
    if blocks(incident, settings):
        add += names.blocking
    else:
        remove += names.blocking
    return add, [label for label in remove if label not in add]


def issue_labels(incident: Incident, settings: Settings) -> list[str]:
    return list(
        dict.fromkeys(
            [*static_labels(incident, settings), *lifecycle_labels(incident, settings)[0]]
        )
    )


# --- what changed --------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """Something Marvin recorded, for an incident's timeline."""

    at: datetime
    who: str | None
    kind: str  # flag_change, override, deploy, change, watch
    text: str


@dataclass(frozen=True)
class Watcher:
    """Someone still watching a change they made, and what."""

    account_id: int
    transport: str
    chat_user_id: str
    handle: str
    subjects: tuple[tuple[str, datetime], ...]  # (subject, until)

    def watching(self) -> str:
        return ", ".join(f"{s} until {as_utc(until):%H:%M UTC}" for s, until in self.subjects)


def _state(raw: dict[str, Any] | None, missing: str) -> str:
    return FlagState.model_validate(raw).describe() if raw else missing


async def _flag_changes(*, session: AsyncSession, since: datetime, until: datetime) -> list[Entry]:
    rows = await session.scalars(
        select(FlagChange)
        .where(FlagChange.created_at >= since, FlagChange.created_at <= until)
        .order_by(FlagChange.created_at, FlagChange.id)
    )
    entries = []
    for row in rows:
        verb = "deleted" if row.action == "delete" else "set"
        text = (
            f"@{row.actor} {verb} `{row.name}` in {row.environment}: "
            f"{_state(row.before, 'new')} → {_state(row.after, 'deleted')}"
        )
        if row.issue_ref:
            text += f" (deviation {row.issue_ref})"
        if row.override_reason:
            text += f" (production check overridden: {row.override_reason})"
        kind = "override" if row.override_reason else "flag_change"
        entries.append(Entry(as_utc(row.created_at), row.actor, kind, flat(text)))
    return entries


async def _deploys(*, session: AsyncSession, since: datetime, until: datetime) -> list[Entry]:
    """The deploys started in the window (booked slots Marvin started, by hand or when due)."""
    rows = await session.scalars(
        select(DeploySlot)
        .where(DeploySlot.started_at >= since, DeploySlot.started_at <= until)
        .order_by(DeploySlot.started_at, DeploySlot.id)
    )
    entries = []
    for slot in rows:
        assert slot.started_at is not None  # (the query asks for it)
        who = slot.started_by or slot.booked_by
        text = f"@{who} started the deploy of {slot.version} to {slot.environment}"
        if slot.pipeline_url:
            text += f" (pipeline {slot.pipeline_url})"
        if slot.override_reason:
            text += f" (deploy checks overridden: {slot.override_reason})"
        kind = "override" if slot.override_reason else "deploy"
        entries.append(Entry(as_utc(slot.started_at), who, kind, flat(text)))
    return entries


async def _change_requests(
    *, session: AsyncSession, since: datetime, until: datetime
) -> list[Entry]:
    """The change requests started or finished in the window: each move is a change."""
    rows = await session.scalars(
        select(ChangeRequest)
        .where(
            or_(
                ChangeRequest.started_at.between(since, until),
                ChangeRequest.done_at.between(since, until),
            )
        )
        .order_by(ChangeRequest.id)
    )
    entries = []
    for change in rows:
        what = f"{changes.shown_ref(change)} (C{change.criticality}): {change.title}"
        started, done = change.started_at, change.done_at
        if started is not None and since <= as_utc(started) <= until:
            who = change.started_by
            text = f"@{who} started {what}" if who else f"Started {what}"
            entries.append(Entry(as_utc(started), who, "change", flat(text)))
        if done is not None and since <= as_utc(done) <= until:
            # Who finished it isn't recorded: the change's issue says.
            entries.append(Entry(as_utc(done), None, "change", flat(f"Finished {what}")))
    return entries


# Everything Marvin records that can have changed production, in one place.
ChangeSource = Callable[..., Awaitable[list[Entry]]]
CHANGE_SOURCES: tuple[ChangeSource, ...] = (_flag_changes, _deploys, _change_requests)


async def what_changed(*, session: AsyncSession, since: datetime, until: datetime) -> list[Entry]:
    """Every change Marvin recorded between `since` and `until`, oldest first."""
    entries: list[Entry] = []
    for source in CHANGE_SOURCES:
        entries += await source(session=session, since=since, until=until)
    return sorted(entries, key=lambda e: e.at)


async def watchers(*, session: AsyncSession, now: datetime) -> list[Watcher]:
    """Who is still watching a change they made, each with what they watch."""
    rows = (
        await session.execute(
            select(Watch, Account)
            .join(Account, Account.id == Watch.account_id)
            .where(Watch.ends_at > now)
            .order_by(Account.id, Watch.ends_at)
        )
    ).all()
    found: dict[int, Watcher] = {}
    for watch, account in rows:
        seen = found.get(account.id)
        subject = (watch.subject, as_utc(watch.ends_at))
        found[account.id] = Watcher(
            account_id=account.id,
            transport=account.transport,
            chat_user_id=account.chat_user_id,
            handle=account.directory_handle or account.display_name,
            subjects=(*(seen.subjects if seen else ()), subject),
        )
    return list(found.values())


# --- the record ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Declaration:
    title: str
    severity: int
    declared_by: str  # a handle
    handler: str
    handler_gitlab: str | None
    service: str | None = None
    labels: tuple[str, ...] = ()
    confidential_reason: str | None = None


@dataclass(frozen=True)
class Declared:
    incident: Incident
    changes: list[Entry]  # in the timeline (the newest, up to the configured limit)
    more: int  # changes recorded in the window beyond those
    watchers: list[Watcher]
    since: datetime


# What each kind of a record's issue messages is, for people: an incident's, a change's.
_OPENS = (ISSUE_CREATE, changes.CHANGE_CREATE)
_NOTES = (ISSUE_NOTE,)
_SYNCS = (ISSUE_SYNC, changes.CHANGE_SYNC)


@dataclass
class Deliveries:
    """What of a record's issue (an incident's, a change request's) is still on its way to
    the tracker."""

    pending: dict[str, int] = field(default_factory=dict)  # kind -> how many
    failed: dict[str, int] = field(default_factory=dict)
    # The error of the earliest one not delivered: what the later ones wait for.
    last_error: str | None = None

    def waiting(self) -> str | None:
        """For people: "the issue and 3 notes", or None when nothing waits."""
        if not self.pending and not self.failed:
            return None
        parts = []
        for counts, how in ((self.pending, "waiting"), (self.failed, "failed")):
            items = []
            if sum(counts.get(kind, 0) for kind in _OPENS):
                items.append("the issue")
            notes = sum(counts.get(kind, 0) for kind in _NOTES)
            if notes:
                items.append(f"{notes} note{'s' if notes != 1 else ''}")
            syncs = sum(counts.get(kind, 0) for kind in _SYNCS)
            if syncs:
                items.append(f"{syncs} label change{'s' if syncs != 1 else ''}")
            if items:
                parts.append(f"{' and '.join(items)} {how}")
        return "; ".join(parts)

    def suffix(self) -> str:
        """What waits, and why, to follow a record's issue line: " (the issue waiting;
        last error: ...)", or nothing."""
        waiting = self.waiting()
        if not waiting:
            return ""
        return (
            f" ({waiting}; last error: {self.last_error})" if self.last_error else f" ({waiting})"
        )


def flat(text: str) -> str:
    """One line: a timeline entry reads as one, in chat and as a `/timeline` event (whose
    text ends at the line's end). What goes to the issue also goes through `inert`."""
    return " ".join(text.split())


def _timeline_text(text: str) -> str:
    # One line (a quick action ends at the line's end), no `|` (it separates the time).
    line = flat(text.replace("|", "/"))
    return line if len(line) <= TIMELINE_TEXT_MAX else line[: TIMELINE_TEXT_MAX - 1] + "…"


async def add_event(
    *,
    session: AsyncSession,
    incident: Incident,
    kind: str,
    text: str,
    occurred_at: datetime,
    author: str | None,
    now: datetime,
    request_id: str | None,
) -> IncidentEvent:
    """An entry on the incident's timeline, and its note on the issue (through the outbox:
    delivered once the issue exists)."""
    text = flat(text)
    event = IncidentEvent(
        incident_id=incident.id,
        kind=kind,
        occurred_at=occurred_at,
        author=author,
        text=text,
        recorded_at=now,
        request_id=request_id,
    )
    session.add(event)
    await session.flush()
    at = as_utc(occurred_at)
    await enqueue(
        session,
        kind=ISSUE_NOTE,
        key=f"{key_prefix(incident.id)}note:{event.id}",
        payload={
            "incident_id": incident.id,
            "event_id": event.id,
            "marker": note_marker(incident, event.id),
            "body": f"**{at:{WHEN}}** · {inert(text)}",
            "timeline": {"text": _timeline_text(inert(text)), "at": at.isoformat()},
        },
        now=now,
    )
    return event


async def _sync(
    *, session: AsyncSession, incident: Incident, now: datetime, request_id: str
) -> None:
    """Ask for the issue's labels and state to be brought to the record's (as it stands
    when delivered: a late delivery never brings back an older state)."""
    await enqueue(
        session,
        kind=ISSUE_SYNC,
        key=f"{key_prefix(incident.id)}sync:{request_id}",
        payload={"incident_id": incident.id},
        now=now,
    )


async def announce_status(
    *, session: AsyncSession, services: Services, text: str, key: str, fields: dict[str, str]
) -> Announcement | None:
    """The same news in the status channel (`incidents.status_channel`), when there is one."""
    channel = services.settings.incidents.status_channel
    if not channel:
        return None
    message = Announcement(channel_id=channel, text=text, fields=fields, idempotency_key=key)
    await enqueue(
        session,
        kind=ANNOUNCE,
        key=key,
        payload=message.model_dump(mode="json"),
        now=services.clock.now(),
    )
    return message


def _context(incident: Incident, declared: Declared, settings: Settings) -> str:
    """The description's "what changed" section, written at declaration."""
    hours = f"{settings.incidents.lookback_hours:g}"
    when = f"{as_utc(incident.created_at):{WHEN}}"
    lines = [
        "## What changed before it was declared",
        "",
        f"Marvin's record of the {hours} hours before {when}: flag changes, deploys, change "
        "requests and production-check overrides.",
        "",
    ]
    if declared.changes:
        lines += [f"- {e.at:{WHEN}}: {inert(e.text)}" for e in declared.changes]
        if declared.more:
            lines.append(f"- … and {declared.more} earlier change(s) in Marvin's history")
    else:
        lines.append("- Nothing was recorded.")
    lines += ["", "Flags on watch when it was declared:", ""]
    if declared.watchers:
        lines += [f"- @{w.handle}: {w.watching()}" for w in declared.watchers]
    else:
        lines.append("- None.")
    return "\n".join(lines)


def _header(incident: Incident) -> str:
    lines = [
        f"**Severity {incident.severity}** · declared by @{incident.declared_by} at "
        f"{as_utc(incident.created_at):{WHEN}} through Marvin ({shown_ref(incident)}) · "
        f"handler @{incident.handler}"
    ]
    if incident.service:
        lines[0] += f" · service {incident.service}"
    if incident.confidential_reason:
        lines.append(f"Confidential: {incident.confidential_reason}.")
    return "\n\n".join(lines)


async def declare(
    *,
    session: AsyncSession,
    services: Services,
    declaration: Declaration,
    now: datetime,
    request_id: str,
) -> Declared:
    """Record the incident, its "what changed" timeline, the issue to open, and a word to
    everyone still watching a change: all in the caller's transaction."""
    settings = services.settings
    incident = Incident(
        title=declaration.title,
        severity=declaration.severity,
        state=OPEN,
        declared_by=declaration.declared_by,
        service=declaration.service,
        labels=list(declaration.labels),
        handler=declaration.handler,
        handler_gitlab=declaration.handler_gitlab,
        confidential_reason=declaration.confidential_reason,
        marker=new_marker(),
        request_id=request_id,
        created_at=now,
        updated_at=now,
    )
    session.add(incident)
    await session.flush()

    since = now - timedelta(hours=settings.incidents.lookback_hours)
    every = await what_changed(session=session, since=since, until=now)
    keep = settings.incidents.max_timeline_entries
    changes = every[-keep:]
    watching = await watchers(session=session, now=now)
    declared = Declared(incident, changes, len(every) - len(changes), watching, since)

    # The issue first: its notes wait for it, in the order they were written.
    await enqueue(
        session,
        kind=ISSUE_CREATE,
        key=create_key(incident.id),
        payload={
            "incident_id": incident.id,
            "title": issue_title(incident),
            "header": _header(incident),
            "context": _context(incident, declared, settings),
            "marker": incident.marker,
            "confidential": incident.confidential_reason is not None,
            "assignee": incident.handler_gitlab,
            "template": settings.incidents.template,
        },
        now=now,
    )
    handler = f" Handler: @{incident.handler}." if incident.handler != incident.declared_by else ""
    timeline: list[tuple[str, str, datetime, str | None]] = [
        (
            "declared",
            f"Incident declared by @{incident.declared_by} (severity {incident.severity}): "
            f"{incident.title}.{handler}",
            now,
            incident.declared_by,
        )
    ]
    timeline += [(e.kind, e.text, e.at, e.who) for e in changes]
    timeline += [
        ("watch", f"@{w.handle} is watching {s} until {as_utc(u):%H:%M UTC}", now, w.handle)
        for w in watching
        for s, u in w.subjects
    ]
    for kind, text, at, who in timeline:
        await add_event(
            session=session,
            incident=incident,
            kind=kind,
            text=text,
            occurred_at=at,
            author=who,
            now=now,
            request_id=request_id,
        )
    for watcher in watching:
        await enqueue(
            session,
            kind=dm_kind(watcher.transport),
            key=f"{key_prefix(incident.id)}dm:{watcher.account_id}",
            payload={
                "user_id": watcher.chat_user_id,
                "text": (
                    f"{shown_ref(incident).capitalize()} (severity {incident.severity}, "
                    f"“{incident.title}”) was just declared by @{incident.declared_by}, and "
                    f"you're watching {watcher.watching()}. If your change could be "
                    f"involved, tell the handler @{incident.handler} (or add it to the "
                    f'timeline: `incident update {incident.id} "<what you know>"`).'
                ),
            },
            now=now,
        )
    return declared


async def update(
    *,
    session: AsyncSession,
    incident: Incident,
    text: str,
    author: str,
    now: datetime,
    request_id: str,
) -> IncidentEvent:
    incident.updated_at = now
    return await add_event(
        session=session,
        incident=incident,
        kind="update",
        text=f"@{author}: {text}",
        occurred_at=now,
        author=author,
        now=now,
        request_id=request_id,
    )


async def change_severity(
    *,
    session: AsyncSession,
    incident: Incident,
    severity: int,
    author: str,
    now: datetime,
    request_id: str,
) -> int:
    """Returns the severity it had."""
    was = incident.severity
    incident.severity = severity
    incident.updated_at = now
    await add_event(
        session=session,
        incident=incident,
        kind="severity",
        text=f"Severity changed from {was} to {severity} by @{author}.",
        occurred_at=now,
        author=author,
        now=now,
        request_id=request_id,
    )
    await _sync(session=session, incident=incident, now=now, request_id=request_id)
    return was


async def transition(
    *,
    session: AsyncSession,
    incident: Incident,
    state: str,
    author: str,
    now: datetime,
    request_id: str,
) -> None:
    """To `mitigated` or `resolved`: the record at once, the issue's labels (and, resolved,
    its closing) through the outbox."""
    assert state in (MITIGATED, RESOLVED)
    incident.state = state
    incident.updated_at = now
    if incident.mitigated_at is None:
        incident.mitigated_at = now
    if state == RESOLVED:
        incident.resolved_at = now
    await add_event(
        session=session,
        incident=incident,
        kind=state,
        text=f"{SHOWN_STATE[state].capitalize()} by @{author}.",
        occurred_at=now,
        author=author,
        now=now,
        request_id=request_id,
    )
    await _sync(session=session, incident=incident, now=now, request_id=request_id)


async def link_issue(
    *, session: AsyncSession, services: Services, incident_id: int, ref: str, url: str | None
) -> Incident | None:
    """The tracker answered: the issue's reference and link on the record, and said where
    the declaration was (the production channel, the status channel)."""
    incident = await session.get(Incident, incident_id)
    if incident is None or incident.issue_ref == ref:
        return incident
    incident.issue_ref = ref
    incident.issue_url = url
    incident.updated_at = services.clock.now()
    text = (
        f"{shown_ref(incident).capitalize()} (severity {incident.severity}, "
        f"“{incident.title}”) has its issue: {url or ref}"
    )
    fields = {"incident": str(incident.id), "issue": url or ref}
    key = f"{key_prefix(incident.id)}issue-link"
    message = Announcement(
        channel_id=services.settings.production_channel.id,
        text=text,
        fields=fields,
        idempotency_key=key,
    )
    await enqueue(
        session,
        kind=ANNOUNCE,
        key=key,
        payload=message.model_dump(mode="json"),
        now=services.clock.now(),
    )
    await announce_status(
        session=session, services=services, text=text, key=f"{key}:status", fields=fields
    )
    return incident


async def pin(
    *,
    session: AsyncSession,
    incident: Incident,
    text: str,
    occurred_at: datetime,
    source: str | None,
    pinned_by: str,
    now: datetime,
    request_id: str,
) -> IncidentEvent | None:
    """Something said in chat, on the timeline at the time it was said (a note with its
    `/timeline` event). A message (`source`) goes on once: None when it already is."""
    if source is not None and await pinned(session=session, incident_id=incident.id, source=source):
        return None
    try:
        # On PostgreSQL two pins of one message can both pass the check above, neither seeing
        # the other's uncommitted row: the second meets the unique constraint, and its
        # savepoint takes back its event and note, not the caller's whole transaction.
        async with session.begin_nested():
            event = await add_event(
                session=session,
                incident=incident,
                kind="chat",
                text=text,
                occurred_at=occurred_at,
                author=pinned_by,
                now=now,
                request_id=request_id,
            )
            if source is not None:
                session.add(
                    IncidentPin(
                        incident_id=incident.id,
                        source=source,
                        event_id=event.id,
                        pinned_by=pinned_by,
                        pinned_at=now,
                    )
                )
                await session.flush()
    except IntegrityError:
        return None
    incident.updated_at = now
    return event


# --- reading -------------------------------------------------------------------------------


async def pinned(*, session: AsyncSession, incident_id: int, source: str) -> bool:
    found = await session.scalar(
        select(IncidentPin.id).where(
            IncidentPin.incident_id == incident_id, IncidentPin.source == source
        )
    )
    return found is not None


async def latest_open(*, session: AsyncSession) -> Incident | None:
    """The incident declared last among those not resolved: the one chat is about."""
    return (
        await session.scalars(
            select(Incident)
            .where(Incident.state != RESOLVED)
            .order_by(Incident.created_at.desc(), Incident.id.desc())
            .limit(1)
        )
    ).first()


async def get(*, session: AsyncSession, incident_id: int) -> Incident | None:
    return await session.get(Incident, incident_id)


async def listing(*, session: AsyncSession, everything: bool, limit: int = 20) -> list[Incident]:
    """The incidents not yet resolved (with `everything`, the latest ones too), newest first."""
    query = select(Incident).order_by(Incident.id.desc()).limit(limit)
    if not everything:
        query = query.where(Incident.state != RESOLVED)
    return list(await session.scalars(query))


async def timeline(*, session: AsyncSession, incident_id: int) -> list[IncidentEvent]:
    rows = await session.scalars(
        select(IncidentEvent)
        .where(IncidentEvent.incident_id == incident_id)
        .order_by(IncidentEvent.occurred_at, IncidentEvent.id)
    )
    return list(rows)


async def deliveries(
    *,
    session: AsyncSession,
    incident_ids: Sequence[int],
    kinds: Sequence[str] = ISSUE_KINDS,
    prefix: Callable[[int], str] = key_prefix,
) -> dict[int, Deliveries]:
    """What of each incident's issue the outbox still holds (pending, or failed for good);
    of another record's, given its issue's `kinds` and its keys' `prefix` (`<what>:<id>:`)."""
    found: dict[int, Deliveries] = {i: Deliveries() for i in incident_ids}
    if not incident_ids:
        return found
    rows = await session.execute(
        select(
            OutboxMessage.idempotency_key,
            OutboxMessage.kind,
            OutboxMessage.status,
            OutboxMessage.last_error,
        )
        .where(
            OutboxMessage.kind.in_(list(kinds)),
            OutboxMessage.status.in_(("pending", "failed")),
            or_(*(OutboxMessage.idempotency_key.like(f"{prefix(i)}%") for i in incident_ids)),
        )
        .order_by(OutboxMessage.id)
    )
    for key, kind, status, error in rows:
        incident_id = int(key.split(":", 2)[1])
        seen = found[incident_id]
        counts = seen.pending if status == "pending" else seen.failed
        counts[kind] = counts.get(kind, 0) + 1
        if error and seen.last_error is None:
            seen.last_error = error  # the earliest's: what the others wait for
    return found
