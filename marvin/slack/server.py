"""`marvin serve`: the HTTP server (Slack events, /healthz, /metrics) and Socket Mode.

The Slack route only converts (aiohttp request in, Bolt response out); Bolt verifies the
signature with slack_sdk's SignatureVerifier and answers 401 to anything forged or stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qs

import aiohttp
import structlog
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from marvin import intents, watches
from marvin.access import notices as access_notices
from marvin.access import sync as access_sync
from marvin.config import Settings
from marvin.deploys.calendar import add_calendar_routes
from marvin.deploys.calendar import token_from_env as calendar_token
from marvin.deploys.scheduler import DeployScheduler
from marvin.issue_delivery import issue_worker
from marvin.metrics import CONTENT_TYPE, Metrics
from marvin.ofrep import add_ofrep_routes, tokens_from_env
from marvin.outbox import OutboxWorker
from marvin.retention import prune
from marvin.services import Services
from marvin.single import AlreadyServing, sqlite_serve_lock
from marvin.slack.announce import chat_sinks
from marvin.slack.app import TRANSPORT, SlackTransport
from marvin.slack.errors import error_name
from marvin.slack.people import SlackPeople, SlackPresence
from marvin.slack.secrets import SlackSecrets
from marvin.store.db import Store
from marvin.supervisor import Job, Leases, Supervisor, replica_id
from marvin.wiring import build_pipeline, build_services, close

log = structlog.get_logger(__name__)

EVENTS_PATH = "/slack/events"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_client(settings: Settings, secrets: SlackSecrets) -> AsyncWebClient:
    """The one Web API client every Slack call goes through."""
    token = secrets.bot_token.get_secret_value() if secrets.bot_token else None
    return AsyncWebClient(
        token=token,
        base_url=settings.slack.api_base_url,
        retry_handlers=[
            AsyncRateLimitErrorRetryHandler(max_retry_count=settings.slack.rate_limit_retries)
        ],
    )


class TimedSocketModeHandler(AsyncSocketModeHandler):
    """Bolt's Socket Mode handler, timing each envelope from arrival to its ack."""

    metrics: Metrics | None = None

    async def handle(self, client: Any, req: Any) -> None:
        started = time.perf_counter()
        await super().handle(client, req)
        if self.metrics is not None:
            kind = "command" if req.type == "slash_commands" else "other"
            self.metrics.ack_seconds.labels(kind=kind).observe(time.perf_counter() - started)


@dataclass
class ChatLink:
    """Whether the chat can reach us. Over HTTP, Slack calls in and nothing here can tell;
    in Socket Mode, the WebSocket is the only way in, and a replica without it is not
    healthy whatever its database says."""

    connected: Callable[[], Awaitable[bool]] | None = None

    async def down(self) -> bool:
        return self.connected is not None and not await self.connected()


@dataclass
class Bot:
    """Everything `serve` runs, built once, so tests can run the very same thing."""

    services: Services
    transport: SlackTransport
    outbox: OutboxWorker
    metrics: Metrics
    web: web.Application
    supervisor: Supervisor
    chat: ChatLink


