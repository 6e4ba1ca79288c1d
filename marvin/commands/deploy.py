"""`deploy`: book, move, cancel, start and finish deploy slots; the queue and the locks.

Slots are Marvin's calendar: each booked window is judged by the deploy policy (who may
book the environment, its lock, Marvin's and GitLab's freezes, blocking incidents, other
slots) in the same pipeline as every change, and judged again when it comes due. Changing
commands run in the production channel, audited and announced. `deploy start` does not call
GitLab itself: it marks the slot, and the scheduler (one claim, one fencing number, one key)
triggers the pipeline, so a slot started by hand and one started by itself go one way.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo

from pydantic import ConfigDict, Field, field_validator
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from marvin.clock import as_utc
from marvin.commands.base import Change, Context, Done, Handler, Moved, Outcome, Plan
from marvin.deploys import service, times
from marvin.deploys.gather import slot_facts, start_plan
from marvin.deploys.plans import DeployFacts, SlotPlan
from marvin.deploys.text import slot_details, slot_line
from marvin.spec import Arg, CommandModel, CommandSpec, Opt
from marvin.store.tables import DeploySlot

_VERSION_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_+/")
# `deploy start` is accepted this long before the slot's time.
EARLY = timedelta(minutes=5)
# Cancelling or finishing a slot is judged on who asks, not on the calendar.
_NO_FACTS = DeployFacts(others=(), freezes=(), gitlab=None, lock=None)


def one_line(value: str) -> str:
    return " ".join(value.split())


def _tz(ctx: Context) -> ZoneInfo:
    return times.zone(ctx.invocation.timezone)


def env_problem(ctx: Context, env: str) -> Done | None:
    known = ctx.services.settings.deploys.environments
    if env in known:
        return None
    return Done(
        f"There's no environment “{env}” to deploy to; there are {', '.join(known)}.",
        False,
        "usage",
    )


class _Id(CommandModel):
    id: int = Field(ge=1, le=2_000_000_000)

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> Any:
        return value.strip().removeprefix("#") if isinstance(value, str) else value


class _Override(CommandModel):
    ignore_production_check: str | None = Field(None, min_length=3, max_length=500)


class DeploySchedule(_Override):
    env: str = Field(min_length=1, max_length=32)
    version: str = Field(min_length=1, max_length=128)
    when: str = Field(min_length=1, max_length=100)
    duration: str | None = Field(None, max_length=20)
    note: str | None = Field(None, max_length=500)

    @field_validator("env")
    @classmethod
    def _env(cls, value: str) -> str:
        return value.lower()

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not set(value) <= _VERSION_CHARS:
            raise ValueError("a version is letters, digits and . - _ + / (like v1.42.0)")
        return value

    @field_validator("when")
    @classmethod
    def _at(cls, value: str) -> str:
        words = value.split()
        if not words or words[0].lower() != "at" or len(words) == 1:
            raise ValueError("say when with `at`, like `at tomorrow 09:00`")
        return " ".join(words[1:])

    @field_validator("note")
    @classmethod
    def _note(cls, value: str | None) -> str | None:
        return one_line(value) if value is not None else None


class DeployList(CommandModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    env: str | None = Field(None, max_length=32)
    since: str | None = Field(None, alias="from", max_length=100)
    until: str | None = Field(None, alias="to", max_length=100)


class DeployShow(_Id):
    pass


class DeployCancel(_Id):
    pass


class DeployMove(_Id, _Override):
    when: str = Field(min_length=1, max_length=100)

    @field_validator("when")
    @classmethod
    def _at(cls, value: str) -> str:
        words = value.split()
        return " ".join(words[1:]) if len(words) > 1 and words[0].lower() == "at" else value


class DeployStart(_Id, _Override):
    pass


class DeployDone(_Id):
    failed: str | None = Field(None, min_length=2, max_length=500)


# --- helpers -------------------------------------------------------------------------------


async def _slot(ctx: Context, slot_id: int) -> DeploySlot | Done:
    async with ctx.read() as session:
        slot = await service.get_slot(session=session, slot_id=slot_id)
    if slot is None:
        return Done(f"There is no deploy slot #{slot_id}.", False, "not_found")
    return slot


def _window(cmd_when: str, duration: str | None, ctx: Context) -> tuple[datetime, datetime] | Done:
    settings = ctx.services.settings.deploys
    try:
        starts = times.parse_time(cmd_when, ctx.now, _tz(ctx))
        length = (
            times.parse_duration(duration)
            if duration
            else timedelta(minutes=settings.default_minutes)
        )
    except times.TimeError as exc:
        return Done(str(exc), False, "usage")
    if length > timedelta(hours=settings.max_hours):
        return Done(
            f"A slot lasts at most {settings.max_hours:g} hours; {times.length(length)} is longer.",
            False,
            "usage",
        )
    if starts < ctx.now - timedelta(minutes=1):
        return Done(
            f"{times.shown(starts, _tz(ctx))} is in the past: pick a time from now on.",
            False,
            "usage",
        )
    if starts > ctx.now + timedelta(days=settings.horizon_days):
        return Done(f"Slots are booked at most {settings.horizon_days} days ahead.", False, "usage")
    return starts, starts + length


async def _serialize(session: AsyncSession, environment: str) -> None:
    """On PostgreSQL, bookings of one environment take turns (SQLite's writers already do),
    so two people can't both see a window free and both book it."""
    if session.bind.dialect.name == "postgresql":
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
            {"name": f"deploys:{environment}"},
        )


