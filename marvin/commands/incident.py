"""`incident`: declare an outage, keep its timeline, mitigate and resolve it, from chat.

An incident is Marvin's record first (`marvin.incidents`): recorded in the command's own
transaction, it locks changes to production at once (the change lock reads it), whatever
the issue tracker is doing. Its issue, notes and label changes follow through the outbox
(`marvin.issue_delivery`); the person is told at once that it is recorded, and
`incident list` / `incident show` say what is still on its way and give the link once the
tracker answered.

Decisions:
- `declare`, `severity`, `mitigated` and `resolve` are production changes: they decide
  whether production may be changed (the change lock), so they run in the production
  channel, in front of everyone, audited and announced; and every mandatory policy judges
  them. Their plans say honestly that they *lower*: an incident's state exposes no feature
  to anyone who lacked it. So the change lock and the availability rule never stop them:
  declaring is how an outage starts being handled, and mitigating one is how its lock ends
  (an open severity 1 incident would otherwise lock its own mitigation).
- `update` is a note on the timeline, not a production change: anyone registered may add
  one from anywhere (an incident channel, a DM).
- Who may: anyone in the roles registry declares (the registration gate asks that of
  every production change) and adds updates; changing the severity, mitigating and
  resolving are for the incident's handler or a production engineer (`production` role).
- Public by default: `--confidential "<reason>"` only with a reason from
  `incidents.confidential_reasons`, and the reason is audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import Field, field_validator
from sqlalchemy.ext.asyncio import AsyncSession

from marvin import incidents
from marvin.accounts import Caller
from marvin.clock import as_utc, utc_moment
from marvin.commands.access_common import find_person
from marvin.commands.base import (
    Change,
    Context,
    Done,
    Handler,
    Impact,
    Moved,
    Outcome,
    Plan,
    ProductionChange,
)
from marvin.incidents import OPEN, RESOLVED, SHOWN_STATE, Declaration, Deliveries
from marvin.policies.roles import PRODUCTION_ROLE
from marvin.spec import Arg, CommandModel, CommandSpec, Opt
from marvin.store.tables import Incident, IncidentEvent

MAX_LABELS = 10
# How much of a timeline `incident show` prints, and of "what changed" an announcement.
SHOW_EVENTS = 30
ANNOUNCE_CHANGES = 5


def _one_line(value: str) -> str:
    return " ".join(value.split())


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _username(value: str) -> str:
    name = value.strip().removeprefix("@")
    if not name or len(name) > 255 or not all(c.isalnum() or c in "._-" for c in name):
        raise ValueError("name a person by their handle or GitLab username, like @alice")
    return name


class IncidentDeclare(CommandModel):
    title: str = Field(min_length=3, max_length=200)
    severity: int = Field(ge=1, le=4)
    service: str | None = Field(None, min_length=1, max_length=64)
    labels: tuple[str, ...] = ()
    confidential: str | None = Field(None, min_length=2, max_length=500)
    assign: str | None = None

    @field_validator("title", mode="before")
    @classmethod
    def _title(cls, value: Any) -> Any:
        return _one_line(value) if isinstance(value, str) else value

    @field_validator("service")
    @classmethod
    def _service(cls, value: str | None) -> str | None:
        if value is not None and not all(c.isalnum() or c in "._-" for c in value):
            raise ValueError("a service is letters, digits, '.', '_' or '-'")
        return value

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        labels = tuple(dict.fromkeys(_one_line(p) for p in value.split(",") if p.strip()))
        if len(labels) > MAX_LABELS:
            raise ValueError(f"at most {MAX_LABELS} labels")
        if any(len(label) > 100 for label in labels):
            raise ValueError("a label is at most 100 characters")
        return labels

    @field_validator("confidential")
    @classmethod
    def _reason(cls, value: str | None) -> str | None:
        return _one_line(value) if value is not None else None

    @field_validator("assign")
    @classmethod
    def _assign(cls, value: str | None) -> str | None:
        return _username(value) if value is not None else None


class IncidentList(CommandModel):
    all: bool = False


class _ById(CommandModel):
    id: int = Field(ge=1, le=2_000_000_000)

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> Any:
        return value.strip().removeprefix("#") if isinstance(value, str) else value


class IncidentShow(_ById):
    pass


class IncidentUpdate(_ById):
    text: str = Field(min_length=1, max_length=2000)


class IncidentTimeline(CommandModel):
    text: str = Field(min_length=1, max_length=2000)
    incident: int | None = Field(None, ge=1, le=2_000_000_000)
    at: datetime | None = None
    # The chat message it comes from (a pinned one), so that it goes on once.
    message: str | None = Field(None, min_length=3, max_length=200)

    @field_validator("incident", mode="before")
    @classmethod
    def _incident(cls, value: Any) -> Any:
        return value.strip().removeprefix("#") if isinstance(value, str) else value

    @field_validator("at", mode="before")
    @classmethod
    def _at(cls, value: Any) -> Any:
        return utc_moment(value, "2026-03-02 10:05") if isinstance(value, str) else value


class IncidentSeverity(_ById):
    severity: int = Field(ge=1, le=4)


class IncidentMitigated(_ById):
    pass


class IncidentResolve(_ById):
    pass


# --- plans ---------------------------------------------------------------------------------


def _impact(target: str) -> Impact:
    # An incident's state exposes no feature to anyone: it lowers, in the policies' terms.
    return Impact(environment="production", lowers=True, kind="other", target=target)


@dataclass(frozen=True)
class DeclarePlan(ProductionChange):
    declaration: Declaration

    def impact(self) -> Impact:
        return _impact("a new incident")

    def summary(self) -> str:
        d = self.declaration
        return f"incident declare (severity {d.severity}): {d.title}"


@dataclass(frozen=True)
class IncidentPlan(ProductionChange):
    """A change of an incident's severity or state, decided on the state it had then."""

    incident_id: int
    action: Literal["severity", "mitigated", "resolved"]
    state: str  # as it was planned on: reserving checks it still is
    severity: int
    new_severity: int | None = None

    def impact(self) -> Impact:
        return _impact(f"incident {self.incident_id}")

    def summary(self) -> str:
        if self.action == "severity":
            return f"incident severity {self.incident_id} {self.new_severity}"
        return f"incident {self.action} {self.incident_id}"


