"""How slots, freezes and locks read in chat."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from marvin.clock import as_utc
from marvin.deploys import times
from marvin.store.tables import DeploySlot

SHOWN_STATE = {
    "scheduled": "scheduled",
    "announced": "due",
    "starting": "starting",
    "started": "running",
    "succeeded": "deployed",
    "failed": "failed",
    "cancelled": "cancelled",
    "refused": "refused when due",
    "missed": "never started",
}


def slot_line(slot: DeploySlot, tz: ZoneInfo) -> str:
    parts = [
        f"#{slot.id} {slot.environment} {slot.version}",
        times.span(as_utc(slot.starts_at), as_utc(slot.ends_at), tz),
        f"@{slot.booked_by}",
        SHOWN_STATE.get(slot.state, slot.state),
    ]
    if slot.note:
        parts.append(f"“{slot.note}”")
    return " · ".join(parts)


def slot_details(slot: DeploySlot, tz: ZoneInfo) -> str:
    lines = [slot_line(slot, tz)]
    if slot.override_reason:
        lines.append(f"Deploy checks overridden: {slot.override_reason}")
    if slot.announced_at:
        late = " (overdue)" if slot.overdue else ""
        lines.append(f"Announced {times.shown(as_utc(slot.announced_at), tz)}{late}")
    if slot.started_at:
        lines.append(f"Started {times.shown(as_utc(slot.started_at), tz)} by @{slot.started_by}")
    if slot.pipeline_url:
        lines.append(f"Pipeline: {slot.pipeline_url} ({slot.pipeline_status or 'unknown'})")
    if slot.finished_at:
        why = f": {slot.outcome_reason}" if slot.outcome_reason else ""
        lines.append(f"Finished {times.shown(as_utc(slot.finished_at), tz)}{why}")
    return "\n".join(lines)
