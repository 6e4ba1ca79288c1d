"""Times people type: ISO 8601, `14:30`, `tomorrow 09:00`, `in 2h`, `mon 10:00`, `now`.

A time without a zone is read in the person's zone (Slack's profile, `shell.timezone` in the
shell) and stored in UTC; it is shown back in both, so a booking in the wrong zone is seen
at once. A wall-clock time that does not exist in the zone (the hour skipped when clocks go
forward) is refused rather than moved.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# `mon`, `tue`, `tues`, `monday`...: the weekday's number (Monday is 0).
_WEEKDAYS = {
    **{name[:3]: i for i, name in enumerate(_NAMES)},
    **{name: i for i, name in enumerate(_NAMES)},
    "tues": 1,
    "thur": 3,
    "thurs": 3,
}
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_DURATION = re.compile(r"^(?:(\d{1,3})d)?(?:(\d{1,4})h)?(?:(\d{1,5})m)?$")
EXAMPLES = "`2026-03-02T14:30`, `14:30`, `tomorrow 09:00`, `in 2h`, `mon 10:00`"


class TimeError(ValueError):
    """Text that is not a time or a duration; the message is said to the person."""


def zone(name: str | None) -> ZoneInfo:
    """The zone called `name`, or UTC when there is none or it is unknown here."""
    if not name:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def parse_duration(text: str) -> timedelta:
    """`30m`, `2h`, `1h30m`, `1d`: a positive length of time."""
    cleaned = text.strip().lower().replace(" ", "")
    match = _DURATION.match(cleaned)
    if not cleaned or match is None:
        raise TimeError(f"“{text}” is not a length of time: say it like `30m`, `2h` or `1h30m`.")
    days, hours, minutes = (int(g) if g else 0 for g in match.groups())
    delta = timedelta(days=days, hours=hours, minutes=minutes)
    if delta <= timedelta(0):
        raise TimeError("A length of time must be more than nothing, like `30m`.")
    return delta


def parse_time(text: str, now: datetime, tz: ZoneInfo) -> datetime:
    """The moment `text` names, in UTC, read in `tz` unless it says its own zone."""
    words = text.strip().lower().split()
    if not words:
        raise TimeError(f"Say when, like {EXAMPLES}.")
    local_now = now.astimezone(tz)
    if words == ["now"]:
        return now.astimezone(UTC)
    if words[0] == "in":
        return (now + parse_duration("".join(words[1:]))).astimezone(UTC)
    if len(words) == 1 and _CLOCK.match(words[0]):
        at = _clock(words[0])
        day = local_now.date()
        if datetime.combine(day, at) <= local_now.replace(tzinfo=None):
            day += timedelta(days=1)  # 14:30 said at 15:00 is tomorrow's
        return _local(day, at, tz, text)
    if len(words) == 2 and _CLOCK.match(words[1]):
        at = _clock(words[1])
        day = _day(words[0], local_now, at, text)
        return _local(day, at, tz, text)
    return _iso(text.strip(), tz)


def _clock(word: str) -> time:
    hours, minutes = word.split(":")
    return time(int(hours), int(minutes))


def _day(word: str, local_now: datetime, at: time, text: str) -> date:
    today = local_now.date()
    if word == "today":
        return today
    if word == "tomorrow":
        return today + timedelta(days=1)
    weekday = _WEEKDAYS.get(word)
    if weekday is not None:
        ahead = (weekday - today.weekday()) % 7
        day = today + timedelta(days=ahead)
        if ahead == 0 and datetime.combine(day, at) <= local_now.replace(tzinfo=None):
            day += timedelta(days=7)  # "mon 10:00" said on a Monday at 11 is next Monday
        return day
    try:
        return date.fromisoformat(word)  # "2026-03-05 14:30"
    except ValueError:
        raise TimeError(f"I can't read “{text}” as a time. Say it like {EXAMPLES}.") from None


def _local(day: date, at: time, tz: ZoneInfo, text: str) -> datetime:
    local = datetime.combine(day, at, tzinfo=tz)
    utc = local.astimezone(UTC)
    if utc.astimezone(tz).replace(tzinfo=None) != local.replace(tzinfo=None):
        raise TimeError(
            f"{local:%Y-%m-%d %H:%M} doesn't exist in {tz.key} (the clocks skip it): "
            "pick another time."
        )
    return utc


def _iso(text: str, tz: ZoneInfo) -> datetime:
    try:
        parsed = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        raise TimeError(f"I can't read “{text}” as a time. Say it like {EXAMPLES}.") from None
    if parsed.tzinfo is None:
        return _local(parsed.date(), parsed.time().replace(second=0, microsecond=0), tz, text)
    return parsed.astimezone(UTC)


def shown(at: datetime, tz: ZoneInfo) -> str:
    """`2026-03-02 14:30 UTC (15:30 CET)`: UTC first, and the person's own when it differs."""
    utc = at.astimezone(UTC)
    text = f"{utc:%Y-%m-%d %H:%M} UTC"
    if tz.key in ("UTC", "Etc/UTC"):
        return text
    local = utc.astimezone(tz)
    same_day = local.date() == utc.date()
    mine = f"{local:%H:%M %Z}" if same_day else f"{local:%a %Y-%m-%d %H:%M %Z}"
    return f"{text} ({mine})"


def span(start: datetime, end: datetime, tz: ZoneInfo) -> str:
    """A window: UTC, and the person's own zone when it differs."""
    s, e = start.astimezone(UTC), end.astimezone(UTC)
    if s.date() == e.date():
        text = f"{s:%Y-%m-%d %H:%M}–{e:%H:%M} UTC"
    else:
        text = f"{s:%Y-%m-%d %H:%M} – {e:%Y-%m-%d %H:%M} UTC"
    if tz.key in ("UTC", "Etc/UTC"):
        return text
    ls, le = s.astimezone(tz), e.astimezone(tz)
    return f"{text} ({ls:%a %H:%M}–{le:%H:%M %Z})"


def length(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    if hours and minutes:
        return f"{hours}h{minutes:02d}m"
    return f"{hours}h" if hours else f"{minutes}m"
