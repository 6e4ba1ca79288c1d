"""Mirror GitLab's groups into the roles registry: a background job on one replica at a
time (every `directory.sync_minutes`), and `access refresh`.

The groups are read with no transaction open; the mirror is replaced in one short write
transaction after. A GitLab that can't be read leaves the old mirror in place, with the
error noted, so answers keep saying how old they are.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import select

from marvin import audit
from marvin.access import mirror
from marvin.access.grants import current
from marvin.access.mirror import MirroredDirectory, MirroredMember
from marvin.adapters.directory import Freshness
from marvin.adapters.errors import AdapterError
from marvin.models import Announcement, Invocation, Place
from marvin.outbox import ANNOUNCE, enqueue
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


async def grant_holders_outside(services: Services, snapshot: Snapshot) -> list[str]:
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


async def read_outsiders(
    directory: MirroredDirectory, usernames: list[str]
) -> tuple[tuple[str, str | None], ...]:
    source = directory.source
    assert source is not None
    states = await asyncio.gather(*(source.user_state(u) for u in usernames))
    return tuple(zip(usernames, states, strict=True))


async def store(services: Services, snapshot: Snapshot) -> list[str]:
    """The new mirror; grants of people GitLab no longer lists as active are revoked (and
    audited and announced) in the same transaction. Returns whose grants were revoked."""
    now = services.clock.now()
    gone = {name: state for name, state in snapshot.outsiders if state != "active"}
    revoked: list[str] = []
    async with services.store.transaction(write=True) as session:
        await mirror.replace(session, snapshot.members, now)
        if gone:
            rows = (
                await session.execute(
                    select(Grant, Account)
                    .join(Account, Account.id == Grant.account_id)
                    .where(*current(now))
                    .with_for_update()
                )
            ).all()
            for grant, account in rows:
                username = (account.gitlab_username or "").lower()
                if username not in gone:
                    continue
                why = f"GitLab user {gone[username] or 'gone'}"
                grant.revoked_at, grant.revoked_by = now, why
                revoked.append(username)
                await _record(session, services, account, grant, why)
    return sorted(set(revoked))


async def _record(
    session: Any, services: Services, account: Account, grant: Grant, why: str
) -> None:
    now = services.clock.now()
    handle = account.directory_handle or account.gitlab_username or account.display_name
    text = f"`{grant.name}` of @{handle} revoked: {why} (the roles registry's sync)"
    inv = Invocation(
        request_id=f"sync-revoke-{grant.id}",
        transport=account.transport,
        user_id=account.chat_user_id,
        user_name=account.display_name,
        place=Place(id="directory-sync", name="directory sync"),
        text="(directory sync) revoke",
        received_at=now,
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
    message = Announcement(
        channel_id=services.settings.production_channel.id,
        text=text,
        idempotency_key=f"sync-revoke:{grant.id}",
    )
    await enqueue(
        session,
        kind=ANNOUNCE,
        key=message.idempotency_key,
        payload=message.model_dump(mode="json"),
        now=now,
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
        snapshot = await read_groups(directory)
        outside = await grant_holders_outside(services, snapshot)
        if outside:
            snapshot = Snapshot(snapshot.members, await read_outsiders(directory, outside))
    except AdapterError as exc:
        log.warning("directory.sync_failed", error=exc.shown())
        return await note_failure(services, exc)
    revoked = await store(services, snapshot)
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
