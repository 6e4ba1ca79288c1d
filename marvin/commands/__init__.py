"""Every command Marvin knows, one module per group."""

from __future__ import annotations

from marvin.commands import account, confirm, feature, help
from marvin.commands.spec import Registry


def build_registry() -> Registry:
    registry = Registry()
    registry.add("feature flags per environment", feature.SPECS)
    registry.add("who you are to Marvin", account.SPECS[:1])
    registry.add("whether you're around to watch your changes", account.SPECS[1:])
    registry.add("go ahead with a change Marvin asked you to confirm", confirm.SPECS)
    registry.add("this help", help.SPECS)
    return registry