@dataclass(frozen=True)
class UpdatePlan(Change):
    incident_id: int
    text: str

    def summary(self) -> str:
        return f"incident update {self.incident_id}"


# --- helpers -------------------------------------------------------------------------------


async def _find(ctx: Context, incident_id: int) -> Incident | Done:
    async with ctx.read() as session:
        incident = await incidents.get(session=session, incident_id=incident_id)
    if incident is None:
        return Done(f"There is no incident {incident_id}.", False, "not_found")
    return incident


def _may_steer(caller: Caller, incident: Incident) -> bool:
    return caller.handle == incident.handler or caller.has_role(PRODUCTION_ROLE)


def _not_yours(incident: Incident, what: str) -> Done:
    return Done(
        f"Only the incident's handler (@{incident.handler}) or a production engineer (the "
        f"`{PRODUCTION_ROLE}` role) may {what} {incidents.shown_ref(incident)}.",
        False,
        "denied",
    )


def _tracker(ctx: Context) -> str:
    return "GitLab" if ctx.services.issues.name == "gitlab" else "the issue tracker"


def _lock_line(incident: Incident, ctx: Context) -> str:
    if incidents.blocks(incident, ctx.services.settings):
        return "Changes to production are locked until it is mitigated."
    return ""


def _fields(incident: Incident) -> dict[str, str]:
    return {"incident": str(incident.id), "severity": str(incident.severity)}


async def _status(session: AsyncSession, ctx: Context, incident: Incident, text: str) -> None:
    await incidents.announce_status(
        session=session,
        services=ctx.services,
        text=text,
        key=f"status:{ctx.invocation.request_id}",
        fields={**_fields(incident), "by": ctx.caller.handle},
    )