def build_bot(settings: Settings, secrets: SlackSecrets, services: Services | None = None) -> Bot:
    client = make_client(settings, secrets)
    metrics = Metrics()
    if services is None:
        services = build_services(settings)
    people = SlackPeople(client, settings.slack, metrics)
    presence = SlackPresence(client, people, settings.slack, services.clock, metrics)
    services = dataclasses.replace(services, presence={**services.presence, TRANSPORT: presence})
    # Announcements are for the production channel, wherever the command came from: this
    # replica delivers every one of them (when it holds the outbox job).
    outbox = OutboxWorker(services.store, chat_sinks(client, metrics), services.clock)
    # The tracker's issues (incidents', change requests', deviations', the flag log): a loop
    # of their own.
    issues = issue_worker(services)
    signing = secrets.signing_secret.get_secret_value() if secrets.signing_secret else None
    pipeline = build_pipeline(services)
    transport = SlackTransport(
        settings=settings,
        pipeline=pipeline,
        client=client,
        people=people,
        metrics=metrics,
        outbox=outbox,
        signing_secret=signing if settings.slack.mode == "http" else None,
        owner=replica_id(),
    )
    chat = ChatLink()
    app = build_web_app(
        transport,
        services.store,
        metrics,
        settings.slack.max_body_bytes,
        serve_events=settings.slack.mode == "http",
        chat=chat,
    )
    lease = timedelta(seconds=settings.inbox.lease_seconds)
    jobs = [
        Job("outbox:announce", 1.0, outbox.deliver_due, outbox.wakeup, outbox.give_back),
        # Incidents' issues in a loop of their own: a GitLab outage delays them and never the
        # announcements, and a Slack outage never stops an issue from being opened.
        Job("outbox:issues", 2.0, issues.deliver_due, issues.wakeup, issues.give_back),
        # Work a dead replica acknowledged is taken over once its lease has run out.
        Job("inbox:recovery", max(1.0, lease.total_seconds() / 4), transport.recover),
        Job("intents:settle", 10.0, lambda: intents.settle_due(services, pipeline.registry, lease)),
        Job("watches", 30.0, lambda: watches.notify(services)),
        # Due deploy slots: each claimed with its own lease and fence as well, so a lease
        # that changes hands mid-round still announces and starts a slot once.
        Job(
            "deploys:scheduler",
            settings.deploys.scheduler_seconds,
            DeployScheduler(services, transport.owner, lease).tick,
        ),
        # The roles registry's GitLab mirror (a no-op for the roles file).
        Job(
            "directory:sync",
            settings.directory.sync_minutes * 60,
            lambda: access_sync.run(services),
        ),
        Job("access:notices", 600.0, lambda: access_notices.run(services)),
        Job(
            "retention",
            3600.0,
            lambda: prune(
                services.store,
                services.clock.now(),
                timedelta(days=settings.database.retention_days),
            ),
        ),
    ]
    supervisor = Supervisor(Leases(services.store, services.clock, transport.owner, lease), jobs)
    return Bot(
        services=services,
        transport=transport,
        outbox=outbox,
        metrics=metrics,
        web=app,
        supervisor=supervisor,
        chat=chat,
    )


T = TypeVar("T")

_TIMESTAMP = re.compile(r"^[0-9]{1,12}\Z")


def _signed(verifier: SignatureVerifier, request: web.Request, body: str) -> bool:
    """Slack's signature, with exactly one timestamp of plain digits (not `²`, not 5,000
    digits) and exactly one signature."""
    stamps = request.headers.getall("X-Slack-Request-Timestamp", [])
    signatures = request.headers.getall("X-Slack-Signature", [])
    if len(stamps) != 1 or len(signatures) != 1 or not _TIMESTAMP.match(stamps[0]):
        return False
    return verifier.is_valid(body=body, timestamp=stamps[0], signature=signatures[0])


def _well_formed(text: str, content_type: str) -> str | None:
    """The body when it has a shape Bolt can take: JSON an object whose `event` and `user`,
    if any, are objects too; a form whose `payload`, if any, is such JSON."""
    if content_type == "application/json":
        return text if _json_object(text) else None
    if content_type == "application/x-www-form-urlencoded":
        payload = parse_qs(text).get("payload")
        if payload is not None and (len(payload) != 1 or not _json_object(payload[0])):
            return None
        return text
    return None


def _json_object(text: str) -> bool:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return False
    if not isinstance(value, dict):
        return False
    # Where Slack sends an object, an object it must be (Bolt reads into them).
    return all(isinstance(value[key], dict) for key in ("event", "user") if key in value)


