from __future__ import annotations

from marvin.commands.plans import FlagPlan
from marvin.policies.base import Decision, Request


class AvailabilityPolicy:
    """Whoever changes a flag stays to watch it, and a production engineer is on call."""

    name = "availability"

    async def check(self, req: Request) -> Decision:
        plan = req.plan
        if not isinstance(plan, FlagPlan):
            return Decision.allow()
        settings = req.ctx.services.settings.availability
        account = req.ctx.caller.account
        if account.away_since is not None:
            return Decision.deny(
                f"You're marked away, and whoever changes a flag watches it for the next "
                f"{settings.watch_hours:g} hours. Run `status back` first if you're here."
            )
        presence = req.ctx.services.presence.get(req.ctx.invocation.transport)
        if presence is not None:
            away = await presence.away(req.ctx.invocation.user_id)
            if away:
                return Decision.deny(
                    f"Your chat status says you're away ({away}), and whoever changes a flag "
                    f"watches it for the next {settings.watch_hours:g} hours."
                )
        if plan.oncall is None or plan.oncall_away:
            if settings.require_oncall:
                who = f"@{plan.oncall} is marked away" if plan.oncall else "nobody is on call"
                return Decision.deny(
                    f"No production engineer is available ({who}); flag changes wait until "
                    "someone is on call."
                )
            return Decision.allow(note="No production engineer is on call.")
        return Decision.allow(note=f"On call: @{plan.oncall}")
