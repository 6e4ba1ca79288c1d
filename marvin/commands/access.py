"""`access`: who has production access and why, from the configured roles registry.

Reads (`who`, `check`, `mine`) work anywhere, DMs included, and say how old the answer is
when the registry is a GitLab mirror. `refresh` syncs the mirror now (production role).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import Field, field_validator
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from marvin.access import grants as grant_store
from marvin.access import mirror, requests, review, sync
from marvin.access.mirror import MirroredDirectory
from marvin.access.sync import Snapshot
from marvin.accounts import account_for_handle
from marvin.adapters.directory import DirectoryPerson, Freshness, RoleInfo
from marvin.adapters.errors import AdapterError, NotFound
from marvin.adapters.gitlab_issues import NewIssue
from marvin.clock import as_utc
from marvin.commands.base import Change, Context, Done, Handler, Moved, Observation, Outcome, Plan
from marvin.issue_delivery import incident_tracker
from marvin.policies.roles import PRODUCTION_ROLE
from marvin.services import Services
from marvin.spec import Arg, CommandModel, CommandSpec, Needs, Opt
from marvin.store.tables import AccessReview, Account, Grant

AccessEnvName = Literal["production", "staging", "runners"]
PRODUCTION_ONLY = Needs("role", PRODUCTION_ROLE)


def username(value: str) -> str:
    name = value.strip().removeprefix("@")
    if not name or len(name) > 255 or not all(c.isalnum() or c in "._-" for c in name):
        raise ValueError("name a person by their handle or GitLab username, like @alice")
    return name


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


AccessWhat = Literal["feature_flags", "production", "staging", "runners"]


class AccessRequest(CommandModel):
    what: AccessWhat
    reason: str = Field(min_length=3, max_length=2000)

    @field_validator("reason")
    @classmethod
    def _one_line(cls, value: str) -> str:
        return " ".join(value.split())


class AccessGrant(CommandModel):
    grant: Literal["feature_flags"]
    person: str
    issue: str = Field(min_length=1, max_length=300)
    expires: timedelta = timedelta(days=requests.DEFAULT_GRANT_DAYS)

    @field_validator("person")
    @classmethod
    def _person(cls, value: str) -> str:
        return username(value)

    @field_validator("expires", mode="before")
    @classmethod
    def _expires(cls, value: Any) -> Any:
        return requests.duration(value) if isinstance(value, str) else value


class AccessReport(CommandModel):
    pass


class AccessReviewed(CommandModel):
    person: str
    note: str | None = Field(None, max_length=500)

    @field_validator("person")
    @classmethod
    def _person(cls, value: str) -> str:
        return username(value)


class AccessRevoke(CommandModel):
    grant: Literal["feature_flags"]
    person: str

    @field_validator("person")
    @classmethod
    def _person(cls, value: str) -> str:
        return username(value)


# --- shared ---------------------------------------------------------------------------------


async def find_person(ctx: Context, name: str) -> DirectoryPerson | None:
    directory = ctx.services.directory
    return await directory.by_handle(name.lower()) or await directory.by_gitlab_username(name)


def with_age(lines: list[str], freshness: Freshness, ctx: Context) -> str:
    age = freshness.shown(ctx.now)
    return "\n".join([*lines, age] if age else lines)


def _role_line(role: RoleInfo) -> str:
    where = ", ".join(role.environments) or "no environment"
    grants = f"; grants {', '.join(role.grants)}" if role.grants else ""
    return f"*{role.name}* ({where}{grants}), members from {role.source}"


# --- refresh --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefreshPlan(Change):
    snapshot: Snapshot

    def summary(self) -> str:
        return f"access refresh ({self.snapshot.count()} people)"


class RefreshHandler(Handler[AccessRefresh]):
    async def plan(self, cmd: AccessRefresh, ctx: Context) -> Plan:
        directory = ctx.services.directory
        if not isinstance(directory, MirroredDirectory):
            return Done(
                f"The roles registry is the {directory.name} registry, read as it is: there "
                "is no mirror to refresh."
            )
        try:
            snapshot = await sync.read_groups(directory)
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
        await mirror.replace(session, plan.snapshot.members, ctx.now)
        roles = len({m.role for m in plan.snapshot.members})
        text = (
            f"Synced the roles registry from GitLab: {plan.snapshot.count()} people in "
            f"{roles} role group(s)."
        )
        return Outcome(
            text,
            announcement=f"@{ctx.caller.handle} synced the roles registry from GitLab "
            f"({plan.snapshot.count()} people)",
            details={"members": len(plan.snapshot.members)},
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
        for role in chosen:
            members = await directory.role_members(role.name) or []
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


# --- request -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestPlan(Change):
    what: str
    reason: str
    handle: str
    gitlab_username: str
    holds: str  # what the requester's roles already give them
    marker: str
    remote: bool = True

    def summary(self) -> str:
        return f"access request {self.what}"

    def intent(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "reason": self.reason,
            "handle": self.handle,
            "gitlab_username": self.gitlab_username,
            "holds": self.holds,
            "marker": self.marker,
        }

    def issue(self) -> NewIssue:
        title = (
            f"Access request: @{self.gitlab_username} asks for the `{self.what}` grant"
            if self.what in requests.GRANTS
            else f"Access request: @{self.gitlab_username} asks for {self.what} access"
        )
        description = "\n\n".join(
            [
                f"**Who:** GitLab user @{self.gitlab_username} (asked in chat as @{self.handle})",
                f"**Asks for:** `{self.what}`",
                f"**Their roles already give them:** {self.holds}",
                f"**Why:** {self.reason}",
                "A production engineer grants it in chat with "
                f"`access grant {self.what} @{self.handle} --issue <this issue>`"
                if self.what in requests.GRANTS
                else "Production access is given through the roles registry (the role's "
                "group or file), not in chat.",
                f"<!-- {self.marker} -->",
            ]
        )
        return NewIssue(
            title=title,
            description=description,
            labels=tuple(requests.labels_for(self.what)),
            author=self.handle,
        )


class RequestHandler(Handler[AccessRequest]):
    async def plan(self, cmd: AccessRequest, ctx: Context) -> Plan:
        caller = ctx.caller
        person = caller.person
        if person is None or not person.gitlab_username:
            return Done(
                "I can't tell which GitLab user you are, so I can't name you on the request. "
                "`whoami` says what I know; `account link <gitlab-username>` links you.",
                ok=False,
                kind="denied",
            )
        held = requests.already(person, cmd.what, caller.grants)
        if held is not None:
            return Done(
                f"You already have `{cmd.what}` {held}: there's nothing to request.",
                ok=False,
                kind="denied",
            )
        return RequestPlan(
            what=cmd.what,
            reason=cmd.reason,
            handle=person.handle,
            gitlab_username=person.gitlab_username,
            holds=requests.what_roles_give(person),
            marker=f"marvin-access-request:{ctx.invocation.request_id}",
        )

    async def apply(self, plan: Change, ctx: Context) -> dict[str, Any]:
        assert isinstance(plan, RequestPlan)
        issue = await incident_tracker(ctx.services).open_issue(plan.issue())
        return {"ref": issue.ref, "url": issue.url}

    async def record(
        self, plan: Change, session: AsyncSession, ctx: Context, applied: dict[str, Any]
    ) -> Outcome:
        assert isinstance(plan, RequestPlan)
        ref = str(applied.get("ref"))
        url = applied.get("url")
        link = f"{ref} ({url})" if url else ref
        label = requests.labels_for(plan.what)[0]
        return Outcome(
            f"I opened {link} for your `{plan.what}` request, labelled `{label}`. A production "
            "engineer will look at it there.",
            announcement=f"@{plan.handle} requested `{plan.what}`: {link}",
            details={"issue": ref, "url": applied.get("url")},
        )

    def replan(self, intent: dict[str, Any]) -> Change:
        return RequestPlan(
            what=str(intent["what"]),
            reason=str(intent["reason"]),
            handle=str(intent["handle"]),
            gitlab_username=str(intent["gitlab_username"]),
            holds=str(intent["holds"]),
            marker=str(intent["marker"]),
        )

    async def observe(self, intent: dict[str, Any], services: Services) -> Observation:
        found = await incident_tracker(services).find_marked(str(intent["marker"]))
        if found is None:
            return Observation("not_applied", {}, "no request issue")
        return Observation("applied", {"ref": found.ref, "url": found.url}, found.ref)


# --- grant and revoke -----------------------------------------------------------------------


@dataclass(frozen=True)
class GrantPlan(Change):
    grant: str
    handle: str
    account_id: int
    issue_ref: str
    expires_at: datetime
    granted_by: str
    marker: str
    remote: bool = True

    def summary(self) -> str:
        return f"access grant {self.grant} @{self.handle} ({self.issue_ref})"

    def intent(self) -> dict[str, Any]:
        return {
            "grant": self.grant,
            "handle": self.handle,
            "account_id": self.account_id,
            "issue_ref": self.issue_ref,
            "expires_at": self.expires_at.isoformat(),
            "granted_by": self.granted_by,
            "marker": self.marker,
        }

    def note(self) -> str:
        return (
            f"@{self.granted_by} granted `{self.grant}` to @{self.handle} in Marvin, until "
            f"{self.expires_at:%Y-%m-%d %H:%M UTC}."
        )


async def _stale(ctx: Context) -> Done | None:
    """Who may grant is read from the registry: not from a mirror too old to say."""
    freshness = await ctx.services.directory.freshness()
    limit = ctx.services.settings.directory.max_staleness_minutes
    if not freshness.stale(ctx.now, limit):
        return None
    return Done(
        f"{freshness.shown(ctx.now)} That is older than the {limit:g} minutes allowed, so I "
        "can't be sure of anyone's roles; `access refresh` first. Nothing was changed.",
        ok=False,
        kind="denied",
    )


async def _target(ctx: Context, name: str) -> tuple[DirectoryPerson, Account] | Done:
    person = await find_person(ctx, name)
    if person is None:
        return Done(
            f"@{name} is not in the roles registry, so I can't tell who they are.",
            ok=False,
            kind="not_found",
        )
    async with ctx.read() as session:
        account = await account_for_handle(session, person.handle)
    if account is None:
        return Done(
            f"@{person.handle} has no Marvin account yet: they get one by saying anything to "
            "me. Then grant it again.",
            ok=False,
            kind="not_found",
        )
    return person, account


class GrantHandler(Handler[AccessGrant]):
    async def plan(self, cmd: AccessGrant, ctx: Context) -> Plan:
        stale = await _stale(ctx)
        if stale is not None:
            return stale
        target = await _target(ctx, cmd.person)
        if isinstance(target, Done):
            return target
        person, account = target
        async with ctx.read() as session:
            given = await grant_store.held(session, now=ctx.now, handle=person.handle)
        holds = requests.already(person, cmd.grant, frozenset(g.name for g in given))
        if holds is not None:
            return Done(
                f"@{person.handle} already has `{cmd.grant}` {holds.replace('your ', 'their ')}.",
                ok=False,
                kind="denied",
            )
        try:
            issue = await ctx.services.issues.get(cmd.issue)
        except NotFound:
            return Done(
                f"I can't find the request issue {cmd.issue}; a grant needs its "
                f"`{requests.REQUEST_LABEL}` issue.",
                ok=False,
                kind="not_found",
            )
        except AdapterError as exc:
            return Done(
                f"I couldn't read the request issue ({exc.shown()}), so I didn't grant it.",
                ok=False,
                kind="error",
            )
        if requests.REQUEST_LABEL not in issue.labels:
            return Done(
                f"{issue.ref} is not labelled `{requests.REQUEST_LABEL}`: a grant needs the "
                "person's access request issue.",
                ok=False,
                kind="denied",
            )
        if not issue.is_open:
            return Done(
                f"{issue.ref} is {issue.state}: a grant needs an open access request issue.",
                ok=False,
                kind="denied",
            )
        return GrantPlan(
            grant=cmd.grant,
            handle=person.handle,
            account_id=account.id,
            issue_ref=issue.ref,
            expires_at=ctx.now + cmd.expires,
            granted_by=ctx.caller.handle,
            marker=f"marvin-access-grant:{ctx.invocation.request_id}",
        )

    async def reserve(self, plan: Change, session: AsyncSession, ctx: Context) -> None:
        assert isinstance(plan, GrantPlan)
        given = await grant_store.held(session, now=ctx.now, handle=plan.handle)
        if any(g.name == plan.grant for g in given):
            raise Moved  # granted meanwhile: plan again, which says so

    async def apply(self, plan: Change, ctx: Context) -> dict[str, Any]:
        assert isinstance(plan, GrantPlan)
        await incident_tracker(ctx.services).add_note(
            plan.issue_ref, plan.note(), marker=plan.marker
        )
        return {"noted": plan.issue_ref}

    async def record(
        self, plan: Change, session: AsyncSession, ctx: Context, applied: dict[str, Any]
    ) -> Outcome:
        assert isinstance(plan, GrantPlan)
        session.add(
            Grant(
                account_id=plan.account_id,
                name=plan.grant,
                granted_by=plan.granted_by,
                issue_ref=plan.issue_ref,
                created_at=ctx.now,
                expires_at=plan.expires_at,
            )
        )
        until = f"{plan.expires_at:%Y-%m-%d}"
        return Outcome(
            f"Granted `{plan.grant}` to @{plan.handle} until {until}, and noted it on "
            f"{plan.issue_ref}.",
            announcement=f"@{plan.granted_by} granted `{plan.grant}` to @{plan.handle} until "
            f"{until} ({plan.issue_ref})",
            details={"issue": plan.issue_ref, "expires_at": plan.expires_at.isoformat()},
        )

    def replan(self, intent: dict[str, Any]) -> Change:
        return GrantPlan(
            grant=str(intent["grant"]),
            handle=str(intent["handle"]),
            account_id=int(intent["account_id"]),
            issue_ref=str(intent["issue_ref"]),
            expires_at=as_utc(datetime.fromisoformat(str(intent["expires_at"]))),
            granted_by=str(intent["granted_by"]),
            marker=str(intent["marker"]),
        )

    async def observe(self, intent: dict[str, Any], services: Services) -> Observation:
        ref, marker = str(intent["issue_ref"]), str(intent["marker"])
        if await incident_tracker(services).has_note(ref, marker):
            return Observation("applied", {"noted": ref}, f"the grant noted on {ref}")
        return Observation("not_applied", {}, f"no grant note on {ref}")


@dataclass(frozen=True)
class RevokePlan(Change):
    grant: str
    handle: str
    account_id: int
    grant_ids: tuple[int, ...]

    def summary(self) -> str:
        return f"access revoke {self.grant} @{self.handle}"


class RevokeHandler(Handler[AccessRevoke]):
    async def plan(self, cmd: AccessRevoke, ctx: Context) -> Plan:
        person = await find_person(ctx, cmd.person)
        if person is None:
            return Done(
                f"@{cmd.person} is not in the roles registry, so I can't tell who they are.",
                ok=False,
                kind="not_found",
            )
        async with ctx.read() as session:
            account = await account_for_handle(session, person.handle)
            given = [
                g
                for g in await grant_store.held(session, now=ctx.now, handle=person.handle)
                if g.name == cmd.grant
            ]
        if not given:
            through = requests.already(person, cmd.grant, frozenset())
            extra = (
                f" They hold it {through}: that changes in the roles registry, not here."
                if through
                else ""
            )
            return Done(
                f"@{person.handle} holds no `{cmd.grant}` grant given in Marvin.{extra}",
                ok=False,
                kind="not_found",
            )
        assert account is not None  # it holds the grants
        return RevokePlan(cmd.grant, person.handle, account.id, tuple(g.id for g in given))

    async def record(
        self, plan: Change, session: AsyncSession, ctx: Context, applied: dict[str, Any]
    ) -> Outcome:
        assert isinstance(plan, RevokePlan)
        result = await session.execute(
            update(Grant)
            .where(Grant.id.in_(plan.grant_ids), Grant.revoked_at.is_(None))
            .values(revoked_at=ctx.now, revoked_by=ctx.caller.handle)
            .returning(Grant.issue_ref)
        )
        refs = sorted({r for r in result.scalars() if r})
        if not refs and not await session.scalar(
            select(Grant.id).where(Grant.id.in_(plan.grant_ids)).limit(1)
        ):
            raise Moved
        where = f" (from {', '.join(refs)})" if refs else ""
        return Outcome(
            f"Revoked @{plan.handle}'s `{plan.grant}` grant{where}.",
            announcement=f"@{ctx.caller.handle} revoked @{plan.handle}'s `{plan.grant}` grant"
            + where,
            details={"grants": list(plan.grant_ids)},
        )


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


_ENV = Opt("env", "only roles with access to production, staging or runners", "env")

SPECS = (
    CommandSpec(
        "access",
        "who",
        "Who has access, grouped by role, with how each person holds it.",
        AccessWho,
        WhoHandler(),
        (Arg("role", "only this role", required=False),),
        (_ENV,),
        examples=("access who", "access who --env production", "access who support"),
    ),
    CommandSpec(
        "access",
        "check",
        "Someone's roles, environments and grants, and why they have them.",
        AccessCheck,
        CheckHandler(),
        (Arg("person", "@handle or GitLab username"),),
        examples=("access check @bob",),
    ),
    CommandSpec(
        "access", "mine", "Your roles, environments and grants.", AccessMine, MineHandler()
    ),
    CommandSpec(
        "access",
        "request",
        "Ask for a grant or for access: opens an issue in the infrastructure tracker.",
        AccessRequest,
        RequestHandler(),
        (
            Arg("what", "feature_flags, production, staging or runners"),
            Arg("reason", "why you need it", rest=True),
        ),
        examples=('access request feature_flags "to roll out new_nav"',),
        plans=(RequestPlan,),
    ),
    CommandSpec(
        "access",
        "grant",
        "Give someone a grant, on their access request issue (production role).",
        AccessGrant,
        GrantHandler(),
        (Arg("grant", "feature_flags"), Arg("person", "@handle or GitLab username")),
        (
            Opt("issue", "their `access request` issue (#12)", "ref"),
            Opt("expires", f"how long it lasts (default {requests.DEFAULT_GRANT_DAYS}d)", "90d"),
        ),
        needs=PRODUCTION_ONLY,
        examples=("access grant feature_flags @bob --issue #12 --expires 90d",),
        plans=(GrantPlan,),
    ),
    CommandSpec(
        "access",
        "revoke",
        "Take back a grant given in Marvin (production role).",
        AccessRevoke,
        RevokeHandler(),
        (Arg("grant", "feature_flags"), Arg("person", "@handle or GitLab username")),
        needs=PRODUCTION_ONLY,
        examples=("access revoke feature_flags @bob",),
        plans=(RevokePlan,),
    ),
    CommandSpec(
        "access",
        "report",
        "The access review: who has production or staging access and how, when reviewed, "
        "grants near expiry, idle members (production role).",
        AccessReport,
        ReportHandler(),
        needs=PRODUCTION_ONLY,
    ),
    CommandSpec(
        "access",
        "reviewed",
        "Record that you reviewed someone's access (production role).",
        AccessReviewed,
        ReviewedHandler(),
        (Arg("person", "@handle or GitLab username"), Arg("note", "optional", False, True)),
        needs=PRODUCTION_ONLY,
        plans=(ReviewedPlan,),
    ),
    CommandSpec(
        "access",
        "refresh",
        "Sync the roles registry's GitLab mirror now (production role).",
        AccessRefresh,
        RefreshHandler(),
        needs=PRODUCTION_ONLY,
        plans=(RefreshPlan,),
    ),
)
