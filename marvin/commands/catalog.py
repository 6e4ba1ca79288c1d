"""The command set: every group, in the order help shows them, checked against the policies."""

from __future__ import annotations

from collections.abc import Iterable

from marvin.commands import account, confirm, feature, help
from marvin.policies.base import Policy
from marvin.spec import Registry


def build_registry(policies: Iterable[Policy]) -> Registry:
    """Every command, checked: a production change some mandatory policy can't judge is a
    `RegistryError` here, before the bot starts."""
    registry = Registry()
    registry.add("feature flags per environment", feature.SPECS)
    registry.add("who you are to Marvin", account.SPECS[:1])
    registry.add("whether you're around to watch your changes", account.SPECS[1:])
    registry.add("go ahead with a change Marvin asked you to confirm", confirm.SPECS)
    registry.add("this help", help.specs(registry))
    registry.check(policies)
    return registry
