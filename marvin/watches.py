"""The watch, after the change: its end is told to the watcher and recorded, and a watcher
who goes away while on watch is reminded (once) that they are on it.

Runs as a background job on one replica. Whether a watcher is away is asked of their chat
with no transaction open; the notices go through the outbox to the watcher's own chat.
"""

from __future__ import annotations

from sqlalchemy import select, update

from marvin import audit
from marvin.adapters.errors import AdapterError
from marvin.clock import spoken
from marvin.models import Invocation, Place
from marvin.outbox import enqueue
from marvin.services import Services
from marvin.store.tables import Account, Watch


def dm_kind(transport: str) -> str:
    """Direct messages go to the person's own chat: one outbox kind per chat."""
    return f"dm:{transport}"


async def notify(services: Services) -> int:
    """Tell watchers whose watch ended, and remind those who went away; how many were told."""
    now = services.clock.now()
    async with services.store.transaction() as session:
        ended = list(
            (
                await session.execute(
                    select(Watch, Account)
                    .join(Account, Account.id == Watch.account_id)
                    .where(Watch.ends_at <= now, Watch.ended_notified_at.is_(None))
                    .limit(200)
                )
            ).all()
        )
        active = list(
            (
                await session.execute(
                    select(Watch, Account)
                    .join(Account, Account.id == Watch.account_id)
                    .where(Watch.ends_at > now, Watch.reminded_at.is_(None))
                    .limit(200)
                )
            ).all()
        )
    told = 0
    for watch, account in ended:
        told += await _tell(
            services,
            watch,
            account,
            field="ended",
            text=f"Your watch of {watch.subject} has ended. Thank you for keeping an eye on it.",
        )
    for watch, account in active:
        away = await _away(services, account)
        if away is None:
            continue
        until = spoken(watch.ends_at, now)
        told += await _tell(
            services,
            watch,
            account,
            field="reminded",
            text=(
                f"You're on watch for {watch.subject} until {until}, and you seem to be away "
                f"({away}). If you're leaving, hand it over to the engineer on call"
                + (f" (@{watch.oncall_handle})." if watch.oncall_handle else ".")
            ),
        )
    return told


async def _away(services: Services, account: Account) -> str | None:
    if account.away_since is not None:
        return "marked away in Marvin"
    presence = services.presence.get(account.transport)
    if presence is None:
        return None
    try:
        return await presence.away(account.chat_user_id)
    except AdapterError:
        return None  # not knowing is no reason to disturb; the next round asks again


async def _tell(
    services: Services, watch: Watch, account: Account, *, field: str, text: str
) -> int:
    now = services.clock.now()
    column = Watch.ended_notified_at if field == "ended" else Watch.reminded_at
    async with services.store.transaction(write=True) as session:
        # Once, even with two replicas racing here.
        marked = await session.execute(
            update(Watch).where(Watch.id == watch.id, column.is_(None)).values({column: now})
        )
        if not getattr(marked, "rowcount", 0):
            return 0
        await enqueue(
            session,
            kind=dm_kind(account.transport),
            key=f"watch-{field}:{watch.id}",
            payload={"user_id": account.chat_user_id, "text": text},
            now=now,
        )
        inv = Invocation(
            request_id=watch.request_id,
            transport=account.transport,
            user_id=account.chat_user_id,
            user_name=account.display_name,
            place=Place(id=account.chat_user_id, is_dm=True),
            text=f"(watch {field}) {watch.subject}",
            received_at=now,
        )
        await audit.record(
            session,
            inv,
            outcome=f"watch_{field}",
            account_id=account.id,
            details={"subject": watch.subject, "text": text},
        )
    return 1