def _issue_line(incident: Incident, delivery: Deliveries, tracker: str) -> str:
    if incident.issue_url or incident.issue_ref:
        link = incident.issue_url or incident.issue_ref
        line = f"Issue: {link}"
    else:
        line = f"Issue: not opened in {tracker} yet"
    return line + delivery.suffix()


# --- declare -------------------------------------------------------------------------------


class DeclareHandler(Handler[IncidentDeclare]):
    async def plan(self, cmd: IncidentDeclare, ctx: Context) -> Plan:
        caller = ctx.caller
        if caller.person is None:
            return Done(
                "I can't find you in the roles registry, so I can't record you as an "
                "incident's declarer. Ask to be added to the directory.",
                False,
                "denied",
            )
        settings = ctx.services.settings.incidents
        reason = None
        if cmd.confidential is not None:
            allowed = {r.lower(): r for r in settings.confidential_reasons}
            reason = allowed.get(cmd.confidential.lower())
            if reason is None:
                listed = ", ".join(f"“{r}”" for r in settings.confidential_reasons) or "none"
                return Done(
                    "Incidents are public by default; one is confidential only for a reason "
                    f"on the exception list ({listed}), and “{cmd.confidential}” isn't on it.",
                    False,
                    "usage",
                )
        handler, gitlab = caller.handle, caller.person.gitlab_username
        if cmd.assign is not None:
            found = await _person(ctx, cmd.assign)
            if found is None:
                return Done(
                    f"I don't know @{cmd.assign}: name the handler by their handle in the "
                    "roles registry or their GitLab username.",
                    False,
                    "usage",
                )
            handler, gitlab = found
        return DeclarePlan(
            Declaration(
                title=cmd.title,
                severity=cmd.severity,
                declared_by=caller.handle,
                handler=handler,
                handler_gitlab=gitlab,
                service=cmd.service,
                labels=cmd.labels,
                confidential_reason=reason,
            )
        )

    async def record(
        self, plan: Change, session: AsyncSession, ctx: Context, applied: dict[str, Any]
    ) -> Outcome:
        assert isinstance(plan, DeclarePlan)
        declared = await incidents.declare(
            session=session,
            services=ctx.services,
            declaration=plan.declaration,
            now=ctx.now,
            request_id=ctx.invocation.request_id,
        )
        incident = declared.incident
        ref = incidents.shown_ref(incident)
        hours = f"{ctx.services.settings.incidents.lookback_hours:g}"
        lock = _lock_line(incident, ctx)
        handler = f"Handler: @{incident.handler}."
        changed = _changes_line(declared, hours)
        watching = _watching_line(declared)
        await _status(
            session,
            ctx,
            incident,
            f"@{incident.declared_by} declared {ref} (severity {incident.severity}): "
            f"“{incident.title}”. {handler} Updates follow here.",
        )
        confidential = (
            f"It is confidential ({incident.confidential_reason})."
            if incident.confidential_reason
            else ""
        )
        tracker = _tracker(ctx)
        text = " ".join(
            part
            for part in (
                f"Recorded {ref} (severity {incident.severity}): {incident.title}. {handler}",
                lock,
                confidential,
                f"Its issue is on its way to {tracker}; `incident show {incident.id}` gives "
                f"the link once {tracker} answers.",
                changed,
                watching,
            )
            if part
        )
        announcement = " ".join(
            part
            for part in (
                f"🚨 @{incident.declared_by} declared {ref} (severity {incident.severity}): "
                f"“{incident.title}”. {handler}",
                lock,
                changed,
                watching,
            )
            if part
        ).rstrip(".")
        return Outcome(
            text=text,
            announcement=announcement,
            fields=_fields(incident),
            details={
                "incident": incident.id,
                "confidential_reason": incident.confidential_reason,
                "handler": incident.handler,
                "changes": len(declared.changes) + declared.more,
                "watchers": [w.handle for w in declared.watchers],
            },
        )


