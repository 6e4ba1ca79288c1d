from __future__ import annotations

from sqlalchemy import select

from marvin.clock import as_utc
from marvin.commands.plans import FlagPlan
from marvin.flags import Environment
from marvin.policies.base import Decision, Request
from marvin.store.tables import Incident


class ChangeLockPolicy:
    """A serious open incident or a freeze window stops changes, unless overridden."""

    name = "change_lock"

    async def check(self, req: Request) -> Decision:
        plan = req.plan
        # Lowering exposure stays allowed: turning a flag off is often the remedy.
        if not isinstance(plan, FlagPlan) or plan.lowers():
            return Decision.allow()
        settings = req.ctx.services.settings.change_lock
        now = req.ctx.now
        locks: list[str] = []
        if plan.env is Environment.production and settings.incident_severities:
            incidents = await req.ctx.session.scalars(
                select(Incident)
                .where(
                    Incident.state == "open",
                    Incident.severity.in_(settings.incident_severities),
                )
                .order_by(Incident.severity, Incident.id)
            )
            locks += [
                f"incident {i.issue_ref or i.id} (S{i.severity}) “{i.title}” is open"
                for i in incidents
            ]
        for freeze in settings.freezes:
            if plan.env.value in freeze.environments and (
                as_utc(freeze.starts_at) <= now < as_utc(freeze.ends_at)
            ):
                until = as_utc(freeze.ends_at).strftime("%Y-%m-%d %H:%M UTC")
                locks.append(f"the change freeze “{freeze.name}” lasts until {until}")
        if not locks:
            return Decision.allow()
        if plan.override_reason:
            return Decision.allow(
                note=f"Production check overridden ({'; '.join(locks)}): {plan.override_reason}"
            )
        return Decision.deny(
            f"Changes to {plan.env.value} are locked: {'; '.join(locks)}. A production engineer "
            'can override with `--ignore-production-check "<reason>"`.'
        )
