"""`confirm`: the author's go-ahead for a risky change Marvin asked them to confirm.

The code is spent in the same transaction as the change it confirms: a confirmed change
that a policy refuses, or that crashes, leaves the code usable until it expires.
"""

from __future__ import annotations

import re

from pydantic import field_validator
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from marvin.clock import as_utc
from marvin.commands.base import Context, Done, Handler, Plan, Rerun
from marvin.models import Place
from marvin.spec import Arg, CommandModel, CommandSpec
from marvin.store.tables import Confirmation

_TOKEN = re.compile(r"^[0-9a-f]{16}$")


class Confirm(CommandModel):
    token: str

    @field_validator("token")
    @classmethod
    def _token(cls, value: str) -> str:
        if not _TOKEN.match(value):
            raise ValueError("that is not a confirmation code")
        return value


class AlreadySpent(Exception):
    """Another click or another replica confirmed the change first."""


async def spend(session: AsyncSession, token: str, ctx: Context) -> None:
    """Mark the code used, in the transaction that makes the change; once only."""
    result = await session.execute(
        update(Confirmation)
        .where(Confirmation.token == token, Confirmation.used_at.is_(None))
        .values(used_at=ctx.now)
    )
    if not getattr(result, "rowcount", 0):
        raise AlreadySpent


class ConfirmHandler(Handler[Confirm]):
    async def plan(self, cmd: Confirm, ctx: Context) -> Plan:
        async with ctx.read() as session:
            row = await session.get(Confirmation, cmd.token)
        inv = ctx.invocation
        if row is None:
            return Done("I have no change waiting for that confirmation.", False, "not_found")
        if row.transport != inv.transport or row.chat_user_id != inv.user_id:
            return Done(
                "Only the person who asked for this change can confirm it.", False, "denied"
            )
        if row.used_at is not None:
            return Done("That change was already confirmed and made; nothing more to do.")
        if as_utc(row.expires_at) <= ctx.now:
            return Done("That confirmation has expired; run the command again.", False, "usage")
        return Rerun(token=row.token, text=row.text, place=Place.model_validate(row.place))


SPECS = (
    CommandSpec(
        "confirm",
        None,
        "Go ahead with a change Marvin asked you to confirm.",
        Confirm,
        ConfirmHandler(),
        (Arg("token", "the code Marvin gave you"),),
    ),
)
