"""The command set: every group, in the order help shows them, checked against the policies."""

from __future__ import annotations

from collections.abc import Iterable

from marvin.commands import (
    access,
    account,
    account_link,
    approval,
    change,
    confirm,
    deploy,
    deploy_queue,
    feature,
    freeze,
    help,
    incident,
)
from marvin.commands.base import ProductionChange
from marvin.environments import DEFAULT as DEFAULT_ENVIRONMENTS
from marvin.environments import Environments
from marvin.policies.base import Policy
from marvin.spec import Registry


class RegistryError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def check(registry: Registry, policies: Iterable[Policy]) -> None:
    """Refuse a command set whose production changes some mandatory policy can't judge.

    Caught here, at start, rather than as a change that slips past a check at run time.
    """
    mandatory = [p for p in policies if p.mandatory]
    problems: list[str] = []
    for spec in registry.specs:
        production = [p for p in spec.plans if issubclass(p, ProductionChange)]
        if spec.production_change and not spec.plans:
            problems.append(f"`{spec.name}` changes production but declares no plans")
        if production and not spec.production_change:
            problems.append(f"`{spec.name}` plans production changes but isn't marked so")
        for plan in spec.plans if spec.production_change else ():
            for policy in mandatory:
                if not issubclass(plan, policy.judges):
                    problems.append(
                        f"`{spec.name}`: the {policy.name} policy can't judge {plan.__name__}"
                    )
    if problems:
        raise RegistryError(problems)


def build_registry(
    policies: Iterable[Policy], environments: Environments = DEFAULT_ENVIRONMENTS
) -> Registry:
    """Every command, checked: a production change some mandatory policy can't judge is a
    `RegistryError` here, before the bot starts. `environments` are the flag environments,
    each an option of the `feature` commands."""
    registry = Registry(environments=environments)
    registry.add("feature flags per environment", feature.specs(environments))
    registry.add("who you are to Marvin", account.SPECS[:1])
    registry.add("whether you're around to watch your changes", account.SPECS[1:])
    registry.add("go ahead with a change Marvin asked you to confirm", confirm.SPECS)
    registry.add("four eyes: a second production engineer's go-ahead", approval.SPECS[:1])
    registry.add("turn down a change waiting for approval", approval.SPECS[1:])
    registry.add("outages: declare them, keep their timeline, mitigate and resolve", incident.SPECS)
    registry.add("planned changes to production, with their checklist", change.SPECS)
    registry.add(
        "deploy slots, the queue and locks, started once when due",
        deploy.SPECS + deploy_queue.SPECS,
    )
    registry.add("windows in which an environment takes no deploys", freeze.SPECS)
    registry.add("who has production access, and why: roles, grants, requests", access.SPECS)
    registry.add("link your chat account to your GitLab user", account_link.SPECS)
    registry.add("this help", help.specs(registry))
    check(registry, policies)
    return registry
