from __future__ import annotations

from marvin.clock import as_utc
from marvin.commands.base import Change, ProductionChange
from marvin.policies.base import Decision, Request


class ChangeLockPolicy:
    """A serious open incident, a critical change under way (C1/C2) or a freeze window
    stops changes, unless overridden."""

    name = "change_lock"
    mandatory = True
    judges: tuple[type[Change], ...] = (ProductionChange,)

    def check(self, req: Request) -> Decision:
        assert isinstance(req.plan, ProductionChange)
        impact = req.plan.impact()
        # Lowering exposure stays allowed: turning a flag off is often the remedy.
        if impact.lowers:
            return Decision.allow()
        settings = req.settings.change_lock
        now = req.now
        locks: list[str] = []
        # Incidents and changes lock production, and every flag environment the ceiling
        # applies in (where real traffic is: a renamed production among them).
        if impact.environment in ("production", *req.settings.flags.ceiling_environments):
            locks += [
                f"incident {i.ref} (S{i.severity}) “{i.title}” is open"
                for i in req.facts.incidents
                if i.severity in settings.incident_severities
            ]
            locks += [
                f"change {c.ref} (C{c.criticality}) “{c.title}” is under way"
                for c in req.facts.changes
            ]
        for freeze in settings.freezes:
            if impact.environment in freeze.environments and (
                as_utc(freeze.starts_at) <= now < as_utc(freeze.ends_at)
            ):
                until = as_utc(freeze.ends_at).strftime("%Y-%m-%d %H:%M UTC")
                locks.append(f"the change freeze “{freeze.name}” lasts until {until}")
        if not locks:
            return Decision.allow()
        if impact.override_reason:
            return Decision.allow(
                note=f"Production check overridden ({'; '.join(locks)}): {impact.override_reason}"
            )
        return Decision.deny(
            f"Changes to {impact.environment} are locked: {'; '.join(locks)}. A production "
            'engineer can override with `--ignore-production-check "<reason>"`.'
        )
