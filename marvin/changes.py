"""Change requests: a planned change to production, recorded by Marvin and projected to an
issue from the `change_checklist` template, like an incident.

States: `requested` (`change::scheduled`), `running` (`change::in-progress`; criticality 1
and 2 carry the blocking labels and lock other changes through the change lock), `done`
(`change::complete`, the issue closed). The record comes first; the issue, and each label
change, go through the outbox in the same transaction (`marvin.issue_delivery`).
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from marvin.clock import as_utc
from marvin.config import Settings
from marvin.outbox import enqueue
from marvin.store.tables import ChangeRequest

REQUESTED = "requested"
RUNNING = "running"
DONE = "done"
STATE_LABELS = {
    REQUESTED: "change::scheduled",
    RUNNING: "change::in-progress",
    DONE: "change::complete",
}
# The criticalities that lock other changes while they run.
BLOCKING = (1, 2)
TEMPLATE = "change_checklist"

CHANGE_CREATE = "issue:change-create"
CHANGE_SYNC = "issue:change-sync"
KINDS = (CHANGE_CREATE, CHANGE_SYNC)
WHEN = "%Y-%m-%d %H:%M UTC"


def shown_ref(change: ChangeRequest) -> str:
    return f"change {change.id}"


def key_prefix(change_id: int) -> str:
    """Every outbox message of a change request has a key under this prefix."""
    return f"change:{change_id}:"


def create_key(change_id: int) -> str:
    return f"{key_prefix(change_id)}issue"


def blocks(change: ChangeRequest) -> bool:
    return change.state == RUNNING and change.criticality in BLOCKING


def labels(change: ChangeRequest, settings: Settings) -> tuple[list[str], list[str]]:
    """The labels the change's state calls for, and those it excludes."""
    blocking = settings.incidents.labels.blocking
    add = ["change", f"C{change.criticality}", STATE_LABELS[change.state]]
    remove = [label for state, label in STATE_LABELS.items() if state != change.state]
    if blocks(change):
        add += blocking
    else:
        remove += blocking
    return add, [label for label in remove if label not in add]


async def request(
    *,
    session: AsyncSession,
    title: str,
    criticality: int,
    scheduled_at: datetime | None,
    requested_by: str,
    now: datetime,
    request_id: str,
) -> ChangeRequest:
    change = ChangeRequest(
        title=title,
        criticality=criticality,
        state=REQUESTED,
        requested_by=requested_by,
        scheduled_at=scheduled_at,
        marker=f"marvin-change-{secrets.token_hex(8)}",
        request_id=request_id,
        created_at=now,
        updated_at=now,
    )
    session.add(change)
    await session.flush()
    when = f" · scheduled for {as_utc(scheduled_at):{WHEN}}" if scheduled_at else ""
    await enqueue(
        session,
        kind=CHANGE_CREATE,
        key=create_key(change.id),
        payload={
            "change_id": change.id,
            "title": f"{as_utc(now):%Y-%m-%d}: {title}",
            "header": (
                f"**Criticality {criticality}** · requested by @{requested_by} at "
                f"{as_utc(now):{WHEN}} through Marvin ({shown_ref(change)}){when}"
            ),
            "marker": change.marker,
        },
        now=now,
    )
    return change


async def move(
    *, session: AsyncSession, change: ChangeRequest, state: str, who: str, now: datetime, key: str
) -> None:
    """To `running` or `done`: the record now, the issue's labels through the outbox."""
    change.state = state
    change.updated_at = now
    if state == RUNNING:
        change.started_at, change.started_by = now, who
    else:
        change.done_at = now
    await enqueue(
        session,
        kind=CHANGE_SYNC,
        key=f"{key_prefix(change.id)}sync:{key}",
        payload={"change_id": change.id},
        now=now,
    )


async def link_issue(
    *, session: AsyncSession, change_id: int, ref: str, url: str | None, now: datetime
) -> None:
    change = await session.get(ChangeRequest, change_id)
    if change is not None and change.issue_ref != ref:
        change.issue_ref, change.issue_url, change.updated_at = ref, url, now


async def running_blockers(*, session: AsyncSession) -> list[ChangeRequest]:
    """The changes under way that lock others (criticality 1 and 2)."""
    rows = await session.scalars(
        select(ChangeRequest)
        .where(ChangeRequest.state == RUNNING, ChangeRequest.criticality.in_(BLOCKING))
        .order_by(ChangeRequest.id)
    )
    return list(rows)


async def listing(*, session: AsyncSession, limit: int = 20) -> list[ChangeRequest]:
    rows = await session.scalars(
        select(ChangeRequest)
        .where(ChangeRequest.state != DONE)
        .order_by(ChangeRequest.id.desc())
        .limit(limit)
    )
    return list(rows)
