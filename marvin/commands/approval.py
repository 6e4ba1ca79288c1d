"""Four-eyes in chat: `approve <code>` and `decline <code>`.

Where config asks for it (`flags.four_eyes`), a change that deviates from a written rule
(a deviation issue, an overridden production check) is posted in the production channel and
waits for a second production engineer. Approving runs the change again, through every
policy as things stand then, on behalf of the person who asked; the code is spent in the
transaction that makes the change, so a refused or crashed run leaves it approvable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import field_validator
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from marvin.clock import as_utc
from marvin.commands.base import Change, Context, Done, Handler, Outcome, Plan, Rerun
from marvin.models import Invocation
from marvin.spec import Arg, CommandModel, CommandSpec, Needs
from marvin.store.tables import Approval

_TOKEN = re.compile(r"^[0-9a-f]{16}$")


class _Code(CommandModel):
    token: str

    @field_validator("token")
    @classmethod
    def _token(cls, value: str) -> str:
        if not _TOKEN.match(value):
            raise ValueError("that is not an approval code")
        return value


class Approve(_Code):
    pass


class Decline(_Code):
    pass


class AlreadyDecided(Exception):
    """Another production engineer (or replica) decided first."""


async def spend(session: AsyncSession, token: str, approver: str, ctx: Context) -> None:
    """Mark the request approved, in the transaction that makes the change; once only."""
    result = await session.execute(
        update(Approval)
        .where(Approval.token == token, Approval.state == "pending")
        .values(state="approved", decided_by=approver, decided_at=ctx.now)
    )
    if not getattr(result, "rowcount", 0):
        raise AlreadyDecided


async def _pending(ctx: Context, token: str) -> Approval | Done:
    async with ctx.read() as session:
        row = await session.get(Approval, token)
    if row is None:
        return Done("I have no change waiting for that approval.", False, "not_found")
    if row.state != "pending":
        by = f" by @{row.decided_by}" if row.decided_by else ""
        return Done(f"That request was already {row.state}{by}; nothing more to do.")
    if as_utc(row.expires_at) <= ctx.now:
        return Done(
            "That request has expired; whoever asked can run the command again.", False, "usage"
        )
    return row


class ApproveHandler(Handler[Approve]):
    async def plan(self, cmd: Approve, ctx: Context) -> Plan:
        row = await _pending(ctx, cmd.token)
        if isinstance(row, Done):
            return row
        if row.account_id == ctx.caller.account.id:
            return Done(
                "You asked for this change, so someone else must approve it: that is the point "
                "of four eyes.",
                False,
                "denied",
            )
        asked = Invocation.model_validate(row.invocation)
        return Rerun(
            token=row.token,
            text=asked.text,
            place=asked.place,
            on_behalf=asked,
            approved_by=ctx.caller.handle,
        )


@dataclass(frozen=True)
class DeclinePlan(Change):
    token: str
    requester: str
    what: str

    def summary(self) -> str:
        return f"decline {self.token}"


class DeclineHandler(Handler[Decline]):
    async def plan(self, cmd: Decline, ctx: Context) -> Plan:
        row = await _pending(ctx, cmd.token)
        if isinstance(row, Done):
            return row
        mine = row.account_id == ctx.caller.account.id
        if not mine and not ctx.caller.has_role("production"):
            return Done(
                "Only production engineers (the `production` role) decline others' requests; "
                "the person who asked can withdraw it.",
                False,
                "denied",
            )
        return DeclinePlan(token=row.token, requester=row.requester, what=row.summary)

    async def record(
        self, plan: Change, session: AsyncSession, ctx: Context, applied: dict[str, Any]
    ) -> Outcome:
        assert isinstance(plan, DeclinePlan)
        who = ctx.caller.handle
        result = await session.execute(
            update(Approval)
            .where(Approval.token == plan.token, Approval.state == "pending")
            .values(state="declined", decided_by=who, decided_at=ctx.now)
        )
        if not getattr(result, "rowcount", 0):
            return Outcome("Someone decided on that request just before you; nothing more to do.")
        mine = plan.requester == who
        return Outcome(
            "Withdrawn." if mine else f"Declined @{plan.requester}'s request.",
            announcement=(
                f"@{who} withdrew their request: {plan.what}"
                if mine
                else f"@{who} declined @{plan.requester}'s request: {plan.what}"
            ),
        )


SPECS = (
    CommandSpec(
        "approve",
        None,
        "Approve another person's change that waits for a second production engineer.",
        Approve,
        ApproveHandler(),
        (Arg("token", "the code in the request"),),
        needs=Needs("role", "production"),
    ),
    CommandSpec(
        "decline",
        None,
        "Decline a change waiting for approval (or withdraw your own).",
        Decline,
        DeclineHandler(),
        (Arg("token", "the code in the request"),),
        plans=(DeclinePlan,),
    ),
)
