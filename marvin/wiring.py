"""Build the bot's services from config: the one place adapters are chosen."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from marvin.adapters.directory import Directory, FileDirectory
from marvin.adapters.flags import FlagBackend, LocalFlagBackend
from marvin.adapters.issues import IssueTracker, LocalIssueTracker
from marvin.adapters.oncall import FileRotation, Oncall
from marvin.adapters.presence import Presence
from marvin.clock import Clock, SystemClock
from marvin.commands import build_registry
from marvin.commands.spec import Registry
from marvin.config import Settings
from marvin.store.db import Store


@dataclass(frozen=True)
class Services:
    settings: Settings
    clock: Clock
    store: Store
    registry: Registry
    flags: FlagBackend
    issues: IssueTracker
    directory: Directory
    oncall: Oncall
    # Per transport: what each chat says about whether someone is away.
    presence: Mapping[str, Presence] = field(default_factory=dict)


def build_services(
    settings: Settings,
    *,
    clock: Clock | None = None,
    presence: Mapping[str, Presence] | None = None,
) -> Services:
    db = settings.database
    return Services(
        settings=settings,
        clock=clock or SystemClock(),
        store=Store(db.url, echo=db.echo, pool_size=db.pool_size),
        registry=build_registry(),
        flags=LocalFlagBackend(),
        issues=LocalIssueTracker(),
        directory=FileDirectory(settings.directory),
        oncall=FileRotation(settings.oncall),
        presence=dict(presence or {}),
    )
