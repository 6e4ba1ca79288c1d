"""The access review: `access report` and `access reviewed @person`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator
from sqlalchemy.ext.asyncio import AsyncSession

from marvin.access import review
from marvin.commands.access_common import find_person, username
from marvin.commands.base import Change, Context, Done, Handler, Outcome, Plan
from marvin.spec import CommandModel
from marvin.store.tables import AccessReview


class AccessReport(CommandModel):
    pass


class AccessReviewed(CommandModel):
    person: str
    note: str | None = Field(None, max_length=500)

    @field_validator("person")
    @classmethod
    def _person(cls, value: str) -> str:
        return username(value)


# --- the access review ----------------------------------------------------------------------


class ReportHandler(Handler[AccessReport]):
    async def plan(self, cmd: AccessReport, ctx: Context) -> Plan:
        report = await review.build(ctx.services, ctx.now)
        roles = {r.name: r for r in ctx.services.directory.roles()}
        data = {
            "holders": [h.person.handle for h in report.holders],
            "grants": [f"{g.handle}:{g.name}" for g in report.grants],
            "idle": [i.handle for i in report.idle],
        }
        return Done("\n".join(review.render(report, ctx.now, roles)), data=data)


@dataclass(frozen=True)
class ReviewedPlan(Change):
    handle: str
    note: str | None

    def summary(self) -> str:
        return f"access reviewed @{self.handle}"


class ReviewedHandler(Handler[AccessReviewed]):
    async def plan(self, cmd: AccessReviewed, ctx: Context) -> Plan:
        person = await find_person(ctx, cmd.person)
        if person is None:
            return Done(
                f"@{cmd.person} is not in the roles registry: there's no access to review.",
                ok=False,
                kind="not_found",
            )
        return ReviewedPlan(person.handle, " ".join(cmd.note.split()) if cmd.note else None)

    async def record(
        self, plan: Change, session: AsyncSession, ctx: Context, applied: dict[str, Any]
    ) -> Outcome:
        assert isinstance(plan, ReviewedPlan)
        session.add(
            AccessReview(
                handle=plan.handle,
                reviewed_by=ctx.caller.handle,
                reviewed_at=ctx.now,
                note=plan.note,
            )
        )
        return Outcome(
            f"Recorded that you reviewed @{plan.handle}'s access today.",
            announcement=f"@{ctx.caller.handle} reviewed @{plan.handle}'s access",
            details={"note": plan.note},
        )
