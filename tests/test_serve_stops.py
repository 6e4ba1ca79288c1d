"""`marvin serve` stopping while Slack is not there: in Socket Mode when the WebSocket can't
be reached it says so on /healthz, logs one line a try (no tracebacks), and still stops on
SIGTERM within seconds; in HTTP mode a Slack call that hangs does not hold SIGTERM either."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from marvin.clock import as_utc
from marvin.store.db import Store
from marvin.store.tables import OutboxMessage
from tests.fakes.slack_api import FakeSlackAPI
from tests.fakes.slack_socket import FakeSocketModeServer
from tests.servers.marvin_serve import CHANNEL, ServeProcess, write_config
from tests.slack_harness import populate

APP_TOKEN = "xapp-1-serve-stops"


@pytest.fixture
async def slack() -> AsyncIterator[tuple[FakeSlackAPI, FakeSocketModeServer]]:
    async with (
        FakeSocketModeServer() as socket,
        FakeSlackAPI(bot_token="xoxb-replicas", app_token=APP_TOKEN, socket=socket) as api,
    ):
        populate(api)
        api.add_channel(CHANNEL, "production")
        yield api, socket


def _socket_serve(tmp_path: Path, api: FakeSlackAPI) -> ServeProcess:
    config = write_config(
        tmp_path / "marvin.yaml",
        f"sqlite+aiosqlite:///{tmp_path / 'marvin.db'}",
        api,
        slack={"api_base_url": api.base_url, "host": "127.0.0.1", "mode": "socket"},
        database={"url": f"sqlite+aiosqlite:///{tmp_path / 'marvin.db'}", "migrate_on_start": True},
    )
    return ServeProcess(config, tmp_path / "serve.log", env={"SLACK_APP_TOKEN": APP_TOKEN})


async def _health(server: ServeProcess, want: int, timeout: float = 30.0) -> dict[str, str]:  # noqa: ASYNC109
    """/healthz's answer once it has status `want`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen: object = "no answer"
    async with aiohttp.ClientSession() as http:
        while loop.time() < deadline:
            assert server.proc is not None and server.proc.poll() is None, server.log()
            try:
                async with http.get(f"{server.base}/healthz") as response:
                    seen = (response.status, await response.text())
                    if response.status == want:
                        return dict(await response.json())
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"/healthz never answered {want} (last: {seen}):\n{server.log()}")


def _stopped_within(server: ServeProcess, seconds: float) -> tuple[int, float]:
    assert server.proc is not None
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    code = server.proc.wait(timeout=seconds)
    return code, time.monotonic() - started


async def test_sigterm_stops_serve_while_the_socket_cannot_connect(
    slack: tuple[FakeSlackAPI, FakeSocketModeServer], tmp_path: Path
) -> None:
    api, socket = slack
    socket.refusing = True
    server = _socket_serve(tmp_path, api)
    server.start()
    try:
        assert await _health(server, 503) == {"status": "chat connection down"}
        await asyncio.sleep(1.0)  # a failed handshake or two
        code, _ = await asyncio.to_thread(_stopped_within, server, 10.0)
    finally:
        server.stop()
    log = server.log()
    assert code == 0, log
    assert "Failed to connect" in log  # said, once a try...
    assert "Traceback" not in log  # ...in one line
    assert socket.total_connections == 0


async def test_healthz_follows_the_socket_and_sigterm_still_stops(
    slack: tuple[FakeSlackAPI, FakeSocketModeServer], tmp_path: Path
) -> None:
    api, socket = slack
    server = _socket_serve(tmp_path, api)
    server.start()
    try:
        assert await _health(server, 200) == {"status": "ok"}
        # Slack's side goes away, and stays away.
        socket.refusing = True
        await socket.close_all()
        assert await _health(server, 503) == {"status": "chat connection down"}
        socket.refusing = False
        await _health(server, 200, timeout=40.0)  # it comes back on its own
        socket.refusing = True
        await socket.close_all()
        await _health(server, 503)
        code, _ = await asyncio.to_thread(_stopped_within, server, 10.0)
    finally:
        server.stop()
    assert code == 0, server.log()
    assert "Traceback" not in server.log()


async def test_sigterm_does_not_wait_for_a_slack_call_that_hangs_and_loses_nothing(
    tmp_path: Path,
) -> None:
    """An announcement in flight when SIGTERM comes, to a Slack that does not answer: serve
    still stops within seconds (Docker kills at ten), and the next start delivers it, once."""
    async with FakeSlackAPI(bot_token="xoxb-replicas") as api:
        populate(api)
        api.add_channel(CHANNEL, "production")
        database = f"sqlite+aiosqlite:///{tmp_path / 'marvin.db'}"
        config = write_config(
            tmp_path / "marvin.yaml",
            database,
            api,
            database={"url": database, "migrate_on_start": True},
        )
        api.delay("chat.postMessage", 60)
        first = ServeProcess(config, tmp_path / "first.log")
        first.start()
        try:
            await first.healthy()
            url = await first.command(api, "alice", "UALICE", "feature set hanging true --staging")
            await api.wait_for("response_url", timeout=30)
            assert any(c.context.get("url") == url for c in api.calls("response_url"))
            await api.wait_for("chat.postMessage", timeout=30)  # held: Slack says nothing
            code, _ = await asyncio.to_thread(_stopped_within, first, 8.0)
        finally:
            first.stop()
        assert code == 0, first.log_path.read_text()
        assert "Traceback" not in first.log_path.read_text()
        assert not [m for m in api.messages(CHANNEL) if "hanging" in str(m.get("text"))]
        # Given back as it stopped: due now, not when its claim would have run out.
        store = Store(database)
        try:
            async with store.transaction() as session:
                [held] = list(await session.scalars(select(OutboxMessage)))
        finally:
            await store.dispose()
        assert held.status == "pending" and as_utc(held.next_attempt_at) <= datetime.now(UTC)

        api.delay("chat.postMessage", 0)
        second = ServeProcess(config, tmp_path / "second.log")
        second.start()
        try:
            await second.healthy()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20  # at once, not when the cancelled claim runs out
            while loop.time() < deadline:
                if [m for m in api.messages(CHANNEL) if "hanging" in str(m.get("text"))]:
                    break
                await asyncio.sleep(0.1)
        finally:
            second.stop()
        announced = [m for m in api.messages(CHANNEL) if "hanging" in str(m.get("text"))]
        assert len(announced) == 1, second.log_path.read_text()
