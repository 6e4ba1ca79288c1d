"""Times and lengths people type for deploy slots, read in their zone, with a set clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from marvin.deploys.times import TimeError, parse_duration, parse_time, shown, span, zone

# A Monday, 10:00 UTC (11:00 in Berlin, 05:00 in New York).
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
BERLIN = zone("Europe/Berlin")
NEW_YORK = zone("America/New_York")
UTC_ZONE = zone("UTC")


@pytest.mark.parametrize(
    ("text", "tz", "expected"),
    [
        ("2026-03-05T14:30:00Z", BERLIN, datetime(2026, 3, 5, 14, 30, tzinfo=UTC)),
        ("2026-03-05T14:30+02:00", UTC_ZONE, datetime(2026, 3, 5, 12, 30, tzinfo=UTC)),
        ("2026-03-05 14:30", BERLIN, datetime(2026, 3, 5, 13, 30, tzinfo=UTC)),
        ("2026-03-05T14:30", NEW_YORK, datetime(2026, 3, 5, 19, 30, tzinfo=UTC)),
        ("14:30", UTC_ZONE, datetime(2026, 3, 2, 14, 30, tzinfo=UTC)),
        ("14:30", BERLIN, datetime(2026, 3, 2, 13, 30, tzinfo=UTC)),
        # 09:00 has passed today (it is 10:00): the next 09:00 is tomorrow's.
        ("09:00", UTC_ZONE, datetime(2026, 3, 3, 9, 0, tzinfo=UTC)),
        ("tomorrow 09:00", BERLIN, datetime(2026, 3, 3, 8, 0, tzinfo=UTC)),
        ("Tomorrow 09:00", NEW_YORK, datetime(2026, 3, 3, 14, 0, tzinfo=UTC)),
        ("today 23:00", UTC_ZONE, datetime(2026, 3, 2, 23, 0, tzinfo=UTC)),
        ("in 2h", BERLIN, datetime(2026, 3, 2, 12, 0, tzinfo=UTC)),
        ("in 30m", UTC_ZONE, datetime(2026, 3, 2, 10, 30, tzinfo=UTC)),
        ("in 1h30m", UTC_ZONE, datetime(2026, 3, 2, 11, 30, tzinfo=UTC)),
        ("in 1d", UTC_ZONE, datetime(2026, 3, 3, 10, 0, tzinfo=UTC)),
        # It is Monday 10:00: Monday 11:00 is later today, Monday 09:00 is next week's.
        ("mon 11:00", UTC_ZONE, datetime(2026, 3, 2, 11, 0, tzinfo=UTC)),
        ("mon 09:00", UTC_ZONE, datetime(2026, 3, 9, 9, 0, tzinfo=UTC)),
        ("wed 10:00", BERLIN, datetime(2026, 3, 4, 9, 0, tzinfo=UTC)),
        ("friday 16:00", UTC_ZONE, datetime(2026, 3, 6, 16, 0, tzinfo=UTC)),
        ("sun 00:00", UTC_ZONE, datetime(2026, 3, 8, 0, 0, tzinfo=UTC)),
        ("now", BERLIN, NOW),
    ],
)
def test_times_are_read_in_the_persons_zone(text: str, tz: object, expected: datetime) -> None:
    assert parse_time(text, NOW, tz) == expected  # type: ignore[arg-type]


def test_the_zone_decides_what_today_is() -> None:
    # 23:30 UTC on Monday is already Tuesday 00:30 in Berlin: "today" is Tuesday there.
    late = datetime(2026, 3, 2, 23, 30, tzinfo=UTC)
    assert parse_time("today 09:00", late, BERLIN) == datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
    assert parse_time("today 09:00", late, UTC_ZONE) == datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_summer_time_moves_the_utc_hour() -> None:
    # Berlin moves to summer time on 2026-03-29: 10:00 local is 09:00 UTC before, 08:00 after.
    assert parse_time("2026-03-27 10:00", NOW, BERLIN) == datetime(2026, 3, 27, 9, tzinfo=UTC)
    assert parse_time("2026-03-30 10:00", NOW, BERLIN) == datetime(2026, 3, 30, 8, tzinfo=UTC)


def test_a_time_the_clocks_skip_is_refused() -> None:
    with pytest.raises(TimeError, match="doesn't exist in Europe/Berlin"):
        parse_time("2026-03-29 02:30", NOW, BERLIN)


@pytest.mark.parametrize(
    "text", ["", "soon", "25:00", "14:60", "tomorrow", "someday 10:00", "in", "in 2y", "2026-13-01"]
)
def test_what_is_not_a_time_gets_a_sentence(text: str) -> None:
    with pytest.raises(TimeError) as caught:
        parse_time(text, NOW, UTC_ZONE)
    assert "14:30" in str(caught.value) or "30m" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("1h30m", timedelta(minutes=90)),
        ("90m", timedelta(minutes=90)),
        ("1d", timedelta(days=1)),
        (" 2H ", timedelta(hours=2)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "0m", "h", "30", "30s", "-5m", "2 hours"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(TimeError):
        parse_duration(text)


def test_shown_back_in_utc_and_in_the_persons_zone() -> None:
    at = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
    assert shown(at, UTC_ZONE) == "2026-03-02 14:30 UTC"
    assert shown(at, BERLIN) == "2026-03-02 14:30 UTC (15:30 CET)"
    late = datetime(2026, 3, 2, 23, 30, tzinfo=UTC)
    assert shown(late, BERLIN) == "2026-03-02 23:30 UTC (Tue 2026-03-03 00:30 CET)"
    end = at + timedelta(minutes=30)
    assert span(at, end, UTC_ZONE) == "2026-03-02 14:30–15:00 UTC"
    assert span(at, end, NEW_YORK) == "2026-03-02 14:30–15:00 UTC (Mon 09:30–10:00 EST)"


def test_an_unknown_zone_falls_back_to_utc() -> None:
    assert zone("Mars/Olympus_Mons").key == "UTC"
    assert zone(None).key == "UTC"
