"""Deviations: leave to depart from the flag rules, asked for in chat and bound by Marvin.

`feature deviate <flag> <value> "<why>"` records what is asked for (the flag, the
environments, the most it may expose, who asked) and, in the same transaction, an outbox
message that opens the deviation issue (`marvin.issue_delivery`). The issue carries that
binding in a block Marvin writes and a `feature::<flag>` label; the row here is what counts:
a `--issue` names a deviation only if it is an issue Marvin opened for one, and it approves
only what was asked for, in the environments named, for a limited time after its approval.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from marvin.adapters.gitlab_issues import marker_comment
from marvin.adapters.issues import Issue, inert
from marvin.clock import as_utc
from marvin.flags import fmt_percent
from marvin.outbox import enqueue
from marvin.store.tables import Deviation

OPEN = "deviation:open"
KINDS = (OPEN,)


@dataclass(frozen=True)
class Binding:
    """What a deviation issue approves, as Marvin recorded it when asked."""

    id: int
    flag: str
    environments: tuple[str, ...]
    max_exposure: Decimal
    value: str
    requested_by: str
    issue_ref: str | None

    def allows(self) -> str:
        where = " and ".join(self.environments)
        return f"`{self.flag}` up to {fmt_percent(self.max_exposure)} in {where}"


@dataclass(frozen=True)
class DeviationFact:
    """A `--issue` as the policies judge it: the issue, when it was approved, and the
    binding Marvin wrote for it (None: Marvin didn't open it for a deviation)."""

    issue: Issue
    approved_at: datetime | None
    binding: Binding | None


def label_for(flag: str) -> str:
    return f"feature::{flag}"


def key(deviation_id: int) -> str:
    return f"deviation:{deviation_id}:open"


def _binding(row: Deviation) -> Binding:
    return Binding(
        id=row.id,
        flag=row.flag,
        environments=tuple(row.environments),
        max_exposure=Decimal(row.max_exposure),
        value=row.value,
        requested_by=row.requested_by,
        issue_ref=row.issue_ref,
    )


def title(row: Deviation) -> str:
    where = "/".join(row.environments)
    return f"Deviation: {row.flag} to {row.value} in {where}"[:255]


def description(row: Deviation, approval_label: str, valid_hours: float) -> str:
    """The issue's text: the reason, and the binding Marvin checks (its record is the
    authority; this is what people approving read)."""
    envs = ", ".join(row.environments)
    return "\n\n".join(
        [
            f"@{row.requested_by} asks to deviate from the feature-flag rules for `{row.flag}`.",
            f"## Why\n\n{inert(row.reason)}",
            "## What this approves (written by Marvin)\n\n"
            f"- flag: `{row.flag}`\n"
            f"- environments: {envs}\n"
            f"- at most: {row.value} ({fmt_percent(Decimal(row.max_exposure))} of traffic)\n"
            f"- requested by: @{row.requested_by}\n"
            f"- valid for {valid_hours:g} hours after the label `{approval_label}` is added",
            "Anything else, another flag, environment or a higher value, needs a deviation "
            "of its own (`feature deviate`). Closing this issue withdraws it.",
            marker_comment(row.marker),
        ]
    )


async def request(
    *,
    session: AsyncSession,
    flag: str,
    environments: list[str],
    max_exposure: Decimal,
    value: str,
    reason: str,
    account_id: int,
    requested_by: str,
    request_id: str,
    now: datetime,
) -> Deviation:
    """Record the deviation asked for and the outbox message that opens its issue."""
    row = Deviation(
        flag=flag,
        environments=environments,
        max_exposure=max_exposure,
        value=value,
        reason=reason,
        account_id=account_id,
        requested_by=requested_by,
        marker=f"marvin-deviation-{secrets.token_hex(8)}",
        request_id=request_id,
        created_at=now,
    )
    session.add(row)
    await session.flush()
    await enqueue(session, kind=OPEN, key=key(row.id), payload={"deviation_id": row.id}, now=now)
    return row


async def binding_for(session: AsyncSession, issue_ref: str) -> Binding | None:
    row = (await session.scalars(select(Deviation).where(Deviation.issue_ref == issue_ref))).first()
    return _binding(row) if row is not None else None


def expired(approved_at: datetime, now: datetime, valid_hours: float) -> bool:
    return now - as_utc(approved_at) > timedelta(hours=valid_hours)
