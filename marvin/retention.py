"""Finished bookkeeping is pruned; the record is not.

Done inbox items, delivered announcements and spent confirmations have served their purpose
after a while. The audit log, flag history and anything that failed (for a person to look
at) are never pruned here.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import structlog
from sqlalchemy import delete

from marvin.clock import Clock
from marvin.store.db import Store
from marvin.store.tables import Confirmation, InboxItem, OutboxMessage

log = structlog.get_logger(__name__)


async def prune(store: Store, now: datetime, keep: timedelta) -> dict[str, int]:
    cutoff = now - keep
    statements = {
        "inbox": delete(InboxItem).where(
            InboxItem.status.in_(["done", "abandoned"]), InboxItem.done_at < cutoff
        ),
        "outbox": delete(OutboxMessage).where(
            OutboxMessage.status == "delivered", OutboxMessage.delivered_at < cutoff
        ),
        "confirmations": delete(Confirmation).where(Confirmation.expires_at < cutoff),
    }
    counts: dict[str, int] = {}
    async with store.transaction(write=True) as session:
        for name, statement in statements.items():
            result = await session.execute(statement)
            counts[name] = int(getattr(result, "rowcount", 0) or 0)
    return counts


async def prune_periodically(
    store: Store, clock: Clock, keep: timedelta, stop: asyncio.Event, every: float = 3600
) -> None:
    while not stop.is_set():
        try:
            counts = await prune(store, clock.now(), keep)
            if any(counts.values()):
                log.info("retention.pruned", **counts)
        except Exception:
            log.exception("retention.failed")
        try:
            await asyncio.wait_for(stop.wait(), timeout=every)
        except TimeoutError:
            pass