async def _still_free(session: AsyncSession, plan: SlotPlan) -> None:
    await _serialize(session, plan.environment)
    others = await service.overlapping(
        session=session,
        environment=plan.environment,
        starts_at=plan.starts_at,
        ends_at=plan.ends_at,
        exclude=plan.slot_id,
    )
    if {s.id for s in others} != {s.id for s in plan.facts.others}:
        raise Moved()


async def _still_in(session: AsyncSession, plan: SlotPlan) -> DeploySlot:
    assert plan.slot_id is not None
    slot = await session.get(DeploySlot, plan.slot_id, with_for_update=True)
    if slot is None or slot.state != plan.state:
        raise Moved()
    return slot


def _fields(slot: DeploySlot) -> dict[str, str]:
    return {"slot": str(slot.id), "environment": slot.environment, "version": slot.version}


# --- schedule, move, cancel ----------------------------------------------------------------


class ScheduleHandler(Handler[DeploySchedule]):
    async def plan(self, cmd: DeploySchedule, ctx: Context) -> Plan:
        problem = env_problem(ctx, cmd.env)
        if problem is not None:
            return problem
        window = _window(cmd.when, cmd.duration, ctx)
        if isinstance(window, Done):
            return window
        starts, ends = window
        facts = await slot_facts(
            ctx.services, environment=cmd.env, version=cmd.version, starts_at=starts, ends_at=ends
        )
        return SlotPlan(
            action="schedule",
            environment=cmd.env,
            version=cmd.version,
            starts_at=starts,
            ends_at=ends,
            booked_by=ctx.caller.handle,
            facts=facts,
            override_reason=cmd.ignore_production_check,
            note=cmd.note,
        )

    async def reserve(self, plan: Change, session: AsyncSession, ctx: Context) -> None:
        assert isinstance(plan, SlotPlan)
        await _still_free(session, plan)

    async def record(
        self, plan: Change, session: AsyncSession, ctx: Context, applied: dict[str, Any]
    ) -> Outcome:
        assert isinstance(plan, SlotPlan)
        slot = await service.book(
            session=session,
            environment=plan.environment,
            version=plan.version,
            starts_at=plan.starts_at,
            ends_at=plan.ends_at,
            note=plan.note,
            booked_by=plan.booked_by,
            account_id=ctx.caller.account.id,
            override_reason=plan.override_reason,
            now=ctx.now,
        )
        tz = _tz(ctx)
        when = times.span(plan.starts_at, plan.ends_at, tz)
        return Outcome(
            text=f"Booked slot #{slot.id}: {plan.version} to {plan.environment}, {when}. "
            f"I'll announce it in the production channel when it's due.",
            announcement=f"📅 @{plan.booked_by} booked deploy slot #{slot.id}: {plan.version} "
            f"to {plan.environment}, {times.span(plan.starts_at, plan.ends_at, ZoneInfo('UTC'))}",
            fields=_fields(slot),
            details={"slot": slot.id, "override": plan.override_reason},
        )


_C = TypeVar("_C", bound=_Id)


