"""`feature deviate`: ask for leave to depart from the flag rules; Marvin opens the issue."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import Field, field_validator, model_validator
from sqlalchemy.ext.asyncio import AsyncSession

from marvin import deviations
from marvin.commands.base import Change, Context, Handler, Outcome, Plan
from marvin.commands.on_environment import OnEnvironment, environment_opts
from marvin.environments import Environments
from marvin.flags import HUNDRED, fmt_percent, parse_value, validate_flag_name
from marvin.spec import Arg, CommandSpec, Needs


class FeatureDeviate(OnEnvironment):
    name: str
    value: str
    why: str = Field(min_length=10, max_length=5000)
    _many_environments = True

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return validate_flag_name(value)

    @field_validator("why")
    @classmethod
    def _why(cls, value: str) -> str:
        return value.strip().strip("\"'“”").strip()

    @model_validator(mode="after")
    def _raises(self) -> FeatureDeviate:
        if self.exposure <= 0:
            raise ValueError(
                "a deviation is leave to raise a flag: turning one off or down needs none"
            )
        return self

    @property
    def exposure(self) -> Decimal:
        parsed = parse_value(self.value)
        if isinstance(parsed, bool):
            return HUNDRED if parsed else Decimal(0)
        return parsed

    @property
    def shown_value(self) -> str:
        return "true" if isinstance(parse_value(self.value), bool) else fmt_percent(self.exposure)


@dataclass(frozen=True)
class DeviationPlan(Change):
    flag: str
    environments: tuple[str, ...]
    exposure: Decimal
    value: str
    why: str

    def summary(self) -> str:
        return f"feature deviate {self.flag} ({'/'.join(self.environments)})"


class DeviateHandler(Handler[FeatureDeviate]):
    async def plan(self, cmd: FeatureDeviate, ctx: Context) -> Plan:
        return DeviationPlan(
            flag=cmd.name,
            environments=tuple(env.value for env in cmd.environments),
            exposure=cmd.exposure,
            value=cmd.shown_value,
            why=cmd.why,
        )

    async def record(
        self, plan: Change, session: AsyncSession, ctx: Context, applied: dict[str, Any]
    ) -> Outcome:
        assert isinstance(plan, DeviationPlan)
        caller = ctx.caller
        settings = ctx.services.settings.flags
        row = await deviations.request(
            session=session,
            flag=plan.flag,
            environments=list(plan.environments),
            max_exposure=plan.exposure,
            value=plan.value,
            reason=plan.why,
            account_id=caller.account.id,
            requested_by=caller.handle,
            request_id=ctx.invocation.request_id,
            now=ctx.now,
        )
        where = " and ".join(plan.environments)
        return Outcome(
            text=(
                f"I'm opening a deviation issue for `{plan.flag}` to {plan.value} in {where}; "
                f"its link will be posted in #{ctx.services.settings.production_channel.name}. "
                f"Once it's labelled `{settings.approval_labels[0]}` it approves that, and "
                f"nothing more, for {settings.deviation_valid_hours:g} hours: "
                f"`feature set {plan.flag} ... --issue <ref>`."
            ),
            announcement=(
                f"@{caller.handle} asked for a deviation: `{plan.flag}` to {plan.value} in "
                f"{where} ({plan.why})"
            ),
            fields={"flag": plan.flag, "environments": where, "value": plan.value},
            details={"deviation_id": row.id, "why": plan.why},
        )


def spec(environments: Environments) -> CommandSpec:
    return CommandSpec(
        "feature",
        "deviate",
        "Ask for leave to go past the flag rules; Marvin opens the deviation issue to approve.",
        FeatureDeviate,
        DeviateHandler(),
        (
            Arg("name", "the flag's name"),
            Arg("value", "the most it may be set to: true or a percentage of actors"),
            Arg("why", "why the rules don't fit this time (for whoever approves)", rest=True),
        ),
        environment_opts(environments, what="for"),
        needs=Needs("grant", "feature_flags"),
        plans=(DeviationPlan,),
        examples=('feature deviate new_nav 50 "a launch on Monday needs half of the users"',),
    )
