"""The loopback fake of Slack (`tests.fakes.slack_api.FakeSlackAPI`) as a process of its own.

The busy-hour benchmark runs the server under test, this stub and the load generator as
separate processes, so none of them shares an event loop with another. The fake itself is
used unchanged; this module wraps it:

* it records the wall-clock arrival time (`time.time()`; every process is on this machine)
  of each response_url post, with the path, the status it was answered with and the text;
* a second, control server (its own port) lets the other processes mint response_urls in
  bulk, follow answers as they arrive (a stream of JSON lines), read them all back, and
  count the Web API calls by method;
* `--slow-people N` holds every `users.getPresence` and `users.info` answer for N seconds.

    .venv/bin/python -m benchmarks.slack_stub --people people.json [--slow-people 2.5]
        [--ready-file F] [--bot-token xoxb-...]

`--people` is a JSON list of `{"id", "name", "email"}`, plus optional `"channels"`; when
the stub is listening it prints (and writes to `--ready-file`) one JSON line:
`{"api_url": ".../api/", "control_url": "http://127.0.0.1:P", "pid": N}`.
Control routes (all JSON):

    POST /bench/response_urls {"phase": str, "pairs": [[channel_id, user_id], ...]}
         -> {"urls": [...]}, one fresh response_url per pair, tagged with the phase
    GET  /bench/stream?phase=X   one JSON line per answer of that phase as it arrives
    GET  /bench/answers?phase=X  {"answers": [{"path", "at", "status", "text"}, ...]}
    GET  /bench/phase?phase=X    {"minted": n, "answered": n (distinct paths)}
    GET  /bench/calls            {"by_method": {method: count}} (Web API and response_url)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from aiohttp import web

from tests.fakes.slack_api import FakeSlackAPI

SLOW_METHODS = ("users.getPresence", "users.info")
# Enough of an answer's text to classify it (refused, overloaded, done) without keeping
# tens of thousands of full Block Kit payloads.
TEXT_KEEP = 400


@dataclass(frozen=True)
class Answer:
    """One response_url post, as the stub saw it arrive."""

    path: str
    at: float  # time.time() when the request reached the handler
    status: int
    text: str


def _answer_text(raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        return raw[:TEXT_KEEP].decode("utf-8", "replace")
    if not isinstance(body, dict):
        return ""
    parts: list[str] = [str(body.get("text") or "")]
    # Marvin answers in blocks with a text fallback; keep the section texts too, so a word
    # such as "overloaded" is found wherever the answer puts it.
    for block in body.get("blocks") or []:
        if isinstance(block, dict):
            text = block.get("text")
            if isinstance(text, dict):
                parts.append(str(text.get("text") or ""))
    return " ".join(p for p in parts if p)[:TEXT_KEEP]


class BenchSlackAPI(FakeSlackAPI):
    """FakeSlackAPI that also keeps wall-clock answer times and tells subscribers."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.answers: list[Answer] = []
        self.phase_of: dict[str, str] = {}  # response_url path -> phase
        self.minted: Counter[str] = Counter()
        self.answered_paths: dict[str, set[str]] = {}
        self.subscribers: list[tuple[str | None, asyncio.Queue[Answer | None]]] = []

    def mint(self, phase: str, channel_id: str, user_id: str) -> str:
        url = self.response_url(channel_id, user_id)
        self.phase_of[urlparse(url).path] = phase
        self.minted[phase] += 1
        return url

    async def _handle_response_url(self, request: web.Request) -> web.StreamResponse:
        arrived = time.time()
        response = await super()._handle_response_url(request)
        raw = await request.read()  # aiohttp keeps the body: this is the one already read
        answer = Answer(request.path, arrived, response.status, _answer_text(raw))
        self.answers.append(answer)
        phase = self.phase_of.get(request.path)
        if phase is not None:
            self.answered_paths.setdefault(phase, set()).add(request.path)
        for wanted, queue in self.subscribers:
            if wanted is None or wanted == phase:
                queue.put_nowait(answer)
        return response

    def close_streams(self) -> None:
        for _, queue in self.subscribers:
            queue.put_nowait(None)


