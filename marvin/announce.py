"""What Marvin says in the production channel, queued through the outbox in the same
transaction as what it reports: a command's change, or a background job's."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from marvin.accounts import Caller
from marvin.commands.base import Outcome
from marvin.models import Announcement, Invocation
from marvin.outbox import ANNOUNCE, enqueue
from marvin.services import Services


async def tell_production(
    session: AsyncSession,
    services: Services,
    *,
    text: str,
    key: str,
    fields: dict[str, str] | None = None,
) -> Announcement:
    """Queue `text` for the production channel, once per `key`."""
    message = Announcement(
        channel_id=services.settings.production_channel.id,
        text=text,
        fields=fields or {},
        idempotency_key=key,
    )
    await enqueue(
        session,
        kind=ANNOUNCE,
        key=key,
        payload=message.model_dump(mode="json"),
        now=services.clock.now(),
    )
    return message


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
    return await tell_production(
        session,
        services,
        text=". ".join([outcome.announcement, *notes]) + ".",
        key=f"announce:{inv.request_id}",
        fields={**outcome.fields, "by": caller.handle, "request_id": inv.request_id},
    )
