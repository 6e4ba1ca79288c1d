"""Marvin over Socket Mode: the whole `serve(...)`, connected to fake Slack through a WebSocket.

`serve` runs as it does under `marvin serve` (its own services, outbox worker and /healthz),
with `FakeSlackAPI` answering the Web API and `FakeSocketModeServer` handing out envelopes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from marvin.slack.secrets import SlackSecrets
from marvin.slack.server import serve
from marvin.store.db import Store
from marvin.store.tables import Account, AuditRecord, InboxItem, OutboxMessage
from tests.fakes.slack_api import FakeSlackAPI
from tests.fakes.slack_socket import FakeSocketModeServer
from tests.harness import make_settings
from tests.slack_harness import (
    APP_TOKEN,
    BOT_TOKEN,
    PRODUCTION,
    command_fields,
    dm_id,
    event_envelope,
    json_log_fixture,  # noqa: F401
    log_entries,
    message_event,
    populate,
    secrets_for,
    user_id,
    wait_for_call,
)

SET_STAGING = "feature set new_nav true --staging"


@dataclass
class Served:
    api: FakeSlackAPI
    socket: FakeSocketModeServer
    stop: asyncio.Event
    task: asyncio.Task[int]
    port: int
    store: Store

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def command(self, who: str, text: str, channel: str = "production") -> tuple[str, str]:
        """A slash command over the socket; (envelope_id, the response_url it carries)."""
        channel_id = PRODUCTION if channel == "production" else dm_id(who)
        url = self.api.response_url(channel_id, user_id(who))
        fields = command_fields(
            who, text, channel=channel_id, channel_name=channel, response_url=url
        )
        envelope_id = await self.socket.send_envelope(
            "slash_commands", fields, accepts_response_payload=True
        )
        return envelope_id, url

    async def reply(self, url: str) -> dict[str, Any]:
        call = await wait_for_call(self.api, "response_url", lambda c: c.context["url"] == url)
        return call.params

    async def rows(self, model: Any, *where: Any) -> list[Any]:
        async with self.store.transaction() as session:
            return list(await session.scalars(select(model).where(*where)))

    async def stopped(self) -> int:
        self.stop.set()
        return await asyncio.wait_for(self.task, 15)


async def _serve(url: str, secrets: SlackSecrets | None = None) -> AsyncIterator[Served]:
    async with FakeSocketModeServer() as socket, FakeSlackAPI(socket=socket) as api:
        populate(api)
        settings = make_settings(
            url, slack={"mode": "socket", "api_base_url": api.base_url, "host": "127.0.0.1"}
        )
        stop = asyncio.Event()
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(
            serve(
                settings,
                secrets or secrets_for("socket"),
                port=0,
                stop=stop,
                ready=ready.set_result,
            )
        )
        done, _ = await asyncio.wait({task, ready}, timeout=15, return_when="FIRST_COMPLETED")
        assert ready in done, f"serve did not start: {task}"
        store = Store(url)
        served = Served(api, socket, stop, task, ready.result(), store)
        try:
            yield served
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
            await store.dispose()


@pytest.fixture
async def served(sqlite_url: str) -> AsyncIterator[Served]:
    async for running in _serve(sqlite_url):
        yield running


async def test_it_connects_through_apps_connections_open_and_serves_healthz(
    served: Served,
) -> None:
    await served.socket.wait_connections(1)
    [opened] = served.api.calls("apps.connections.open")
    assert opened.token == APP_TOKEN  # the app-level token, never the bot token
    assert served.socket.open_connections == 1
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{served.base}/healthz") as response:
            assert response.status == 200 and await response.json() == {"status": "ok"}
        async with http.get(f"{served.base}/metrics") as response:
            assert response.status == 200 and "marvin_commands_total" in await response.text()
        # No request URL in Socket Mode: nothing unsigned may come in over HTTP.
        async with http.post(f"{served.base}/slack/events", data=b"command=%2Fmarvin") as response:
            assert response.status in (404, 405)


async def test_a_slash_command_is_acked_over_the_socket_answered_and_announced(
    served: Served,
) -> None:
    envelope_id, url = await served.command("bob", SET_STAGING)
    ack = await served.socket.wait_ack(envelope_id)
    assert ack == {
        "envelope_id": envelope_id,
        "payload": {"response_type": "ephemeral", "text": f"Working on `{SET_STAGING}`…"},
    }
    reply = await served.reply(url)
    assert reply["response_type"] == "ephemeral" and reply["replace_original"] is True
    assert "`new_nav` in staging is now on for everyone (was new)" in reply["text"]
    # The outbox worker inside serve delivers it on its own.
    [post] = await served.api.wait_for("chat.postMessage")
    assert post.params["channel"] == PRODUCTION
    assert post.params["text"] == (
        "@bob set `new_nav` in staging: new → on for everyone. On call: @alice."
    )
    assert post.params["blocks"][0]["text"]["text"].startswith(":loudspeaker: @bob set")
    assert post.token == BOT_TOKEN
    # Slack has the message; the worker marks the row once Slack's answer is back.
    for _ in range(100):
        [row] = await served.rows(OutboxMessage)
        if row.status != "pending":
            break
        await asyncio.sleep(0.05)
    assert row.status == "delivered"
    outcomes = [r.outcome for r in await served.rows(AuditRecord)]
    assert sorted(outcomes) == ["allowed", "registered"]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{served.base}/metrics") as response:
            metrics = await response.text()
    assert 'marvin_ack_seconds_count{kind="command"} 1.0' in metrics


async def test_a_dm_envelope_registers_the_sender_and_is_answered_in_thread(
    served: Served,
) -> None:
    event = message_event("bob", "whoami")
    envelope_id = await served.socket.send_envelope(
        "events_api", event_envelope(event, event_id="Ev0DM")
    )
    assert (await served.socket.wait_ack(envelope_id))["envelope_id"] == envelope_id
    said = await wait_for_call(
        served.api, "chat.postMessage", lambda c: c.params.get("thread_ts") == event["ts"]
    )
    assert said.params["channel"] == dm_id("bob")
    assert (
        "Welcome! I've created your Marvin account, linked to GitLab user bob."
        in (said.params["text"])
    )
    [account] = await served.rows(Account)
    assert (account.chat_user_id, account.email, account.gitlab_username) == (
        "UBOB",
        "bob@example.com",
        "bob",
    )


async def test_a_redelivered_envelope_is_handled_once(served: Served) -> None:
    event = message_event("bob", "whoami")
    first = await served.socket.send_envelope("events_api", event_envelope(event, event_id="Ev1"))
    await served.socket.wait_ack(first)
    await wait_for_call(served.api, "chat.postMessage", lambda c: True)
    again = await served.socket.send_envelope(
        "events_api",
        event_envelope(event, event_id="Ev1"),
        retry_attempt=1,
        retry_reason="timeout",
    )
    await served.socket.wait_ack(again)
    # A later, different message is answered: by then the redelivery would have been too.
    later = message_event("bob", "status")
    third = await served.socket.send_envelope("events_api", event_envelope(later))
    await served.socket.wait_ack(third)
    await wait_for_call(
        served.api, "chat.postMessage", lambda c: c.params.get("thread_ts") == later["ts"]
    )
    threads = [c.params.get("thread_ts") for c in served.api.calls("chat.postMessage")]
    assert threads.count(event["ts"]) == 1
    assert len(await served.rows(InboxItem, InboxItem.kind == "event")) == 2


@pytest.mark.parametrize("how", ["disconnect message", "connection dropped"])
async def test_it_reconnects_and_keeps_serving(served: Served, how: str) -> None:
    await served.socket.wait_connections(1)
    if how == "disconnect message":
        await served.socket.disconnect_all("refresh_requested", close_after=0.5)
    else:
        await served.socket.close_all()
    await served.socket.wait_connections(2, timeout=10)
    assert len(served.api.calls("apps.connections.open")) == 2
    envelope_id, url = await served.command("alice", "feature list")
    assert (await served.socket.wait_ack(envelope_id))["payload"]["text"].startswith("Working on")
    assert "No flags in production." in (await served.reply(url))["text"]


async def test_stopping_finishes_acknowledged_work_and_shuts_down(served: Served) -> None:
    await served.socket.wait_connections(1)
    served.api.delay("users.info", 0.3)  # the work is still going when the stop comes
    envelope_id, url = await served.command("alice", "feature list")
    await served.socket.wait_ack(envelope_id)
    assert await served.stopped() == 0
    # It was acknowledged, so it was finished before serve returned.
    [answered] = [c for c in served.api.calls("response_url") if c.context["url"] == url]
    assert "No flags in production." in answered.params["text"]
    for _ in range(100):
        if served.socket.open_connections == 0:
            break
        await asyncio.sleep(0.02)
    assert served.socket.open_connections == 0
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(f"{served.base}/healthz")


async def test_a_refused_app_token_stops_serve_with_a_reason(
    sqlite_url: str, json_log: Any
) -> None:
    wrong = SlackSecrets(
        bot_token=SecretStr(BOT_TOKEN), signing_secret=None, app_token=SecretStr("xapp-revoked")
    )
    async with FakeSocketModeServer() as socket, FakeSlackAPI(socket=socket) as api:
        settings = make_settings(
            sqlite_url, slack={"mode": "socket", "api_base_url": api.base_url, "host": "127.0.0.1"}
        )
        code = await asyncio.wait_for(serve(settings, wrong, port=0), 10)
        assert code == 2
        assert socket.total_connections == 0
    [refused] = [e for e in log_entries(json_log) if e["event"] == "serve.socket_mode_refused"]
    assert refused["error"] == "invalid_auth"
    assert "xapp-revoked" not in json_log.getvalue()