class _OnSlot(Handler[_C], Generic[_C]):
    """A command on one booked slot, taken only in the states in `allowed`: planned on the
    slot as read, re-checked in that state when reserved, and written as a person's change
    (`service.by_hand`), so a scheduler's claim taken before can't write over it."""

    allowed: tuple[str, ...]

    def refused(self, slot: DeploySlot) -> str:
        """Why the command can't be taken in the slot's state, for people."""
        raise NotImplementedError

    async def on(self, slot: DeploySlot, cmd: _C, ctx: Context) -> Plan:
        raise NotImplementedError

    async def write(
        self, slot: DeploySlot, plan: SlotPlan, session: AsyncSession, ctx: Context
    ) -> Outcome:
        raise NotImplementedError

    async def plan(self, cmd: _C, ctx: Context) -> Plan:
        slot = await _slot(ctx, cmd.id)
        if isinstance(slot, Done):
            return slot
        if slot.state not in self.allowed:
            return Done(self.refused(slot), False)
        return await self.on(slot, cmd, ctx)

    async def reserve(self, plan: Change, session: AsyncSession, ctx: Context) -> None:
        assert isinstance(plan, SlotPlan)
        await _still_in(session, plan)

    async def record(
        self, plan: Change, session: AsyncSession, ctx: Context, applied: dict[str, Any]
    ) -> Outcome:
        assert isinstance(plan, SlotPlan) and plan.slot_id is not None
        slot = await session.get(DeploySlot, plan.slot_id)
        assert slot is not None
        service.by_hand(slot, ctx.now)
        return await self.write(slot, plan, session, ctx)


class MoveHandler(_OnSlot[DeployMove]):
    allowed = service.MOVABLE

    def refused(self, slot: DeploySlot) -> str:
        return f"Slot #{slot.id} is {slot.state} already; only a slot still to come moves."

    async def on(self, slot: DeploySlot, cmd: DeployMove, ctx: Context) -> Plan:
        length = as_utc(slot.ends_at) - as_utc(slot.starts_at)
        window = _window(cmd.when, f"{int(length.total_seconds() // 60)}m", ctx)
        if isinstance(window, Done):
            return window
        starts, ends = window
        facts = await slot_facts(
            ctx.services,
            environment=slot.environment,
            version=slot.version,
            starts_at=starts,
            ends_at=ends,
            exclude=slot.id,
        )
        return SlotPlan(
            action="move",
            environment=slot.environment,
            version=slot.version,
            starts_at=starts,
            ends_at=ends,
            booked_by=slot.booked_by,
            facts=facts,
            slot_id=slot.id,
            override_reason=cmd.ignore_production_check,
            state=slot.state,
        )

    async def reserve(self, plan: Change, session: AsyncSession, ctx: Context) -> None:
        assert isinstance(plan, SlotPlan)
        await super().reserve(plan, session, ctx)
        await _still_free(session, plan)

    async def write(
        self, slot: DeploySlot, plan: SlotPlan, session: AsyncSession, ctx: Context
    ) -> Outcome:
        was = times.shown(as_utc(slot.starts_at), ZoneInfo("UTC"))
        slot.starts_at, slot.ends_at = plan.starts_at, plan.ends_at
        if plan.override_reason:
            slot.override_reason = plan.override_reason
        when = times.span(plan.starts_at, plan.ends_at, _tz(ctx))
        return Outcome(
            text=f"Moved slot #{slot.id} ({slot.version} to {slot.environment}) to {when}.",
            announcement=f"📅 @{ctx.caller.handle} moved deploy slot #{slot.id} "
            f"({slot.version} to {slot.environment}) from {was} to "
            f"{times.span(plan.starts_at, plan.ends_at, ZoneInfo('UTC'))}",
            fields=_fields(slot),
            details={"slot": slot.id, "override": plan.override_reason},
        )


def _existing(slot: DeploySlot, action: str, ctx: Context, **more: Any) -> SlotPlan:
    return SlotPlan(
        action=action,  # type: ignore[arg-type]
        environment=slot.environment,
        version=slot.version,
        starts_at=as_utc(slot.starts_at),
        ends_at=as_utc(slot.ends_at),
        booked_by=slot.booked_by,
        facts=_NO_FACTS,
        slot_id=slot.id,
        state=slot.state,
        **more,
    )


