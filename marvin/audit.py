"""The audit log: one record per invocation, allowed or not, and per registration.

A change's record is written in the change's own transaction (`record`). The many answers
that change nothing (reads, refusals, usage errors) are written in groups (`Journal`): the
answer waits until its record is committed, but many answers share one transaction, so
on SQLite they don't queue one by one for its single writer.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, insert
from sqlalchemy.ext.asyncio import AsyncSession

from marvin.logs import redact_text
from marvin.models import Invocation
from marvin.store.db import Store
from marvin.store.tables import Account, AuditRecord

# Written as plain rows, many at a time: no objects to track.
AUDIT: Table = AuditRecord.__table__  # type: ignore[assignment]
ACCOUNTS: Table = Account.__table__  # type: ignore[assignment]


def _row(
    inv: Invocation,
    *,
    outcome: str,
    account_id: int | None = None,
    command: str | None = None,
    policy: str | None = None,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "request_id": inv.request_id,
        "at": inv.received_at,
        "transport": inv.transport,
        "chat_user_id": inv.user_id,
        "account_id": account_id,
        "place_id": inv.place.id,
        "place_name": inv.place.name,
        "text": redact_text(inv.text),
        "command": command,
        "outcome": outcome,
        "policy": policy,
        "reason": reason,
        "details": details or {},
    }


async def record(session: AsyncSession, inv: Invocation, **fields: Any) -> None:
    await session.execute(insert(AuditRecord).values(_row(inv, **fields)))


class Journal:
    """Audit records (and the caller's last contact) for answers that change nothing,
    committed in groups; `write` returns once its record is committed."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._waiting: list[
            tuple[dict[str, Any], tuple[int, datetime] | None, asyncio.Future[None]]
        ] = []
        self._writing: asyncio.Task[None] | None = None

    async def write(
        self, inv: Invocation, *, seen: tuple[int, datetime] | None = None, **fields: Any
    ) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((_row(inv, **fields), seen, done))
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._write())
        await done

    async def _write(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            try:
                async with self._store.transaction(write=True) as session:
                    await session.execute(AUDIT.insert(), [row for row, _, _ in group])
                    seen = {s[0]: s[1] for _, s, _ in group if s is not None}
                    if seen:
                        await session.execute(
                            ACCOUNTS.update()
                            .where(ACCOUNTS.c.id == bindparam("account"))
                            .values(last_seen_at=bindparam("at")),
                            [{"account": a, "at": at} for a, at in seen.items()],
                        )
            except Exception as exc:
                for _, _, done in group:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for _, _, done in group:
                if not done.done():
                    done.set_result(None)
