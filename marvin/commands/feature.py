"""`feature`: feature flags per environment, GitLab ChatOps style."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any, Literal, TypeVar

from pydantic import Field, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from marvin import deviations, flag_log
from marvin.adapters.errors import AdapterError
from marvin.adapters.flags import Embedded
from marvin.clock import as_utc, spoken
from marvin.commands import deviate
from marvin.commands.base import (
    Change,
    Context,
    Done,
    Handler,
    Moved,
    Observation,
    Outcome,
    Overtaken,
    Plan,
)
from marvin.commands.on_environment import OnEnvironment, environment_opts
from marvin.commands.plans import FlagPlan, Neighbour
from marvin.deviations import DeviationFact
from marvin.environments import DEFAULT as DEFAULT_ENVIRONMENTS
from marvin.environments import Environments
from marvin.facts import Known, Unknown, fetch
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
from marvin.services import Services
from marvin.spec import Arg, CommandModel, CommandSpec, Needs, Opt
from marvin.store.db import lock_flag, read_ledger
from marvin.store.tables import Account, FlagChange, FlagLedger, Watch

T = TypeVar("T")
# The targeted gates of `feature set`, each an option: --user, --project, ...
GATE_KINDS = ("user", "project", "group", "namespace", "feature_group")
_PATTERN = re.compile(r"^[a-z0-9_*?]{1,64}$")


class _Named(OnEnvironment):
    name: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return validate_flag_name(value)


class FeatureGet(_Named):
    # The environments named, or all of them: GitLab's ChatOps shows every one.
    _many_environments = True
    _all_when_none = True


class FeatureList(OnEnvironment):
    pattern: str | None = None
    match: str | None = Field(None, min_length=1, max_length=64)
    enabled: bool = False

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None and not _PATTERN.match(value):
            raise ValueError("a pattern is flag-name characters with * and ? wildcards")
        return value


class FeatureRollback(_Named):
    _many_environments = True


class FeatureWatch(CommandModel):
    name: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return validate_flag_name(value) if value is not None else None


class FeatureHistory(_Named):
    limit: int = Field(10, ge=1, le=100)


class FeatureDelete(_Named):
    _many_environments = True
    ignore_production_check: str | None = Field(None, min_length=3, max_length=500)


class FeatureSet(_Named):
    _many_environments = True
    value: str
    actors: bool = False
    random: bool = False
    user: str | None = None
    project: str | None = None
    group: str | None = None
    namespace: str | None = None
    feature_group: str | None = None
    issue: str | None = Field(None, min_length=1, max_length=255)
    ignore_production_check: str | None = Field(None, min_length=3, max_length=500)
    ignore_feature_flag_consistency_check: bool = False
    rollout_issue: str | None = Field(None, min_length=2, max_length=255)

    @field_validator("rollout_issue")
    @classmethod
    def _rollout_issue(cls, value: str | None) -> str | None:
        if value is not None and flag_log.split_ref(value) is None:
            raise ValueError("name an issue as #12, group/project#12 or its URL")
        return value.strip() if value is not None else None

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
        for kind in GATE_KINDS:
            raw = getattr(self, kind)
            if raw is not None:
                _gates(kind, raw)
        return self

    @property
    def lowers(self) -> bool:
        return not parse_value(self.value)  # false, 0, 0.00, 0%

    def request(self, users: tuple[str, ...]) -> SetRequest:
        gates = [f"user:{u}" for u in users]
        for kind in GATE_KINDS[1:]:
            raw = getattr(self, kind)
            if raw is not None:
                gates += [f"{kind}:{g}" for g in _gates(kind, raw)]
        of: Literal["actors", "time"] | None = (
            "actors" if self.actors else "time" if self.random else None
        )
        return SetRequest(value=parse_value(self.value), of=of, gates=tuple(gates))


def _gates(kind: Any, raw: str) -> tuple[str, ...]:
    # People arrive as GitLab usernames: a chat's mentions were resolved by its transport.
    return parse_gate_list(raw, kind)


def _watch_until(ctx: Context) -> tuple[timedelta, str]:
    hours = ctx.services.settings.availability.watch_hours
    until = ctx.now + timedelta(hours=hours)
    return timedelta(hours=hours), spoken(until, ctx.now)


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
) -> FlagPlan | Done:
    """Every fact the policies judge a change of the flag by; no transaction stays open."""
    related = ctx.services.environments.related(env)
    envs = [env, *related]
    backends = {e: ctx.services.flags(e) for e in envs}
    embedded: dict[Environment, FlagState | None] = {}
    async with ctx.read() as session:
        ledger = await read_ledger(session, name)
        # An embedded store is read in the same short read as the ledger.
        for e, backend in backends.items():
            if isinstance(backend, Embedded):
                embedded[e] = await backend.get_in(session, name, e)
    # What lives outside is asked after the read, all at once.
    states, deviation = await asyncio.gather(
        asyncio.gather(
            *(
                _ready(Known(embedded[e])) if e in embedded else fetch(backends[e].get(name, e))
                for e in envs
            )
        ),
        fetch(_deviation(ctx, issue_ref)) if issue_ref else _ready(None),
    )
    known: list[FlagState | None] = []
    for state in states:
        if isinstance(state, Unknown):
            return Done(
                f"I couldn't read `{name}`: {state.shown()}. Nothing was changed.", False, "error"
            )
        assert isinstance(state, Known)
        known.append(state.value)
    before, *theirs = known
    mine = ledger.get(env)
    ahead = ctx.services.environments.follows(env)
    neighbours = tuple(
        Neighbour(e, state, ledger[e].version if e in ledger else 0, followed=e == ahead)
        for e, state in zip(related, theirs, strict=True)
    )
    return FlagPlan(
        flag=name,
        env=env,
        action=action,
        before=before,
        after=after(before),
        exposed_since=mine.exposed_since if mine else None,
        version=mine.version if mine else 0,
        neighbours=neighbours,
        backend=backends[env].name,
        remote=env not in embedded,
        of_time=of_time,
        issue_ref=issue_ref,
        deviation=deviation,
        override_reason=override_reason,
    )


async def _deviation(ctx: Context, ref: str) -> DeviationFact:
    """The `--issue` as the ceiling judges it: the tracker's issue, when it was approved
    (the tracker's own record of its label), and the binding Marvin wrote when it opened it."""
    tracker = ctx.services.issues
    issue = await tracker.get(ref)
    labels = ctx.services.settings.flags.approval_labels
    approved_at = await tracker.labelled_at(issue.ref, labels)
    async with ctx.read() as session:
        binding = await deviations.binding_for(session, issue.ref)
    return DeviationFact(issue=issue, approved_at=approved_at, binding=binding)


async def _ready(value: T) -> T:
    return value


def _no_such_flag(name: str, env: Environment) -> Done:
    return Done(f"There is no flag `{name}` in {env.value}.", False, "not_found")


class _FlagChange(Handler[Any]):
    """What setting and deleting share: the reservation, the remote call and the record."""

    async def reserve(self, plan: Change, session: AsyncSession, ctx: Context) -> None:
        assert isinstance(plan, FlagPlan)
        rows = await lock_flag(session, plan.flag, [plan.env, *(n.env for n in plan.neighbours)])
        mine = rows[plan.env]
        inv = ctx.invocation
        if inv.redelivered and mine.updated_at and as_utc(mine.updated_at) > inv.received_at:
            changed = spoken(mine.updated_at, ctx.now)
            raise Overtaken(
                f"I was restarted while working on this, and `{plan.flag}` in {plan.env.value} "
                f"was changed since you asked (at {changed}), so I didn't do it: that could "
                "undo the later change. Look at its state and ask again if it's still needed."
            )
        # The neighbouring environments count too: consistency was judged on their state.
        if mine.version != plan.version or any(
            rows[n.env].version != n.version for n in plan.neighbours
        ):
            raise Moved
        mine.version += 1

    async def apply(self, plan: Change, ctx: Context) -> dict[str, Any]:
        assert isinstance(plan, FlagPlan)
        backend = ctx.services.flags(plan.env)
        if plan.after is None:
            await backend.delete(plan.flag, plan.env)
            return {}
        confirmed = await backend.put(plan.flag, plan.env, plan.after)
        return {"after": confirmed.model_dump(mode="json")}

    async def record(
        self, plan: Change, session: AsyncSession, ctx: Context, applied: dict[str, Any]
    ) -> Outcome:
        assert isinstance(plan, FlagPlan)
        if not plan.remote:
            backend = ctx.services.flags(plan.env)
            assert isinstance(backend, Embedded)
            if plan.after is None:
                await backend.delete_in(session, plan.flag, plan.env)
            else:
                await backend.put_in(session, plan.flag, plan.env, plan.after, ctx.now)
        elif "after" in applied:
            # What the backend says it holds now is what happened.
            plan = replace(plan, after=FlagState.model_validate(applied["after"]))
        until = await record_change(session, plan, ctx)
        return self.outcome(plan, ctx, until)

    def outcome(self, plan: FlagPlan, ctx: Context, until: str) -> Outcome:
        raise NotImplementedError

    def replan(self, intent: dict[str, Any]) -> Change:
        return FlagPlan.from_intent(intent)

    async def observe(self, intent: dict[str, Any], services: Services) -> Observation:
        plan = FlagPlan.from_intent(intent)
        now = await services.flags(plan.env).get(plan.flag, plan.env)
        seen = now.describe() if now else "no such flag"
        if now == plan.after:
            applied = {"after": now.model_dump(mode="json")} if now else {}
            return Observation("applied", applied, seen)
        if now == plan.before:
            return Observation("not_applied", {}, seen)
        return Observation("diverged", {}, seen)


async def record_change(session: AsyncSession, plan: FlagPlan, ctx: Context) -> str:
    """Ledger, history and the watch window: what every applied flag change leaves behind."""
    ledger = await session.get(FlagLedger, (plan.flag, plan.env.value))
    assert ledger is not None  # reserved (and created if missing) before
    if plan.exposure_after == 0:
        ledger.exposed_since = None
    elif plan.exposure_before == 0 or ledger.exposed_since is None:
        ledger.exposed_since = ctx.now
    ledger.updated_at = ctx.now
    caller = ctx.caller
    session.add(
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
    await flag_log.record(
        session=session,
        settings=ctx.services.settings,
        change=flag_log.LoggedChange(
            flag=plan.flag,
            environment=plan.env.value,
            action=plan.action,
            before=plan.before.describe() if plan.before else "new",
            after=plan.after.describe() if plan.after else "deleted",
            actor=caller.handle,
            override_reason=plan.override_reason,
            deviation=plan.issue_ref,
            rollout_issue=plan.rollout_issue,
        ),
        now=ctx.now,
        request_id=ctx.invocation.request_id,
    )
    window, until = _watch_until(ctx)
    oncall = ctx.facts.oncall if ctx.facts else None
    oncall_handle = oncall.value.handle if isinstance(oncall, Known) else None
    subject = f"feature {plan.flag} ({plan.env.value})"
    # Another change to what you're already watching extends that watch.
    watch = (
        await session.scalars(
            select(Watch).where(
                Watch.account_id == caller.account.id,
                Watch.subject == subject,
                Watch.ends_at > ctx.now,
            )
        )
    ).first()
    if watch is None:
        session.add(
            Watch(
                account_id=caller.account.id,
                subject=subject,
                starts_at=ctx.now,
                ends_at=ctx.now + window,
                oncall_handle=oncall_handle,
                request_id=ctx.invocation.request_id,
            )
        )
    else:
        watch.ends_at = ctx.now + window
        watch.oncall_handle = oncall_handle
    await session.flush()
    return until


class SetHandler(_FlagChange):
    async def plan(self, cmd: FeatureSet, ctx: Context) -> Plan:
        env = cmd.environment
        users = _gates("user", cmd.user) if cmd.user else ()
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
        if isinstance(plan, Done):
            return plan
        if cmd.ignore_feature_flag_consistency_check:
            plan = replace(plan, skip_consistency=True)
        if cmd.rollout_issue:
            plan = replace(plan, rollout_issue=cmd.rollout_issue)
        if plan.after == (plan.before or OFF):
            state = plan.after.describe() if plan.after else "off"
            return Done(f"`{cmd.name}` is already {state} in {env.value}; nothing changed.")
        return plan

    def outcome(self, plan: FlagPlan, ctx: Context, until: str) -> Outcome:
        assert plan.after is not None
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


class DeleteHandler(_FlagChange):
    async def plan(self, cmd: FeatureDelete, ctx: Context) -> Plan:
        plan = await _gather(
            ctx,
            cmd.name,
            cmd.environment,
            "delete",
            lambda _before: None,
            override_reason=cmd.ignore_production_check,
        )
        if isinstance(plan, FlagPlan) and plan.before is None:
            return _no_such_flag(cmd.name, cmd.environment)
        return plan

    def outcome(self, plan: FlagPlan, ctx: Context, until: str) -> Outcome:
        was = plan.before.describe() if plan.before else "off"
        return Outcome(
            text=f"Deleted `{plan.flag}` in {plan.env.value} (was {was}). Watching until {until}.",
            announcement=f"@{ctx.caller.handle} deleted `{plan.flag}` in {plan.env.value} "
            f"(was {was})",
            fields={"flag": plan.flag, "environment": plan.env.value, "watch_until": until},
        )


def _unreadable(error: AdapterError) -> Done:
    return Done(f"I couldn't ask {error.shown()}.", False, "error")


class GetHandler(Handler[FeatureGet]):
    async def plan(self, cmd: FeatureGet, ctx: Context) -> Plan:
        envs = cmd.environments
        states = await asyncio.gather(
            *(fetch(ctx.services.flags(env).get(cmd.name, env)) for env in envs)
        )
        for answer in states:
            if isinstance(answer, Unknown):
                return _unreadable(answer.error)
        held = {env: a.value for env, a in zip(envs, states, strict=True) if isinstance(a, Known)}
        data = {
            "flag": cmd.name,
            "environments": {
                env.value: state.model_dump(mode="json") if state else None
                for env, state in held.items()
            },
        }
        if len(envs) == 1:
            [(env, state)] = held.items()
            if state is None:
                return _no_such_flag(cmd.name, env)
            return Done(f"`{cmd.name}` in {env.value}: {state.describe()}", data=data)
        if all(state is None for state in held.values()):
            return Done(f"There is no flag `{cmd.name}`.", False, "not_found", data=data)
        lines = [f"`{cmd.name}`:"]
        lines += [
            f"• {env.value}: {state.describe() if state else 'no such flag'}"
            for env, state in held.items()
        ]
        return Done("\n".join(lines), data=data)


class ListHandler(Handler[FeatureList]):
    async def plan(self, cmd: FeatureList, ctx: Context) -> Plan:
        env = cmd.environment
        try:
            flags = await ctx.services.flags(env).list(env, cmd.pattern)
        except AdapterError as exc:
            return _unreadable(exc)
        if cmd.match:
            flags = [(name, state) for name, state in flags if cmd.match in name]
        if cmd.enabled:
            flags = [(name, state) for name, state in flags if state.is_on()]
        which = [
            f"matching `{cmd.pattern}`" if cmd.pattern else "",
            f"containing `{cmd.match}`" if cmd.match else "",
            "that are on" if cmd.enabled else "",
        ]
        matching = "".join(f" {w}" for w in which if w)
        data = {
            "environment": env.value,
            "flags": {name: state.model_dump(mode="json") for name, state in flags},
        }
        if not flags:
            return Done(f"No flags{matching} in {env.value}.", data=data)
        lines = [f"{len(flags)} flag(s){matching} in {env.value}:"]
        lines += [f"• `{name}`: {state.describe()}" for name, state in flags]
        return Done("\n".join(lines), data=data)


class HistoryHandler(Handler[FeatureHistory]):
    async def plan(self, cmd: FeatureHistory, ctx: Context) -> Plan:
        env = cmd.environment
        async with ctx.read() as session:
            rows = list(
                await session.scalars(
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


class RollbackHandler(_FlagChange):
    """Back to the state before the flag's last recorded change, in one command."""

    async def plan(self, cmd: FeatureRollback, ctx: Context) -> Plan:
        env = cmd.environment
        async with ctx.read() as session:
            last = (
                await session.scalars(
                    select(FlagChange)
                    .where(FlagChange.name == cmd.name, FlagChange.environment == env.value)
                    .order_by(FlagChange.id.desc())
                    .limit(1)
                )
            ).first()
        if last is None:
            return Done(f"No change to `{cmd.name}` in {env.value} is recorded: nothing to undo.")
        # Back to what it was; a flag its last change created goes back to off.
        target = FlagState.model_validate(last.before) if last.before else OFF
        plan = await _gather(ctx, cmd.name, env, "set", lambda _before: target)
        if isinstance(plan, Done):
            return plan
        if plan.after == (plan.before or OFF):
            return Done(
                f"`{cmd.name}` in {env.value} is already {target.describe()}, as before its "
                "last change; nothing changed."
            )
        return plan

    def outcome(self, plan: FlagPlan, ctx: Context, until: str) -> Outcome:
        assert plan.after is not None
        was = plan.before.describe() if plan.before else "new"
        now_is = plan.after.describe()
        return Outcome(
            text=(
                f"Rolled back `{plan.flag}` in {plan.env.value}: now {now_is} (was {was}). "
                f"You're watching it until {until}."
            ),
            announcement=(
                f"@{ctx.caller.handle} rolled back `{plan.flag}` in {plan.env.value}: "
                f"{was} → {now_is}"
            ),
            fields={"flag": plan.flag, "environment": plan.env.value, "watch_until": until},
            details={"before": was, "after": now_is, "rollback": True},
        )


class WatchHandler(Handler[FeatureWatch]):
    async def plan(self, cmd: FeatureWatch, ctx: Context) -> Plan:
        async with ctx.read() as session:
            query = (
                select(Watch, Account)
                .join(Account, Account.id == Watch.account_id)
                .where(Watch.ends_at > ctx.now)
                .order_by(Watch.ends_at)
            )
            if cmd.name is not None:
                subjects = [f"feature {cmd.name} ({env})" for env in ctx.services.environments]
                query = query.where(Watch.subject.in_(subjects))
            rows = list((await session.execute(query)).all())
        which = f" `{cmd.name}`" if cmd.name else " any flag"
        if not rows:
            return Done(f"Nobody is watching{which} now.")
        lines = [f"Watching{which} now:"]
        for watch, account in rows:
            who = account.directory_handle or account.display_name
            until = as_utc(watch.ends_at).strftime("%Y-%m-%d %H:%M UTC")
            oncall = f" (on call: @{watch.oncall_handle})" if watch.oncall_handle else ""
            lines.append(f"• @{who}: {watch.subject} until {until}{oncall}")
        return Done("\n".join(lines))


_NAME = Arg("name", "the flag's name: lowercase letters, digits, underscores")
_OVERRIDE = Opt(
    "ignore-production-check",
    "go ahead despite an incident or freeze (production engineers; the reason is logged)",
    "reason",
)


def specs(environments: Environments = DEFAULT_ENVIRONMENTS) -> tuple[CommandSpec, ...]:
    """The `feature` commands, with an option for each configured environment."""
    on = environment_opts(environments)
    return (
        CommandSpec(
            "feature",
            "get",
            "Show a flag's state.",
            FeatureGet,
            GetHandler(),
            (_NAME,),
            environment_opts(environments, default=False),  # none named: every one
            examples=("feature get new_navigation", "feature get new_navigation --staging"),
        ),
        CommandSpec(
            "feature",
            "list",
            "List flags, optionally matching a pattern.",
            FeatureList,
            ListHandler(),
            (Arg("pattern", "e.g. ci_*", required=False),),
            (
                Opt("match", "only flags whose name contains this", "text"),
                Opt("enabled", "only flags that are on for someone"),
                *on,
            ),
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
                Opt("namespace", "only these namespaces (groups or users)", "namespaces"),
                Opt(
                    "feature-group", "only these feature groups, e.g. gitlab_team_members", "names"
                ),
                Opt(
                    "issue", "an approved deviation issue (#12, group/project#12 or its URL)", "ref"
                ),
                Opt(
                    "rollout-issue", "the flag's rollout issue: it gets a note of the change", "ref"
                ),
                _OVERRIDE,
                Opt(
                    "ignore-feature-flag-consistency-check",
                    "let production differ from staging (production engineers; logged)",
                ),
                *on,
            ),
            production_change=True,
            needs=Needs("grant", "feature_flags"),
            plans=(FlagPlan,),
            examples=(
                "feature set new_navigation 1 --actors",
                "feature set new_nav true --staging",
            ),
        ),
        deviate.spec(environments),
        CommandSpec(
            "feature",
            "delete",
            "Delete a flag (production engineers).",
            FeatureDelete,
            DeleteHandler(),
            (_NAME,),
            (_OVERRIDE, *on),
            production_change=True,
            needs=Needs("role", "production"),
            plans=(FlagPlan,),
        ),
        CommandSpec(
            "feature",
            "rollback",
            "Put a flag back to its state before its last change (lowering needs no one else).",
            FeatureRollback,
            RollbackHandler(),
            (_NAME,),
            on,
            production_change=True,
            needs=Needs("grant", "feature_flags"),
            plans=(FlagPlan,),
            examples=("feature rollback new_navigation",),
        ),
        CommandSpec(
            "feature",
            "watch",
            "Who watches which flag, until when.",
            FeatureWatch,
            WatchHandler(),
            (Arg("name", "only this flag", required=False),),
        ),
        CommandSpec(
            "feature",
            "history",
            "Show who changed a flag, when, and why.",
            FeatureHistory,
            HistoryHandler(),
            (_NAME,),
            (Opt("limit", "how many changes (1-100)", "n"), *on),
        ),
    )