async def _person(ctx: Context, name: str) -> tuple[str, str | None] | None:
    """A handle and GitLab username for `name`: a handle in the registry, or a GitLab
    username (chats name people by their GitLab username)."""
    person = await find_person(ctx, name)
    return (person.handle, person.gitlab_username) if person else None


def _changes_line(declared: incidents.Declared, hours: str) -> str:
    changes = declared.changes
    if not changes:
        return f"Marvin recorded no change in the {hours} hours before."
    shown = [f"{_short(c.text)} ({c.at:%H:%M UTC})" for c in reversed(changes[-ANNOUNCE_CHANGES:])]
    more = len(changes) + declared.more - len(shown)
    listed = "; ".join(shown) + (f"; and {more} more (in the issue)" if more else "")
    return f"What changed in the {hours} hours before, newest first: {listed}."


def _watching_line(declared: incidents.Declared) -> str:
    if not declared.watchers:
        return ""
    listed = "; ".join(f"@{w.handle} ({w.watching()})" for w in declared.watchers)
    return f"Still on watch, and told: {listed}."


# --- severity, mitigated, resolve ----------------------------------------------------------


class _Steer(Handler[Any]):
    """What the severity and state changes share: permission, reservation, record."""

    async def reserve(self, plan: Change, session: AsyncSession, ctx: Context) -> None:
        assert isinstance(plan, IncidentPlan)
        incident = await session.get(Incident, plan.incident_id, with_for_update=True)
        if incident is None or (incident.state, incident.severity) != (plan.state, plan.severity):
            raise Moved

    async def record(
        self, plan: Change, session: AsyncSession, ctx: Context, applied: dict[str, Any]
    ) -> Outcome:
        assert isinstance(plan, IncidentPlan)
        incident = await session.get(Incident, plan.incident_id)
        assert incident is not None  # reserved just before
        who = ctx.caller.handle
        ref = incidents.shown_ref(incident)
        request_id = ctx.invocation.request_id
        if plan.action == "severity":
            assert plan.new_severity is not None
            was = await incidents.change_severity(
                session=session,
                incident=incident,
                severity=plan.new_severity,
                author=who,
                now=ctx.now,
                request_id=request_id,
            )
            news = f"@{who} changed {ref}'s severity from {was} to {incident.severity}"
            locking = ctx.services.settings.change_lock.incident_severities
            if incidents.blocks(incident, ctx.services.settings):
                lock = "Changes to production are locked until it is mitigated."
            elif plan.state == OPEN and plan.severity in locking:
                lock = "It no longer locks changes to production."
            else:
                lock = ""
        else:
            await incidents.transition(
                session=session,
                incident=incident,
                state=plan.action,
                author=who,
                now=ctx.now,
                request_id=request_id,
            )
            news = f"@{who} marked {ref} {SHOWN_STATE[plan.action]}"
            was_locking = plan.state == OPEN and (
                plan.severity in ctx.services.settings.change_lock.incident_severities
            )
            lock = "Changes to production are no longer locked by it." if was_locking else ""
            if plan.action == RESOLVED:
                lock = " ".join(p for p in (lock, "Its issue will be closed.") if p)
        title = f"(severity {incident.severity}, “{incident.title}”)"
        await _status(session, ctx, incident, f"{news} {title}.")
        return Outcome(
            text=" ".join(p for p in (f"{news.replace(f'@{who} ', 'You ', 1)}.", lock) if p),
            announcement=" ".join(p for p in (f"{news} {title}.", lock) if p).rstrip("."),
            fields=_fields(incident),
            details={"incident": incident.id, "action": plan.action, "from": plan.state},
        )


