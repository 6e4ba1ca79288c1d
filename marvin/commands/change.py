"""`change`: change requests, a planned change to production with its own issue.

`change request "<title>" --criticality 1..4 [--at <time>]` records it and opens its issue
from the `change_checklist` template (through the outbox, like an incident's);
`change start <id>` and `change done <id>` move it, and while a criticality 1 or 2 change
runs, its issue carries the blocking labels and the change lock stops other changes.

Decisions:
- `request` is a record, not yet a change to production: anyone in the roles registry.
- `start` is a production change (it may lock everything else), so every mandatory policy
  judges it: it waits while a serious incident is open or another critical change runs,
  unless overridden. `done` only ever releases a lock: it lowers, and is never stopped.
- Who may start and finish: whoever requested it, or a production engineer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, field_validator
from sqlalchemy.ext.asyncio import AsyncSession

from marvin import changes, incidents
from marvin.clock import as_utc, utc_moment
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
from marvin.incidents import Deliveries
from marvin.policies.roles import PRODUCTION_ROLE
from marvin.spec import Arg, CommandModel, CommandSpec, Opt
from marvin.store.tables import ChangeRequest


class ChangeRequestCmd(CommandModel):
    title: str = Field(min_length=3, max_length=200)
    criticality: int = Field(ge=1, le=4)
    at: datetime | None = None

    @field_validator("title", mode="before")
    @classmethod
    def _title(cls, value: Any) -> Any:
        return " ".join(value.split()) if isinstance(value, str) else value

    @field_validator("at", mode="before")
    @classmethod
    def _at(cls, value: Any) -> Any:
        return utc_moment(value, "2026-03-02 22:00") if isinstance(value, str) else value


class _ById(CommandModel):
    id: int = Field(ge=1, le=2_000_000_000)
    ignore_production_check: str | None = Field(None, min_length=3, max_length=500)

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> Any:
        return value.strip().removeprefix("#") if isinstance(value, str) else value


class ChangeStart(_ById):
    pass


class ChangeDone(_ById):
    pass


class ChangeList(CommandModel):
    pass


@dataclass(frozen=True)
class RequestPlan(Change):
    title: str
    criticality: int
    at: datetime | None

    def summary(self) -> str:
        return f"change request (C{self.criticality}): {self.title}"


@dataclass(frozen=True)
class MovePlan(ProductionChange):
    change_id: int
    title: str
    criticality: int
    action: Literal["running", "done"]
    state: str  # as planned on: reserving checks it still is
    override_reason: str | None = None

    def impact(self) -> Impact:
        return Impact(
            environment="production",
            # Finishing only releases; starting may lock everything else.
            lowers=self.action == changes.DONE,
            kind="other",
            target=f"change {self.change_id}",
            override_reason=self.override_reason,
        )

    def summary(self) -> str:
        verb = "start" if self.action == changes.RUNNING else "done"
        return f"change {verb} {self.change_id}"


def _issue_line(change: ChangeRequest, delivery: Deliveries) -> str:
    line = (
        f"Issue: {change.issue_url or change.issue_ref}"
        if change.issue_url or change.issue_ref
        else "Issue: on its way to the tracker"
    )
    # Only trouble is news: that it is on its way, the line says.
    return line + (delivery.suffix() if delivery.failed or delivery.last_error else "")


async def _deliveries(session: AsyncSession, ids: list[int]) -> dict[int, Deliveries]:
    """What of each change's issue is still on its way, as an incident's is told."""
    return await incidents.deliveries(
        session=session, incident_ids=ids, kinds=changes.KINDS, prefix=changes.key_prefix
    )


class RequestHandler(Handler[ChangeRequestCmd]):
    async def plan(self, cmd: ChangeRequestCmd, ctx: Context) -> Plan:
        if ctx.caller.person is None:
            return Done(
                "I can't find you in the roles registry, so I can't record your change "
                "request. Ask to be added to the directory.",
                False,
                "denied",
            )
        if cmd.at is not None and as_utc(cmd.at) < ctx.now:
            return Done(f"{as_utc(cmd.at):%Y-%m-%d %H:%M UTC} is in the past.", False, "usage")
        return RequestPlan(cmd.title, cmd.criticality, as_utc(cmd.at) if cmd.at else None)

    async def record(
        self, plan: Change, session: AsyncSession, ctx: Context, applied: dict[str, Any]
    ) -> Outcome:
        assert isinstance(plan, RequestPlan)
        change = await changes.request(
            session=session,
            title=plan.title,
            criticality=plan.criticality,
            scheduled_at=plan.at,
            requested_by=ctx.caller.handle,
            now=ctx.now,
            request_id=ctx.invocation.request_id,
        )
        ref = changes.shown_ref(change)
        when = f" for {plan.at:%Y-%m-%d %H:%M UTC}" if plan.at else ""
        locks = (
            " While it runs, other changes to production are locked."
            if plan.criticality in changes.BLOCKING
            else ""
        )
        return Outcome(
            text=(
                f"Recorded {ref} (C{plan.criticality}){when}: {plan.title}. Its issue, from the "
                f"change checklist, is on its way. `change start {change.id}` when you begin."
                + locks
            ),
            announcement=(
                f"@{ctx.caller.handle} requested {ref} (C{plan.criticality}){when}: “{plan.title}”"
            ),
            fields={"change": str(change.id), "criticality": str(plan.criticality)},
            details={"change": change.id},
        )


class _MoveHandler(Handler[Any]):
    target: Literal["running", "done"]
    verb: str

    async def plan(self, cmd: _ById, ctx: Context) -> Plan:
        async with ctx.read() as session:
            change = await session.get(ChangeRequest, cmd.id)
        if change is None:
            return Done(f"There is no change {cmd.id}.", False, "not_found")
        ref = changes.shown_ref(change)
        if not (ctx.caller.handle == change.requested_by or ctx.caller.has_role(PRODUCTION_ROLE)):
            return Done(
                f"Only whoever requested {ref} (@{change.requested_by}) or a production "
                f"engineer (the `{PRODUCTION_ROLE}` role) may {self.verb} it.",
                False,
                "denied",
            )
        allowed = {changes.RUNNING: (changes.REQUESTED,), changes.DONE: (changes.RUNNING,)}
        if change.state not in allowed[self.target]:
            shown = {changes.REQUESTED: "not started", changes.RUNNING: "under way"}
            return Done(
                f"{ref.capitalize()} is {shown.get(change.state, change.state)}; nothing changed.",
                change.state == self.target,
                "result" if change.state == self.target else "usage",
            )
        return MovePlan(
            change.id,
            change.title,
            change.criticality,
            self.target,
            change.state,
            cmd.ignore_production_check,
        )

    async def reserve(self, plan: Change, session: AsyncSession, ctx: Context) -> None:
        assert isinstance(plan, MovePlan)
        change = await session.get(ChangeRequest, plan.change_id, with_for_update=True)
        if change is None or change.state != plan.state:
            raise Moved

    async def record(
        self, plan: Change, session: AsyncSession, ctx: Context, applied: dict[str, Any]
    ) -> Outcome:
        assert isinstance(plan, MovePlan)
        change = await session.get(ChangeRequest, plan.change_id)
        assert change is not None  # reserved just before
        # (Read before the move adds its own label change, which is always on its way.)
        delivery = (await _deliveries(session, [change.id]))[change.id]
        await changes.move(
            session=session,
            change=change,
            state=plan.action,
            who=ctx.caller.handle,
            now=ctx.now,
            key=ctx.invocation.request_id,
        )
        ref = changes.shown_ref(change)
        critical = change.criticality in changes.BLOCKING
        if plan.action == changes.RUNNING:
            news = f"started {ref} (C{change.criticality}): “{change.title}”"
            lock = "Changes to production are locked until it is done." if critical else ""
        else:
            news = f"finished {ref} (C{change.criticality}): “{change.title}”"
            lock = "Changes to production are no longer locked by it." if critical else ""
        return Outcome(
            text=" ".join(p for p in (f"You {news}.", lock, _issue_line(change, delivery)) if p),
            announcement=" ".join(p for p in (f"@{ctx.caller.handle} {news}.", lock) if p).rstrip(
                "."
            ),
            fields={"change": str(change.id), "criticality": str(change.criticality)},
            details={"change": change.id, "action": plan.action},
        )


class StartHandler(_MoveHandler):
    target = "running"
    verb = "start"


class DoneHandler(_MoveHandler):
    target = "done"
    verb = "finish"


class ListHandler(Handler[ChangeList]):
    async def plan(self, cmd: ChangeList, ctx: Context) -> Plan:
        async with ctx.read() as session:
            rows = await changes.listing(session=session)
            delivery = await _deliveries(session, [row.id for row in rows])
        if not rows:
            return Done("No change requests are open.")
        lines = [f"{len(rows)} change request(s) not done:"]
        for row in rows:
            state = {changes.REQUESTED: "requested", changes.RUNNING: "under way"}[row.state]
            lock = " · locks changes" if changes.blocks(row) else ""
            when = (
                f" · for {as_utc(row.scheduled_at):%Y-%m-%d %H:%M UTC}" if row.scheduled_at else ""
            )
            lines.append(
                f"• {row.id}: C{row.criticality}, {state}{lock}{when} · {row.title} · "
                f"@{row.requested_by} · {_issue_line(row, delivery[row.id])}"
            )
        return Done("\n".join(lines))


_ID = Arg("id", "the change's number (from `change list`)")
_OVERRIDE = Opt(
    "ignore-production-check", "start despite the change lock, for this reason", "reason"
)

SPECS = (
    CommandSpec(
        "change",
        "request",
        "Ask for a change to production: recorded, with an issue from the change checklist.",
        ChangeRequestCmd,
        RequestHandler(),
        (Arg("title", "what will be changed", rest=True),),
        (
            Opt("criticality", "1 (the most critical) to 4", "n"),
            Opt("at", "when it is planned, UTC", "time"),
        ),
        plans=(RequestPlan,),
        examples=(
            'change request "Upgrade PostgreSQL to 16" --criticality 2 --at "2026-03-05 22:00"',
        ),
    ),
    CommandSpec(
        "change",
        "start",
        "Begin a requested change (criticality 1 and 2 lock other changes until it is done).",
        ChangeStart,
        StartHandler(),
        (_ID,),
        (_OVERRIDE,),
        production_change=True,
        plans=(MovePlan,),
    ),
    CommandSpec(
        "change",
        "done",
        "Finish a change: its issue is closed and the lock it held released.",
        ChangeDone,
        DoneHandler(),
        (_ID,),
        production_change=True,
        plans=(MovePlan,),
    ),
    CommandSpec(
        "change",
        "list",
        "The change requests not done yet, with their issues.",
        ChangeList,
        ListHandler(),
        (),
    ),
)
