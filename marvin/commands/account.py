"""`whoami` and `status`: who Marvin thinks you are, and whether you're around."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from marvin.commands.base import Change, Context, Done, Handler, Outcome, Plan
from marvin.commands.plans import StatusPlan
from marvin.spec import Arg, CommandModel, CommandSpec
from marvin.store.tables import Account, Watch


class WhoAmI(CommandModel):
    pass


class StatusShow(CommandModel):
    pass


class StatusAway(CommandModel):
    reason: str | None = Field(None, max_length=500)


class StatusBack(CommandModel):
    pass


async def _active_watches(session: AsyncSession, ctx: Context) -> list[Watch]:
    return list(
        await session.scalars(
            select(Watch)
            .where(Watch.account_id == ctx.caller.account.id, Watch.ends_at > ctx.now)
            .order_by(Watch.ends_at)
        )
    )


def _watch_lines(watches: list[Watch]) -> list[str]:
    return [f"• {w.subject} until {w.ends_at.strftime('%Y-%m-%d %H:%M UTC')}" for w in watches]


def _status_line(ctx: Context) -> str:
    account = ctx.caller.account
    if account.away_since is None:
        return "Status: available."
    reason = f" ({account.away_reason})" if account.away_reason else ""
    return f"Status: away since {account.away_since.strftime('%Y-%m-%d %H:%M UTC')}{reason}."


class WhoAmIHandler(Handler[WhoAmI]):
    async def plan(self, cmd: WhoAmI, ctx: Context) -> Plan:
        caller = ctx.caller
        account = caller.account
        lines = [f"You are {account.display_name} ({account.email or 'no e-mail known'})."]
        if caller.person is None:
            lines.append(
                "You're not in the roles registry yet, so you can read but not change "
                "anything. Ask a production engineer to add you."
            )
        else:
            lines.append(f"GitLab user: {account.gitlab_username}.")
        lines.append("Roles: " + (", ".join(sorted(caller.roles)) or "none") + ".")
        lines.append("Grants: " + (", ".join(sorted(caller.grants)) or "none") + ".")
        lines.append(_status_line(ctx))
        async with ctx.read() as session:
            watches = await _active_watches(session, ctx)
        if watches:
            lines += ["Watching:", *_watch_lines(watches)]
        return Done("\n".join(lines))


class StatusShowHandler(Handler[StatusShow]):
    async def plan(self, cmd: StatusShow, ctx: Context) -> Plan:
        async with ctx.read() as session:
            watches = await _active_watches(session, ctx)
        lines = [_status_line(ctx)]
        if watches:
            lines += ["Watching:", *_watch_lines(watches)]
        return Done("\n".join(lines))


class StatusHandler(Handler[StatusAway | StatusBack]):
    async def plan(self, cmd: StatusAway | StatusBack, ctx: Context) -> Plan:
        away = isinstance(cmd, StatusAway)
        if (ctx.caller.account.away_since is not None) == away:
            return Done("You're already marked away." if away else "You're already marked here.")
        return StatusPlan(away=away, reason=cmd.reason if isinstance(cmd, StatusAway) else None)

    async def record(
        self, plan: Change, session: AsyncSession, ctx: Context, applied: dict[str, Any]
    ) -> Outcome:
        assert isinstance(plan, StatusPlan)
        account = await session.get(Account, ctx.caller.account.id)
        assert account is not None
        if not plan.away:
            account.away_since = None
            account.away_reason = None
            return Outcome("Welcome back: you're marked available.")
        account.away_since = ctx.now
        account.away_reason = plan.reason
        text = "You're marked away: I won't let you change flags until `status back`."
        watches = await _active_watches(session, ctx)
        if watches:
            # Going away does not end a watch you committed to; make that visible.
            text += "\nYou still committed to watch:\n" + "\n".join(_watch_lines(watches))
            text += "\nHand these over to the engineer on call before you go."
        return Outcome(text)


SPECS = (
    CommandSpec(
        "whoami", None, "Show your account, roles, grants and status.", WhoAmI, WhoAmIHandler()
    ),
    CommandSpec(
        "status", None, "Show whether you're marked available.", StatusShow, StatusShowHandler()
    ),
    CommandSpec(
        "status",
        "away",
        "Mark yourself away: you can't change flags until back.",
        StatusAway,
        StatusHandler(),
        (Arg("reason", "why, optional", False, True),),
    ),
    CommandSpec("status", "back", "Mark yourself available again.", StatusBack, StatusHandler()),
)
