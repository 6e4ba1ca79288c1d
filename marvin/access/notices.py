"""Access notices, as a background job on one replica: a grant's holder is told before it
expires, and the access review's summary is posted to the production channel monthly."""

from __future__ import annotations

from datetime import timedelta

import structlog
from sqlalchemy import update

from marvin.access import grants as grant_store
from marvin.access import review
from marvin.announce import tell_production
from marvin.clock import as_utc
from marvin.outbox import enqueue
from marvin.services import Services
from marvin.store.db import insert_ignoring_conflicts
from marvin.store.tables import AccessReminder, Grant
from marvin.watches import dm_kind

log = structlog.get_logger(__name__)


async def warn_expiring(services: Services) -> int:
    """Tell each holder whose grant expires within `directory.grant_notice_days`, once."""
    now = services.clock.now()
    until = now + timedelta(days=services.settings.directory.grant_notice_days)
    async with services.store.transaction() as session:
        due = await grant_store.expiring(session, now=now, until=until)
    told = 0
    for grant, account in due:
        assert grant.expires_at is not None  # `expiring` reads only grants that expire
        text = (
            f"Your `{grant.name}` grant expires on {grant.expires_at:%Y-%m-%d %H:%M UTC}"
            + (f" (given on {grant.issue_ref})" if grant.issue_ref else "")
            + ". If you still need it, ask a production engineer to grant it again on your "
            "access request issue."
        )
        async with services.store.transaction(write=True) as session:
            # Once, even with two replicas racing here.
            marked = await session.execute(
                update(Grant)
                .where(Grant.id == grant.id, Grant.expiry_notified_at.is_(None))
                .values(expiry_notified_at=now)
            )
            if not getattr(marked, "rowcount", 0):
                continue
            await enqueue(
                session,
                kind=dm_kind(account.transport),
                key=f"grant-expiry:{grant.id}",
                payload={"user_id": account.chat_user_id, "text": text},
                now=now,
            )
        told += 1
    if told:
        log.info("access.expiry_notices", told=told)
    return told


REVIEW_REMINDER = "access-review"


async def remind_review(services: Services) -> bool:
    """Post the access review's summary to the production channel when the last one is
    `directory.review_reminder_days` old. A new installation starts the count: its first
    summary comes a period after it first runs, not the moment it starts."""
    now = services.clock.now()
    days = services.settings.directory.review_reminder_days
    async with services.store.transaction() as session:
        last = await session.get(AccessReminder, REVIEW_REMINDER)
    if last is None:
        async with services.store.transaction(write=True) as session:
            await session.execute(
                insert_ignoring_conflicts(session, AccessReminder)
                .values(name=REVIEW_REMINDER, sent_at=now)
                .on_conflict_do_nothing(index_elements=["name"])
            )
        return False
    if as_utc(last.sent_at) > now - timedelta(days=days):
        return False
    report = await review.build(services, now)
    async with services.store.transaction(write=True) as session:
        # Once, even with two replicas racing here: the row moves only if it is still due.
        row = await session.get(AccessReminder, REVIEW_REMINDER, with_for_update=True)
        if row is None or as_utc(row.sent_at) > now - timedelta(days=days):
            return False
        row.sent_at = now
        await tell_production(
            session,
            services,
            text=review.summary(report, now, days),
            key=f"access-review:{now:%Y-%m-%dT%H:%M}",
        )
    log.info("access.review_reminder")
    return True


async def run(services: Services) -> int:
    told = await warn_expiring(services)
    return told + int(await remind_review(services))
