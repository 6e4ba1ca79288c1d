"""`access who`, `check`, `mine` (anywhere, DMs included; they say how old the answer is
when the registry is a GitLab mirror) and `access refresh`, which syncs the mirror now."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator
from sqlalchemy.ext.asyncio import AsyncSession

from marvin.access import grants as grant_store
from marvin.access import sync
from marvin.access.mirror import MirroredDirectory
from marvin.access.sync import Snapshot
from marvin.adapters.directory import DirectoryPerson, RoleInfo
from marvin.adapters.errors import AdapterError
from marvin.commands.access_common import find_person, username, with_age
from marvin.commands.base import Change, Context, Done, Handler, Outcome, Plan
from marvin.policies.registry import SyncsRegistry
from marvin.spec import CommandModel, Opt

AccessEnvName = Literal["production", "staging", "runners"]


class AccessRefresh(CommandModel):
    pass


class AccessWho(CommandModel):
    role: str | None = Field(None, min_length=1, max_length=64)
    env: AccessEnvName | None = None


class AccessCheck(CommandModel):
    person: str

    @field_validator("person")
    @classmethod
    def _person(cls, value: str) -> str:
        return username(value)


class AccessMine(CommandModel):
    pass


def _role_line(role: RoleInfo) -> str:
    where = ", ".join(role.environments) or "no environment"
    grants = f"; grants {', '.join(role.grants)}" if role.grants else ""
    return f"*{role.name}* ({where}{grants}), members from {role.source}"


# --- refresh --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefreshPlan(Change, SyncsRegistry):
    snapshot: Snapshot

    def summary(self) -> str:
        return f"access refresh ({self.snapshot.count()} people)"


class RefreshHandler(Handler[AccessRefresh]):
    """The sync job's run, as a command: GitLab read in `plan`, the mirror written (and the
    grants of people GitLab blocked revoked) in `record`."""

    async def plan(self, cmd: AccessRefresh, ctx: Context) -> Plan:
        directory = ctx.services.directory
        if not isinstance(directory, MirroredDirectory):
            return Done(
                f"The roles registry is the {directory.name} registry, read as it is: there "
                "is no mirror to refresh."
            )
        try:
            snapshot = await sync.read(ctx.services, directory)
        except AdapterError as exc:
            # The old mirror stays; the attempt and its error are noted for every answer.
            freshness = await sync.note_failure(ctx.services, exc)
            return Done(
                f"{exc.shown()}, so I kept the mirror as it was. "
                + (freshness.shown(ctx.now) or ""),
                ok=False,
                kind="error",
            )
        return RefreshPlan(snapshot)

    async def record(
        self, plan: Change, session: AsyncSession, ctx: Context, applied: dict[str, Any]
    ) -> Outcome:
        assert isinstance(plan, RefreshPlan)
        revoked = await sync.write(session, ctx.services, plan.snapshot)
        people = plan.snapshot.count()
        roles = len({m.role for m in plan.snapshot.members})
        text = f"Synced the roles registry from GitLab: {people} people in {roles} role group(s)."
        if revoked:
            text += (
                " GitLab no longer lists "
                + ", ".join(f"@{u}" for u in revoked)
                + " as active, so I revoked the grants given to them in Marvin."
            )
        return Outcome(
            text,
            announcement=f"@{ctx.caller.handle} synced the roles registry from GitLab "
            f"({people} people)",
            details={"members": len(plan.snapshot.members), "revoked": revoked},
        )


# --- who ------------------------------------------------------------------------------------


class WhoHandler(Handler[AccessWho]):
    async def plan(self, cmd: AccessWho, ctx: Context) -> Plan:
        directory = ctx.services.directory
        roles = directory.roles()
        names = [r.name for r in roles]
        if cmd.role is not None and cmd.role not in names:
            return Done(
                f"There's no role `{cmd.role}`. The roles are: {', '.join(names)}.",
                ok=False,
                kind="not_found",
            )
        chosen = [
            r
            for r in roles
            if (cmd.role is None or r.name == cmd.role)
            and (cmd.env is None or cmd.env in r.environments)
        ]
        freshness = await directory.freshness()
        head = "Who has access"
        if cmd.env is not None:
            same = " (staging holds production data: it goes with production)"
            head += f" to {cmd.env}" + (same if cmd.env != "runners" else "")
        lines = [head + ":"]
        data: dict[str, list[str]] = {}
        people = await directory.people()
        for role in chosen:
            members = [p for p in people if role.name in p.roles]
            data[role.name] = [p.handle for p in members]
            lines.append(_role_line(role))
            for p in members:
                via = next((h.via for h in p.holdings if h.role == role.name), "")
                lines.append(f"  • @{p.handle} ({p.name}), through {via}")
            if not members:
                lines.append("  • nobody")
        if not chosen:
            lines.append("No role gives that access.")
        if cmd.role is None and cmd.env is None:
            own = [p for p in people if p.own_grants]
            if own:
                lines.append("*Grants given in the roles registry*")
                lines += [f"  • @{p.handle}: {', '.join(p.own_grants)}" for p in own]
            async with ctx.read() as session:
                given = await grant_store.held(session, now=ctx.now)
            if given:
                lines.append("*Grants given through Marvin*")
                lines += [f"  • @{g.handle}: {g.shown()}" for g in given]
        return Done(with_age(lines, freshness, ctx), data={"roles": data})


# --- check / mine ---------------------------------------------------------------------------


async def describe(ctx: Context, name: str, person: DirectoryPerson | None) -> Done:
    """Someone's roles, environments and grants, each with where it comes from."""
    freshness = await ctx.services.directory.freshness()
    handle = person.handle if person else name
    async with ctx.read() as session:
        given = await grant_store.held(session, now=ctx.now, handle=handle) if person else []
    if person is None:
        lines = [
            f"@{name} is not in the roles registry: no roles, no production, staging or "
            "runner access, and no grants."
        ]
        return Done(with_age(lines, freshness, ctx), data={"handle": name, "roles": []})
    roles = {r.name: r for r in ctx.services.directory.roles()}
    lines = [f"@{person.handle} ({person.name}, GitLab user {person.gitlab_username}):"]
    if person.holdings:
        lines.append("Roles:")
        lines += [f"  • {h.role}, through {h.via}" for h in person.holdings]
    else:
        lines.append("Roles: none.")
    if person.environments:
        lines.append("Access:")
        for env in person.environments:
            why = [r for r in person.roles if r in roles and env in roles[r].environments]
            lines.append(f"  • {env}, from the {', '.join(why)} role{'s' if len(why) > 1 else ''}")
    else:
        lines.append("Access: no production, staging or runner access.")
    grant_lines = []
    for grant in person.grants:
        from_roles = [r for r in person.roles if r in roles and grant in roles[r].grants]
        if from_roles:
            grant_lines.append(f"  • `{grant}`, from the {', '.join(from_roles)} role")
        elif grant in person.own_grants:
            grant_lines.append(f"  • `{grant}`, given in the roles registry")
    grant_lines += [f"  • {g.shown()}" for g in given]
    lines += ["Grants:", *grant_lines] if grant_lines else ["Grants: none."]
    data = {
        "handle": person.handle,
        "roles": list(person.roles),
        "environments": list(person.environments),
        "grants": sorted({*person.grants, *(g.name for g in given)}),
    }
    return Done(with_age(lines, freshness, ctx), data=data)


class CheckHandler(Handler[AccessCheck]):
    async def plan(self, cmd: AccessCheck, ctx: Context) -> Plan:
        return await describe(ctx, cmd.person, await find_person(ctx, cmd.person))


class MineHandler(Handler[AccessMine]):
    async def plan(self, cmd: AccessMine, ctx: Context) -> Plan:
        caller = ctx.caller
        if caller.person is None:
            return Done(
                "You're not linked to the roles registry, so you hold no roles, no access and "
                "no grants. `whoami` says what I know about you."
            )
        return await describe(ctx, caller.person.handle, caller.person)


ENV_OPT = Opt("env", "only roles with access to production, staging or runners", "env")