class SeverityHandler(_Steer):
    async def plan(self, cmd: IncidentSeverity, ctx: Context) -> Plan:
        incident = await _find(ctx, cmd.id)
        if isinstance(incident, Done):
            return incident
        if not _may_steer(ctx.caller, incident):
            return _not_yours(incident, "change the severity of")
        if incident.state == RESOLVED:
            return Done(
                f"{incidents.shown_ref(incident).capitalize()} is resolved.", False, "usage"
            )
        if incident.severity == cmd.severity:
            return Done(
                f"{incidents.shown_ref(incident).capitalize()} is already severity "
                f"{cmd.severity}; nothing changed."
            )
        return IncidentPlan(
            incident.id, "severity", incident.state, incident.severity, cmd.severity
        )


class _TransitionHandler(_Steer):
    target: Literal["mitigated", "resolved"]
    verb: str

    async def plan(self, cmd: _ById, ctx: Context) -> Plan:
        incident = await _find(ctx, cmd.id)
        if isinstance(incident, Done):
            return incident
        if not _may_steer(ctx.caller, incident):
            return _not_yours(incident, self.verb)
        ref = incidents.shown_ref(incident).capitalize()
        if incident.state == self.target or incident.state == RESOLVED:
            return Done(f"{ref} is already {SHOWN_STATE[incident.state]}; nothing changed.")
        return IncidentPlan(incident.id, self.target, incident.state, incident.severity)


class MitigatedHandler(_TransitionHandler):
    target = "mitigated"
    verb = "mitigate"


class ResolveHandler(_TransitionHandler):
    target = "resolved"
    verb = "resolve"


# --- update --------------------------------------------------------------------------------


class UpdateHandler(Handler[IncidentUpdate]):
    async def plan(self, cmd: IncidentUpdate, ctx: Context) -> Plan:
        if ctx.caller.person is None:
            return Done(
                "I can't find you in the roles registry, so I can't put your name on an "
                "incident's timeline. Ask to be added to the directory.",
                False,
                "denied",
            )
        incident = await _find(ctx, cmd.id)
        if isinstance(incident, Done):
            return incident
        return UpdatePlan(incident.id, _one_line(cmd.text))

    async def record(
        self, plan: Change, session: AsyncSession, ctx: Context, applied: dict[str, Any]
    ) -> Outcome:
        assert isinstance(plan, UpdatePlan)
        incident = await session.get(Incident, plan.incident_id)
        if incident is None:
            return Outcome(f"There is no incident {plan.incident_id} any more.")
        who = ctx.caller.handle
        await incidents.update(
            session=session,
            incident=incident,
            text=plan.text,
            author=who,
            now=ctx.now,
            request_id=ctx.invocation.request_id,
        )
        ref = incidents.shown_ref(incident)
        await _status(session, ctx, incident, f"Update on {ref} from @{who}: {plan.text}")
        return Outcome(
            f"Added to {ref}'s timeline; it goes on its issue as a note.",
            fields=_fields(incident),
            details={"incident": incident.id},
        )


# --- timeline (a message from chat, pinned) --------------------------------------------------

# A clock a little ahead of ours is not "the future".
_SKEW = timedelta(minutes=2)


@dataclass(frozen=True)
class TimelinePlan(Change):
    incident_id: int
    text: str
    at: datetime
    message: str | None

    def summary(self) -> str:
        return f"incident timeline {self.incident_id}"


