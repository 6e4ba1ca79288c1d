"""`freeze`: windows in which an environment takes no deploys.

Marvin's own freezes are added and removed here (release managers and production
engineers); GitLab's freeze periods of `deploys.gitlab_project` (cron start and end in a
time zone) count too, for the protected environments, and `freeze list` shows both.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import Field, field_validator
from sqlalchemy.ext.asyncio import AsyncSession

from marvin.clock import as_utc
from marvin.commands.base import Change, Context, Done, Handler, Moved, Outcome, Plan
from marvin.deploys import freezes, service, times
from marvin.deploys.plans import AdminPlan
from marvin.facts import Known, fetch
from marvin.spec import Arg, CommandModel, CommandSpec
from marvin.store.tables import DeployFreeze

LONGEST = timedelta(days=60)


class FreezeAdd(CommandModel):
    env: str = Field(min_length=1, max_length=32)
    start: str = Field(min_length=1, max_length=100)
    end: str = Field(min_length=1, max_length=100)
    reason: str = Field(min_length=3, max_length=500)

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        return " ".join(value.split())


class FreezeList(CommandModel):
    env: str | None = Field(None, max_length=32)


class FreezeRemove(CommandModel):
    id: int = Field(ge=1, le=2_000_000_000)

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> Any:
        return value.strip().removeprefix("#") if isinstance(value, str) else value


class AddHandler(Handler[FreezeAdd]):
    async def plan(self, cmd: FreezeAdd, ctx: Context) -> Plan:
        env = cmd.env.lower()
        known = ctx.services.settings.deploys.environments
        if env not in known:
            return Done(
                f"There's no environment “{env}”; there are {', '.join(known)}.", False, "usage"
            )
        tz = times.zone(ctx.invocation.timezone)
        try:
            start = times.parse_time(cmd.start, ctx.now, tz)
            end = times.parse_time(cmd.end, ctx.now, tz)
        except times.TimeError as exc:
            return Done(str(exc), False, "usage")
        if end <= start:
            return Done("A freeze must end after it starts.", False, "usage")
        if end <= ctx.now:
            return Done("That freeze would be over already.", False, "usage")
        if end - start > LONGEST:
            return Done(f"A freeze lasts at most {LONGEST.days} days.", False, "usage")
        return AdminPlan("freeze add", env, reason=cmd.reason, starts_at=start, ends_at=end)

    async def record(
        self, plan: Change, session: AsyncSession, ctx: Context, applied: dict[str, Any]
    ) -> Outcome:
        assert isinstance(plan, AdminPlan)
        assert plan.starts_at and plan.ends_at and plan.reason
        row = DeployFreeze(
            environment=plan.environment,
            starts_at=plan.starts_at,
            ends_at=plan.ends_at,
            reason=plan.reason,
            created_by=ctx.caller.handle,
            created_at=ctx.now,
        )
        session.add(row)
        await session.flush()
        tz = times.zone(ctx.invocation.timezone)
        utc = times.zone("UTC")
        return Outcome(
            text=f"Added freeze #{row.id} of {plan.environment}, "
            f"{times.span(plan.starts_at, plan.ends_at, tz)}: {plan.reason}.",
            announcement=f"🧊 @{ctx.caller.handle} froze deploys to {plan.environment}, "
            f"{times.span(plan.starts_at, plan.ends_at, utc)}: {plan.reason}",
            fields={"environment": plan.environment, "freeze": str(row.id)},
            details={"freeze": row.id},
        )


class RemoveHandler(Handler[FreezeRemove]):
    async def plan(self, cmd: FreezeRemove, ctx: Context) -> Plan:
        async with ctx.read() as session:
            row = await session.get(DeployFreeze, cmd.id)
        if row is None or row.removed_at is not None:
            return Done(f"There is no freeze #{cmd.id}.", False, "not_found")
        return AdminPlan("freeze remove", row.environment, reason=row.reason, freeze_id=row.id)

    async def record(
        self, plan: Change, session: AsyncSession, ctx: Context, applied: dict[str, Any]
    ) -> Outcome:
        assert isinstance(plan, AdminPlan) and plan.freeze_id is not None
        row = await session.get(DeployFreeze, plan.freeze_id)
        if row is None or row.removed_at is not None:
            raise Moved()
        row.removed_at = ctx.now
        return Outcome(
            text=f"Removed freeze #{row.id} of {row.environment} ({row.reason}).",
            announcement=f"🧊 @{ctx.caller.handle} removed freeze #{row.id} of "
            f"{row.environment} ({row.reason})",
            fields={"environment": row.environment, "freeze": str(row.id)},
        )


class ListHandler(Handler[FreezeList]):
    async def plan(self, cmd: FreezeList, ctx: Context) -> Plan:
        env = cmd.env.lower() if cmd.env else None
        tz = times.zone(ctx.invocation.timezone)
        async with ctx.read() as session:
            rows = await service.freezes(
                session=session, environment=env, starts_at=ctx.now, ends_at=None
            )
        lines = [
            f"#{r.id} {r.environment} · {times.span(as_utc(r.starts_at), as_utc(r.ends_at), tz)}"
            f" · {r.reason} · by @{r.created_by}"
            for r in rows
        ]
        deploys = ctx.services.settings.deploys
        if ctx.services.deploys is not None and (env is None or env in deploys.protected):
            periods = await fetch(ctx.services.deploys.freeze_periods())
            held = ", ".join(deploys.protected)
            if isinstance(periods, Known):
                for period in periods.value:
                    try:
                        window = freezes.upcoming(period, ctx.now)
                    except freezes.Unreadable as exc:
                        # Said, not skipped: the deploy policy refuses on it (fails closed).
                        lines.append(f"GitLab · {held} · {freezes.describe(period)}: {exc}")
                        continue
                    if window is not None:
                        lines.append(
                            f"GitLab · {held} · {times.span(window.starts_at, window.ends_at, tz)}"
                            f" · {window.what}"
                        )
            else:
                lines.append(f"GitLab's freeze periods couldn't be read: {periods.shown()}.")
        if not lines:
            return Done("No freezes now or to come.")
        return Done("Freezes:\n" + "\n".join(lines))


SPECS = (
    CommandSpec(
        "freeze",
        "add",
        "Freeze an environment: no deploys from <start> to <end> (release managers and "
        "production engineers).",
        FreezeAdd,
        AddHandler(),
        (
            Arg("env", "the environment"),
            Arg("start", "when it starts (quote a time with a space)"),
            Arg("end", "when it ends"),
            Arg("reason", "why", rest=True),
        ),
        production_change=True,
        plans=(AdminPlan,),
        examples=('freeze add production "2026-12-20 00:00" "2027-01-04 09:00" "Year end"',),
    ),
    CommandSpec(
        "freeze",
        "list",
        "The freezes now and to come: Marvin's and GitLab's freeze periods.",
        FreezeList,
        ListHandler(),
        (Arg("env", "only this environment", required=False),),
    ),
    CommandSpec(
        "freeze",
        "remove",
        "Remove one of Marvin's freezes.",
        FreezeRemove,
        RemoveHandler(),
        (Arg("id", "the freeze's number (from `freeze list`)"),),
        production_change=True,
        plans=(AdminPlan,),
    ),
)
