"""How fast Slack gets its acknowledgement, against a bare Bolt app in the same process.

Each request is a slash command signed as Slack signs it, posted over loopback HTTP to an
aiohttp server; the clock stops when the ack response arrives. Marvin's background work
(the pipeline, the reply to the response_url) is drained between requests so each ack is
measured alone; `--concurrent` leaves it running, as in a busy channel.

    .venv/bin/python -m benchmarks.ack [--requests 300] [--concurrent] [--database URL]

`--database` runs Marvin on that (empty, migrated here) database instead of a SQLite file,
e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/bench.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from marvin.logs import configure_logging
from marvin.slack.secrets import SlackSecrets
from marvin.slack.server import build_bot
from marvin.store import migrate
from marvin.wiring import build_services
from tests.fakes import slack_requests
from tests.fakes.slack_api import FakeSlackAPI
from tests.harness import make_settings

SECRET = "bench-signing-secret"


def bare_bolt(api: FakeSlackAPI, *, process_before_response: bool) -> web.Application:
    app = AsyncApp(
        client=AsyncWebClient(token="xoxb-test", base_url=api.base_url),
        signing_secret=SECRET,
        process_before_response=process_before_response,
    )

    @app.command("/marvin")
    async def _ack(ack: Any) -> None:
        await ack()

    async def events(request: web.Request) -> web.StreamResponse:
        return await to_aiohttp_response(await app.async_dispatch(await to_bolt_request(request)))

    web_app = web.Application()
    web_app.router.add_post("/slack/events", events)
    return web_app


async def measure(
    web_app: web.Application,
    api: FakeSlackAPI,
    requests: int,
    after_each: Callable[[], Awaitable[None]] | None,
) -> list[float]:
    samples: list[float] = []
    async with TestClient(TestServer(web_app)) as client:
        for i in range(requests + 10):
            body, headers = slack_requests.slash_command(
                SECRET,
                text="feature get new_nav",
                user_id="UBOB",
                user_name="bob",
                channel_id="C0PRODUCTION",
                channel_name="production",
                response_url=api.response_url("C0PRODUCTION", "UBOB"),
                trigger_id=f"t{i}",
            )
            started = time.perf_counter()
            response = await client.post("/slack/events", data=body, headers=headers)
            await response.read()
            elapsed = time.perf_counter() - started
            assert response.status == 200, response.status
            if i >= 10:  # the first requests warm caches (auth.test, users.info)
                samples.append(elapsed)
            if after_each is not None:
                await after_each()
    return samples


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.95) - 1]


async def main(requests: int, concurrent: bool, database: str | None = None) -> None:
    configure_logging("error", "json")
    with tempfile.TemporaryDirectory() as tmp:
        url = database or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        await migrate.upgrade(url)
        async with FakeSlackAPI() as api:
            api.add_user("UBOB", "bob", email="bob@example.com")
            api.add_channel("C0PRODUCTION", "production")
            settings = make_settings(url, slack={"api_base_url": api.base_url})
            secrets = SlackSecrets(SecretStr("xoxb-test"), SecretStr(SECRET), None)
            bot = build_bot(settings, secrets, build_services(settings))
            drain = None if concurrent else bot.transport.drain
            results = {
                "bolt, process_before_response=False (default)": await measure(
                    bare_bolt(api, process_before_response=False), api, requests, None
                ),
                "bolt, process_before_response=True": await measure(
                    bare_bolt(api, process_before_response=True), api, requests, None
                ),
                "marvin /slack/events": await measure(bot.web, api, requests, drain),
            }
            await bot.transport.drain()
            await bot.services.store.dispose()
    base = summary(results["bolt, process_before_response=False (default)"])[0]
    where = "PostgreSQL" if database and "postgresql" in database else "SQLite"
    print(
        f"ack latency over loopback, {requests} signed slash commands each, Marvin on {where}"
        f"{' (background work running)' if concurrent else ''}:"
    )
    print(f"{'server':<48} {'median ms':>10} {'p95 ms':>8} {'vs bolt default':>16}")
    for name, samples in results.items():
        median, p95 = summary(samples)
        print(f"{name:<48} {median * 1000:>10.2f} {p95 * 1000:>8.2f} {median / base:>15.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrent", action="store_true")
    parser.add_argument("--database", help="Marvin's database URL (default: a SQLite file)")
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.concurrent, args.database))
