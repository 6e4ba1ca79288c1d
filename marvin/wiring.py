"""Build the bot from config: the one place adapters are chosen.

`BACKENDS` is the table: for each `backend:` key in config, the names it accepts and what
each builds. A name that isn't here is a configuration error (`config check` lists it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from marvin.adapters.directory import FileDirectory
from marvin.adapters.flags import LocalFlagBackend
from marvin.adapters.issues import LocalIssueTracker
from marvin.adapters.oncall import FileRotation
from marvin.adapters.presence import Presence
from marvin.clock import Clock, SystemClock
from marvin.commands.catalog import build_registry
from marvin.config import Settings
from marvin.flags import Environment
from marvin.pipeline import Pipeline
from marvin.policies import POLICIES
from marvin.services import Services
from marvin.spec import Registry
from marvin.store.db import Store

# What each builder gets: the settings, the store and the clock.
Builder = Callable[[Settings, Store, Clock], Any]

BACKENDS: Mapping[str, Mapping[str, Builder]] = {
    "flags": {
        "local": lambda settings, store, clock: LocalFlagBackend(store, clock),
    },
    "issues": {
        "local": lambda settings, store, clock: LocalIssueTracker(store, clock),
    },
    "directory": {
        "file": lambda settings, store, clock: FileDirectory(settings.directory),
    },
    "oncall": {
        "file": lambda settings, store, clock: FileRotation(settings.oncall),
    },
}


def _chosen(settings: Settings) -> dict[str, str]:
    return {
        "flags": settings.flags.backend,
        "issues": settings.issues.backend,
        "directory": settings.directory.backend,
        "oncall": settings.oncall.backend,
    }


def backend_problems(settings: Settings) -> list[str]:
    """Every `backend:` key naming an implementation that doesn't exist."""
    problems = []
    for section, name in _chosen(settings).items():
        known = BACKENDS[section]
        if name not in known:
            names = ", ".join(repr(k) for k in known)
            problems.append(f"{section}.backend: unknown backend {name!r} (one of: {names})")
    return problems


def build_services(
    settings: Settings,
    *,
    clock: Clock | None = None,
    presence: Mapping[str, Presence] | None = None,
) -> Services:
    db = settings.database
    clock = clock or SystemClock()
    store = Store(db.url, echo=db.echo, pool_size=db.pool_size)
    chosen = _chosen(settings)

    def build(section: str) -> Any:
        return BACKENDS[section][chosen[section]](settings, store, clock)

    flags = build("flags")
    return Services(
        settings=settings,
        clock=clock,
        store=store,
        flag_backends={env: flags for env in Environment},
        issues=build("issues"),
        directory=build("directory"),
        oncall=build("oncall"),
        presence=dict(presence or {}),
    )


def registry() -> Registry:
    return build_registry(POLICIES)


def build_pipeline(services: Services) -> Pipeline:
    return Pipeline(services, registry())
