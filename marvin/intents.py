"""Intents: a remote change is written down before its call, and settled after it.

When the call times out nobody knows whether the change was made: the intent stays
`unknown` (or `applying`, when the process died during the call) and the reconciler settles
it later by reading the backend, as a background job on one replica at a time:

- the backend holds what the change asked for: it is recorded as made (history, audit,
  announcement), as if the answer had come in time;
- the backend holds what was there before: it was not made, and that is announced;
- anything else: someone else changed it meanwhile; announced for a person to look at.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from marvin import audit
from marvin.accounts import caller_for, granted
from marvin.adapters.errors import AdapterError
from marvin.announce import announce
from marvin.commands.base import Change, Context
from marvin.models import Announcement, Invocation
from marvin.outbox import ANNOUNCE, enqueue
from marvin.services import Services
from marvin.spec import Registry
from marvin.store.tables import Account, ChangeIntent

log = structlog.get_logger(__name__)

UNSETTLED = ("applying", "unknown")


async def open_intent(session: AsyncSession, ctx: Context, command: str, plan: Change) -> int:
    row = ChangeIntent(
        request_id=ctx.invocation.request_id,
        command=command,
        account_id=ctx.caller.account.id,
        invocation=ctx.invocation.model_dump(mode="json"),
        payload=plan.intent(),
        status="applying",
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    session.add(row)
    await session.flush()
    return row.id


async def mark(
    session: AsyncSession, intent_id: int, status: str, error: str | None, now: datetime
) -> None:
    settled = None if status in UNSETTLED else now
    await session.execute(
        update(ChangeIntent)
        .where(ChangeIntent.id == intent_id)
        .values(status=status, error=error, updated_at=now, settled_at=settled)
    )


async def settle_due(services: Services, registry: Registry, stale_after: timedelta) -> int:
    """Settle every intent whose outcome is unknown, or whose process died during the call
    (`applying` for longer than `stale_after`). Returns how many were settled."""
    now = services.clock.now()
    async with services.store.transaction() as session:
        due = list(
            await session.scalars(
                select(ChangeIntent)
                .where(
                    or_(
                        ChangeIntent.status == "unknown",
                        (ChangeIntent.status == "applying")
                        & (ChangeIntent.updated_at < now - stale_after),
                    )
                )
                .order_by(ChangeIntent.id)
                .limit(50)
            )
        )
    settled = 0
    for row in due:
        try:
            settled += await _settle(services, registry, row)
        except AdapterError as exc:
            log.warning("reconcile.unreachable", intent=row.id, error=exc.shown())
    return settled


async def _settle(services: Services, registry: Registry, row: ChangeIntent) -> int:
    group, _, verb = row.command.partition(" ")
    spec = registry.find(group, verb or None)
    if spec is None:
        log.error("reconcile.unknown_command", intent=row.id, command=row.command)
        return 0
    handler = spec.handler
    # Asked with no transaction open, like every outside call.
    seen = await handler.observe(row.payload, services)
    now = services.clock.now()
    inv = Invocation.model_validate(row.invocation)
    async with services.store.transaction(write=True) as session:
        current = await session.get(ChangeIntent, row.id, with_for_update=True)
        if current is None or current.status not in UNSETTLED:
            return 0  # another replica settled it first
        account = await session.get(Account, row.account_id) if row.account_id else None
        if account is None:
            await mark(session, row.id, "orphaned", "the account is gone", now)
            return 1
        caller = await caller_for(
            account, await granted(session, account.id, now), services.directory
        )
        plan = handler.replan(row.payload)
        if seen.status == "applied":
            ctx = Context(inv, caller, services, now)
            outcome = await handler.record(plan, session, ctx, seen.applied)
            note = "confirmed later: the backend had not answered in time"
            await announce(session, services, inv, caller, outcome, [note])
            await audit.record(
                session,
                inv,
                outcome="reconciled",
                account_id=account.id,
                command=row.command,
                details={"change": plan.summary(), "seen": seen.seen, "status": "applied"},
            )
        else:
            text = (
                f"@{caller.handle}'s change ({plan.summary()}) was not made: the backend still "
                f"holds {seen.seen}"
                if seen.status == "not_applied"
                else f"@{caller.handle}'s change ({plan.summary()}) had an unknown outcome, and "
                f"the backend now holds {seen.seen}, which is neither what it was nor what "
                "was asked: someone should look at it"
            )
            message = Announcement(
                channel_id=services.settings.production_channel.id,
                text=text + ".",
                fields={"by": caller.handle, "request_id": inv.request_id},
                idempotency_key=f"settled:{inv.request_id}",
            )
            await enqueue(
                session,
                kind=ANNOUNCE,
                key=message.idempotency_key,
                payload=message.model_dump(mode="json"),
                now=now,
            )
            await audit.record(
                session,
                inv,
                outcome="reconciled",
                account_id=account.id,
                command=row.command,
                details={"change": plan.summary(), "seen": seen.seen, "status": seen.status},
            )
        await mark(session, row.id, seen.status, None, now)
    log.info("reconcile.settled", intent=row.id, status=seen.status)
    return 1