class CancelHandler(_OnSlot[DeployCancel]):
    allowed = service.CANCELLABLE

    def refused(self, slot: DeploySlot) -> str:
        return f"Slot #{slot.id} is {slot.state}: it can't be cancelled any more."

    async def on(self, slot: DeploySlot, cmd: DeployCancel, ctx: Context) -> Plan:
        return _existing(slot, "cancel", ctx)

    async def write(
        self, slot: DeploySlot, plan: SlotPlan, session: AsyncSession, ctx: Context
    ) -> Outcome:
        slot.state = "cancelled"
        return Outcome(
            text=f"Cancelled slot #{slot.id} ({slot.version} to {slot.environment}).",
            announcement=f"🗑️ @{ctx.caller.handle} cancelled deploy slot #{slot.id} "
            f"({slot.version} to {slot.environment}, booked by @{slot.booked_by})",
            fields=_fields(slot),
            details={"slot": slot.id},
        )


# --- start, done ---------------------------------------------------------------------------


class StartHandler(_OnSlot[DeployStart]):
    allowed = service.STARTABLE

    def refused(self, slot: DeploySlot) -> str:
        return f"Slot #{slot.id} is {slot.state} already."

    async def on(self, slot: DeploySlot, cmd: DeployStart, ctx: Context) -> Plan:
        starts = as_utc(slot.starts_at)
        if ctx.now < starts - EARLY:
            return Done(
                f"Slot #{slot.id} starts {times.shown(starts, _tz(ctx))}; it can be started "
                f"from {int(EARLY.total_seconds() // 60)} minutes before.",
                False,
            )
        return await start_plan(
            ctx.services, slot, now=ctx.now, override_reason=cmd.ignore_production_check
        )

    async def write(
        self, slot: DeploySlot, plan: SlotPlan, session: AsyncSession, ctx: Context
    ) -> Outcome:
        slot.state = "starting"
        slot.started_by, slot.started_at = ctx.caller.handle, ctx.now
        if plan.override_reason:
            slot.override_reason = plan.override_reason
        pipeline = (
            "I'm starting its pipeline; the link follows in the production channel."
            if ctx.services.deploys is not None
            else "No deploy pipeline is configured (deploys.gitlab_project), so deploy it "
            f"yourself and say `deploy done {slot.id}` when it's out."
        )
        return Outcome(
            text=f"Starting slot #{slot.id}: {slot.version} to {slot.environment}. {pipeline}",
            announcement=f"🚀 @{ctx.caller.handle} is starting deploy slot #{slot.id}: "
            f"{slot.version} to {slot.environment}",
            fields=_fields(slot),
            details={"slot": slot.id, "override": plan.override_reason},
        )


class DoneHandler(_OnSlot[DeployDone]):
    allowed = service.FINISHABLE

    def refused(self, slot: DeploySlot) -> str:
        return f"Slot #{slot.id} is {slot.state}: only a slot that is due or running is done."

    async def on(self, slot: DeploySlot, cmd: DeployDone, ctx: Context) -> Plan:
        return _existing(slot, "done", ctx, failed=cmd.failed)

    async def write(
        self, slot: DeploySlot, plan: SlotPlan, session: AsyncSession, ctx: Context
    ) -> Outcome:
        # The booker's turn at the environment is over: the next in its queue is told.
        finished = await service.finish(
            session=session,
            services=ctx.services,
            slot=slot,
            state="failed" if plan.failed else "succeeded",
            now=ctx.now,
            reason=plan.failed,
        )
        assert finished  # its row is locked, in the state reserve found
        how = f"failed: {plan.failed}" if plan.failed else "is out"
        return Outcome(
            text=f"Recorded: slot #{slot.id} ({slot.version} to {slot.environment}) {how}.",
            announcement=f"{'❌' if plan.failed else '✅'} Deploy slot #{slot.id}: "
            f"{slot.version} to {slot.environment} {how} (@{ctx.caller.handle})",
            fields=_fields(slot),
            details={"slot": slot.id, "failed": plan.failed},
        )


# --- reads ---------------------------------------------------------------------------------


