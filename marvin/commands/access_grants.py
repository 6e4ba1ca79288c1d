"""`access request` (opens the request's issue), `access grant` and `access revoke`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import Field, field_validator
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from marvin.access import grants as grant_store
from marvin.access import requests
from marvin.access.grants import HeldGrant
from marvin.accounts import account_for_handle
from marvin.adapters.directory import DirectoryPerson
from marvin.adapters.errors import AdapterError, NotFound
from marvin.adapters.gitlab_issues import NewIssue
from marvin.clock import as_utc
from marvin.commands.access_common import find_person, username
from marvin.commands.base import Change, Context, Done, Handler, Moved, Observation, Outcome, Plan
from marvin.flag_log import ROLLOUT_NOTE as ISSUE_NOTE
from marvin.issue_delivery import incident_tracker
from marvin.outbox import enqueue
from marvin.services import Services
from marvin.spec import CommandModel
from marvin.store.tables import Account, Grant

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


class AccessRevoke(CommandModel):
    grant: Literal["feature_flags"]
    person: str

    @field_validator("person")
    @classmethod
    def _person(cls, value: str) -> str:
        return username(value)


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


@dataclass(frozen=True)
class _Target:
    person: DirectoryPerson
    account: Account | None  # their first chat account: where a grant to them is stored
    given: tuple[HeldGrant, ...]  # what they hold through Marvin now


async def _target(ctx: Context, name: str) -> _Target | Done:
    person = await find_person(ctx, name)
    if person is None:
        return Done(
            f"@{name} is not in the roles registry, so I can't tell who they are.",
            ok=False,
            kind="not_found",
        )
    async with ctx.read() as session:
        account = await account_for_handle(session, person.handle)
        given = await grant_store.held(session, now=ctx.now, handle=person.handle)
    return _Target(person, account, tuple(given))


class GrantHandler(Handler[AccessGrant]):
    async def plan(self, cmd: AccessGrant, ctx: Context) -> Plan:
        target = await _target(ctx, cmd.person)
        if isinstance(target, Done):
            return target
        person, account = target.person, target.account
        if account is None:
            return Done(
                f"@{person.handle} has no Marvin account yet: they get one by saying anything "
                "to me. Then grant it again.",
                ok=False,
                kind="not_found",
            )
        holds = requests.already(person, cmd.grant, frozenset(g.name for g in target.given))
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
    grant_ids: tuple[int, ...]

    def summary(self) -> str:
        return f"access revoke {self.grant} @{self.handle}"


class RevokeHandler(Handler[AccessRevoke]):
    async def plan(self, cmd: AccessRevoke, ctx: Context) -> Plan:
        target = await _target(ctx, cmd.person)
        if isinstance(target, Done):
            return target
        person = target.person
        given = [g for g in target.given if g.name == cmd.grant]
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
        return RevokePlan(cmd.grant, person.handle, tuple(g.id for g in given))

    async def record(
        self, plan: Change, session: AsyncSession, ctx: Context, applied: dict[str, Any]
    ) -> Outcome:
        assert isinstance(plan, RevokePlan)
        revoked = (
            await session.execute(
                update(Grant)
                .where(Grant.id.in_(plan.grant_ids), Grant.revoked_at.is_(None))
                .values(revoked_at=ctx.now, revoked_by=ctx.caller.handle)
                .returning(Grant.id, Grant.issue_ref)
            )
        ).all()
        if not revoked:
            raise Moved  # revoked meanwhile: plan again, which says what is left
        refs = sorted({ref for _, ref in revoked if ref})
        for ref in refs:
            # The request issue tells the whole story: given there, and taken back there
            # (through the issue outbox: the tracker being down loses nothing).
            await enqueue(
                session,
                kind=ISSUE_NOTE,
                key=f"access-revoke:{ctx.invocation.request_id}:{ref}",
                payload={
                    "ref": ref,
                    "body": f"@{ctx.caller.handle} revoked `{plan.grant}` of @{plan.handle} "
                    f"in Marvin, {ctx.now:%Y-%m-%d %H:%M UTC}.",
                    "marker": f"marvin-access-revoke:{ctx.invocation.request_id}:{ref}",
                },
                now=ctx.now,
            )
        where = f" (from {', '.join(refs)})" if refs else ""
        return Outcome(
            f"Revoked @{plan.handle}'s `{plan.grant}` grant{where}.",
            announcement=f"@{ctx.caller.handle} revoked @{plan.handle}'s `{plan.grant}` grant"
            + where,
            details={"grants": sorted(grant_id for grant_id, _ in revoked)},
        )
