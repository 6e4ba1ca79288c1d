"""Mirror GitLab's groups into the roles registry: a background job on one replica at a
time (every `directory.sync_minutes`), and `access refresh`.

The groups are read with no transaction open; the mirror is replaced in one short write
transaction after. A GitLab that can't be read leaves the old mirror in place, with the
error noted, so answers keep saying how old they are.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from marvin.access import mirror
from marvin.access.mirror import MirroredDirectory, MirroredMember
from marvin.adapters.directory import Freshness
from marvin.adapters.errors import AdapterError
from marvin.services import Services

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Snapshot:
    members: tuple[MirroredMember, ...]

    def count(self) -> int:
        return len({m.username.lower() for m in self.members})


async def read_groups(directory: MirroredDirectory) -> Snapshot:
    """Every role's group's active members, direct and inherited (no transaction open).
    Raises the adapter's typed error when GitLab can't be read."""
    source = directory.source
    if source is None:
        raise RuntimeError("the gitlab roles registry has no GitLab to read from")
    groups = directory.config.groups
    roles = sorted(groups)

    async def one(role: str) -> list[MirroredMember]:
        group = groups[role]
        members, direct = await asyncio.gather(
            source.members(group), source.direct_usernames(group)
        )
        return [
            MirroredMember(
                role=role,
                username=m.username,
                name=m.name,
                email=m.email,
                gitlab_user_id=m.user_id,
                group_path=group,
                inherited=m.username not in direct,
            )
            for m in members
        ]

    found = await asyncio.gather(*(one(role) for role in roles))
    # Pages read while membership changes can list someone twice: once per role is enough.
    unique = {(m.role, m.username.lower()): m for members in found for m in members}
    return Snapshot(tuple(unique.values()))


async def store(services: Services, snapshot: Snapshot) -> None:
    async with services.store.transaction(write=True) as session:
        await mirror.replace(session, snapshot.members, services.clock.now())


async def note_failure(services: Services, exc: AdapterError) -> Freshness:
    async with services.store.transaction(write=True) as session:
        return await mirror.failed(session, exc.shown(), services.clock.now())


async def run(services: Services) -> Freshness | None:
    """One sync (the job's run): the new mirror, or the old one kept with the error."""
    directory = services.directory
    if not isinstance(directory, MirroredDirectory):
        return None
    try:
        snapshot = await read_groups(directory)
    except AdapterError as exc:
        log.warning("directory.sync_failed", error=exc.shown())
        return await note_failure(services, exc)
    await store(services, snapshot)
    log.info("directory.synced", members=snapshot.count())
    return await directory.freshness()


async def if_stale(services: Services) -> Freshness | None:
    """Sync when the mirror is older than allowed (a shell with no `marvin serve` beside it
    to run the job); otherwise leave it."""
    directory = services.directory
    if not isinstance(directory, MirroredDirectory):
        return None
    freshness = await directory.freshness()
    limit = services.settings.directory.max_staleness_minutes
    if not freshness.stale(services.clock.now(), limit):
        return freshness
    return await run(services)
