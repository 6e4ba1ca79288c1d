"""The access review (the handbook's first step towards removing production access): who
has production or staging access and how, when each was last reviewed, grants past or near
expiry, and registry members who haven't used Marvin for a while."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from marvin.access import grants as grant_store
from marvin.access.grants import HeldGrant
from marvin.adapters.directory import DirectoryPerson, Freshness, RoleInfo
from marvin.clock import as_utc
from marvin.services import Services
from marvin.store.tables import AccessReview, Account

REVIEWED_ENVIRONMENTS = ("production", "staging")


@dataclass(frozen=True)
class Reviewed:
    by: str
    at: datetime


@dataclass(frozen=True)
class Holder:
    person: DirectoryPerson
    reviewed: Reviewed | None


@dataclass(frozen=True)
class Idle:
    handle: str
    last_seen: datetime | None


@dataclass(frozen=True)
class Report:
    holders: tuple[Holder, ...]
    grants: tuple[HeldGrant, ...]  # past or near expiry
    idle: tuple[Idle, ...]
    freshness: Freshness

    def unreviewed(self, now: datetime, days: float) -> int:
        since = now - timedelta(days=days)
        return sum(1 for h in self.holders if h.reviewed is None or h.reviewed.at < since)


async def last_reviews(session: AsyncSession) -> dict[str, Reviewed]:
    latest = (
        select(AccessReview.handle, func.max(AccessReview.id).label("id"))
        .group_by(AccessReview.handle)
        .subquery()
    )
    rows = await session.scalars(select(AccessReview).join(latest, AccessReview.id == latest.c.id))
    return {r.handle: Reviewed(r.reviewed_by, as_utc(r.reviewed_at)) for r in rows}


async def build(services: Services, now: datetime) -> Report:
    directory = services.directory
    settings = services.settings.directory
    people = await directory.people()
    freshness = await directory.freshness()
    soon = now + timedelta(days=settings.grant_notice_days)
    idle_since = now - timedelta(days=settings.idle_days)
    async with services.store.transaction() as session:
        reviews = await last_reviews(session)
        grants = tuple(await grant_store.due(session, until=soon))
        seen_rows = (
            await session.execute(
                select(Account.directory_handle, func.max(Account.last_seen_at))
                .where(Account.directory_handle.is_not(None))
                .group_by(Account.directory_handle)
            )
        ).all()
    seen = {str(h): as_utc(at) for h, at in seen_rows if at is not None}
    holders = tuple(
        Holder(p, reviews.get(p.handle))
        for p in people
        if any(env in p.environments for env in REVIEWED_ENVIRONMENTS)
    )
    idle = tuple(
        Idle(p.handle, seen.get(p.handle))
        for p in people
        if p.roles and (p.handle not in seen or seen[p.handle] < idle_since)
    )
    return Report(holders, grants, idle, freshness)


def render(report: Report, now: datetime, roles: dict[str, RoleInfo]) -> list[str]:
    lines = [f"*Production and staging access* ({len(report.holders)} people):"]
    for holder in report.holders:
        p = holder.person
        how = "; ".join(
            f"{h.role} through {h.via}"
            for h in p.holdings
            if h.role in roles
            and any(env in REVIEWED_ENVIRONMENTS for env in roles[h.role].environments)
        )
        reviewed = (
            f"reviewed {holder.reviewed.at:%Y-%m-%d} by @{holder.reviewed.by}"
            if holder.reviewed
            else "never reviewed"
        )
        lines.append(f"  • @{p.handle} ({p.name}): {how or 'through the registry'}; {reviewed}")
    if not report.holders:
        lines.append("  • nobody")
    lines.append("*Grants past or near expiry*:")
    for g in report.grants:
        assert g.expires_at is not None  # `grants.due` reads only grants that expire
        state = "expired" if g.expires_at <= now else "expires"
        on = f" ({g.issue_ref})" if g.issue_ref else ""
        lines.append(f"  • @{g.handle}'s `{g.name}` {state} {g.expires_at:%Y-%m-%d}{on}")
    if not report.grants:
        lines.append("  • none")
    lines.append("*Registry members who haven't used Marvin for a while*:")
    for i in report.idle:
        when = f"last seen {i.last_seen:%Y-%m-%d}" if i.last_seen else "never seen"
        lines.append(f"  • @{i.handle}: {when}")
    if not report.idle:
        lines.append("  • none")
    age = report.freshness.shown(now)
    return [*lines, age] if age else lines


def summary(report: Report, now: datetime, review_days: float) -> str:
    """The monthly reminder's one paragraph."""
    return (
        f"Access review: {len(report.holders)} people have production or staging access, "
        f"{report.unreviewed(now, review_days)} of them not reviewed in the last "
        f"{review_days:g} days; {len(report.grants)} grant(s) past or near expiry; "
        f"{len(report.idle)} registry member(s) who haven't used Marvin for a while. "
        "`access report` lists them; `access reviewed @person` records a review."
    )
