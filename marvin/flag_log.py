"""The flag log: every flag change also an issue in `issues.flag_log_project`, closed at once,
and a note on the flag's rollout issue when the change names one (`--rollout-issue`), as
GitLab's own ChatOps does.

Written to the outbox in the change's own record transaction (so a change is never logged
twice nor lost) and delivered by the issue loop (`marvin.issue_delivery`), with a hidden
marker in each issue and note against doubles: a GitLab outage delays the log and never
holds up the change or its announcement.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from marvin.adapters.issue_refs import parse_issue_ref
from marvin.adapters.issues import inert
from marvin.config import Settings
from marvin.outbox import enqueue

LOG_ISSUE = "issue:flag-log"
ROLLOUT_NOTE = "issue:rollout-note"
KINDS = (LOG_ISSUE, ROLLOUT_NOTE)

CHANGE_LABEL = "change"
OVERRIDE_LABEL = "Production check ignored"


def split_ref(ref: str) -> tuple[str | None, int] | None:
    """An issue named as `#12`, `group/project#12` or its URL: (its project's path, or
    None for the tracker's own, and its number); None when it names no issue."""
    parsed = parse_issue_ref(ref)
    return None if parsed is None else (parsed.project, parsed.iid)


@dataclass(frozen=True)
class LoggedChange:
    flag: str
    environment: str
    action: str  # set | delete
    before: str  # described, "new" when it did not exist
    after: str  # described, "deleted" when it was deleted
    actor: str
    override_reason: str | None
    deviation: str | None  # the --issue
    rollout_issue: str | None


def title(change: LoggedChange) -> str:
    if change.action == "delete":
        return f"Feature flag {change.flag} has been deleted on {change.environment}"
    return f"Feature flag {change.flag} has been set to {change.after} on {change.environment}"


def labels(change: LoggedChange) -> list[str]:
    found = [change.environment, CHANGE_LABEL]
    if change.override_reason:
        found.append(OVERRIDE_LABEL)
    return found


def _lines(change: LoggedChange, now: datetime) -> list[str]:
    lines = [
        f"@{change.actor} changed `{change.flag}` on {change.environment} at "
        f"{now:%Y-%m-%d %H:%M UTC} through Marvin: {change.before} → {change.after}."
    ]
    if change.deviation:
        lines.append(f"Deviation: {inert(change.deviation)}.")
    if change.override_reason:
        lines.append(f"The production check was ignored: {inert(change.override_reason)}.")
    return lines


async def record(
    *,
    session: AsyncSession,
    settings: Settings,
    change: LoggedChange,
    now: datetime,
    request_id: str,
) -> None:
    """The log issue and the rollout note, in the outbox with the change."""
    key = f"flag-log:{request_id}:{change.environment}:{change.flag}"
    if settings.issues.flag_log_project:
        await enqueue(
            session,
            kind=LOG_ISSUE,
            key=f"{key}:issue",
            payload={
                "title": title(change),
                "description": "\n\n".join(_lines(change, now)),
                "labels": labels(change),
                "author": change.actor,
                "marker": f"marvin-flag-log-{secrets.token_hex(8)}",
            },
            now=now,
        )
    if change.rollout_issue:
        await enqueue(
            session,
            kind=ROLLOUT_NOTE,
            key=f"{key}:rollout",
            payload={
                "ref": change.rollout_issue,
                "body": " ".join(_lines(change, now)),
                "marker": f"marvin-rollout-{secrets.token_hex(8)}",
            },
            now=now,
        )
