"""`feature`: feature flags per environment, GitLab ChatOps style."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from sqlalchemy import select

from marvin.accounts import account_for_chat_user, account_for_handle
from marvin.commands.base import Change, Context, Done, Outcome, Plan, ReadOnly
from marvin.commands.plans import FlagPlan
from marvin.commands.spec import Arg, CommandModel, CommandSpec, Needs, Opt
from marvin.flags import (
    OFF,
    Environment,
    FlagState,
    SetRequest,
    apply_set,
    parse_gate_list,
    parse_value,
    validate_flag_name,
)
from marvin.grammar import mention_id
from marvin.store.db import lock_flag
from marvin.store.tables import FlagChange, FlagLedger, Watch

_PATTERN = re.compile(r"^[a-z0-9_*?]{1,64}$")

ENV_OPTS = (
    Opt("staging", "on staging"),
    Opt("production", "on production (the default)"),
)


class _OnEnvironment(CommandModel):
    staging: bool = False
    production: bool = False

    @model_validator(mode="after")
    def _one_environment(self) -> _OnEnvironment:
        if self.staging and self.production:
            raise ValueError("choose one of --staging or --production")
        return self

    @property
    def environment(self) -> Environment:
        return Environment.staging if self.staging else Environment.production


class _Named(_OnEnvironment):
    name: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return validate_flag_name(value)


class FeatureGet(_Named):
    pass


class FeatureList(_OnEnvironment):
    pattern: str | None = None

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None and not _PATTERN.match(value):
            raise ValueError("a pattern is flag-name characters with * and ? wildcards")
        return value


class FeatureHistory(_Named):
    limit: int = Field(10, ge=1, le=100)


class FeatureDelete(_Named):
    ignore_production_check: str | None = Field(None, min_length=3, max_length=500)


class FeatureSet(_Named):
    value: str
    actors: bool = False
    random: bool = False
    user: str | None = None
    project: str | None = None
    group: str | None = None
    issue: str | None = Field(None, min_length=1, max_length=255)
    ignore_production_check: str | None = Field(None, min_length=3, max_length=500)

    @model_validator(mode="after")
    def _coherent(self) -> FeatureSet:
        parsed = parse_value(self.value)
        if self.actors and self.random:
            raise ValueError("choose one of --actors or --random")
        if isinstance(parsed, bool) and (self.actors or self.random):
            raise ValueError("--actors and --random go with a percentage, not true/false")
        if isinstance(parsed, Decimal) and not (self.actors or self.random):
            raise ValueError(
                "say what the percentage is of: --actors (the same actors keep it; the normal "
                "way) or --random (a percentage of time)"
            )
        for kind in ("user", "project", "group"):
            raw = getattr(self, kind)
            if raw is not None:
                _gates(kind, raw)
        return self

    def request(self, users: tuple[str, ...]) -> SetRequest:
        gates = [f"user:{u}" for u in users]
        for kind in ("project", "group"):
            raw = getattr(self, kind)
            if raw is not None:
                gates += [f"{kind}:{g}" for g in _gates(kind, raw)]
        of: Literal["actors", "time"] | None = (
            "actors" if self.actors else "time" if self.random else None
        )
        return SetRequest(value=parse_value(self.value), of=of, gates=tuple(gates))


def _gates(kind: Any, raw: str) -> tuple[str, ...]:
    if kind == "user":
        # Slack mentions are resolved to GitLab usernames later, once we can look them up.
        items = [i.strip() for i in raw.split(",")]
        plain = [i for i in items if mention_id(i) is None]
        return tuple(i for i in items if mention_id(i)) + (
            parse_gate_list(",".join(plain), "user") if plain else ()
        )
    return parse_gate_list(raw, kind)


async def _resolve_users(cmd: FeatureSet, ctx: Context) -> tuple[str, ...] | Done:
    if cmd.user is None:
        return ()
    users: list[str] = []
    for item in _gates("user", cmd.user):
        chat_id = mention_id(item)
        if chat_id is None:
            users.append(item)
            continue
        account = await account_for_chat_user(ctx.session, ctx.invocation.transport, chat_id)
        if account is None or not account.gitlab_username:
            return Done(f"I don't know the GitLab username of {item}; give it by name.", ok=False)
        users.append(account.gitlab_username)
    return tuple(dict.fromkeys(users))


def _watch_text(ctx: Context) -> tuple[timedelta, str]:
    hours = ctx.services.settings.availability.watch_hours
    until = ctx.now + timedelta(hours=hours)
    return timedelta(hours=hours), until.strftime("%H:%M UTC")


async def _gather(
    ctx: Context,
    name: str,
    env: Environment,
    action: Literal["set", "delete"],
    after: Callable[[FlagState | None], FlagState | None],
    *,
    of_time: bool = False,
    issue_ref: str | None = None,
    override_reason: str | None = None,
) -> FlagPlan:
    """Lock the flag and collect every fact the policies judge a change of it by."""
    ledger = (await lock_flag(ctx.session, name))[env]
    backend = ctx.services.flags
    before = await backend.get(ctx.session, name, env)
    oncall = await ctx.services.oncall.on_call(ctx.now)
    oncall_account = await account_for_handle(ctx.session, oncall) if oncall else None
    return FlagPlan(
        flag=name,
        env=env,
        action=action,
        before=before,
        after=after(before),
        other=await backend.get(ctx.session, name, env.other),
        exposed_since=ledger.exposed_since,
        oncall=oncall,
        oncall_away=oncall_account is not None and oncall_account.away_since is not None,
        of_time=of_time,
        issue_ref=issue_ref,
        override_reason=override_reason,
    )


def _no_such_flag(name: str, env: Environment) -> Done:
    return Done(f"There is no flag `{name}` in {env.value}.", False, "not_found")


async def _record(ctx: Context, plan: FlagPlan) -> str:
    """Ledger, history and the watch window: what every applied flag change leaves behind."""
    ledger = await ctx.session.get(FlagLedger, (plan.flag, plan.env.value))
    assert ledger is not None  # locked (and created if missing) by the plan
    if plan.exposure_after == 0:
        ledger.exposed_since = None
    elif plan.exposure_before == 0 or ledger.exposed_since is None:
        ledger.exposed_since = ctx.now
    ledger.updated_at = ctx.now
    caller = ctx.caller
    ctx.session.add(
        FlagChange(
            name=plan.flag,
            environment=plan.env.value,
            action=plan.action,
            account_id=caller.account.id,
            actor=caller.handle,
            before=plan.before.model_dump(mode="json") if plan.before else None,
            after=plan.after.model_dump(mode="json") if plan.after else None,
            exposure_before=plan.exposure_before,
            exposure_after=plan.exposure_after,
            issue_ref=plan.issue_ref,
            override_reason=plan.override_reason,
            request_id=ctx.invocation.request_id,
            created_at=ctx.now,
        )
    )
    window, until = _watch_text(ctx)
    subject = f"feature {plan.flag} ({plan.env.value})"
    # Another change to what you're already watching extends that watch.
    watch = (
        await ctx.session.scalars(
            select(Watch).where(
                Watch.account_id == caller.account.id,
                Watch.subject == subject,
                Watch.ends_at > ctx.now,
            )
        )
    ).first()
    if watch is None:
        ctx.session.add(
            Watch(
                account_id=caller.account.id,
                subject=subject,
                starts_at=ctx.now,
                ends_at=ctx.now + window,
                oncall_handle=plan.oncall,
                request_id=ctx.invocation.request_id,
            )
        )
    else:
        watch.ends_at = ctx.now + window
        watch.oncall_handle = plan.oncall
    await ctx.session.flush()
    return until


class SetHandler:
    async def plan(self, cmd: FeatureSet, ctx: Context) -> Plan:
        env = cmd.environment
        users = await _resolve_users(cmd, ctx)
        if isinstance(users, Done):
            return users
        req = cmd.request(users)
        plan = await _gather(
            ctx,
            cmd.name,
            env,
            "set",
            lambda before: apply_set(before or OFF, req),
            of_time=req.of == "time",
            issue_ref=cmd.issue,
            override_reason=cmd.ignore_production_check,
        )
        if plan.after == (plan.before or OFF):
            state = plan.after.describe() if plan.after else "off"
            return Done(f"`{cmd.name}` is already {state} in {env.value}; nothing changed.")
        return plan

    async def apply(self, plan: Change, ctx: Context) -> Outcome:
        assert isinstance(plan, FlagPlan) and plan.after is not None
        await ctx.services.flags.put(ctx.session, plan.flag, plan.env, plan.after, ctx.now)
        until = await _record(ctx, plan)
        was = plan.before.describe() if plan.before else "new"
        now_is = plan.after.describe()
        return Outcome(
            text=(
                f"`{plan.flag}` in {plan.env.value} is now {now_is} (was {was}). "
                f"You're watching it until {until}."
            ),
            announcement=(
                f"@{ctx.caller.handle} set `{plan.flag}` in {plan.env.value}: {was} → {now_is}"
            ),
            fields={"flag": plan.flag, "environment": plan.env.value, "watch_until": until},
            details={"before": was, "after": now_is},
        )


class DeleteHandler:
    async def plan(self, cmd: FeatureDelete, ctx: Context) -> Plan:
        plan = await _gather(
            ctx,
            cmd.name,
            cmd.environment,
            "delete",
            lambda _before: None,
            override_reason=cmd.ignore_production_check,
        )
        if plan.before is None:
            return _no_such_flag(cmd.name, cmd.environment)
        return plan

    async def apply(self, plan: Change, ctx: Context) -> Outcome:
        assert isinstance(plan, FlagPlan)
        await ctx.services.flags.delete(ctx.session, plan.flag, plan.env)
        until = await _record(ctx, plan)
        was = plan.before.describe() if plan.before else "off"
        return Outcome(
            text=f"Deleted `{plan.flag}` in {plan.env.value} (was {was}). Watching until {until}.",
            announcement=f"@{ctx.caller.handle} deleted `{plan.flag}` in {plan.env.value} "
            f"(was {was})",
            fields={"flag": plan.flag, "environment": plan.env.value, "watch_until": until},
        )


class GetHandler(ReadOnly):
    async def plan(self, cmd: FeatureGet, ctx: Context) -> Plan:
        env = cmd.environment
        state = await ctx.services.flags.get(ctx.session, cmd.name, env)
        if state is None:
            return _no_such_flag(cmd.name, env)
        return Done(f"`{cmd.name}` in {env.value}: {state.describe()}")


class ListHandler(ReadOnly):
    async def plan(self, cmd: FeatureList, ctx: Context) -> Plan:
        env = cmd.environment
        flags = await ctx.services.flags.list(ctx.session, env, cmd.pattern)
        matching = f" matching `{cmd.pattern}`" if cmd.pattern else ""
        if not flags:
            return Done(f"No flags{matching} in {env.value}.")
        lines = [f"{len(flags)} flag(s){matching} in {env.value}:"]
        lines += [f"• `{name}`: {state.describe()}" for name, state in flags]
        return Done("\n".join(lines))


class HistoryHandler(ReadOnly):
    async def plan(self, cmd: FeatureHistory, ctx: Context) -> Plan:
        env = cmd.environment
        rows = list(
            await ctx.session.scalars(
                select(FlagChange)
                .where(FlagChange.name == cmd.name, FlagChange.environment == env.value)
                .order_by(FlagChange.id.desc())
                .limit(cmd.limit)
            )
        )
        if not rows:
            return Done(f"No changes recorded for `{cmd.name}` in {env.value}.")
        lines = [f"Last {len(rows)} change(s) to `{cmd.name}` in {env.value}:"]
        for row in rows:
            before = FlagState.model_validate(row.before).describe() if row.before else "new"
            after = FlagState.model_validate(row.after).describe() if row.after else "deleted"
            extra = "".join(
                [
                    f" (deviation {row.issue_ref})" if row.issue_ref else "",
                    f" (override: {row.override_reason})" if row.override_reason else "",
                ]
            )
            when = row.created_at.strftime("%Y-%m-%d %H:%M UTC")
            lines.append(f"• {when} @{row.actor} {row.action}: {before} → {after}{extra}")
        return Done("\n".join(lines))


_NAME = Arg("name", "the flag's name: lowercase letters, digits, underscores")
_OVERRIDE = Opt(
    "ignore-production-check",
    "go ahead despite an incident or freeze (production engineers; the reason is logged)",
    "reason",
)

SPECS = (
    CommandSpec(
        "feature",
        "get",
        "Show a flag's state.",
        FeatureGet,
        GetHandler(),
        (_NAME,),
        ENV_OPTS,
        examples=("feature get new_navigation",),
    ),
    CommandSpec(
        "feature",
        "list",
        "List flags, optionally matching a pattern.",
        FeatureList,
        ListHandler(),
        (Arg("pattern", "e.g. ci_*", required=False),),
        ENV_OPTS,
    ),
    CommandSpec(
        "feature",
        "set",
        "Change a flag: true, false, or a percentage of actors (at most 1% at first).",
        FeatureSet,
        SetHandler(),
        (_NAME, Arg("value", "true, false, or a percentage 0-100 (e.g. 1, 0.5, 25%)")),
        (
            Opt("actors", "the percentage is of actors; each keeps their answer (normal)"),
            Opt("random", "the percentage is of time (discouraged; often disabled)"),
            Opt("user", "only these GitLab users (comma-separated)", "users"),
            Opt("project", "only these projects, e.g. gitlab-org/gitlab", "projects"),
            Opt("group", "only these groups, e.g. gitlab-org", "groups"),
            Opt("issue", "an approved deviation issue, to go above the ceiling early", "ref"),
            _OVERRIDE,
            *ENV_OPTS,
        ),
        production_change=True,
        needs=Needs("grant", "feature_flags"),
        examples=("feature set new_navigation 1 --actors", "feature set new_nav true --staging"),
    ),
    CommandSpec(
        "feature",
        "delete",
        "Delete a flag (production engineers).",
        FeatureDelete,
        DeleteHandler(),
        (_NAME,),
        (_OVERRIDE, *ENV_OPTS),
        production_change=True,
        needs=Needs("role", "production"),
    ),
    CommandSpec(
        "feature",
        "history",
        "Show who changed a flag, when, and why.",
        FeatureHistory,
        HistoryHandler(),
        (_NAME,),
        (Opt("limit", "how many changes (1-100)", "n"), *ENV_OPTS),
    ),
)
