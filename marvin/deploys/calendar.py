"""`GET /deploys.ics?token=...`: the deploy calendar (slots, freezes, locks) as iCalendar,
so people subscribe to it in their own calendar.

Calendar clients can't send headers, so the token is in the query (the way calendar feeds
are shared); it comes from MARVIN_CALENDAR_TOKEN and is compared in constant time. Unset,
the feed is not served. Written by hand to RFC 5545 (CRLF lines folded at 75 octets, text
escaped): a few properties don't need a library at run time.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from aiohttp import web

from marvin.adapters.gitlab_deploys import FreezePeriod
from marvin.clock import as_utc
from marvin.deploys import freezes, service
from marvin.deploys.text import SHOWN_STATE
from marvin.facts import Known, fetch
from marvin.services import Services
from marvin.store.tables import DeployFreeze, DeployLock, DeploySlot

log = structlog.get_logger(__name__)

PATH = "/deploys.ics"
ENV_VARIABLE = "MARVIN_CALENDAR_TOKEN"
PAST = timedelta(days=14)
# How many of each GitLab freeze period's coming occurrences the feed lists.
OCCURRENCES = 8


@dataclass(frozen=True)
class Event:
    uid: str
    starts_at: datetime
    ends_at: datetime
    summary: str
    description: str
    status: str = "CONFIRMED"


def token_from_env() -> str | None:
    value = os.environ.get(ENV_VARIABLE, "").strip()
    return value or None


def _escape(text: str) -> str:
    return (
        text.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
    )


def _fold(line: str) -> str:
    """RFC 5545 3.1: at most 75 octets a line, continued with a space; never inside a
    UTF-8 sequence."""
    out: list[str] = []
    current, size = "", 0
    for char in line:
        width = len(char.encode())
        if size + width > (75 if not out else 74):
            out.append(current)
            current, size = "", 0
        current += char
        size += width
    out.append(current)
    return "\r\n ".join(out)


def _stamp(value: datetime) -> str:
    return f"{as_utc(value):%Y%m%dT%H%M%SZ}"


def render(events: Iterable[Event], now: datetime, name: str) -> str:
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Marvin//Deploy calendar//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"X-WR-CALNAME:{_escape(name)}",
    ]
    for event in events:
        lines += [
            "BEGIN:VEVENT",
            f"UID:{event.uid}",
            f"DTSTAMP:{_stamp(now)}",
            f"DTSTART:{_stamp(event.starts_at)}",
            f"DTEND:{_stamp(event.ends_at)}",
            f"SUMMARY:{_escape(event.summary)}",
            f"DESCRIPTION:{_escape(event.description)}",
            f"STATUS:{event.status}",
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return "".join(_fold(line) + "\r\n" for line in lines)


def _slot(slot: DeploySlot) -> Event:
    parts = [f"Booked by @{slot.booked_by}", f"state: {SHOWN_STATE.get(slot.state, slot.state)}"]
    if slot.note:
        parts.append(slot.note)
    if slot.pipeline_url:
        parts.append(f"pipeline: {slot.pipeline_url}")
    return Event(
        uid=f"deploy-slot-{slot.key}@marvin",
        starts_at=slot.starts_at,
        ends_at=slot.ends_at,
        summary=f"Deploy {slot.version} to {slot.environment} (#{slot.id})",
        description="\n".join(parts),
        status="CANCELLED" if slot.state in service.CALLED_OFF else "CONFIRMED",
    )


def _freeze(row: DeployFreeze) -> Event:
    return Event(
        uid=f"deploy-freeze-{row.id}@marvin",
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        summary=f"Freeze: {row.environment} ({row.reason})",
        description=f"No deploys to {row.environment}. Added by @{row.created_by}.",
    )


def _lock(row: DeployLock, now: datetime) -> Event:
    return Event(
        uid=f"deploy-lock-{row.environment}-{_stamp(row.locked_at)}@marvin",
        starts_at=row.locked_at,
        # Open-ended: shown until the next refresh after it is lifted.
        ends_at=max(as_utc(row.locked_at), now) + timedelta(hours=1),
        summary=f"Locked: {row.environment} ({row.reason})",
        description=f"Deploys to {row.environment} stopped by @{row.locked_by} until unlocked.",
    )


def _gitlab(period: FreezePeriod, now: datetime, held: str) -> list[Event]:
    return [
        Event(
            uid=f"gitlab-freeze-{period.id}-{_stamp(window.starts_at)}@marvin",
            starts_at=window.starts_at,
            ends_at=window.ends_at,
            summary=f"GitLab freeze: {held}",
            description=window.what,
        )
        for window in freezes.occurrences(period, now, OCCURRENCES)
    ]


async def events(services: Services) -> list[Event]:
    now = services.clock.now()
    async with services.store.transaction() as session:
        slots = await service.slots(
            session=session,
            environment=None,
            since=now - PAST,
            until=None,
            limit=500,
            # A calendar learns that an event is off from its status: keep them in.
            cancelled=True,
        )
        frozen = await service.freezes(
            session=session, environment=None, starts_at=now - PAST, ends_at=None
        )
        locked = await service.locks(session=session)
    found = [_slot(s) for s in slots] + [_freeze(f) for f in frozen]
    found += [_lock(lock, now) for lock in locked]
    if services.deploys is not None:
        periods = await fetch(services.deploys.freeze_periods())
        if isinstance(periods, Known):
            held = ", ".join(services.settings.deploys.protected)
            for period in periods.value:
                try:
                    found += _gitlab(period, now, held)
                except freezes.Unreadable as exc:
                    # A feed can't refuse anything: the period is left out, and logged.
                    log.warning("calendar.gitlab_unreadable", period=period.id, error=str(exc))
        else:
            log.warning("calendar.gitlab_unread", error=periods.shown())
    return found


def add_calendar_routes(app: web.Application, services: Services, token: str | None) -> None:
    async def feed(request: web.Request) -> web.StreamResponse:
        if token is None:
            raise web.HTTPNotFound()
        given = request.query.get("token", "")
        if not given:
            return web.Response(status=401, text="A calendar token is needed: ?token=...\n")
        if not hmac.compare_digest(given.encode(), token.encode()):
            return web.Response(status=403, text="That calendar token is not valid.\n")
        body = render(
            await events(services),
            services.clock.now(),
            f"Deploys ({services.settings.production_channel.name})",
        )
        return web.Response(
            body=body.encode(),
            headers={"Content-Type": "text/calendar; charset=utf-8", "Cache-Control": "no-store"},
        )

    app.router.add_get(PATH, feed)
