"""A test bot that reads like a conversation: `await bot.say("bob", "feature get x")`.

It drives the real pipeline on a real, migrated database (SQLite or PostgreSQL) with a clock
the test controls.
"""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml
from sqlalchemy import select

from marvin import issue_delivery
from marvin.adapters.issues import LocalIssueTracker
from marvin.clock import FrozenClock
from marvin.config import Settings, _load_directory_file
from marvin.models import Invocation, Place, Reply
from marvin.services import Services
from marvin.shell_delivery import pending
from marvin.store.tables import Base, Deviation, Incident, LocalIssue
from marvin.wiring import build_pipeline, build_services

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config.example.yaml"
START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
T = TypeVar("T", bound=Base)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def example_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    _load_directory_file(data, EXAMPLE.parent)
    return data


def make_settings(url: str, **sections: Any) -> Settings:
    data = _merge(example_data(), {"database": {"url": url}, **sections})
    return Settings(**data)


class Bot:
    def __init__(self, services: Services, clock: FrozenClock) -> None:
        self.services = services
        self.clock = clock
        self.pipeline = build_pipeline(services)

    @property
    def settings(self) -> Settings:
        return self.services.settings

    def invocation(
        self, who: str, text: str, *, channel: str | None = None, dm: bool = False
    ) -> Invocation:
        production = self.settings.production_channel
        if dm:
            place = Place(id=f"D-{who}", is_dm=True)
        elif channel is None or channel == production.name:
            place = Place(id=production.id, name=production.name)
        else:
            place = Place(id=f"C-{channel}", name=channel)
        return Invocation(
            request_id=uuid.uuid4().hex[:16],
            transport="test",
            user_id=f"U-{who}",
            user_name=who,
            user_email=f"{who}@example.com",
            place=place,
            text=text,
            received_at=self.clock.now(),
        )

    async def say(
        self, who: str, text: str, *, channel: str | None = None, dm: bool = False
    ) -> Reply:
        return await self.pipeline.handle(self.invocation(who, text, channel=channel, dm=dm))

    async def rows(self, model: type[T], *where: Any) -> list[T]:
        async with self.services.store.transaction() as session:
            return list(await session.scalars(select(model).where(*where)))

    async def add_issue(self, title: str, labels: list[str], state: str = "opened") -> str:
        async with self.services.store.transaction(write=True) as session:
            issue = LocalIssue(
                title=title,
                labels=labels,
                state=state,
                description="",
                created_at=self.clock.now(),
                updated_at=self.clock.now(),
            )
            session.add(issue)
            await session.flush()
            return f"#{issue.id}"

    async def deviation(self, who: str, args: str, *, approve: bool = True) -> str:
        """`feature deviate <args>` as `who`, the issue opened (the tracker's loop delivered)
        and, if `approve`, labelled approved now: the issue's reference."""
        reply = await self.say(who, f"feature deviate {args}")
        assert reply.ok, reply.text
        await deliver_issues(self)
        async with self.services.store.transaction() as session:
            row = (
                await session.scalars(select(Deviation).order_by(Deviation.id.desc()).limit(1))
            ).one()
        assert row.issue_ref is not None
        if approve:
            await self.label(row.issue_ref, self.settings.flags.approval_labels[0])
        return row.issue_ref

    async def label(self, ref: str, label: str) -> None:
        """An operator labels an issue of the embedded tracker (`marvin issue label`)."""
        await LocalIssueTracker(self.services.store, self.clock).add_label(ref, label)

    async def close_issue(self, ref: str) -> None:
        await LocalIssueTracker(self.services.store, self.clock).close(ref)

    async def open_incident(self, severity: int, title: str = "Database is on fire") -> int:
        async with self.services.store.transaction(write=True) as session:
            incident = Incident(
                title=title, severity=severity, state="open", created_at=self.clock.now()
            )
            session.add(incident)
            await session.flush()
            return incident.id


def make_bot(url: str, **sections: Any) -> Bot:
    clock = FrozenClock(START)
    services = build_services(make_settings(url, **sections), clock=clock)
    return Bot(services, clock)


class Served(Protocol):
    """A bot of the harness, or `marvin serve`'s (a Slack rig's `rig.bot`)."""

    @property
    def services(self) -> Services: ...


async def deliver_issues(bot: Served, rounds: int = 20) -> int:
    """Run the tracker's outbox loop as `serve` would, moving the (frozen) clock to each
    retry, until nothing is due; how many deliveries are still pending."""
    services = bot.services
    clock = services.clock
    assert isinstance(clock, FrozenClock)
    issues = issue_delivery.issue_worker(services)
    for _ in range(rounds):
        await issues.deliver_due()
        left, due = await pending(services.store, issue_delivery.KINDS)
        if not left or due is None:
            return left
        clock.set(max(due, clock.now()))
    return (await pending(services.store, issue_delivery.KINDS))[0]


async def said_ok(bot: Bot, who: str, text: str) -> str:
    """`who` says `text`, which must go through; its answer."""
    reply = await bot.say(who, text)
    assert reply.ok, reply.text
    return reply.text
