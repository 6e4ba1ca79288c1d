"""Marvin's Slack transport driven the way Slack drives it, against loopback fakes.

`SlackRig` serves `build_bot(...).web` (exactly what `marvin serve` runs) on a test server,
with the Web API and response_url webhooks answered by `FakeSlackAPI`, requests signed as
Slack signs them, and a `FrozenClock` so the policies see a fixed time. Tests read like a
conversation:

    ack = await rig.command("bob", "feature set new_nav true --staging")
    reply = await rig.reply(ack)            # what the response_url received
    await rig.announce()                    # the outbox delivers to chat.postMessage

The fixtures (`rig`, `any_rig`, `rig_factory`, `json_log`) are defined here as
`<name>_fixture`; a test module imports those functions, and pytest finds them by name.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import pytest
import structlog
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from sqlalchemy import select

from marvin.clock import FrozenClock
from marvin.config import Settings
from marvin.slack.secrets import SlackSecrets
from marvin.slack.server import EVENTS_PATH, Bot, build_bot
from marvin.store.db import Store
from marvin.store.tables import Base
from marvin.wiring import build_services
from tests.fakes import slack_requests
from tests.fakes.slack_api import FakeSlackAPI, RecordedCall
from tests.harness import START, make_settings

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-test"
APP_TOKEN = "xapp-test"
PRODUCTION = "C0PRODUCTION"  # production_channel.id in config.example.yaml
RANDOM = "CRANDOM"

# The demo directory's people, as Slack knows them; and someone the directory doesn't know.
PEOPLE = {"alice": "UALICE", "bob": "UBOB", "carol": "UCAROL", "dave": "UDAVE", "erin": "UERIN"}
STRANGER = "zed"
STRANGER_ID = "UZED"
STRANGER_EMAIL = "zed@elsewhere.example"
EVERYONE = {**PEOPLE, STRANGER: STRANGER_ID}
CHANNELS = {"production": PRODUCTION, "random": RANDOM}

T = TypeVar("T", bound=Base)


def user_id(who: str) -> str:
    return EVERYONE[who]


def dm_id(who: str) -> str:
    return "D" + user_id(who)[1:]


def epoch(when: datetime) -> int:
    return int(when.timestamp())


def populate(api: FakeSlackAPI) -> None:
    """The workspace: the demo people (e-mails as in the directory), channels and DMs."""
    for handle, uid in PEOPLE.items():
        api.add_user(uid, handle, email=f"{handle}@example.com", real_name=handle.title())
    api.add_user(STRANGER_ID, STRANGER, email=STRANGER_EMAIL, real_name="Zed Zimmer")
    api.add_channel(PRODUCTION, "production")
    api.add_channel(RANDOM, "random")
    for who in EVERYONE:
        api.add_channel(dm_id(who), "", True, user=user_id(who))


def secrets_for(mode: str = "http") -> SlackSecrets:
    return SlackSecrets(
        bot_token=SecretStr(BOT_TOKEN),
        signing_secret=SecretStr(SECRET) if mode == "http" else None,
        app_token=SecretStr(APP_TOKEN),
    )


def new_ts() -> str:
    return f"{time.time():.6f}"


def message_event(who: str, text: str, *, ts: str | None = None, **extra: Any) -> dict[str, Any]:
    """A `message.im` event: someone writes to Marvin in their DM with it."""
    return {
        "type": "message",
        "channel": dm_id(who),
        "channel_type": "im",
        "user": user_id(who),
        "text": text,
        "ts": ts or new_ts(),
        "event_ts": ts or new_ts(),
        "team": "T1",
        **extra,
    }


def mention_event(
    who: str, text: str, *, channel: str = PRODUCTION, ts: str | None = None, **extra: Any
) -> dict[str, Any]:
    """An `app_mention` event: `<@UBOT> ...` in a channel."""
    return {
        "type": "app_mention",
        "channel": channel,
        "user": user_id(who),
        "text": text,
        "ts": ts or new_ts(),
        "event_ts": ts or new_ts(),
        "team": "T1",
        **extra,
    }


def command_fields(
    who: str, text: str, *, channel: str, channel_name: str, response_url: str
) -> dict[str, str]:
    """A slash command's fields, as Slack posts them (and as Socket Mode wraps them)."""
    body, _ = slack_requests.slash_command(
        SECRET,
        text=text,
        user_id=user_id(who),
        user_name=who,
        channel_id=channel,
        channel_name=channel_name,
        response_url=response_url,
        trigger_id=slack_requests.new_trigger_id(),
    )
    return dict(parse_qsl(body.decode(), keep_blank_values=True))