def control_app(api: BenchSlackAPI) -> web.Application:
    async def mint(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        phase = str(body.get("phase") or "")
        urls = [api.mint(phase, str(c), str(u)) for c, u in body.get("pairs") or []]
        return web.json_response({"urls": urls})

    async def stream(request: web.Request) -> web.StreamResponse:
        phase = request.query.get("phase")
        queue: asyncio.Queue[Answer | None] = asyncio.Queue()
        entry = (phase, queue)
        api.subscribers.append(entry)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        # A first line at once: the subscriber knows it is subscribed before it sends.
        await response.write(b'{"subscribed": true}\n')
        try:
            while True:
                answer = await queue.get()
                if answer is None:
                    break
                lines = [answer]
                while not queue.empty():  # write what piled up in one go
                    more = queue.get_nowait()
                    if more is None:
                        break
                    lines.append(more)
                await response.write(
                    b"".join(json.dumps(asdict(a)).encode() + b"\n" for a in lines)
                )
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            api.subscribers.remove(entry)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    async def answers(request: web.Request) -> web.StreamResponse:
        phase = request.query.get("phase")
        chosen = [
            asdict(a) for a in api.answers if phase is None or api.phase_of.get(a.path) == phase
        ]
        return web.json_response({"answers": chosen})

    async def phase_counts(request: web.Request) -> web.StreamResponse:
        phase = request.query.get("phase", "")
        return web.json_response(
            {
                "minted": api.minted[phase],
                "answered": len(api.answered_paths.get(phase, ())),
            }
        )

    async def calls(_request: web.Request) -> web.StreamResponse:
        return web.json_response({"by_method": dict(Counter(c.method for c in api.calls()))})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/bench/response_urls", mint)
    app.router.add_get("/bench/stream", stream)
    app.router.add_get("/bench/answers", answers)
    app.router.add_get("/bench/phase", phase_counts)
    app.router.add_get("/bench/calls", calls)
    return app


def populate(api: FakeSlackAPI, people_file: Path) -> None:
    data = json.loads(people_file.read_text())
    for person in data["people"]:
        api.add_user(person["id"], person["name"], email=person.get("email"))
    for channel in data.get("channels", []):
        api.add_channel(channel["id"], channel["name"])


def announce(ready: str, ready_file: str | None) -> None:
    print(ready, flush=True)
    if ready_file:
        Path(ready_file).write_text(ready + "\n")


async def run(args: argparse.Namespace) -> None:
    api = BenchSlackAPI(bot_token=args.bot_token)
    populate(api, Path(args.people))
    if args.slow_people > 0:
        for method in SLOW_METHODS:
            api.delay(method, args.slow_people)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await api.start()
    control = web.AppRunner(control_app(api), access_log=None, shutdown_timeout=1.0)
    await control.setup()
    site = web.TCPSite(control, "127.0.0.1", args.control_port)
    await site.start()
    control_port = int(control.addresses[0][1])
    ready = json.dumps(
        {
            "api_url": api.base_url,
            "control_url": f"http://127.0.0.1:{control_port}",
            "pid": os.getpid(),
        }
    )
    announce(ready, args.ready_file)
    try:
        await stop.wait()
    finally:
        api.close_streams()
        await control.cleanup()
        await api.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--people", required=True, help="JSON file: people (and channels)")
    parser.add_argument(
        "--slow-people",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="hold users.getPresence and users.info answers this long",
    )
    parser.add_argument("--bot-token", default="xoxb-test")
    parser.add_argument("--control-port", type=int, default=0)
    parser.add_argument("--ready-file", help="also write the ready line here")
    args = parser.parse_args(argv)
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
