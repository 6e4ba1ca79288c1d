from __future__ import annotations

from marvin.commands.base import Change, ProductionChange
from marvin.facts import Known
from marvin.policies.base import Decision, Request


class AvailabilityPolicy:
    """Whoever changes production stays to watch it, and a production engineer is on call."""

    name = "availability"
    mandatory = True
    judges: tuple[type[Change], ...] = (ProductionChange,)

    def check(self, req: Request) -> Decision:
        settings = req.settings.availability
        hours = f"{settings.watch_hours:g}"
        account = req.caller.account
        if account.away_since is not None:
            return Decision.deny(
                f"You're marked away, and whoever changes a flag watches it for the next "
                f"{hours} hours. Run `status back` first if you're here."
            )
        presence = req.facts.presence
        if not isinstance(presence, Known):
            # Not knowing whether someone is there is not knowing they are: fail closed.
            return Decision.deny(
                f"I couldn't tell whether you're around to watch this change "
                f"({presence.shown()}), so I didn't make it. Try again in a minute."
            )
        if presence.value:
            return Decision.deny(
                f"Your chat status says you're away ({presence.value}), and whoever changes a "
                f"flag watches it for the next {hours} hours."
            )
        oncall = req.facts.oncall
        if not isinstance(oncall, Known):
            if settings.require_oncall:
                return Decision.deny(
                    f"I couldn't tell who is on call ({oncall.shown()}); flag changes wait "
                    "until I can."
                )
            return Decision.allow(note="On call: unknown.")
        who = oncall.value
        if who.handle is None or who.away:
            if settings.require_oncall:
                why = f"@{who.handle} is marked away" if who.handle else "nobody is on call"
                return Decision.deny(
                    f"No production engineer is available ({why}); flag changes wait until "
                    "someone is on call."
                )
            return Decision.allow(note="No production engineer is on call.")
        return Decision.allow(note=f"On call: @{who.handle}")
