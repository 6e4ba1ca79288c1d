"""One source of time for the whole bot, so tests can move it instead of sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, always timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = (start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)).astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        self._now += delta if delta is not None else timedelta(**kwargs)
        return self._now

    def set(self, when: datetime) -> None:
        self._now = when.astimezone(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def spoken(at: datetime, now: datetime) -> str:
    """A moment as a person reads it next to `now`: `15:22 UTC` today, `tomorrow 00:11 UTC`
    (a watch that ends after midnight must not read as if it had already ended), else with
    the date."""
    at, now = as_utc(at), as_utc(now)
    days = (at.date() - now.date()).days
    clock = at.strftime("%H:%M UTC")
    if days == 0:
        return clock
    if days == 1:
        return f"tomorrow {clock}"
    if days == -1:
        return f"yesterday {clock}"
    return f"{at:%a} {at.day} {at:%b} {clock}"


def utc_moment(value: str, example: str) -> datetime:
    """A moment typed as ISO 8601 (`2026-03-02 22:00`, with or without `UTC`), read as UTC
    when it names no zone; a ValueError that shows `example` otherwise."""
    text = value.strip().upper().removesuffix("UTC").strip().replace(" ", "T")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"a time is like {example} (UTC)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
