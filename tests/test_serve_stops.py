"""`marvin serve` in Socket Mode when Slack's WebSocket can't be reached: it says so on
/healthz, logs one line a try (no tracebacks), and still stops on SIGTERM within seconds."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

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
