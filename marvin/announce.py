"""A production change's announcement, queued for the production channel with the change."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from marvin.accounts import Caller
from marvin.commands.base import Outcome
from marvin.models import Announcement, Invocation
from marvin.outbox import ANNOUNCE, enqueue
from marvin.services import Services


async def announce(
    session: AsyncSession,
    services: Services,
    inv: Invocation,
    caller: Caller,
    outcome: Outcome,
    notes: list[str],
) -> Announcement | None:
    """Queue a change's announcement for the production channel, in the same transaction as
    the change: whatever chat the command came through, it goes there."""
    if not outcome.announcement:
        return None
    announcement = Announcement(
        channel_id=services.settings.production_channel.id,
        text=". ".join([outcome.announcement, *notes]) + ".",
        fields={**outcome.fields, "by": caller.handle, "request_id": inv.request_id},
        idempotency_key=f"announce:{inv.request_id}",
    )
    await enqueue(
        session,
        kind=ANNOUNCE,
        key=announcement.idempotency_key,
        payload=announcement.model_dump(mode="json"),
        now=services.clock.now(),
    )
    return announcement
