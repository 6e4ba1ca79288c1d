"""A loopback fake of Slack's Web API and of its ``response_url`` webhooks.

The real clients (``AsyncWebClient``, Bolt's ``AsyncApp``, ``AsyncWebhookClient``,
the Socket Mode client) are pointed at this server, so it answers with Slack's wire
format rather than with whatever is convenient: API errors are HTTP 200 with
``{"ok": false, "error": ...}``, rate limits are HTTP 429 with ``Retry-After``, and the
success shapes follow the method reference pages on docs.slack.dev.

Sources for the behaviour modelled here (read when this file was written):

* Method pages: docs.slack.dev/reference/methods/<method>/ (auth.test, chat.postMessage,
  chat.postEphemeral, chat.update, users.info, users.getPresence, dnd.info, views.open,
  conversations.info, conversations.history, apps.connections.open); message metadata:
  docs.slack.dev/messaging/message-metadata (returned by conversations.history only with
  ``include_all_metadata``).
* How the SDK reads answers: slack_sdk/web/async_internal_utils.py (JSON unless the
  content type is text/plain or gzip), slack_sdk/web/async_slack_response.py (anything
  but status 200 with ``ok: true`` raises ``SlackApiError``),
  slack_sdk/http_retry/builtin_async_handlers.py (429 + ``Retry-After`` drives retries).
* response_url answers: slack_sdk's own webhook mock (tests/slack_sdk/webhook/
  mock_web_api_server.py) and reports from other client libraries (pyslackers/slack-sansio
  PR #42, johnagan/serverless-slack PR #6) that a response_url answers with the bare text
  ``ok`` rather than JSON; incoming-webhook errors are plain strings with 4xx statuses
  (api.slack.com/changelog/2016-05-17-changes-to-errors-for-incoming-webhooks).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import yaml
from aiohttp import web

from tests.fakes.loopback import LoopbackServer

if TYPE_CHECKING:
    from tests.fakes.slack_socket import FakeSocketModeServer

JSONDict = dict[str, Any]

# Fields Slack documents as "a JSON-based array ... presented as a URL-encoded string":
# form-encoded callers send them as strings, JSON callers as structures. Recording the
# decoded value lets assertions ignore which encoding the client chose.
MANIFEST = Path(__file__).resolve().parents[2] / "slack" / "manifest.yaml"


def manifest_scopes() -> list[str]:
    """The bot scopes the shipped app manifest asks for: what a real install grants."""
    manifest = yaml.safe_load(MANIFEST.read_text())
    return list(manifest["oauth_config"]["scopes"]["bot"])


_JSON_STRING_FIELDS = ("blocks", "attachments", "view", "metadata")

# A response_url "can be used up to 5 times within 30 minutes" (Slack's slash command and
# interactivity docs; also quoted by spatie/laravel-slack-slash-command's docs).
RESPONSE_URL_MAX_USES = 5
RESPONSE_URL_TTL_SECONDS = 30 * 60

# trigger_ids are short-lived; Slack's modal docs give three seconds.
TRIGGER_TTL_SECONDS = 3.0

# Block Kit limits that Slack enforces server-side and reports as errors.
_MAX_MESSAGE_BLOCKS = 50
_MAX_VIEW_BLOCKS = 100
_MAX_VIEW_TITLE = 24
_MAX_PRIVATE_METADATA = 3000
_MAX_CALLBACK_ID = 255
_MAX_LABEL = 2000
_MAX_OPTIONS = 100


@dataclass(frozen=True)
class RecordedCall:
    """One request the fake received, as the test wants to assert on it."""

    method: str
    params: JSONDict
    headers: dict[str, str]
    token: str | None
    at: float
    http_method: str = "POST"
    # For response_url posts: which URL, channel and user it was issued for.
    context: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeUser:
    id: str
    name: str
    email: str | None = None
    real_name: str | None = None
    display_name: str | None = None
    tz: str = "UTC"
    presence: str = "active"
    dnd_enabled: bool = False
    next_dnd_start_ts: int = 1
    next_dnd_end_ts: int = 1
    snooze_enabled: bool = False
    snooze_endtime: int | None = None
    status_text: str = ""
    status_emoji: str = ""
    status_expiration: int = 0
    deleted: bool = False
    is_bot: bool = False
    is_admin: bool = False


@dataclass
class FakeChannel:
    id: str
    name: str
    is_im: bool = False
    # The other party of a DM; conversations.info reports it as ``user``.
    user: str | None = None
    is_private: bool = False
    is_member: bool = True
    is_archived: bool = False
    created: int = field(default_factory=lambda: int(time.time()))


@dataclass
class _Failure:
    status: int
    error: str
    retry_after: int | None
    body: str | None
    remaining: int


@dataclass
class _ResponseUrl:
    channel_id: str
    user_id: str
    created: float
    uses: int = 0


@dataclass
class _Trigger:
    created: float
    used: bool = False


class _ApiError(Exception):
    def __init__(self, error: str, *, status: int = 200, extra: JSONDict | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.extra = extra or {}


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() in ("1", "true", "yes")
    return bool(value)


def _bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class FakeSlackAPI(LoopbackServer):
    """Slack's Web API on ``127.0.0.1``, with state a test sets up and calls it records."""

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test",
        app_token: str = "xapp-test",
        team_id: str = "T1",
        team_name: str = "Test Team",
        team_domain: str = "test",
        app_id: str = "A1",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        bot_name: str = "marvin",
        bot_scopes: str | None = None,  # None: what slack/manifest.yaml asks for
        socket: FakeSocketModeServer | None = None,
        trigger_ttl: float = TRIGGER_TTL_SECONDS,
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.team_id = team_id
        self.team_name = team_name
        self.team_domain = team_domain
        self.app_id = app_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.bot_name = bot_name
        self.bot_scopes = bot_scopes if bot_scopes is not None else ",".join(manifest_scopes())
        self.trigger_ttl = trigger_ttl
        self._socket = socket

        self._users: dict[str, FakeUser] = {}
        self._channels: dict[str, FakeChannel] = {}
        self._messages: dict[str, list[JSONDict]] = {}
        self._views: dict[str, JSONDict] = {}
        self._triggers: dict[str, _Trigger] = {}
        self._response_urls: dict[str, _ResponseUrl] = {}
        self._failures: dict[str, list[_Failure]] = {}
        self._delays: dict[str, float] = {}
        # Methods whose next answers are held after the call took effect (a lost answer).
        self._lost_answers: dict[str, list[float]] = {}
        self._calls: list[RecordedCall] = []
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        self._last_ts_us = 0
        self._counter = 0

        self._runner: web.AppRunner | None = None
        self._port: int | None = None

        self._handlers: dict[str, Callable[[JSONDict], JSONDict]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.update": self._chat_update,
            "users.info": self._users_info,
            "users.getPresence": self._users_get_presence,
            "dnd.info": self._dnd_info,
            "views.open": self._views_open,
            "conversations.info": self._conversations_info,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "apps.connections.open": self._apps_connections_open,
        }

        # The bot is a workspace member like any other: users.info on it must work.
        self.add_user(bot_user_id, bot_name, real_name=bot_name, is_bot=True)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._runner is not None:
            return
        self._closing = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/commands/{team}/{n}/{secret}", self._handle_response_url)
        app.router.add_post("/actions/{team}/{n}/{secret}", self._handle_response_url)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        self._closing.set()
        await runner.cleanup()

    @property
    def base_url(self) -> str:
        """What to pass as ``base_url``: slack_sdk joins the method name onto it."""
        return f"http://127.0.0.1:{self.port}/api/"

    def attach_socket(self, server: FakeSocketModeServer) -> None:
        self._socket = server

    # ------------------------------------------------------------------ state setup

    def add_user(
        self,
        id: str,
        name: str,
        *,
        email: str | None = None,
        real_name: str | None = None,
        display_name: str | None = None,
        tz: str = "UTC",
        presence: str = "active",
        dnd_enabled: bool = False,
        next_dnd_start_ts: int = 1,
        next_dnd_end_ts: int = 1,
        snooze_enabled: bool = False,
        snooze_endtime: int | None = None,
        status_text: str = "",
        status_emoji: str = "",
        status_expiration: int = 0,
        deleted: bool = False,
        is_bot: bool = False,
        is_admin: bool = False,
    ) -> FakeUser:
        if presence not in ("active", "away"):
            raise ValueError("Slack reports presence as 'active' or 'away'")
        user = FakeUser(
            id=id,
            name=name,
            email=email,
            real_name=real_name,
            display_name=display_name,
            tz=tz,
            presence=presence,
            dnd_enabled=dnd_enabled,
            next_dnd_start_ts=next_dnd_start_ts,
            next_dnd_end_ts=next_dnd_end_ts,
            snooze_enabled=snooze_enabled,
            snooze_endtime=snooze_endtime,
            status_text=status_text,
            status_emoji=status_emoji,
            status_expiration=status_expiration,
            deleted=deleted,
            is_bot=is_bot,
            is_admin=is_admin,
        )
        self._users[id] = user
        return user

    def user(self, id: str) -> FakeUser:
        """The stored user, to change presence/DND/status between calls."""
        return self._users[id]

    def add_channel(
        self,
        id: str,
        name: str,
        is_im: bool = False,
        *,
        user: str | None = None,
        is_private: bool = False,
        is_member: bool = True,
        is_archived: bool = False,
    ) -> FakeChannel:
        channel = FakeChannel(
            id=id,
            name=name,
            is_im=is_im,
            user=user,
            is_private=is_private or is_im,
            is_member=is_member,
            is_archived=is_archived,
        )
        self._channels[id] = channel
        return channel

    def channel(self, id: str) -> FakeChannel:
        return self._channels[id]

    def messages(self, channel_id: str) -> list[JSONDict]:
        """Messages visible in a channel: posted, updated, or posted in_channel via response_url."""
        return list(self._messages.get(channel_id, []))

    def add_message(
        self, channel_id: str, user_id: str, text: str, *, thread_ts: str | None = None
    ) -> str:
        """Someone says `text` in a channel (in a thread, with `thread_ts`); its ts."""
        self._user_or_error(user_id)
        message: JSONDict = {
            "type": "message",
            "user": user_id,
            "text": text,
            "ts": self._next_ts(),
            "team": self.team_id,
        }
        if thread_ts is not None:
            message["thread_ts"] = thread_ts
            parent = self._find_message(channel_id, thread_ts)
            if parent is None:
                raise ValueError(f"no message {thread_ts} in {channel_id}")
            parent["thread_ts"] = thread_ts
            parent["reply_count"] = int(parent.get("reply_count", 0)) + 1
        self._messages.setdefault(channel_id, []).append(message)
        return str(message["ts"])

    def _find_message(self, channel_id: str, ts: str) -> JSONDict | None:
        return next((m for m in self._messages.get(channel_id, []) if m["ts"] == ts), None)

    def views(self) -> list[JSONDict]:
        return list(self._views.values())

    def new_trigger_id(self) -> str:
        """A trigger_id as Slack puts in interaction payloads; views.open accepts it once."""
        self._counter += 1
        trigger = f"{self._counter}{secrets.randbelow(10**9):09d}.{secrets.randbelow(10**10)}"
        trigger += f".{secrets.token_hex(16)}"
        self._triggers[trigger] = _Trigger(created=time.monotonic())
        return trigger

    def response_url(self, channel_id: str, user_id: str, *, kind: str = "commands") -> str:
        """A response_url bound to a channel and user, as in a slash command payload.

        ``kind`` is ``commands`` for slash commands and ``actions`` for interactivity,
        the two path prefixes hooks.slack.com uses.
        """
        if kind not in ("commands", "actions"):
            raise ValueError("kind is 'commands' or 'actions'")
        self._counter += 1
        path = f"/{kind}/{self.team_id}/{self._counter}/{secrets.token_hex(12)}"
        self._response_urls[path] = _ResponseUrl(channel_id, user_id, time.monotonic())
        return f"http://127.0.0.1:{self.port}{path}"

    # ------------------------------------------------------------------ behaviour injection

    def fail_next(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: int | None = 1,
        error: str = "ratelimited",
        times: int = 1,
        body: str | None = None,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail before any other check.

        The default is Slack's rate-limit answer: HTTP 429, ``Retry-After: 1`` and
        ``{"ok": false, "error": "ratelimited"}``. ``body`` replaces the JSON with raw
        text (Slack's own 5xx pages are HTML). ``method`` may be ``"response_url"``.
        """
        self._check_method_name(method)
        failure = _Failure(status, error, retry_after, body, times)
        self._failures.setdefault(method, []).append(failure)

    def delay(self, method: str, seconds: float) -> None:
        """Hold every answer of ``method`` for ``seconds`` (0 removes the delay)."""
        self._check_method_name(method)
        if seconds <= 0:
            self._delays.pop(method, None)
        else:
            self._delays[method] = seconds

    def lose_answer(self, method: str, seconds: float = 60.0, *, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` take effect (a message is posted) and then
        their answer is held for ``seconds``: what a client sees when the connection dies
        after Slack did the work, or when it crashes while waiting for the answer."""
        self._check_method_name(method)
        self._lost_answers.setdefault(method, []).extend([seconds] * times)

    def _check_method_name(self, method: str) -> None:
        # A misspelt method would otherwise make the injection silently never fire.
        if method != "response_url" and method not in self._handlers:
            raise ValueError(f"FakeSlackAPI does not implement {method!r}")

    # ------------------------------------------------------------------ recording

    def calls(self, method: str | None = None) -> list[RecordedCall]:
        return [c for c in self._calls if method is None or c.method == method]

    def reset_calls(self) -> None:
        self._calls.clear()

    # ASYNC109 prefers callers wrapping asyncio.timeout(); a per-call deadline with a
    # message naming what never arrived reads better in test failures.
    async def wait_for(
        self,
        method: str,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[RecordedCall]:
        """Wait until ``method`` was called at least ``count`` times; return those calls."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = self.calls(method)
            if len(found) >= count:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0:
                seen = [c.method for c in self._calls]
                raise TimeoutError(
                    f"{method} called {len(found)} time(s), wanted {count}; calls seen: {seen}"
                )
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                pass

    def _record(self, call: RecordedCall) -> None:
        self._calls.append(call)
        # Swap the event so every waiter wakes once and re-checks.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # ------------------------------------------------------------------ HTTP plumbing

    async def _read_params(self, request: web.Request) -> tuple[JSONDict, str | None]:
        params: JSONDict = {}
        # Slack stopped honouring tokens in query strings (api.slack.com changelog,
        # 2020-11, for apps created after 2021-02-24), so a query token is not a token.
        for key, value in request.query.items():
            if key != "token":
                params[key] = value
        body_token: str | None = None
        if request.method == "POST" and request.can_read_body:
            content_type = request.content_type
            if content_type == "application/json":
                raw = await request.read()
                try:
                    decoded = json.loads(raw or b"{}")
                except ValueError as exc:
                    raise _ApiError("invalid_json") from exc
                if not isinstance(decoded, dict):
                    raise _ApiError("json_not_object")
                # JSON bodies must carry the token in the Authorization header (Slack's
                # "Using the Web API" guide); a body token is ignored, not honoured.
                params.update(decoded)
            else:
                form = await request.post()
                for key, form_value in form.items():
                    text = form_value if isinstance(form_value, str) else str(form_value)
                    if key == "token":
                        body_token = text
                    else:
                        params[key] = text
        for key in _JSON_STRING_FIELDS:
            encoded = params.get(key)
            if isinstance(encoded, str) and encoded.strip()[:1] in ("[", "{"):
                try:
                    params[key] = json.loads(encoded)
                except ValueError:
                    pass
        return params, body_token

    def _json(self, payload: JSONDict, *, status: int = 200) -> web.Response:
        headers = {"X-OAuth-Scopes": self.bot_scopes} if payload.get("ok") else {}
        return web.json_response(payload, status=status, headers=headers)

    def _failure_response(self, failure: _Failure, *, as_text: bool) -> web.Response:
        headers: dict[str, str] = {}
        if failure.status == 429 and failure.retry_after is not None:
            headers["Retry-After"] = str(failure.retry_after)
        if failure.body is not None:
            return web.Response(
                status=failure.status, text=failure.body, content_type="text/html", headers=headers
            )
        if as_text:
            return web.Response(
                status=failure.status, text=failure.error, content_type="text/html", headers=headers
            )
        return web.json_response(
            {"ok": False, "error": failure.error}, status=failure.status, headers=headers
        )

    async def _hold(self, method: str) -> None:
        delay = self._delays.get(method)
        if not delay:
            return
        # aiohttp keeps running a handler after its client gave up, and cleanup waits
        # for it: without this, stop() after a client-side timeout would take the whole
        # injected delay.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), delay)

    def _take_failure(self, method: str) -> _Failure | None:
        queue = self._failures.get(method)
        if not queue:
            return None
        failure = queue[0]
        failure.remaining -= 1
        if failure.remaining <= 0:
            queue.pop(0)
        return failure

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        at = time.monotonic()
        header_token = _bearer(request.headers)
        headers = dict(request.headers)
        try:
            params, body_token = await self._read_params(request)
        except _ApiError as exc:
            self._record(RecordedCall(method, {}, headers, header_token, at, request.method))
            return self._json({"ok": False, "error": exc.error})
        token = header_token or body_token
        self._record(RecordedCall(method, params, headers, token, at, request.method))

        handler = self._handlers.get(method)
        if handler is None:
            return self._json(
                {"ok": False, "error": "unknown_method", "req_method": method}, status=404
            )
        await self._hold(method)
        failure = self._take_failure(method)
        if failure is not None:
            return self._failure_response(failure, as_text=False)
        try:
            self._authenticate(method, header_token, body_token)
            result = handler(params)
        except _ApiError as exc:
            return self._json({"ok": False, "error": exc.error, **exc.extra}, status=exc.status)
        lost = self._lost_answers.get(method)
        if lost:
            self._changed.set()  # what it did can be seen while its answer is held
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), lost.pop(0))
        return self._json({"ok": True, **result})

    def _authenticate(self, method: str, header_token: str | None, body_token: str | None) -> None:
        token = header_token or body_token
        if not token:
            raise _ApiError("not_authed")
        if token == self.app_token:
            kind = "app"
        elif token == self.bot_token:
            kind = "bot"
        else:
            raise _ApiError("invalid_auth")
        if method == "apps.connections.open":
            if kind != "app":
                raise _ApiError("not_allowed_token_type")
            # The apps.connections.open page: the app-level token must travel in the
            # Authorization header; "passing it as a POST parameter will result in an error".
            if header_token is None:
                raise _ApiError("invalid_auth")
        elif kind == "app":
            # App-level tokens only open Socket Mode connections.
            raise _ApiError("not_allowed_token_type")

    async def _handle_response_url(self, request: web.Request) -> web.StreamResponse:
        at = time.monotonic()
        path = request.path
        raw = await request.read()
        body: JSONDict | None
        try:
            decoded = json.loads(raw)
            body = decoded if isinstance(decoded, dict) else None
        except ValueError:
            body = None
        state = self._response_urls.get(path)
        context = {"url": str(request.url)}
        if state is not None:
            context |= {"channel_id": state.channel_id, "user_id": state.user_id}
        params = body if body is not None else {"_raw": raw.decode("utf-8", "replace")}
        self._record(
            RecordedCall("response_url", params, dict(request.headers), None, at, "POST", context)
        )

        await self._hold("response_url")
        failure = self._take_failure("response_url")
        if failure is not None:
            return self._failure_response(failure, as_text=True)

        # hooks.slack.com answers in plain strings, not JSON: "ok" on success, an error
        # code as the whole body otherwise. The content type of those answers was not
        # verified; slack_sdk's AsyncWebhookClient only reads status and text.
        if state is None:
            return web.Response(status=404, text="no_service", content_type="text/html")
        expired = at - state.created > RESPONSE_URL_TTL_SECONDS
        if expired or state.uses >= RESPONSE_URL_MAX_USES:
            # Slack documents the limits but not the error string for breaking them.
            return web.Response(status=404, text="expired_url", content_type="text/html")
        if body is None:
            return web.Response(status=400, text="invalid_payload", content_type="text/html")
        has_content = any(body.get(k) for k in ("text", "blocks", "attachments"))
        if not has_content and not _truthy(body.get("delete_original")):
            return web.Response(status=400, text="no_text", content_type="text/html")
        state.uses += 1
        if body.get("response_type") == "in_channel":
            message = self._bot_message(
                self._next_ts(), str(body.get("text") or ""), body.get("blocks"), None
            )
            self._messages.setdefault(state.channel_id, []).append(message)
        return web.Response(status=200, text="ok", content_type="text/html")

    # ------------------------------------------------------------------ helpers

    def _next_ts(self) -> str:
        # Message ts values are epoch seconds with six decimals and never repeat in a
        # channel; keep them strictly increasing even within one microsecond.
        now_us = int(time.time() * 1_000_000)
        self._last_ts_us = max(now_us, self._last_ts_us + 1)
        seconds, micros = divmod(self._last_ts_us, 1_000_000)
        return f"{seconds}.{micros:06d}"

    def _new_id(self, prefix: str) -> str:
        return prefix + secrets.token_hex(5).upper()

    def _resolve_channel(self, value: Any, *, for_posting: bool) -> FakeChannel:
        if not value or not isinstance(value, str):
            raise _ApiError("channel_not_found")
        channel = self._channels.get(value)
        if channel is None and for_posting:
            if value in self._users:
                # Posting to a user ID lands in the app's DM with that user, and the
                # answer names the D... conversation, not the user.
                channel = self._im_with(value)
            else:
                name = value.removeprefix("#")
                channel = next((c for c in self._channels.values() if c.name == name), None)
        if channel is None:
            raise _ApiError("channel_not_found")
        if channel.is_private and not channel.is_member:
            # Private conversations the bot is not in are invisible, not forbidden.
            raise _ApiError("channel_not_found")
        return channel

    def _im_with(self, user_id: str) -> FakeChannel:
        for channel in self._channels.values():
            if channel.is_im and channel.user == user_id:
                return channel
        return self.add_channel(self._new_id("D"), "", True, user=user_id)

    def _check_can_post(self, channel: FakeChannel) -> None:
        if channel.is_archived:
            raise _ApiError("is_archived")
        if not channel.is_member and not channel.is_im:
            raise _ApiError("not_in_channel")

    def _content(self, params: JSONDict) -> tuple[str, list[JSONDict] | None, Any]:
        text = params.get("text")
        blocks = params.get("blocks")
        attachments = params.get("attachments")
        if blocks is not None:
            if not isinstance(blocks, list):
                raise _ApiError("invalid_blocks_format")
            if len(blocks) > _MAX_MESSAGE_BLOCKS or not all(
                isinstance(b, dict) and isinstance(b.get("type"), str) for b in blocks
            ):
                raise _ApiError("invalid_blocks")
        if not text and not blocks and not attachments:
            raise _ApiError("no_text")
        return str(text or ""), blocks or None, attachments or None

    def _bot_message(
        self, ts: str, text: str, blocks: list[JSONDict] | None, attachments: Any
    ) -> JSONDict:
        message: JSONDict = {
            "user": self.bot_user_id,
            "type": "message",
            "ts": ts,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "text": text,
            "team": self.team_id,
            "bot_profile": {
                "id": self.bot_id,
                "app_id": self.app_id,
                "name": self.bot_name,
                "deleted": False,
                "team_id": self.team_id,
            },
        }
        if blocks:
            message["blocks"] = blocks
        if attachments:
            message["attachments"] = attachments
        return message

    def _user_or_error(self, value: Any) -> FakeUser:
        user = self._users.get(value) if isinstance(value, str) else None
        if user is None:
            raise _ApiError("user_not_found")
        return user

    # ------------------------------------------------------------------ methods

    def _auth_test(self, params: JSONDict) -> JSONDict:
        return {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team_name,
            "user": self.bot_name,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, params: JSONDict) -> JSONDict:
        channel = self._resolve_channel(params.get("channel"), for_posting=True)
        self._check_can_post(channel)
        text, blocks, attachments = self._content(params)
        message = self._bot_message(self._next_ts(), text, blocks, attachments)
        if params.get("thread_ts"):
            message["thread_ts"] = str(params["thread_ts"])
        if isinstance(params.get("metadata"), dict):
            message["metadata"] = params["metadata"]
        self._messages.setdefault(channel.id, []).append(message)
        return {"channel": channel.id, "ts": message["ts"], "message": message}

    def _chat_post_ephemeral(self, params: JSONDict) -> JSONDict:
        channel = self._resolve_channel(params.get("channel"), for_posting=True)
        self._user_or_error(params.get("user"))
        self._check_can_post(channel)
        self._content(params)
        # Ephemeral messages are not stored in the channel: only the recipient sees
        # them, and no API reads them back.
        return {"message_ts": self._next_ts()}

    def _chat_update(self, params: JSONDict) -> JSONDict:
        channel = self._resolve_channel(params.get("channel"), for_posting=False)
        ts = params.get("ts")
        stored = next((m for m in self._messages.get(channel.id, []) if m["ts"] == ts), None)
        if stored is None:
            raise _ApiError("message_not_found")
        text, blocks, attachments = self._content(params)
        stored["text"] = text
        for key, value in (("blocks", blocks), ("attachments", attachments)):
            if value is None:
                stored.pop(key, None)
            else:
                stored[key] = value
        stored["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        message = {k: v for k, v in stored.items() if k != "ts"}
        return {"channel": channel.id, "ts": stored["ts"], "text": text, "message": message}

    def _user_object(self, user: FakeUser) -> JSONDict:
        zone = ZoneInfo(user.tz)
        now = datetime.now(UTC).astimezone(zone)
        offset = now.utcoffset()
        real_name = user.real_name or user.name
        profile: JSONDict = {
            "real_name": real_name,
            "real_name_normalized": real_name,
            "display_name": user.display_name or "",
            "display_name_normalized": user.display_name or "",
            "status_text": user.status_text,
            "status_emoji": user.status_emoji,
            "status_expiration": user.status_expiration,
            "avatar_hash": "g000000000000",
            "team": self.team_id,
        }
        # Slack leaves email out when it has none to show (bots, or no users:read.email).
        if user.email is not None:
            profile["email"] = user.email
        if user.is_bot:
            profile["bot_id"] = self.bot_id if user.id == self.bot_user_id else ""
        return {
            "id": user.id,
            "team_id": self.team_id,
            "name": user.name,
            "deleted": user.deleted,
            "color": "9f69e7",
            "real_name": real_name,
            "tz": user.tz,
            "tz_label": now.tzname() or user.tz,
            "tz_offset": int(offset.total_seconds()) if offset is not None else 0,
            "profile": profile,
            "is_admin": user.is_admin,
            "is_owner": False,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": user.is_bot,
            "is_app_user": False,
            "updated": int(time.time()),
        }

    def _users_info(self, params: JSONDict) -> JSONDict:
        return {"user": self._user_object(self._user_or_error(params.get("user")))}

    def _users_get_presence(self, params: JSONDict) -> JSONDict:
        user = self._user_or_error(params.get("user") or self.bot_user_id)
        result: JSONDict = {"presence": user.presence}
        # users.getPresence page: the how-it-was-computed fields come only for the
        # caller's own user; other users get presence alone.
        if user.id == self.bot_user_id:
            active = user.presence == "active"
            result |= {
                "online": active,
                "auto_away": False,
                "manual_away": not active,
                "connection_count": 1 if active else 0,
                "last_activity": int(time.time()),
            }
        return result

    def _dnd_info(self, params: JSONDict) -> JSONDict:
        user = self._user_or_error(params.get("user") or self.bot_user_id)
        result: JSONDict = {
            "dnd_enabled": user.dnd_enabled,
            "next_dnd_start_ts": user.next_dnd_start_ts,
            "next_dnd_end_ts": user.next_dnd_end_ts,
        }
        # dnd.info page: "All of the snooze_* properties will only be visible if the user
        # being queried is also the current user", and snooze_endtime/snooze_remaining
        # "only if snooze_enabled is true". A bot token therefore never sees another
        # user's snooze.
        if user.id == self.bot_user_id:
            result["snooze_enabled"] = user.snooze_enabled
            if user.snooze_enabled:
                endtime = user.snooze_endtime or int(time.time())
                result["snooze_endtime"] = endtime
                result["snooze_remaining"] = max(0, endtime - int(time.time()))
                result["snooze_is_indefinite"] = False
        return result

    def _views_open(self, params: JSONDict) -> JSONDict:
        trigger_id = params.get("trigger_id") or params.get("interactivity_pointer")
        view = params.get("view")
        problems: list[str] = []
        if not trigger_id:
            problems.append("[ERROR] missing required field: trigger_id")
        if view is None:
            problems.append("[ERROR] missing required field: view")
        elif not isinstance(view, dict):
            problems.append("[ERROR] failed to parse view [json-pointer:/view]")
        else:
            problems += self._view_problems(view)
        if problems:
            raise _ApiError(
                "invalid_arguments", extra={"response_metadata": {"messages": problems}}
            )
        assert isinstance(view, dict) and isinstance(trigger_id, str)
        trigger = self._triggers.get(trigger_id)
        if trigger is None:
            raise _ApiError("invalid_trigger_id")
        if trigger.used:
            raise _ApiError("exchanged_trigger_id")
        if time.monotonic() - trigger.created > self.trigger_ttl:
            raise _ApiError("expired_trigger_id")
        trigger.used = True
        view_id = self._new_id("V")
        opened: JSONDict = {
            "id": view_id,
            "team_id": self.team_id,
            "type": view["type"],
            "title": view["title"],
            "close": view.get("close"),
            "submit": view.get("submit"),
            "blocks": view.get("blocks", []),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "external_id": view.get("external_id", ""),
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "root_view_id": view_id,
            "previous_view_id": None,
            "app_id": self.app_id,
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }
        self._views[view_id] = opened
        return {"view": opened}

    def _view_problems(self, view: JSONDict) -> list[str]:
        problems: list[str] = []
        if view.get("type") != "modal":
            problems.append("[ERROR] must be one of [modal] [json-pointer:/view/type]")
        for key, required in (("title", True), ("submit", False), ("close", False)):
            element = view.get(key)
            if element is None:
                if required:
                    problems.append(f"[ERROR] missing required field: {key} [json-pointer:/view]")
                continue
            if not isinstance(element, dict) or element.get("type") != "plain_text":
                problems.append(f"[ERROR] must be a plain_text object [json-pointer:/view/{key}]")
            elif len(str(element.get("text", ""))) > _MAX_VIEW_TITLE:
                problems.append(
                    f"[ERROR] must be less than {_MAX_VIEW_TITLE + 1} characters "
                    f"[json-pointer:/view/{key}/text]"
                )
        blocks = view.get("blocks")
        if not isinstance(blocks, list):
            problems.append("[ERROR] missing required field: blocks [json-pointer:/view]")
        elif len(blocks) > _MAX_VIEW_BLOCKS:
            problems.append(
                f"[ERROR] no more than {_MAX_VIEW_BLOCKS} items allowed [json-pointer:/view/blocks]"
            )
        else:
            problems += self._input_problems(view, blocks)
        if len(str(view.get("private_metadata", ""))) > _MAX_PRIVATE_METADATA:
            problems.append(
                f"[ERROR] must be less than {_MAX_PRIVATE_METADATA + 1} characters "
                "[json-pointer:/view/private_metadata]"
            )
        if len(str(view.get("callback_id", ""))) > _MAX_CALLBACK_ID:
            problems.append(
                f"[ERROR] must be less than {_MAX_CALLBACK_ID + 1} characters "
                "[json-pointer:/view/callback_id]"
            )
        return problems

    @staticmethod
    def _input_problems(view: JSONDict, blocks: list[Any]) -> list[str]:
        """Input blocks as the Block Kit reference has them: a plain_text label, an element
        (with at most 100 options), unique block ids, and a submit button on the view."""
        problems: list[str] = []
        seen: set[str] = set()
        inputs = False
        for i, block in enumerate(blocks):
            where = f"[json-pointer:/view/blocks/{i}"
            if not isinstance(block, dict):
                problems.append(f"[ERROR] must be an object {where}]")
                continue
            block_id = block.get("block_id")
            if block_id is not None:
                if block_id in seen:
                    problems.append(f"[ERROR] duplicate block_id {where}/block_id]")
                seen.add(str(block_id))
            if block.get("type") != "input":
                continue
            inputs = True
            label = block.get("label")
            if not isinstance(label, dict) or label.get("type") != "plain_text":
                problems.append(f"[ERROR] must be a plain_text object {where}/label]")
            elif len(str(label.get("text", ""))) > _MAX_LABEL:
                problems.append(
                    f"[ERROR] must be less than {_MAX_LABEL + 1} characters {where}/label/text]"
                )
            element = block.get("element")
            if not isinstance(element, dict) or "type" not in element:
                problems.append(f"[ERROR] missing required field: element {where}]")
            elif len(element.get("options", [])) > _MAX_OPTIONS:
                problems.append(
                    f"[ERROR] no more than {_MAX_OPTIONS} items allowed {where}/element/options]"
                )
        if inputs and view.get("submit") is None:
            problems.append(
                "[ERROR] submit is required when an input block is within the blocks array "
                "[json-pointer:/view]"
            )
        return problems

    def _conversations_info(self, params: JSONDict) -> JSONDict:
        channel = self._resolve_channel(params.get("channel"), for_posting=False)
        if channel.is_im:
            # DMs have no name; they name the other party instead.
            info: JSONDict = {
                "id": channel.id,
                "created": channel.created,
                "is_archived": channel.is_archived,
                "is_im": True,
                "is_org_shared": False,
                "context_team_id": self.team_id,
                "user": channel.user,
                "is_user_deleted": False,
                "priority": 0,
            }
        else:
            info = {
                "id": channel.id,
                "name": channel.name,
                "is_channel": not channel.is_private,
                "is_group": channel.is_private,
                "is_im": False,
                "is_mpim": False,
                "is_private": channel.is_private,
                "created": channel.created,
                "is_archived": channel.is_archived,
                "is_general": False,
                "unlinked": 0,
                "name_normalized": channel.name,
                "is_shared": False,
                "is_org_shared": False,
                "is_ext_shared": False,
                "is_pending_ext_shared": False,
                "context_team_id": self.team_id,
                "is_member": channel.is_member,
                "topic": {"value": "", "creator": "", "last_set": 0},
                "purpose": {"value": "", "creator": "", "last_set": 0},
                "previous_names": [],
            }
        return {"channel": info}

    def _need_scope(self, scope: str) -> None:
        if scope not in self.bot_scopes.split(","):
            raise _ApiError("missing_scope", extra={"needed": scope, "provided": self.bot_scopes})

    def _readable(self, params: JSONDict) -> FakeChannel:
        """The channel whose messages are asked for, with the history scope of its kind."""
        channel = self._resolve_channel(params.get("channel"), for_posting=False)
        if channel.is_im:
            self._need_scope("im:history")
        else:
            self._need_scope("groups:history" if channel.is_private else "channels:history")
        if not channel.is_member and not channel.is_im:
            raise _ApiError("not_in_channel")
        return channel

    @staticmethod
    def _page(params: JSONDict, found: list[JSONDict], default: int) -> tuple[list[JSONDict], str]:
        """One page of `found` from the `cursor` on, and the next cursor ("" at the end)."""
        try:
            start = int(params["cursor"]) if params.get("cursor") else 0
        except (TypeError, ValueError):
            raise _ApiError("invalid_cursor") from None
        limit = FakeSlackAPI._limit(params, default)
        more = start + limit < len(found)
        return found[start : start + limit], str(start + limit) if more else ""

    @staticmethod
    def _window(params: JSONDict, messages: list[JSONDict]) -> list[JSONDict]:
        """`oldest`/`latest` bounds (exclusive unless `inclusive`), as the method pages say."""
        inclusive = _truthy(params.get("inclusive"))
        oldest, latest = params.get("oldest"), params.get("latest")

        def inside(ts: str) -> bool:
            value = float(ts)
            if oldest is not None and (
                value < float(oldest) or (value == float(oldest) and not inclusive)
            ):
                return False
            return not (
                latest is not None
                and (value > float(latest) or (value == float(latest) and not inclusive))
            )

        return [m for m in messages if inside(str(m["ts"]))]

    @staticmethod
    def _limit(params: JSONDict, default: int) -> int:
        try:
            return max(1, min(int(params.get("limit") or default), 999))
        except (TypeError, ValueError):
            raise _ApiError("invalid_limit") from None

    def _conversations_history(self, params: JSONDict) -> JSONDict:
        channel = self._readable(params)
        # Newest first; replies in threads are not the channel's history (conversations.replies).
        found = [
            m
            for m in sorted(
                self._window(params, self._messages.get(channel.id, [])),
                key=lambda m: float(m["ts"]),
                reverse=True,
            )
            if m.get("thread_ts") in (None, m["ts"])
        ]
        page, cursor = self._page(params, found, 100)
        with_metadata = _truthy(params.get("include_all_metadata"))
        messages = [
            m if with_metadata else {k: v for k, v in m.items() if k != "metadata"} for m in page
        ]
        answer: JSONDict = {
            "messages": messages,
            "has_more": bool(cursor),
            "pin_count": 0,
            "channel_actions_ts": None,
            "channel_actions_count": 0,
        }
        if cursor:
            answer["response_metadata"] = {"next_cursor": cursor}
        return answer

    def _conversations_replies(self, params: JSONDict) -> JSONDict:
        """A thread, parent first, then its replies oldest first; `ts` may name the parent
        or any message in the thread."""
        channel = self._readable(params)
        ts = params.get("ts")
        if not ts:
            raise _ApiError("invalid_arguments")
        message = self._find_message(channel.id, str(ts))
        if message is None:
            raise _ApiError("thread_not_found")
        root = str(message.get("thread_ts") or message["ts"])
        thread = [
            m
            for m in self._messages.get(channel.id, [])
            if m["ts"] == root or m.get("thread_ts") == root
        ]
        thread.sort(key=lambda m: float(m["ts"]))
        page, cursor = self._page(params, self._window(params, thread), 1000)
        return {
            "messages": page,
            "has_more": bool(cursor),
            "response_metadata": {"next_cursor": cursor},
        }

    def _apps_connections_open(self, params: JSONDict) -> JSONDict:
        if self._socket is None:
            raise _ApiError(
                "fatal_error",
                extra={"detail": "FakeSlackAPI has no FakeSocketModeServer attached"},
            )
        return {"url": self._socket.issue_url()}
