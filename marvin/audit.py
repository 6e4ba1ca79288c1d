"""The audit log: one record per invocation, allowed or not, and per registration."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from marvin.models import Invocation
from marvin.store.tables import AuditRecord


async def record(
    session: AsyncSession,
    inv: Invocation,
    *,
    outcome: str,
    account_id: int | None = None,
    command: str | None = None,
    policy: str | None = None,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditRecord(
            request_id=inv.request_id,
            at=inv.received_at,
            transport=inv.transport,
            chat_user_id=inv.user_id,
            account_id=account_id,
            place_id=inv.place.id,
            place_name=inv.place.name,
            text=inv.text,
            command=command,
            outcome=outcome,
            policy=policy,
            reason=reason,
            details=details or {},
        )
    )
    await session.flush()