class TimelineHandler(Handler[IncidentTimeline]):
    async def plan(self, cmd: IncidentTimeline, ctx: Context) -> Plan:
        if ctx.caller.person is None:
            return Done(
                "I can't find you in the roles registry, so I can't put your name on an "
                "incident's timeline. Ask to be added to the directory.",
                False,
                "denied",
            )
        if cmd.incident is not None:
            incident = await _find(ctx, cmd.incident)
            if isinstance(incident, Done):
                return incident
        else:
            async with ctx.read() as session:
                found = await incidents.latest_open(session=session)
            if found is None:
                return Done(
                    "No incident is open, so there is no timeline to add that to.",
                    False,
                    "not_found",
                )
            incident = found
        ref = incidents.shown_ref(incident)
        at = as_utc(cmd.at) if cmd.at is not None else ctx.now
        if at > ctx.now + _SKEW:
            return Done(f"{at:%Y-%m-%d %H:%M UTC} is in the future.", False, "usage")
        if cmd.message is not None:
            async with ctx.read() as session:
                if await incidents.pinned(
                    session=session, incident_id=incident.id, source=cmd.message
                ):
                    return Done(f"That message is already on {ref}'s timeline.")
        return TimelinePlan(incident.id, _one_line(cmd.text), at, cmd.message)

    async def record(
        self, plan: Change, session: AsyncSession, ctx: Context, applied: dict[str, Any]
    ) -> Outcome:
        assert isinstance(plan, TimelinePlan)
        incident = await session.get(Incident, plan.incident_id)
        if incident is None:
            return Outcome(f"There is no incident {plan.incident_id} any more.")
        who = ctx.caller.handle
        ref = incidents.shown_ref(incident)
        event = await incidents.pin(
            session=session,
            incident=incident,
            text=f"{plan.text} (added by @{who})",
            occurred_at=plan.at,
            source=plan.message,
            pinned_by=who,
            now=ctx.now,
            request_id=ctx.invocation.request_id,
        )
        if event is None:  # pinned by someone else meanwhile
            return Outcome(f"That message is already on {ref}'s timeline.")
        return Outcome(
            f"Added to {ref}'s timeline at {plan.at:%H:%M UTC}; it goes on its issue as a "
            "timeline note.",
            fields=_fields(incident),
            details={"incident": incident.id, "message": plan.message},
        )


# --- list, show ----------------------------------------------------------------------------


class ListHandler(Handler[IncidentList]):
    async def plan(self, cmd: IncidentList, ctx: Context) -> Plan:
        async with ctx.read() as session:
            rows = await incidents.listing(session=session, everything=cmd.all)
            pending = await incidents.deliveries(session=session, incident_ids=[r.id for r in rows])
        if not rows:
            return Done("No incidents recorded." if cmd.all else "No open incidents.")
        tracker = _tracker(ctx)
        head = "Latest incidents:" if cmd.all else f"{len(rows)} open incident(s):"
        lines = [head]
        for row in rows:
            lock = " · locks changes" if incidents.blocks(row, ctx.services.settings) else ""
            lines.append(
                f"• {row.id}: severity {row.severity}, {SHOWN_STATE[row.state]}{lock} · "
                f"{row.title} · handler @{row.handler or row.declared_by} · "
                f"declared {as_utc(row.created_at):%Y-%m-%d %H:%M UTC} · "
                + _issue_line(row, pending[row.id], tracker)
            )
        return Done("\n".join(lines))


class ShowHandler(Handler[IncidentShow]):
    async def plan(self, cmd: IncidentShow, ctx: Context) -> Plan:
        async with ctx.read() as session:
            incident = await incidents.get(session=session, incident_id=cmd.id)
            if incident is None:
                return Done(f"There is no incident {cmd.id}.", False, "not_found")
            events = await incidents.timeline(session=session, incident_id=incident.id)
            pending = await incidents.deliveries(session=session, incident_ids=[incident.id])
        return Done(_show(incident, events, pending[incident.id], ctx))


def _show(
    incident: Incident, events: list[IncidentEvent], delivery: Deliveries, ctx: Context
) -> str:
    ref = incidents.shown_ref(incident).capitalize()
    facts = [
        f"declared {as_utc(incident.created_at):%Y-%m-%d %H:%M UTC} by @{incident.declared_by}",
        f"handler @{incident.handler or incident.declared_by}",
    ]
    if incident.service:
        facts.append(f"service {incident.service}")
    if incident.labels:
        facts.append("labels " + ", ".join(incident.labels))
    if incident.confidential_reason:
        facts.append(f"confidential ({incident.confidential_reason})")
    if incident.mitigated_at and incident.state != OPEN:
        facts.append(f"mitigated {as_utc(incident.mitigated_at):%Y-%m-%d %H:%M UTC}")
    if incident.resolved_at:
        facts.append(f"resolved {as_utc(incident.resolved_at):%Y-%m-%d %H:%M UTC}")
    lines = [
        f"{ref}, severity {incident.severity}, {SHOWN_STATE[incident.state]}: {incident.title}",
        " · ".join(facts),
        _issue_line(incident, delivery, _tracker(ctx)),
    ]
    lock = _lock_line(incident, ctx)
    if lock:
        lines.append(lock)
    if events:
        shown = events[-SHOW_EVENTS:]
        earlier = len(events) - len(shown)
        lines.append(f"Timeline ({earlier} earlier entries not shown):" if earlier else "Timeline:")
        lines += [f"• {as_utc(e.occurred_at):%Y-%m-%d %H:%M UTC} {e.text}" for e in shown]
    return "\n".join(lines)


