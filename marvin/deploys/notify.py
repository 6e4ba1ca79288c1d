"""What deploy scheduling says in the production channel, through the outbox (in the same
transaction as the change it reports)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from marvin.announce import tell_production
from marvin.services import Services
from marvin.store.tables import DeployQueueEntry


async def tell_head(
    session: AsyncSession, services: Services, *, environment: str, now: datetime
) -> str | None:
    """The head of `environment`'s queue, told once that it is their turn (None: nobody
    waits, or they were told already)."""
    head = (
        await session.scalars(
            select(DeployQueueEntry)
            .where(DeployQueueEntry.environment == environment, DeployQueueEntry.left_at.is_(None))
            .order_by(DeployQueueEntry.id)
            .limit(1)
        )
    ).first()
    if head is None or head.told_at is not None:
        return None
    head.told_at = now
    what = f" ({head.version})" if head.version else ""
    await tell_production(
        session,
        services,
        text=f"@{head.handle}, it's your turn at {environment}{what}: book your slot with "
        f"`deploy schedule {environment} <version> at <time>`, and `deploy unqueue "
        f"{environment}` when you're done.",
        key=f"deploy-queue-turn:{head.id}",
        fields={"environment": environment, "to": head.handle},
    )
    return head.handle
