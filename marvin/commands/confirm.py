"""`confirm`: the author's go-ahead for a risky change Marvin asked them to confirm."""

from __future__ import annotations

import re

from pydantic import field_validator

from marvin.clock import as_utc
from marvin.commands.base import Change, Context, Done, Outcome, Plan, Rerun
from marvin.commands.spec import Arg, CommandModel, CommandSpec
from marvin.models import Place
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


class ConfirmHandler:
    async def plan(self, cmd: Confirm, ctx: Context) -> Plan:
        # Locked, so two clicks on one button act once.
        row = await ctx.session.get(Confirmation, cmd.token, with_for_update=True)
        inv = ctx.invocation
        if row is None:
            return Done("I have no change waiting for that confirmation.", False, "not_found")
        if row.transport != inv.transport or row.chat_user_id != inv.user_id:
            return Done(
                "Only the person who asked for this change can confirm it.", False, "denied"
            )
        if row.used_at is not None:
            return Done("That change was already confirmed; nothing more to do.")
        if as_utc(row.expires_at) <= ctx.now:
            return Done("That confirmation has expired; run the command again.", False, "usage")
        return Rerun(token=row.token, text=row.text, place=Place.model_validate(row.place))

    async def apply(self, plan: Change, ctx: Context) -> Outcome:
        assert isinstance(plan, Rerun)
        row = await ctx.session.get(Confirmation, plan.token)
        assert row is not None
        row.used_at = ctx.now
        return Outcome("Confirmed.", details={"confirmed": plan.text})


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