# --- specs ---------------------------------------------------------------------------------

_ID = Arg("id", "the incident's number (from `incident list`)")

SPECS = (
    CommandSpec(
        "incident",
        "declare",
        "Declare an outage: recorded at once (severity 1 and 2 lock changes to production), "
        "with an issue of type incident in the tracker and the changes Marvin saw before it.",
        IncidentDeclare,
        DeclareHandler(),
        (Arg("title", "what is broken, in a few words", rest=True),),
        (
            Opt("severity", "1 (the worst) to 4", "n"),
            Opt("service", "the service affected (a Service:: label)", "name"),
            Opt("labels", "more labels for the issue, comma-separated", "a,b"),
            Opt("confidential", "only for a reason on the exception list (audited)", "reason"),
            Opt("assign", "who handles it (default: you)", "@person"),
        ),
        production_change=True,
        plans=(DeclarePlan,),
        examples=('incident declare "Checkout returns 500s" --severity 2 --service web',),
    ),
    CommandSpec(
        "incident",
        "list",
        "The incidents not resolved yet (`--all`: the latest ones), with their issues.",
        IncidentList,
        ListHandler(),
        (),
        (Opt("all", "resolved ones too"),),
    ),
    CommandSpec(
        "incident",
        "show",
        "One incident: its state, its issue (or what is still on its way) and its timeline.",
        IncidentShow,
        ShowHandler(),
        (_ID,),
    ),
    CommandSpec(
        "incident",
        "update",
        "Add to an incident's timeline (a note on its issue).",
        IncidentUpdate,
        UpdateHandler(),
        (_ID, Arg("text", "what happened or was found", rest=True)),
        plans=(UpdatePlan,),
        examples=('incident update 3 "Rolled back the deploy; errors dropping"',),
    ),
    CommandSpec(
        "incident",
        "timeline",
        "Put something on an incident's timeline at the time it happened (in Slack, a "
        ":pushpin: reaction on a message does it).",
        IncidentTimeline,
        TimelineHandler(),
        (Arg("text", "what happened", rest=True),),
        (
            Opt("incident", "which (default: the one declared last that is not resolved)", "id"),
            Opt("at", "when it happened, UTC (default: now)", "time"),
            Opt("message", "the chat message it comes from, so it goes on once", "key"),
        ),
        plans=(TimelinePlan,),
        examples=(
            'incident timeline "Error rate back to normal" --incident 3 --at "2026-03-02 10:42"',
        ),
    ),
    CommandSpec(
        "incident",
        "severity",
        "Change an incident's severity (its handler or a production engineer).",
        IncidentSeverity,
        SeverityHandler(),
        (_ID, Arg("severity", "1 (the worst) to 4")),
        production_change=True,
        plans=(IncidentPlan,),
    ),
    CommandSpec(
        "incident",
        "mitigated",
        "Mark an incident mitigated: it no longer locks changes (its handler or a production "
        "engineer).",
        IncidentMitigated,
        MitigatedHandler(),
        (_ID,),
        production_change=True,
        plans=(IncidentPlan,),
    ),
    CommandSpec(
        "incident",
        "resolve",
        "Resolve an incident and close its issue (its handler or a production engineer).",
        IncidentResolve,
        ResolveHandler(),
        (_ID,),
        production_change=True,
        plans=(IncidentPlan,),
    ),
)
