"""`account link <gitlab-username>`: an account whose e-mail matched nobody in the roles
registry asks to be linked to a GitLab user; a production engineer confirms it
(`account confirm <id>`), in front of the production channel, as with a grant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from marvin.commands.access_common import PRODUCTION_ONLY, find_person, username
from marvin.commands.base import Change, Context, Done, Handler, Moved, Outcome, Plan
from marvin.spec import Arg, CommandModel, CommandSpec
from marvin.store.tables import Account, AccountLink


class AccountLinkAsk(CommandModel):
    gitlab_username: str

    @field_validator("gitlab_username")
    @classmethod
    def _name(cls, value: str) -> str:
        return username(value)


class AccountLinkConfirm(CommandModel):
    id: int = Field(ge=1, le=2_000_000_000)

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> Any:
        return value.strip().removeprefix("#") if isinstance(value, str) else value


@dataclass(frozen=True)
class LinkAskPlan(Change):
    handle: str
    gitlab_username: str

    def summary(self) -> str:
        return f"account link {self.gitlab_username}"


@dataclass(frozen=True)
class LinkConfirmPlan(Change):
    link_id: int
    account_id: int
    account_name: str
    handle: str
    gitlab_username: str

    def summary(self) -> str:
        return f"account confirm {self.link_id} (@{self.handle})"


class LinkAskHandler(Handler[AccountLinkAsk]):
    async def plan(self, cmd: AccountLinkAsk, ctx: Context) -> Plan:
        caller = ctx.caller
        if caller.person is not None:
            return Done(
                f"You're already linked to GitLab user {caller.account.gitlab_username}.",
                ok=False,
                kind="denied",
            )
        person = await find_person(ctx, cmd.gitlab_username)
        if person is None or not person.gitlab_username:
            return Done(
                f"GitLab user {cmd.gitlab_username} is not in the roles registry, so there's "
                "nobody to link you to. Check the spelling, or ask to be added.",
                ok=False,
                kind="not_found",
            )
        return LinkAskPlan(person.handle, person.gitlab_username)

    async def record(
        self, plan: Change, session: AsyncSession, ctx: Context, applied: dict[str, Any]
    ) -> Outcome:
        assert isinstance(plan, LinkAskPlan)
        link = AccountLink(
            account_id=ctx.caller.account.id,
            gitlab_username=plan.gitlab_username,
            requested_at=ctx.now,
        )
        session.add(link)
        await session.flush()
        account = ctx.caller.account
        email = account.email or "no e-mail"
        return Outcome(
            f"I've asked the production engineers to confirm that you are GitLab user "
            f"{plan.gitlab_username} (request {link.id}); until then you hold no roles.",
            announcement=(
                f"{account.display_name} ({email}) asks to be linked to GitLab user "
                f"{plan.gitlab_username}: a production engineer confirms with "
                f"`account confirm {link.id}`"
            ),
            details={"link": link.id, "gitlab_username": plan.gitlab_username},
        )


class LinkConfirmHandler(Handler[AccountLinkConfirm]):
    async def plan(self, cmd: AccountLinkConfirm, ctx: Context) -> Plan:
        async with ctx.read() as session:
            link = await session.get(AccountLink, cmd.id)
            account = await session.get(Account, link.account_id) if link else None
        if link is None or account is None:
            return Done(f"There's no link request {cmd.id}.", ok=False, kind="not_found")
        if link.confirmed_at is not None:
            return Done(
                f"Link request {cmd.id} was already confirmed by @{link.confirmed_by}.",
                ok=False,
                kind="denied",
            )
        if account.id == ctx.caller.account.id:
            return Done("You can't confirm your own link.", ok=False, kind="denied")
        person = await find_person(ctx, link.gitlab_username)
        if person is None:
            return Done(
                f"GitLab user {link.gitlab_username} is no longer in the roles registry.",
                ok=False,
                kind="not_found",
            )
        return LinkConfirmPlan(
            link.id,
            account.id,
            account.display_name,
            person.handle,
            person.gitlab_username or link.gitlab_username,
        )

    async def record(
        self, plan: Change, session: AsyncSession, ctx: Context, applied: dict[str, Any]
    ) -> Outcome:
        assert isinstance(plan, LinkConfirmPlan)
        link = await session.get(AccountLink, plan.link_id)
        account = await session.get(Account, plan.account_id)
        if link is None or account is None or link.confirmed_at is not None:
            raise Moved
        link.confirmed_at = ctx.now
        link.confirmed_by = ctx.caller.handle
        account.directory_handle = plan.handle
        account.gitlab_username = plan.gitlab_username
        # Another account linked to the same person keeps its link: one person, two chats.
        others = await session.scalars(
            select(AccountLink.id).where(
                AccountLink.account_id == plan.account_id, AccountLink.confirmed_at.is_(None)
            )
        )
        for other in others:
            if other != link.id:
                stale = await session.get(AccountLink, other)
                if stale is not None:
                    await session.delete(stale)
        return Outcome(
            f"Linked {plan.account_name}'s account to GitLab user {plan.gitlab_username}.",
            announcement=f"@{ctx.caller.handle} linked {plan.account_name}'s account to GitLab "
            f"user {plan.gitlab_username}",
            details={"link": plan.link_id, "handle": plan.handle},
        )


SPECS = (
    CommandSpec(
        "account",
        "link",
        "Ask to be linked to your GitLab user when your e-mail matched nobody.",
        AccountLinkAsk,
        LinkAskHandler(),
        (Arg("gitlab_username", "your GitLab username"),),
        examples=("account link carol",),
        plans=(LinkAskPlan,),
    ),
    CommandSpec(
        "account",
        "confirm",
        "Confirm an account's link to a GitLab user (production role).",
        AccountLinkConfirm,
        LinkConfirmHandler(),
        (Arg("id", "the link request's number"),),
        needs=PRODUCTION_ONLY,
        plans=(LinkConfirmPlan,),
    ),
)