def build_web_app(
    transport: SlackTransport,
    store: Store,
    metrics: Metrics,
    max_body_bytes: int,
    *,
    serve_events: bool = True,
    chat: ChatLink | None = None,
) -> web.Application:
    link = chat or ChatLink()

    @web.middleware
    async def refuse_oversized(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Refused before a byte of it is parsed; aiohttp's client_max_size also stops a body
        # that arrives without a Content-Length.
        if request.content_length is not None and request.content_length > max_body_bytes:
            return web.json_response(
                {"ok": False, "error": "payload_too_large", "limit_bytes": max_body_bytes},
                status=413,
            )
        return await handler(request)

    verifier = SignatureVerifier(transport.signing_secret) if transport.signing_secret else None

    async def slack_events(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        raw = await request.read()
        try:
            text = raw.decode("utf-8")  # Slack sends UTF-8; its signer can't sign anything else
        except UnicodeDecodeError:
            return web.json_response({"ok": False, "error": "invalid_body"}, status=400)
        # The signature is checked before anything in the body is parsed: what isn't Slack's
        # gets a 401 and costs nothing more (no parsing, no log line).
        if verifier is None or not _signed(verifier, request, text):
            return web.json_response({"ok": False, "error": "invalid_signature"}, status=401)
        body = _well_formed(text, request.content_type)
        if body is None:
            log.info("slack.malformed_request", content_type=request.content_type)
            return web.json_response({"ok": False, "error": "invalid_body"}, status=400)
        bolt_request = AsyncBoltRequest(
            body=body, query=request.query_string, headers=dict(request.headers)
        )
        bolt_response = await transport.app.async_dispatch(bolt_request)
        response = await to_aiohttp_response(bolt_response)
        kind = "command" if "command=" in body[:2000] else "other"
        metrics.ack_seconds.labels(kind=kind).observe(time.perf_counter() - started)
        return response

    async def healthz(_request: web.Request) -> web.StreamResponse:
        if not await store.ping():
            return web.json_response({"status": "database unreachable"}, status=503)
        if await link.down():
            return web.json_response({"status": "chat connection down"}, status=503)
        return web.json_response({"status": "ok"})

    async def metrics_page(_request: web.Request) -> web.StreamResponse:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application(client_max_size=max_body_bytes, middlewares=[refuse_oversized])
    if serve_events:
        app.router.add_post(EVENTS_PATH, slack_events)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_page)
    # Applications evaluate the embedded flags here (OpenFeature's remote protocol).
    services = transport.pipeline.services
    tokens = tokens_from_env(environments=services.settings.flags.environment_set)
    add_ofrep_routes(app, store, services.clock, tokens)
    # The deploy calendar, for people's own calendars (MARVIN_CALENDAR_TOKEN; unset: off).
    add_calendar_routes(app, transport.pipeline.services, calendar_token())
    return app


async def _keep_flagd_file(bot: Bot, stop: asyncio.Event) -> None:
    """Each replica keeps its own copy of the flagd file current, changes made on other
    replicas included (a read and a compare every few seconds)."""
    flagd = bot.services.flagd
    while flagd is not None and not stop.is_set():
        try:
            await flagd.write()
        except Exception:
            log.exception("flagd.write_failed")
        try:
            await asyncio.wait_for(stop.wait(), timeout=5.0)
        except TimeoutError:
            pass


async def _renew_leases(bot: Bot, stop: asyncio.Event) -> None:
    """While this replica lives, what it holds stays its own."""
    every = bot.services.settings.inbox.lease_seconds / 3
    while not stop.is_set():
        try:
            await bot.transport.renew()
        except Exception:
            log.exception("inbox.renew_failed")
        try:
            await asyncio.wait_for(stop.wait(), timeout=every)
        except TimeoutError:
            pass


async def serve(
    settings: Settings,
    secrets: SlackSecrets,
    *,
    port: int | None = None,
    stop: asyncio.Event | None = None,
    ready: Callable[[int], None] | None = None,
) -> int:
    bot = build_bot(settings, secrets)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    runner = web.AppRunner(bot.web, access_log=None)
    await runner.setup()
    handled: list[signal.Signals] = []
    socket_mode: AsyncSocketModeHandler | None = None
    background: list[asyncio.Task[None]] = []
    # Whatever fails on the way up, the port, the database pool and the signal handlers
    # are given back.
    try:
        with sqlite_serve_lock(bot.services.store) as alone:
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(sig, stop.set)
                    handled.append(sig)
                except (NotImplementedError, RuntimeError):  # not the main thread (tests)
                    pass
            try:
                await bot.transport.prepare()
            except SlackApiError as exc:
                log.error("serve.bot_token_refused", error=error_name(exc))
                return 2
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                # Not a refusal: Slack did not answer. One line; the detail at debug.
                log.error(
                    "serve.slack_unreachable",
                    message=f"Slack at {settings.slack.api_base_url} could not be reached "
                    f"({type(exc).__name__}: {str(exc) or 'no answer'}); nothing was started.",
                )
                log.debug("serve.slack_unreachable_detail", exc_info=exc)
                return 2
            site = web.TCPSite(
                runner, settings.slack.host, port if port is not None else settings.slack.port
            )
            await site.start()
            bound = runner.addresses[0][1] if runner.addresses else settings.slack.port
            if settings.slack.mode == "socket":
                socket_mode = _socket_mode_handler(bot, secrets)
                # slack_sdk tries to connect until it can, for ever: a SIGTERM meanwhile
                # must still stop us, so the connection is awaited beside the stop.
                connected = await _until_stopped(_connect_socket_mode(bot, socket_mode), stop)
                if connected is None:
                    log.info("serve.stopped_before_connecting")
                    return 0
                if not connected:
                    return 2
            # The only replica (SQLite) takes up everything left pending at once; with
            # several (PostgreSQL), only what a dead replica's lease no longer covers.
            await bot.transport.recover(everything=alone)
            background = [
                asyncio.create_task(bot.supervisor.run(stop)),
                asyncio.create_task(_renew_leases(bot, stop)),
                asyncio.create_task(_keep_flagd_file(bot, stop)),
            ]
            log.info(
                "serve.started", mode=settings.slack.mode, port=bound, replica=bot.transport.owner
            )
            if ready is not None:
                ready(bound)
            await stop.wait()
    except AlreadyServing as exc:
        log.error("serve.already_running", database=exc.path)
        print(str(exc), file=sys.stderr)
        return 2
    finally:
        log.info("serve.stopping")
        if socket_mode is not None:
            await socket_mode.close_async()  # type: ignore[no-untyped-call]
        await bot.transport.stop(grace=settings.inbox.shutdown_grace_seconds)
        stop.set()
        for task in background:
            await task
        try:
            await bot.transport.release()
        except Exception:
            log.exception("inbox.release_failed")
        await runner.cleanup()
        await bot.transport.close()
        await close(bot.services)
        for sig in handled:
            # The loop may outlive this server (tests, embedding): Ctrl-C is theirs again.
            loop.remove_signal_handler(sig)
    return 0


def _socket_mode_handler(bot: Bot, secrets: SlackSecrets) -> TimedSocketModeHandler:
    assert secrets.app_token is not None
    handler = TimedSocketModeHandler(
        bot.transport.app,
        app_token=secrets.app_token.get_secret_value(),
        web_client=bot.transport.client,
        logger=_socket_log(),
    )
    handler.metrics = bot.metrics
    bot.chat.connected = handler.client.is_connected
    return handler


async def _connect_socket_mode(bot: Bot, handler: TimedSocketModeHandler) -> bool:
    # The first connection URL is asked for here: slack_sdk retries a refused (revoked,
    # mistyped) app token forever, a traceback every few seconds, and never says so.
    url: str | None = None
    try:
        opened = await bot.transport.client.apps_connections_open(app_token=handler.app_token)
        url = str(opened["url"])
    except SlackApiError as exc:
        if error_name(exc) != "ratelimited":
            log.error("serve.socket_mode_refused", error=error_name(exc))
            return False
    handler.client.wss_uri = url
    await handler.connect_async()  # type: ignore[no-untyped-call]
    return True


async def _until_stopped(work: Coroutine[Any, Any, T], stop: asyncio.Event) -> T | None:
    """`work`'s result, or None (and `work` cancelled) if `stop` is set first."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


class _OneLine(logging.Filter):
    """slack_sdk logs every failed (re)connection with its traceback, every few seconds while
    Slack can't be reached: one line each is what an operator can read; the traceback goes
    to debug."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.levelno >= logging.WARNING:
            detail = logging.getLogger(record.name + ".detail")
            if detail.isEnabledFor(logging.DEBUG):
                detail.debug("traceback", exc_info=record.exc_info)
            record.exc_info = None
            record.exc_text = None
        return True


def _socket_log() -> logging.Logger:
    logger = logging.getLogger("marvin.socket_mode")
    if not any(isinstance(f, _OneLine) for f in logger.filters):
        logger.addFilter(_OneLine())
    return logger
