"""GitLab freeze periods as windows: cron start and end in their zone, evaluated by croniter.

A freeze period is "from each time `start` matches until the next time `end` matches",
both read in `cron_timezone` (GitLab's own reading). Pure functions: the policies use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from croniter import croniter

from marvin.adapters.gitlab_deploys import FreezePeriod
from marvin.deploys.times import zone

# A freeze that would last longer than this is read as a mistake in its crons, not a freeze.
LONGEST = timedelta(days=366)


@dataclass(frozen=True)
class Window:
    starts_at: datetime
    ends_at: datetime
    what: str  # for people: "GitLab freeze period 3 (0 23 * * 5 to 0 7 * * 1 Europe/Berlin)"

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.starts_at < end and start < self.ends_at


def describe(period: FreezePeriod) -> str:
    return f"GitLab freeze period {period.id} ({period.start} to {period.end}, {period.timezone})"


def occurrence(period: FreezePeriod, before: datetime) -> Window | None:
    """The latest occurrence of `period` that starts before `before` (it may have ended)."""
    tz = zone(period.timezone)
    local = before.astimezone(tz)
    start = croniter(period.start, local).get_prev(datetime)
    end = croniter(period.end, start).get_next(datetime)
    if end - start > LONGEST:
        return None
    return Window(start.astimezone(UTC), end.astimezone(UTC), describe(period))


def overlapping(period: FreezePeriod, start: datetime, end: datetime) -> Window | None:
    """The occurrence of `period` that overlaps [start, end), if any.

    The occurrence that starts last before `end` also ends last (each ends at the first
    `end` after its start), so it is the only one to look at."""
    window = occurrence(period, end)
    return window if window is not None and window.overlaps(start, end) else None


def upcoming(period: FreezePeriod, now: datetime) -> Window | None:
    """The occurrence in force now, or else the next one."""
    current = overlapping(period, now, now + timedelta(seconds=1))
    if current is not None:
        return current
    tz = zone(period.timezone)
    begins = croniter(period.start, now.astimezone(tz)).get_next(datetime)
    ends = croniter(period.end, begins).get_next(datetime)
    return Window(begins.astimezone(UTC), ends.astimezone(UTC), describe(period))


def valid(period: FreezePeriod) -> bool:
    return croniter.is_valid(period.start) and croniter.is_valid(period.end)
