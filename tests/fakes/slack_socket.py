"""A loopback fake of Slack's Socket Mode WebSocket endpoint.

``FakeSlackAPI``'s ``apps.connections.open`` hands out this server's URL, so the real
``slack_sdk.socket_mode.aiohttp.SocketModeClient`` (and Bolt's Socket Mode handler on
top of it) connects here exactly as it would to ``wss://wss-primary.slack.com/link/``.

Wire format, as read from slack_sdk (socket_mode/aiohttp/__init__.py,
socket_mode/async_client.py, socket_mode/request.py, socket_mode/response.py) and from
the message samples in slack_sdk's own tests (tests/slack_sdk/socket_mode/
mock_socket_mode_server.py), checked against docs.slack.dev's Socket Mode pages:

* on connect the server sends ``{"type": "hello", "num_connections": ..., "debug_info":
  {...}, "connection_info": {"app_id": ...}}``;
* each delivery is an envelope ``{"envelope_id", "type", "payload",
  "accepts_response_payload"}``; only ``events_api`` envelopes carry ``retry_attempt``
  and ``retry_reason``;
* the client acks with ``{"envelope_id": ...}`` plus an optional ``payload``;
* ``{"type": "disconnect", "reason": "refresh_requested" | "warning" | ...}`` asks the
  client to fetch a new URL through apps.connections.open and reconnect;
* the client pings with ``sdk-ping-pong:<time>`` and expects the same bytes back as a
  pong, which aiohttp's server-side autoping already does.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from tests.fakes.loopback import LoopbackServer

JSONDict = dict[str, Any]

ENVELOPE_TYPES = ("events_api", "slash_commands", "interactive")


@dataclass
class _Connection:
    number: int
    ws: web.WebSocketResponse
    ticket: str
    received: list[JSONDict] = field(default_factory=list)


class FakeSocketModeServer(LoopbackServer):
    """Socket Mode over a WebSocket on ``127.0.0.1``; tests push envelopes and read acks."""

    def __init__(self, *, app_id: str = "A1") -> None:
        self.app_id = app_id
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._tickets: set[str] = set()
        self._open: list[_Connection] = []
        self._total = 0
        self._acks: dict[str, JSONDict] = {}
        self.received: list[JSONDict] = []
        self.sent: list[JSONDict] = []
        self._changed = asyncio.Event()
        self._close_tasks: set[asyncio.Task[None]] = set()
        # Slack's WebSocket endpoint down (its load balancer answering 503): every
        # connection attempt fails its handshake until this is False again.
        self.refusing = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application()
        app.router.add_get("/link/", self._handle_link)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is None:
            return
        for task in list(self._close_tasks):
            task.cancel()
        await self.close_all()
        runner, self._runner = self._runner, None
        await runner.cleanup()

    def issue_url(self) -> str:
        """A fresh connection URL, in the shape apps.connections.open returns."""
        ticket = secrets.token_hex(16)
        self._tickets.add(ticket)
        return f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={self.app_id}"

    # ------------------------------------------------------------------ observation

    @property
    def open_connections(self) -> int:
        return len(self._open)

    @property
    def total_connections(self) -> int:
        """Connections accepted since start, reconnects included."""
        return self._total

    # ASYNC109 prefers callers wrapping asyncio.timeout(); a per-call deadline with a
    # message naming what never arrived reads better in test failures.
    async def wait_connections(self, total: int = 1, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until ``total`` connections were accepted (and sent their hello)."""
        await self._wait(
            lambda: self._total >= total and bool(self._open), timeout, f"{total} connection(s)"
        )

    async def wait_ack(self, envelope_id: str, timeout: float = 5.0) -> JSONDict:  # noqa: ASYNC109
        """The ack the client sent for ``envelope_id``: ``{"envelope_id", "payload"?}``."""
        await self._wait(lambda: envelope_id in self._acks, timeout, f"ack of {envelope_id}")
        return self._acks[envelope_id]

    def acked(self, envelope_id: str) -> bool:
        return envelope_id in self._acks

    # ------------------------------------------------------------------ pushing

    async def send_envelope(
        self,
        type: str,
        payload: JSONDict,
        *,
        accepts_response_payload: bool = False,
        retry_attempt: int = 0,
        retry_reason: str = "",
        envelope_id: str | None = None,
        connect_timeout: float = 5.0,
    ) -> str:
        """Deliver one envelope to the newest open connection; returns its envelope_id.

        Waits up to ``connect_timeout`` for a connection, so a test may call this right
        after starting its client.
        """
        if type not in ENVELOPE_TYPES:
            raise ValueError(f"Socket Mode envelope types are {ENVELOPE_TYPES}")
        envelope_id = envelope_id or str(uuid.uuid4())
        envelope: JSONDict = {
            "envelope_id": envelope_id,
            "payload": payload,
            "type": type,
            "accepts_response_payload": accepts_response_payload,
        }
        if type == "events_api":
            # Only Events API deliveries are retried by Slack, so only they say so.
            envelope["retry_attempt"] = retry_attempt
            envelope["retry_reason"] = retry_reason
        await self._wait(lambda: bool(self._open), connect_timeout, "an open connection")
        connection = self._open[-1]
        await connection.ws.send_str(json.dumps(envelope))
        self.sent.append(envelope)
        return envelope_id

    async def disconnect_all(
        self, reason: str = "refresh_requested", *, close_after: float | None = None
    ) -> None:
        """Send Slack's ``disconnect`` message to every open connection.

        Slack keeps the old socket up for a while after asking for a refresh; pass
        ``close_after`` to have this fake drop it after that many seconds as well.
        """
        message = {
            "type": "disconnect",
            "reason": reason,
            "debug_info": {"host": "applink-fake-1"},
        }
        connections = list(self._open)
        for connection in connections:
            await connection.ws.send_str(json.dumps(message))
            self.sent.append(message)
        if close_after is not None:
            task = asyncio.create_task(self._close_later(connections, close_after))
            self._close_tasks.add(task)
            task.add_done_callback(self._close_tasks.discard)

    async def close_all(self, code: int = WSCloseCode.GOING_AWAY) -> None:
        """Drop every connection without a disconnect message, like a network failure."""
        for connection in list(self._open):
            await connection.ws.close(code=code)

    # ------------------------------------------------------------------ internals

    async def _close_later(self, connections: list[_Connection], seconds: float) -> None:
        await asyncio.sleep(seconds)
        for connection in connections:
            if not connection.ws.closed:
                await connection.ws.close(code=WSCloseCode.GOING_AWAY)

    async def _wait(
        self,
        ready: Callable[[], bool],
        timeout: float,  # noqa: ASYNC109
        what: str,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not ready():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"FakeSocketModeServer: timed out waiting for {what}")
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                pass

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _handle_link(self, request: web.Request) -> web.StreamResponse:
        if self.refusing:
            return web.Response(status=503, text="upstream connect error")
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            # Only URLs issued through apps.connections.open may connect.
            return web.Response(status=401, text="invalid_ticket")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._total += 1
        connection = _Connection(self._total, ws, ticket)
        self._open.append(connection)
        hello = {
            "type": "hello",
            "num_connections": len(self._open),
            "debug_info": {
                "host": "applink-fake-1",
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": self.app_id},
        }
        await ws.send_str(json.dumps(hello))
        self.sent.append(hello)
        self._notify()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_text(connection, msg.data)
        finally:
            if connection in self._open:
                self._open.remove(connection)
            self._notify()
        return ws

    def _on_text(self, connection: _Connection, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            message = {"_raw": data}
        if not isinstance(message, dict):
            message = {"_raw": data}
        connection.received.append(message)
        self.received.append(message)
        envelope_id = message.get("envelope_id")
        if isinstance(envelope_id, str) and envelope_id not in self._acks:
            self._acks[envelope_id] = message
        self._notify()
