"""How old the roles registry may be when a decision rests on it.

A GitLab mirror older than `directory.max_staleness_minutes` can't say who holds a role:
not who may change production (`RegistryFreshnessPolicy`, with a production change's other
facts), nor who may run a command allowed on a role or grant (`judge_needs`, which the
pipeline asks for such a command's change once it is planned). A sync is never refused for
it: that is what brings the mirror back.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from marvin.adapters.directory import Freshness, shown_age
from marvin.commands.base import Change, ProductionChange
from marvin.config import Settings
from marvin.facts import Known, Unknown
from marvin.policies.base import Decision, Request

if TYPE_CHECKING:
    from marvin.spec import CommandSpec

NAME = "registry"


class SyncsRegistry:
    """A plan that brings the mirror up to date: what a stale mirror calls for."""


def judge(
    fact: Known[Freshness] | Unknown, now: datetime, settings: Settings, *, who: str
) -> Decision:
    """The rule, for a decision on `who` may do something."""
    if isinstance(fact, Unknown):
        return Decision.deny(
            f"I couldn't read the roles registry ({fact.shown()}), so I can't tell {who}; "
            "nothing was changed."
        )
    freshness = fact.value
    limit = settings.directory.max_staleness_minutes
    if not freshness.stale(now, limit):
        return Decision.allow()
    age = freshness.age_minutes(now)
    how_old = "has never synced" if age is None else f"was last synced {shown_age(age)}"
    why = f" (the last sync said: {freshness.error})" if freshness.error else ""
    return Decision.deny(
        f"The roles registry's GitLab mirror {how_old}{why}, more than the {limit:g} "
        f"minutes allowed, so I can't be sure {who}. A production engineer can try "
        "`access refresh`; nothing was changed."
    )


def judge_needs(
    spec: CommandSpec,
    plan: Change,
    fact: Known[Freshness] | Unknown,
    now: datetime,
    settings: Settings,
) -> Decision:
    """A command allowed on a role or grant (`spec.needs`) that is no production change."""
    if spec.needs is None or isinstance(plan, SyncsRegistry):
        return Decision.allow()
    return judge(fact, now, settings, who=f"who may use `{spec.name}`")


class RegistryFreshnessPolicy:
    """Who may change production is read from the roles registry: a GitLab mirror older
    than `directory.max_staleness_minutes` can't say so, and the change waits for a sync."""

    name = NAME
    mandatory = True
    judges: tuple[type[Change], ...] = (ProductionChange,)

    def check(self, req: Request) -> Decision:
        return judge(req.facts.directory, req.now, req.settings, who="who may change production")
