from __future__ import annotations

from marvin.commands.base import Change
from marvin.commands.plans import FlagPlan
from marvin.policies.base import Decision, Request


class ConsistencyPolicy:
    """No environment runs a feature ahead of the one it follows (production, staging)."""

    name = "consistency"
    mandatory = False
    judges: tuple[type[Change], ...] = (FlagPlan,)

    def check(self, req: Request) -> Decision:
        plan = req.plan
        assert isinstance(plan, FlagPlan)
        if plan.skip_consistency:
            followed = [n.env.value for n in plan.neighbours if n.followed]
            return Decision.allow(
                note=f"Consistency with {followed[0] if followed else 'other environments'} "
                "ignored, as asked"
            )
        # Raising needs the followed environment on; lowering is always fine.
        for ahead in (n for n in plan.neighbours if n.followed):
            if not plan.lowers() and not ahead.is_on():
                return Decision.deny(
                    f"`{plan.flag}` is off in {ahead.env.value}. Turn it on there first "
                    f"(`feature set {plan.flag} ... --{ahead.env.value}`): {plan.env.value} "
                    f"must not run a feature {ahead.env.value} hasn't."
                )
        # Turning off where others follow (a lowering) is exactly what must wait for them.
        after_on = plan.after is not None and plan.after.is_on()
        for behind in (n for n in plan.neighbours if not n.followed):
            if not after_on and behind.is_on():
                return Decision.deny(
                    f"`{plan.flag}` is on in {behind.env.value}. Turn it off there first, so "
                    f"{plan.env.value} keeps testing what {behind.env.value} runs."
                )
        return Decision.allow()
