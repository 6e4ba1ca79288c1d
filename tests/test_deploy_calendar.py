"""The deploy calendar feed: slots, freezes (Marvin's and GitLab's) and locks as iCalendar
behind a token, read back with the `icalendar` library as a calendar client would."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import icalendar
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from marvin.deploys.calendar import add_calendar_routes, token_from_env
from marvin.wiring import close
from tests.fakes.gitlab import FakeGitLab
from tests.harness import Bot, make_bot

TOKEN = "glpat-marvin-calendar"
FEED_TOKEN = "feed-Secret-1234"
PROJECT = "web/app"


@dataclass
class Feed:
    url: str
    http: aiohttp.ClientSession

    async def get(self, query: str = "") -> tuple[int, str, str]:
        async with self.http.get(f"{self.url}/deploys.ics{query}") as response:
            return response.status, response.headers.get("Content-Type", ""), await response.text()


async def serve(bot: Bot, token: str | None) -> AsyncIterator[Feed]:
    app = web.Application()
    add_calendar_routes(app, bot.services, token)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            yield Feed(str(server.make_url("")).rstrip("/"), http)
    finally:
        await server.close()


@pytest.fixture
async def gitlab() -> AsyncIterator[FakeGitLab]:
    async with FakeGitLab() as fake:
        marvin = fake.add_user("marvin", token=TOKEN, bot=True)
        fake.add_group("web")
        fake.add_member(fake.add_project(PROJECT), marvin, "developer")
        yield fake


@pytest.fixture
async def bot(sqlite_url: str, gitlab: FakeGitLab, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("GITLAB_TOKEN", TOKEN)
    bot = make_bot(
        sqlite_url,
        gitlab={"url": gitlab.url, "timeout_seconds": 1},
        deploys={"gitlab_project": PROJECT},
    )
    yield bot
    await close(bot.services)


@pytest.fixture
async def feed(bot: Bot) -> AsyncIterator[Feed]:
    async for served in serve(bot, FEED_TOKEN):
        yield served


def events(body: str) -> dict[str, Any]:
    calendar = icalendar.Calendar.from_ical(body)
    return {str(e["SUMMARY"]): e for e in calendar.walk("VEVENT")}


async def test_the_feed_holds_slots_freezes_and_locks(
    bot: Bot, feed: Feed, gitlab: FakeGitLab
) -> None:
    gitlab.add_freeze_period(PROJECT, "0 23 * * 5", "0 7 * * 1", "Europe/Berlin")
    assert (await bot.say("dave", "deploy schedule production v1.42.0 at 14:30 --note 'RC, 2'")).ok
    assert (await bot.say("bob", "deploy schedule staging abc at 16:00 --duration 1h")).ok
    assert (await bot.say("dave", "deploy cancel 2")).ok
    assert (
        await bot.say(
            "dave", 'freeze add staging "2026-03-04 00:00" "2026-03-05 00:00" "demo day; all hands"'
        )
    ).ok
    assert (await bot.say("dave", "deploy lock canary canary hosts rebuilt")).ok
    status, kind, body = await feed.get(f"?token={FEED_TOKEN}")
    assert status == 200 and kind.startswith("text/calendar")
    assert all(len(line.encode()) <= 75 for line in body.split("\r\n"))
    found = events(body)
    slot = found["Deploy v1.42.0 to production (#1)"]
    assert slot["DTSTART"].dt == datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
    assert slot["DTEND"].dt == datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    assert "RC, 2" in str(slot["DESCRIPTION"]) and "@dave" in str(slot["DESCRIPTION"])
    assert str(found["Deploy abc to staging (#2)"]["STATUS"]) == "CANCELLED"
    freeze = found["Freeze: staging (demo day; all hands)"]
    assert freeze["DTSTART"].dt == datetime(2026, 3, 4, 0, 0, tzinfo=UTC)
    assert "Locked: canary (canary hosts rebuilt)" in found
    calendar = icalendar.Calendar.from_ical(body)
    gitlab_freezes = [
        e for e in calendar.walk("VEVENT") if str(e["SUMMARY"]).startswith("GitLab freeze")
    ]
    # Eight weekends in a row, none skipped: every Friday 23:00 to Monday 07:00 in Berlin,
    # which is 22:00 and 06:00 UTC in winter (CET) and an hour earlier after the clocks
    # change on 2026-03-29 (CEST).
    berlin = ZoneInfo("Europe/Berlin")
    friday = datetime(2026, 3, 6, 23, 0, tzinfo=berlin)
    monday = datetime(2026, 3, 9, 7, 0, tzinfo=berlin)
    shown = sorted((e["DTSTART"].dt, e["DTEND"].dt) for e in gitlab_freezes)
    assert shown == [(friday + timedelta(weeks=i), monday + timedelta(weeks=i)) for i in range(8)]
    assert shown[0] == (
        datetime(2026, 3, 6, 22, 0, tzinfo=UTC),
        datetime(2026, 3, 9, 6, 0, tzinfo=UTC),
    )
    assert datetime(2026, 4, 3, 21, 0, tzinfo=UTC) == shown[4][0]
    assert len({str(e["UID"]) for e in calendar.walk("VEVENT")}) == len(calendar.walk("VEVENT"))


async def test_a_daily_freeze_period_is_in_the_feed_every_day(
    bot: Bot, feed: Feed, gitlab: FakeGitLab
) -> None:
    # An hour a day in Berlin: its end is its start plus Berlin's offset from UTC, which a
    # next start looked for in UTC from the last end skipped every other day.
    gitlab.add_freeze_period(PROJECT, "0 6 * * *", "0 7 * * *", "Europe/Berlin")
    # And one croniter can't evaluate, which is left out rather than failing the feed.
    gitlab.add_freeze_period(PROJECT, "0 9 31 2 *", "0 17 31 2 *", "UTC")
    status, _, body = await feed.get(f"?token={FEED_TOKEN}")
    assert status == 200
    calendar = icalendar.Calendar.from_ical(body)
    starts = sorted(
        e["DTSTART"].dt
        for e in calendar.walk("VEVENT")
        if str(e["SUMMARY"]).startswith("GitLab freeze")
    )
    # It's 10:00 UTC on 2026-03-02: today's is over, the next is tomorrow 06:00 CET.
    first = datetime(2026, 3, 3, 6, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    assert starts == [first + timedelta(days=i) for i in range(8)]


@pytest.mark.parametrize(
    ("query", "status"),
    [("", 401), ("?token=", 401), ("?token=wrong", 403), (f"?token={FEED_TOKEN}x", 403)],
)
async def test_the_feed_needs_its_token(feed: Feed, query: str, status: int) -> None:
    got, _, body = await feed.get(query)
    assert got == status
    assert "BEGIN:VCALENDAR" not in body


async def test_without_a_token_configured_there_is_no_feed(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MARVIN_CALENDAR_TOKEN", raising=False)
    assert token_from_env() is None
    monkeypatch.setenv("MARVIN_CALENDAR_TOKEN", " tok ")
    assert token_from_env() == "tok"
    async for served in serve(bot, None):
        status, _, _ = await served.get("?token=anything")
        assert status == 404