def event_envelope(event: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    body, _ = slack_requests.event_callback(SECRET, event, event_id=event_id)
    envelope: dict[str, Any] = json.loads(body)
    return envelope


def button(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """The one button in a message's blocks."""
    buttons = [
        element
        for block in blocks
        if block.get("type") == "actions"
        for element in block.get("elements", [])
        if element.get("type") == "button"
    ]
    assert len(buttons) == 1, blocks
    return buttons[0]


@dataclass
class Ack:
    """Slack's view of one request: the HTTP answer, and where the real answer will go."""

    status: int
    text: str
    response_url: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.text)


async def _ack(response: ClientResponse, response_url: str = "") -> Ack:
    return Ack(response.status, await response.text(), response_url, dict(response.headers))


async def wait_for_call(
    api: FakeSlackAPI,
    method: str,
    matches: Callable[[RecordedCall], bool],
    timeout: float = 5.0,  # noqa: ASYNC109
) -> RecordedCall:
    """The first recorded call of `method` that `matches`, waiting for it to arrive."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        calls = api.calls(method)
        for call in calls:
            if matches(call):
                return call
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError(f"no matching {method} call; saw {[c.params for c in calls]}")
        try:
            await api.wait_for(method, len(calls) + 1, timeout=remaining)
        except TimeoutError:
            pass


class SlackRig:
    def __init__(
        self, api: FakeSlackAPI, bot: Bot, client: TestClient[Any, Any], clock: FrozenClock
    ) -> None:
        self.api = api
        self.bot = bot
        self.client = client
        self.clock = clock

    @property
    def settings(self) -> Settings:
        return self.bot.services.settings

    @property
    def store(self) -> Store:
        return self.bot.services.store

    # --- what Slack sends -----------------------------------------------------------

    async def post(self, body: bytes, headers: dict[str, str]) -> ClientResponse:
        return await self.client.post(EVENTS_PATH, data=body, headers=headers)

    async def command(
        self,
        who: str,
        text: str,
        *,
        channel: str = "production",
        timestamp: int | None = None,
        secret: str = SECRET,
    ) -> Ack:
        """`/marvin <text>` typed by `who` in `channel` (a name from CHANNELS, or "dm")."""
        channel_id = dm_id(who) if channel == "dm" else CHANNELS[channel]
        channel_name = "directmessage" if channel == "dm" else channel
        url = self.api.response_url(channel_id, user_id(who))
        body, headers = slack_requests.slash_command(
            secret,
            text=text,
            user_id=user_id(who),
            user_name=who,
            channel_id=channel_id,
            channel_name=channel_name,
            response_url=url,
            # One Slack would exchange for a form (views.open), as in a real command.
            trigger_id=self.api.new_trigger_id(),
            timestamp=timestamp,
        )
        return await _ack(await self.post(body, headers), url)

    async def submit(self, who: str, view: dict[str, Any], values: dict[str, Any]) -> Ack:
        """`who` fills in a form Marvin opened (`view`, as views.open answered) and submits."""
        body, headers = slack_requests.view_submission(
            SECRET, user_id=user_id(who), user_name=who, view=view, values=values
        )
        return await _ack(await self.post(body, headers))

    async def event(
        self, event: dict[str, Any], *, event_id: str | None = None, retry_num: int | None = None
    ) -> Ack:
        body, headers = slack_requests.event_callback(
            SECRET, event, event_id=event_id, retry_num=retry_num
        )
        return await _ack(await self.post(body, headers))

    async def click(
        self, who: str, value: str, *, channel: str = "production", action_id: str = ""
    ) -> Ack:
        """`who` presses a Marvin button carrying `value` in `channel`."""
        from marvin.slack.render import CONFIRM_ACTION

        channel_id = dm_id(who) if channel == "dm" else CHANNELS[channel]
        url = self.api.response_url(channel_id, user_id(who), kind="actions")
        body, headers = slack_requests.block_action(
            SECRET,
            user_id=user_id(who),
            user_name=who,
            action_id=action_id or CONFIRM_ACTION,
            value=value,
            channel_id=channel_id,
            channel_name=channel,
            response_url=url,
            block_id="marvin_confirm",
        )
        return await _ack(await self.post(body, headers), url)

    # --- what people see ------------------------------------------------------------

    async def reply(self, ack: Ack, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
        """What Marvin posted to the response_url of `ack`'s request."""
        assert ack.status == 200, (ack.status, ack.text)
        call = await wait_for_call(
            self.api, "response_url", lambda c: c.context.get("url") == ack.response_url, timeout
        )
        return call.params

    def replies(self, ack: Ack) -> list[dict[str, Any]]:
        return [
            c.params
            for c in self.api.calls("response_url")
            if c.context.get("url") == ack.response_url
        ]

    async def said(self, channel: str, thread_ts: str) -> dict[str, Any]:
        """The chat.postMessage Marvin sent into the thread of `thread_ts` in `channel`."""
        call = await wait_for_call(
            self.api,
            "chat.postMessage",
            lambda c: c.params.get("channel") == channel and c.params.get("thread_ts") == thread_ts,
        )
        return call.params

    async def run(self, who: str, text: str, *, channel: str = "production") -> dict[str, Any]:
        """A whole slash command: ack, then the private reply."""
        ack = await self.command(who, text, channel=channel)
        return await self.reply(ack)

    def posts(self, channel: str = PRODUCTION) -> list[dict[str, Any]]:
        """Every chat.postMessage sent to `channel` (accepted or not)."""
        calls = self.api.calls("chat.postMessage")
        return [c.params for c in calls if c.params.get("channel") == channel]

    async def announce(self) -> int:
        return await self.bot.outbox.deliver_due()

    async def settle(self) -> None:
        """Wait for every acknowledged piece of work to finish."""
        await self.bot.transport.drain(grace=10)

    async def rows(self, model: type[T], *where: Any) -> list[T]:
        async with self.store.transaction() as session:
            return list(await session.scalars(select(model).where(*where)))


RigFactory = Callable[..., Awaitable[SlackRig]]


async def _rigs(url: str) -> AsyncIterator[RigFactory]:
    made: list[tuple[FakeSlackAPI, SlackRig]] = []

    async def factory(*, db: str | None = None, **sections: Any) -> SlackRig:
        api = FakeSlackAPI(bot_token=BOT_TOKEN, app_token=APP_TOKEN)
        await api.start()
        populate(api)
        slack = {"api_base_url": api.base_url, "mode": "http", **sections.pop("slack", {})}
        settings = make_settings(db or url, slack=slack, **sections)
        clock = FrozenClock(START)
        bot = build_bot(settings, secrets_for("http"), build_services(settings, clock=clock))
        client: TestClient[Any, Any] = TestClient(TestServer(bot.web))
        await client.start_server()
        rig = SlackRig(api, bot, client, clock)
        made.append((api, rig))
        return rig

    yield factory
    for api, rig in reversed(made):
        await rig.settle()
        await rig.bot.transport.close()
        await rig.client.close()
        await rig.store.dispose()
        await api.stop()


@pytest.fixture(name="rig_factory")
async def rig_factory_fixture(sqlite_url: str) -> AsyncIterator[RigFactory]:
    """Rigs on a fresh SQLite database, with config overrides: `await rig_factory(slack={...})`."""
    async for factory in _rigs(sqlite_url):
        yield factory


@pytest.fixture(name="rig")
async def rig_fixture(rig_factory: RigFactory) -> SlackRig:
    return await rig_factory()


@pytest.fixture(name="any_rig")
async def any_rig_fixture(db_url: str) -> AsyncIterator[SlackRig]:
    """The default rig on SQLite and on PostgreSQL."""
    async for factory in _rigs(db_url):
        yield await factory()


@pytest.fixture(name="json_log")
def json_log_fixture() -> Iterator[io.StringIO]:
    """The structured log as `marvin serve` writes it (JSON lines), captured."""
    old = structlog.get_config()
    out = io.StringIO()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(0),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    try:
        yield out
    finally:
        structlog.configure(**old)


def log_entries(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
