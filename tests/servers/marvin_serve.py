"""`marvin serve` as a subprocess, the way an operator runs it, against loopback fakes.

`ServeProcess` writes a config file, starts `python -m marvin.cli serve` with the Slack
secrets in its environment, waits for `/healthz`, and sends it signed slash commands.
Tests use it where a process boundary matters: replicas, SIGKILL, SIGTERM, a second
server on one SQLite file.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.fakes import slack_requests
from tests.fakes.slack_api import FakeSlackAPI
from tests.harness import ROOT, _merge, example_data

SECRET = "replica-signing-secret"
BOT_TOKEN = "xoxb-replicas"
CHANNEL = "CPRODSERVE"  # not the example's placeholder, which `serve` refuses


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(path: Path, database_url: str, api: FakeSlackAPI, **sections: Any) -> Path:
    data = _merge(
        example_data(),
        {
            "database": {"url": database_url},
            "production_channel": {"id": CHANNEL, "name": "production", "chat": "slack"},
            "slack": {"api_base_url": api.base_url, "mode": "http", "host": "127.0.0.1"},
            "logging": {"level": "info", "format": "json"},
            **sections,
        },
    )
    path.write_text(yaml.safe_dump(data))
    return path


class ServeProcess:
    def __init__(self, config: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.extra_env = env or {}
        self.port = free_port()
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {
            **os.environ,
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "marvin.cli",
                    "--config",
                    str(self.config),
                    "serve",
                    "--port",
                    str(self.port),
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=log,
            )

    async def healthy(self, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession() as http:
            while loop.time() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"serve exited {self.proc.returncode}:\n{self.log()}")
                try:
                    async with http.get(f"{self.base}/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"serve not healthy after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    async def command(self, api: FakeSlackAPI, who: str, uid: str, text: str) -> str:
        """A signed `/marvin <text>` from `who` in the production channel; returns the
        response_url its answer will be posted to."""
        url = api.response_url(CHANNEL, uid)
        body, headers = slack_requests.slash_command(
            SECRET,
            text=text,
            user_id=uid,
            user_name=who,
            channel_id=CHANNEL,
            channel_name="production",
            response_url=url,
            trigger_id=slack_requests.new_trigger_id(),
        )
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{self.base}/slack/events", data=body, headers=headers) as r:
                assert r.status == 200, await r.text()
                ack = await r.json()
        assert "Working on" in ack["text"], ack
        return url

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
