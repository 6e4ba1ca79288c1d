"""A bare slack-bolt AsyncApp server: the baseline the busy-hour benchmark measures against.

It does what any Bolt app answering a slash command must: verify the signature, ack `/marvin`,
and answer on the command's response_url, with nothing of Marvin's in between (no database,
no pipeline). The answer goes out from a background task after the ack, through slack_sdk's
AsyncWebhookClient as Marvin's does, so both servers have an ack and an answer latency and
both pay the same for the webhook client.

    .venv/bin/python -m benchmarks.bare_bolt --port P --api-base-url URL
        [--process-before-response]

The signing secret and bot token come from SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN, as
for `marvin serve`; `GET /healthz` answers once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient


def build(
    api_base_url: str, *, process_before_response: bool
) -> tuple[web.Application, set[asyncio.Task[None]]]:
    """The web app, and the set of answers still being sent (to wait for on shutdown)."""
    app = AsyncApp(
        client=AsyncWebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=api_base_url),
        signing_secret=os.environ["SLACK_SIGNING_SECRET"],
        process_before_response=process_before_response,
    )
    tasks: set[asyncio.Task[None]] = set()

    async def answer(response_url: str, text: str) -> None:
        try:
            await AsyncWebhookClient(response_url).send(
                text=f"Done: `{text}`", response_type="ephemeral", replace_original=True
            )
        except Exception as exc:  # a failed answer is the benchmark's to count, not a crash
            print(f"answer failed: {type(exc).__name__}: {exc}", file=sys.stderr)

    @app.command("/marvin")
    async def on_command(ack: Any, body: dict[str, Any]) -> None:
        text = str(body.get("text") or "help")
        await ack(response_type="ephemeral", text=f"Working on `{text[:60]}`…")
        task = asyncio.create_task(answer(str(body.get("response_url")), text))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def events(request: web.Request) -> web.StreamResponse:
        return await to_aiohttp_response(await app.async_dispatch(await to_bolt_request(request)))

    async def healthz(_request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok"})

    web_app = web.Application()
    web_app.router.add_post("/slack/events", events)
    web_app.router.add_get("/healthz", healthz)
    return web_app, tasks


async def serve(args: argparse.Namespace) -> None:
    web_app, tasks = build(args.api_base_url, process_before_response=args.process_before_response)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await web.TCPSite(runner, args.host, args.port).start()
    try:
        await stop.wait()
    finally:
        if tasks:
            await asyncio.wait(set(tasks), timeout=10)
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A bare Bolt app acking /marvin.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-base-url", required=True, help="Slack Web API base URL")
    parser.add_argument("--process-before-response", action="store_true")
    args = parser.parse_args(argv)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
