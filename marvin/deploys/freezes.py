"""GitLab freeze periods as windows: cron start and end in their zone, evaluated by croniter.

A freeze period is "from each time `start` matches until the next time `end` matches",
both read in `cron_timezone` (GitLab's own reading). Pure functions: the policies use them.
A period Marvin can't evaluate raises `Unreadable` with the reason, so that whoever asked
can fail closed and say why, instead of a crash (GitLab's cron dialect is not croniter's).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from marvin.adapters.gitlab_deploys import FreezePeriod

# A freeze that would last longer than this is read as a mistake in its crons, not a freeze.
LONGEST = timedelta(days=366)


class Unreadable(ValueError):
    """A freeze period that can't be evaluated; the message says why, for people."""


@dataclass(frozen=True)
class Window:
    starts_at: datetime
    ends_at: datetime
    what: str  # for people: "GitLab freeze period 3 (0 23 * * 5 to 0 7 * * 1 Europe/Berlin)"

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.starts_at < end and start < self.ends_at


def describe(period: FreezePeriod) -> str:
    return f"GitLab freeze period {period.id} ({period.start} to {period.end}, {period.timezone})"


def problem(period: FreezePeriod) -> str | None:
    """Why `period` can't be evaluated here, or None when it can."""
    bad = [cron for cron in (period.start, period.end) if not croniter.is_valid(cron)]
    if bad:
        return f"I can't read the cron {bad[0]!r}"
    try:
        ZoneInfo(period.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return f"I don't know the time zone {period.timezone!r}"
    return None


def _zone(period: FreezePeriod) -> ZoneInfo:
    why = problem(period)
    if why is not None:
        raise Unreadable(why)
    return ZoneInfo(period.timezone)


def _match(cron: str, after: datetime, *, back: bool = False) -> datetime:
    try:
        found = croniter(cron, after)
        moment: datetime = found.get_prev(datetime) if back else found.get_next(datetime)
    except CroniterError as exc:
        # Valid syntax that never matches (the 31st of February) ends up here.
        raise Unreadable(f"the cron {cron!r} matches no date ({exc})") from exc
    return moment


def _from(period: FreezePeriod, start: datetime) -> Window | None:
    """The occurrence that starts at `start` (local to the period's zone)."""
    end = _match(period.end, start)
    if end - start > LONGEST:
        return None
    return Window(start.astimezone(UTC), end.astimezone(UTC), describe(period))


def occurrence(period: FreezePeriod, before: datetime) -> Window | None:
    """The latest occurrence of `period` that starts before `before` (it may have ended)."""
    tz = _zone(period)
    return _from(period, _match(period.start, before.astimezone(tz), back=True))


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
    tz = _zone(period)
    return _from(period, _match(period.start, now.astimezone(tz)))


def occurrences(period: FreezePeriod, now: datetime, count: int) -> list[Window]:
    """The occurrence in force now (or else the next) and those after it, in order, up to
    `count`. Each next start is looked for in the period's zone from the last start: read
    in UTC from the last end, a daily period whose end is its start plus the zone's offset
    would skip every other day."""
    window = upcoming(period, now)
    found: list[Window] = []
    tz = _zone(period)
    while window is not None and len(found) < count:
        found.append(window)
        window = _from(period, _match(period.start, window.starts_at.astimezone(tz)))
    return found
