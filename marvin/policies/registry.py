from __future__ import annotations

from marvin.adapters.directory import shown_age
from marvin.commands.base import Change, ProductionChange
from marvin.facts import Unknown
from marvin.policies.base import Decision, Request


class RegistryFreshnessPolicy:
    """Who may change production is read from the roles registry: a GitLab mirror older
    than `directory.max_staleness_minutes` can't say so, and the change waits for a sync."""

    name = "registry"
    mandatory = True
    judges: tuple[type[Change], ...] = (ProductionChange,)

    def check(self, req: Request) -> Decision:
        fact = req.facts.directory
        if isinstance(fact, Unknown):
            return Decision.deny(
                f"I couldn't read the roles registry ({fact.shown()}), so I can't tell who may "
                "change production; nothing was changed."
            )
        freshness = fact.value
        limit = req.settings.directory.max_staleness_minutes
        if not freshness.stale(req.now, limit):
            return Decision.allow()
        age = freshness.age_minutes(req.now)
        how_old = "has never synced" if age is None else f"was last synced {shown_age(age)}"
        why = f" (the last sync said: {freshness.error})" if freshness.error else ""
        return Decision.deny(
            f"The roles registry's GitLab mirror {how_old}{why}, more than the {limit:g} "
            "minutes allowed, so I can't be sure who may change production. A production "
            "engineer can try `access refresh`; nothing was changed."
        )
