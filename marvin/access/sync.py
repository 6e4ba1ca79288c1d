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
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from marvin import audit
from marvin.access import mirror
from marvin.access.grants import current
from marvin.access.mirror import MirroredDirectory, MirroredMember
from marvin.adapters.directory import Freshness
from marvin.adapters.errors import AdapterError
from marvin.announce import tell_production
from marvin.models import Invocation, Place
from marvin.services import Services
from marvin.store.tables import Account, Grant

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Snapshot:
    members: tuple[MirroredMember, ...]
    # Holders of grants given in Marvin who are in no role's group, by GitLab username, and
    # their state there (None: no such user). Leaving the groups takes a person's roles;
    # being blocked in GitLab (they left) must take the grants Marvin gave them too.
    outsiders: tuple[tuple[str, str | None], ...] = ()

    def count(self) -> int:
        return len({m.username.lower() for m in self.members})


async def _read_groups(directory: MirroredDirectory) -> Snapshot:
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
                gitlab_user_id=m.id,
                group_path=group,
                inherited=m.username not in direct,
            )
            for m in members
        ]

    found = await asyncio.gather(*(one(role) for role in roles))
    # Pages read while membership changes can list someone twice: once per role is enough.
    unique = {(m.role, m.username.lower()): m for members in found for m in members}
    return Snapshot(tuple(unique.values()))


async def _grant_holders_outside(services: Services, snapshot: Snapshot) -> list[str]:
    """The GitLab usernames of accounts holding a grant now that no group lists."""
    listed = {m.username.lower() for m in snapshot.members}
    now = services.clock.now()
    async with services.store.transaction() as session:
        names = await session.scalars(
            select(Account.gitlab_username)
            .join(Grant, Grant.account_id == Account.id)
            .where(Account.gitlab_username.is_not(None), *current(now))
            .distinct()
        )
        return sorted({n.lower() for n in names if n and n.lower() not in listed})


async def _read_outsiders(
    directory: MirroredDirectory, usernames: list[str]
) -> tuple[tuple[str, str | None], ...]:
    source = directory.source
    assert source is not None
    states = await asyncio.gather(*(source.user_state(u) for u in usernames))
    return tuple(zip(usernames, states, strict=True))


async def read(services: Services, directory: MirroredDirectory) -> Snapshot:
    """Everything a sync asks GitLab (no write transaction open): every role's group, and
    the state of each grant holder no group lists. Raises the adapter's typed error when
    GitLab can't be read."""
    snapshot = await _read_groups(directory)
    outside = await _grant_holders_outside(services, snapshot)
    if not outside:
        return snapshot
    return Snapshot(snapshot.members, await _read_outsiders(directory, outside))


async def write(session: AsyncSession, services: Services, snapshot: Snapshot) -> list[str]:
    """The write transaction's part (nothing outside): the new mirror, and the grants of
    people GitLab no longer lists as active revoked, audited and announced. Returns whose
    grants were revoked."""
    now = services.clock.now()
    await mirror.replace(session, snapshot.members, now)
    gone = {name: state for name, state in snapshot.outsiders if state != "active"}
    if not gone:
        return []
    rows = (
        await session.execute(
            select(Grant, Account)
            .join(Account, Account.id == Grant.account_id)
            .where(func.lower(Account.gitlab_username).in_(sorted(gone)), *current(now))
            .with_for_update()
        )
    ).all()
    for grant, account in rows:
        why = f"GitLab user {gone[(account.gitlab_username or '').lower()] or 'gone'}"
        grant.revoked_at, grant.revoked_by = now, why
        await _record(session, services, account, grant, why)
    return sorted({(account.gitlab_username or "").lower() for _, account in rows})


async def _record(
    session: AsyncSession, services: Services, account: Account, grant: Grant, why: str
) -> None:
    handle = account.directory_handle or account.gitlab_username or account.display_name
    inv = Invocation(
        request_id=f"sync-revoke-{grant.id}",
        transport=account.transport,
        user_id=account.chat_user_id,
        user_name=account.display_name,
        place=Place(id="directory-sync", name="directory sync"),
        text="(directory sync) revoke",
        received_at=services.clock.now(),
    )
    await audit.record(
        session,
        inv,
        outcome="grant_revoked",
        account_id=account.id,
        command="access revoke",
        reason=why,
        details={"grant": grant.name, "grant_id": grant.id},
    )
    await tell_production(
        session,
        services,
        text=f"`{grant.name}` of @{handle} revoked: {why} (the roles registry's sync)",
        key=f"sync-revoke:{grant.id}",
    )


async def note_failure(services: Services, exc: AdapterError) -> Freshness:
    async with services.store.transaction(write=True) as session:
        return await mirror.failed(session, exc.shown(), services.clock.now())


async def run(services: Services) -> Freshness | None:
    """One sync (the job's run): the new mirror, or the old one kept with the error."""
    directory = services.directory
    if not isinstance(directory, MirroredDirectory):
        return None
    try:
        snapshot = await read(services, directory)
    except AdapterError as exc:
        log.warning("directory.sync_failed", error=exc.shown())
        return await note_failure(services, exc)
    async with services.store.transaction(write=True) as session:
        revoked = await write(session, services, snapshot)
    if revoked:
        log.warning("directory.grants_revoked", users=revoked)
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
