"""Deviation issues, delivered: the outbox's `deviation:open` messages, to the tracker.

Opened with no transaction open, the reference stored in a short write transaction after
the call. The tracker has no idempotency key, so the issue carries a hidden marker and a
delivery tried before (a timeout, a crash mid-call) looks for it before it opens another.
Once open, the production channel is told where it is and what approves it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import structlog
from sqlalchemy import select

from marvin import deviations
from marvin.adapters.errors import AdapterError
from marvin.adapters.gitlab_issues import NewIssue
from marvin.adapters.issues import Issue
from marvin.issue_delivery import incident_tracker
from marvin.models import Announcement
from marvin.outbox import ANNOUNCE, DeliveryError, Sink, enqueue
from marvin.services import Services
from marvin.store.tables import Deviation, OutboxMessage

log = structlog.get_logger(__name__)

Opened = Callable[[str, Issue], None]


class DeviationDelivery:
    def __init__(self, services: Services, *, on_opened: Opened | None = None) -> None:
        self.services = services
        # Told once the issue is open (the shell prints it).
        self.on_opened = on_opened

    async def deliver(self, payload: Mapping[str, Any], idempotency_key: str) -> None:
        services = self.services
        settings = services.settings.flags
        async with services.store.transaction() as session:
            row = await session.get(Deviation, int(payload["deviation_id"]))
            attempts = await session.scalar(
                select(OutboxMessage.attempts).where(
                    OutboxMessage.idempotency_key == idempotency_key
                )
            )
            if row is None or row.issue_ref:
                return  # nothing to open, or opened before (its answer was recorded)
            marker, flag = row.marker, row.flag
            new = NewIssue(
                title=deviations.title(row),
                description=deviations.description(
                    row, settings.approval_labels[0], settings.deviation_valid_hours
                ),
                labels=("deviation", deviations.label_for(row.flag)),
                author=row.requested_by,
            )
        tracker = incident_tracker(services)
        try:
            # Tried before: it may have been opened without our hearing the answer.
            issue = await tracker.find_marked(marker) if (attempts or 1) > 1 else None
            if issue is None:
                issue = await tracker.open_issue(new)
        except AdapterError as exc:
            raise DeliveryError(exc.shown()) from None
        now = services.clock.now()
        async with services.store.transaction(write=True) as session:
            row = await session.get(Deviation, int(payload["deviation_id"]))
            if row is None or row.issue_ref:
                return
            row.issue_ref, row.issue_url, row.opened_at = issue.ref, issue.url, now
            text = (
                f"Deviation issue {issue.url or issue.ref} for `{flag}` is open "
                f"(asked by @{row.requested_by}: {row.value} in {', '.join(row.environments)}). "
                f"It approves once labelled `{settings.approval_labels[0]}`, for "
                f"{settings.deviation_valid_hours:g} hours"
            )
            announcement = Announcement(
                channel_id=services.settings.production_channel.id,
                text=text + ".",
                fields={"flag": flag, "issue": issue.url or issue.ref, "by": row.requested_by},
                idempotency_key=f"{deviations.key(row.id)}:announce",
            )
            await enqueue(
                session,
                kind=ANNOUNCE,
                key=announcement.idempotency_key,
                payload=announcement.model_dump(mode="json"),
                now=now,
            )
        log.info("deviation.issue_opened", flag=flag, ref=issue.ref)
        if self.on_opened is not None:
            self.on_opened(flag, issue)


def deviation_sinks(services: Services, *, on_opened: Opened | None = None) -> dict[str, Sink]:
    """The sinks of the `deviation:*` outbox kinds, for the issues' worker."""
    return {deviations.OPEN: DeviationDelivery(services, on_opened=on_opened)}
