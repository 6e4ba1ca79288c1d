from __future__ import annotations

from marvin.commands.base import Change
from marvin.commands.plans import FlagPlan
from marvin.flags import Environment
from marvin.policies.base import Decision, Request


class ConsistencyPolicy:
    """Production never runs ahead of staging."""

    name = "consistency"
    mandatory = False
    judges: tuple[type[Change], ...] = (FlagPlan,)

    def check(self, req: Request) -> Decision:
        plan = req.plan
        assert isinstance(plan, FlagPlan)
        if plan.skip_consistency:
            return Decision.allow(note="Consistency with staging ignored, as asked")
        other_on = plan.other is not None and plan.other.is_on()
        # Raising production needs staging on; lowering production is always fine.
        if plan.env is Environment.production and not plan.lowers() and not other_on:
            return Decision.deny(
                f"`{plan.flag}` is off in staging. Turn it on there first "
                f"(`feature set {plan.flag} ... --staging`): production must not run a "
                "feature staging hasn't."
            )
        # Turning staging off (a lowering) is exactly what must wait for production.
        after_on = plan.after is not None and plan.after.is_on()
        if plan.env is Environment.staging and not after_on and other_on:
            return Decision.deny(
                f"`{plan.flag}` is on in production. Turn it off there first, so staging "
                "keeps testing what production runs."
            )
        return Decision.allow()
