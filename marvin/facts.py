"""Facts from outside, gathered before judging, with no transaction open.

A fact that could not be had is not a guess: it is `Unknown`, with the service and the
reason, and the policy that needs it decides (failing closed where safety depends on it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeAlias, TypeVar

from sqlalchemy import select

from marvin.accounts import account_for_handle
from marvin.adapters.directory import Freshness
from marvin.adapters.errors import AdapterError
from marvin.changes import running_blockers
from marvin.models import Invocation
from marvin.services import Services
from marvin.store.tables import Incident

T = TypeVar("T")


@dataclass(frozen=True)
class Known(Generic[T]):
    value: T


@dataclass(frozen=True)
class Unknown:
    """The fact could not be had: `error` says from which service and why."""

    error: AdapterError

    def shown(self) -> str:
        return self.error.shown()


Fact: TypeAlias = Known[T] | Unknown


async def fetch(call: Awaitable[T]) -> Known[T] | Unknown:
    """The call's answer as a fact; a typed adapter error becomes `Unknown`."""
    try:
        return Known(await call)
    except AdapterError as exc:
        return Unknown(exc)


@dataclass(frozen=True)
class OnCall:
    handle: str | None
    away: bool = False  # marked away in Marvin, which makes them unavailable


@dataclass(frozen=True)
class OpenIncident:
    ref: str
    severity: int
    title: str


@dataclass(frozen=True)
class RunningChange:
    """A change request of criticality 1 or 2 under way: it locks other changes."""

    ref: str
    criticality: int
    title: str


@dataclass(frozen=True)
class Facts:
    """What every production change is judged by, beyond its own plan."""

    # Why the caller's chat says they are away (None: it doesn't), or Unknown.
    presence: Known[str | None] | Unknown
    oncall: Known[OnCall] | Unknown
    incidents: tuple[OpenIncident, ...]
    changes: tuple[RunningChange, ...] = ()
    # How current the roles registry is that the caller's roles were read from.
    directory: Known[Freshness] | Unknown = Known(Freshness(live=True))


async def _presence(services: Services, inv: Invocation) -> str | None:
    presence = services.presence.get(inv.transport)
    if presence is None:
        return None  # this chat has no notion of presence; Marvin's own status still counts
    # The adapter keeps its own deadline (its config section's timeout_seconds).
    return await presence.away(inv.user_id)


async def _local(
    services: Services, now: datetime
) -> tuple[Known[OnCall] | Unknown, tuple[OpenIncident, ...], tuple[RunningChange, ...]]:
    """Who is on call (and whether Marvin has them away), the open incidents and the
    changes under way: one read."""
    handle = await fetch(services.oncall.on_call(now))
    async with services.store.transaction() as session:
        account = (
            await account_for_handle(session, handle.value)
            if isinstance(handle, Known) and handle.value
            else None
        )
        rows = await session.scalars(
            select(Incident)
            .where(Incident.state == "open")
            .order_by(Incident.severity, Incident.id)
        )
        incidents = tuple(
            OpenIncident(ref=str(r.id), severity=r.severity, title=r.title) for r in rows
        )
        changes = tuple(
            RunningChange(ref=str(c.id), criticality=c.criticality, title=c.title)
            for c in await running_blockers(session=session)
        )
    if not isinstance(handle, Known):
        return handle, incidents, changes
    away = account is not None and account.away_since is not None
    return Known(OnCall(handle.value, away=away)), incidents, changes


async def gather(services: Services, inv: Invocation, now: datetime) -> Facts:
    """The facts of a production change: the chat asked while Marvin's own are read."""
    presence, (oncall, incidents, changes), directory = await asyncio.gather(
        fetch(_presence(services, inv)),
        _local(services, now),
        fetch(services.directory.freshness()),
    )
    return Facts(
        presence=presence,
        oncall=oncall,
        incidents=incidents,
        changes=changes,
        directory=directory,
    )