class ListHandler(Handler[DeployList]):
    async def plan(self, cmd: DeployList, ctx: Context) -> Plan:
        env = cmd.env.lower() if cmd.env else None
        if env is not None:
            problem = env_problem(ctx, env)
            if problem is not None:
                return problem
        tz = _tz(ctx)
        try:
            since = times.parse_time(cmd.since, ctx.now, tz) if cmd.since else ctx.now
            until = times.parse_time(cmd.until, ctx.now, tz) if cmd.until else None
        except times.TimeError as exc:
            return Done(str(exc), False, "usage")
        async with ctx.read() as session:
            rows = await service.slots(session=session, environment=env, since=since, until=until)
            locked = await service.locks(session=session)
        lines = [
            f"🔒 {lock.environment} is locked by @{lock.locked_by}: {lock.reason}"
            for lock in locked
            if env is None or lock.environment == env
        ]
        where = f" in {env}" if env else ""
        if not rows:
            lines.append(f"No deploy slots{where} from {times.shown(since, tz)}.")
        else:
            lines.append(f"Deploy slots{where}:")
            lines += [slot_line(r, tz) for r in rows]
        return Done(
            "\n".join(lines),
            data={"slots": [{"id": r.id, "environment": r.environment} for r in rows]},
        )


class ShowHandler(Handler[DeployShow]):
    async def plan(self, cmd: DeployShow, ctx: Context) -> Plan:
        slot = await _slot(ctx, cmd.id)
        if isinstance(slot, Done):
            return slot
        return Done(slot_details(slot, _tz(ctx)))


# --- specs ---------------------------------------------------------------------------------

_ID = Arg("id", "the slot's number (from `deploy list`)")
ENV_ARG = Arg("env", "the environment (deploys.environments)")
_OVERRIDE = Opt(
    "ignore-production-check",
    "go ahead despite a lock, freeze or incident (production engineers; audited)",
    "reason",
)
_SLOTS = (SlotPlan,)
# The scheduler starts a due slot as this command of its booker's, judged by every policy.
START_SPEC = CommandSpec(
    "deploy",
    "start",
    "Start a due slot: its pipeline runs, its link and outcome follow in the channel.",
    DeployStart,
    StartHandler(),
    (_ID,),
    (_OVERRIDE,),
    production_change=True,
    plans=_SLOTS,
)

SPECS = (
    CommandSpec(
        "deploy",
        "schedule",
        "Book a deploy slot (production and canary: release managers; staging: anyone).",
        DeploySchedule,
        ScheduleHandler(),
        (
            ENV_ARG,
            Arg("version", "what is deployed, like v1.42.0"),
            Arg("when", "at <time>: 14:30, tomorrow 09:00, in 2h, mon 10:00, ISO", rest=True),
        ),
        (
            Opt("duration", "how long (default 30m)", "30m"),
            Opt("note", "what it is for", "text"),
            _OVERRIDE,
        ),
        production_change=True,
        plans=_SLOTS,
        examples=("deploy schedule production v1.42.0 at tomorrow 09:00 --duration 45m",),
    ),
    CommandSpec(
        "deploy",
        "list",
        "The deploy slots to come (and the locks), in UTC and your time zone.",
        DeployList,
        ListHandler(),
        (Arg("env", "only this environment", required=False),),
        (Opt("from", "from this time (default now)", "time"), Opt("to", "until", "time")),
    ),
    CommandSpec(
        "deploy", "show", "One slot and what became of it.", DeployShow, ShowHandler(), (_ID,)
    ),
    CommandSpec(
        "deploy",
        "cancel",
        "Cancel a slot (its booker, a release manager or a production engineer).",
        DeployCancel,
        CancelHandler(),
        (_ID,),
        production_change=True,
        plans=_SLOTS,
    ),
    CommandSpec(
        "deploy",
        "move",
        "Move a slot to another time, keeping its length.",
        DeployMove,
        MoveHandler(),
        (_ID, Arg("when", "the new time", rest=True)),
        (_OVERRIDE,),
        production_change=True,
        plans=_SLOTS,
    ),
    START_SPEC,
    CommandSpec(
        "deploy",
        "done",
        "Record that a slot's deploy is out (or `--failed`), and let the queue move on.",
        DeployDone,
        DoneHandler(),
        (_ID,),
        (Opt("failed", "it failed, and why", "why"),),
        production_change=True,
        plans=_SLOTS,
    ),
)
