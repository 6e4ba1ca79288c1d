"""The Bolt app: slash command, DMs and mentions, and the confirm button.

Every listener acks at once and hands the work to a background task, so the ack never waits
for the database or another API. Bolt runs with `process_before_response=True`: the
listener returns as soon as it has acked, so Slack gets its answer in about a millisecond
instead of the ~10 ms poll of Bolt's default runner.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import structlog
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from marvin.config import Settings
from marvin.metrics import Metrics
from marvin.models import Invocation, Place, Reply
from marvin.outbox import OutboxWorker
from marvin.pipeline import Pipeline
from marvin.slack.people import SlackPeople
from marvin.slack.render import CONFIRM_ACTION, escape, reply_message
from marvin.store.db import Store, insert_ignoring_conflicts
from marvin.store.tables import InboundEvent

log = structlog.get_logger(__name__)

TRANSPORT = "slack"
_LEADING_MENTION = re.compile(r"^\s*<@[A-Z0-9]+>[\s:,]*")

Respond = Callable[..., Awaitable[Any]]


async def first_delivery(store: Store, key: str, now: Any) -> bool:
    """True the first time a delivery is seen; Slack redelivers events it thinks were lost."""
    async with store.transaction(write=True) as session:
        result = await session.execute(
            insert_ignoring_conflicts(session, InboundEvent)
            .values(key=key, received_at=now)
            .on_conflict_do_nothing()
            .returning(InboundEvent.key)
        )
        return result.scalar_one_or_none() is not None


class SlackTransport:
    def __init__(
        self,
        *,
        settings: Settings,
        pipeline: Pipeline,
        client: AsyncWebClient,
        people: SlackPeople,
        metrics: Metrics,
        outbox: OutboxWorker | None,
        signing_secret: str | None,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.client = client
        self.people = people
        self.metrics = metrics
        self.outbox = outbox
        self._tasks: set[asyncio.Task[None]] = set()
        self.app = AsyncApp(
            client=client,
            signing_secret=signing_secret,
            # Socket Mode has no HTTP requests to verify; HTTP mode always verifies.
            request_verification_enabled=signing_secret is not None,
            process_before_response=True,
            logger=None,
        )
        self.app.command(settings.slack.command)(self._on_command)
        self.app.event("app_mention")(self._on_mention)
        self.app.event("message")(self._on_message)
        self.app.action(CONFIRM_ACTION)(self._on_confirm)

    # --- listeners: ack, then work in the background ----------------------------------

    async def _on_command(self, ack: Any, body: dict[str, Any], respond: Respond) -> None:
        text = str(body.get("text") or "").strip()
        shown = escape(text if len(text) <= 60 else text[:60] + "…")
        await ack(response_type="ephemeral", text=f"Working on `{shown or 'help'}`…")
        self._spawn(self._command(body, respond))

    async def _on_mention(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        # Another bot naming Marvin is not a person asking (and two bots could loop).
        if event.get("bot_id") or event.get("subtype"):
            return
        self._spawn(self._conversation(body, event))

    async def _on_message(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        # Only direct messages from people: not edits, joins, or other bots (ourselves).
        if event.get("channel_type") != "im" or event.get("subtype") or event.get("bot_id"):
            return
        self._spawn(self._conversation(body, event))

    async def _on_confirm(self, ack: Any, body: dict[str, Any], respond: Respond) -> None:
        await ack()
        self._spawn(self._confirm(body, respond))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(self._guarded(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guarded(work: Coroutine[Any, Any, None]) -> None:
        # The pipeline answers its own failures; this catches the transport's (Slack down
        # while replying), which must not vanish as an unretrieved task exception.
        try:
            await work
        except Exception:
            log.exception("slack.background_failed")

    async def drain(self, grace: float = 20.0) -> None:
        """Let work already acknowledged finish before shutting down: it was accepted."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)

    # --- the work -----------------------------------------------------------------------

    async def _command(self, body: dict[str, Any], respond: Respond) -> None:
        channel_id = str(body.get("channel_id", ""))
        inv = await self._invocation(
            user_id=str(body.get("user_id", "")),
            user_name=str(body.get("user_name", "")),
            place=Place(
                id=channel_id,
                name=body.get("channel_name"),
                is_dm=channel_id.startswith("D") or body.get("channel_name") == "directmessage",
            ),
            text=str(body.get("text") or "").strip() or "help",
        )
        await self._answer(respond, channel_id, inv, await self._handle(inv))

    async def _conversation(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        event_id = str(body.get("event_id") or f"{event.get('channel')}:{event.get('ts')}")
        if not await first_delivery(
            self.pipeline.services.store, f"slack:{event_id}", self.pipeline.services.clock.now()
        ):
            log.info("slack.duplicate_event", event_id=event_id)
            return
        channel_id = str(event.get("channel", ""))
        user_id = str(event.get("user", ""))
        text = _LEADING_MENTION.sub("", str(event.get("text") or "")).strip() or "help"
        info = await self.people.get(user_id)
        inv = await self._invocation(
            user_id=user_id,
            user_name=info.name if info else user_id,
            place=Place(id=channel_id, is_dm=event.get("channel_type") == "im"),
            text=text,
        )
        reply = await self._handle(inv)
        thread = event.get("thread_ts") or event.get("ts")
        try:
            await self.client.chat_postMessage(
                channel=channel_id, thread_ts=thread, unfurl_links=False, **reply_message(reply)
            )
        except SlackApiError as exc:
            self._api_error("chat.postMessage", exc)

    async def _confirm(self, body: dict[str, Any], respond: Respond) -> None:
        actions = body.get("actions") or [{}]
        user = body.get("user") or {}
        channel = body.get("channel") or {}
        channel_id = str(channel.get("id", ""))
        inv = await self._invocation(
            user_id=str(user.get("id", "")),
            user_name=str(user.get("username") or user.get("name") or user.get("id", "")),
            place=Place(id=channel_id, name=channel.get("name"), is_dm=channel_id.startswith("D")),
            text=f"confirm {actions[0].get('value', '')}",
        )
        await self._answer(respond, channel_id, inv, await self._handle(inv))

    async def _invocation(
        self, *, user_id: str, user_name: str, place: Place, text: str
    ) -> Invocation:
        info = await self.people.get(user_id)
        return Invocation(
            request_id=uuid.uuid4().hex[:16],
            transport=TRANSPORT,
            user_id=user_id,
            user_name=user_name or (info.name if info else user_id),
            user_email=info.email if info else None,
            place=place,
            text=text,
            received_at=self.pipeline.services.clock.now(),
        )

    async def _handle(self, inv: Invocation) -> Reply:
        reply = await self.pipeline.handle(inv)
        self.metrics.command(reply)
        if reply.announcement is not None and self.outbox is not None:
            self.outbox.wake()
        return reply

    async def _answer(
        self, respond: Respond, channel_id: str, inv: Invocation, reply: Reply
    ) -> None:
        """Privately, through the response_url; or, when that has expired or been used up,
        as an ephemeral message where the person is."""
        try:
            response = await respond(
                response_type="ephemeral", replace_original=True, **reply_message(reply)
            )
        except Exception as exc:
            error = type(exc).__name__
        else:
            # A used-up or expired response_url answers 4xx without raising.
            status = int(getattr(response, "status_code", 200))
            if status < 400:
                return
            error = str(getattr(response, "body", "") or status)[:100]
        self.metrics.api_errors.labels("slack", "response_url", error).inc()
        log.warning("slack.respond_failed", error=error)
        await self._ephemeral(channel_id, inv.user_id, reply)

    async def _ephemeral(self, channel_id: str, user_id: str, reply: Reply) -> None:
        try:
            await self.client.chat_postEphemeral(
                channel=channel_id, user=user_id, **reply_message(reply)
            )
        except SlackApiError as exc:
            self._api_error("chat.postEphemeral", exc)

    def _api_error(self, method: str, exc: SlackApiError) -> None:
        error = str(exc.response.get("error") or exc.response.status_code)
        self.metrics.api_errors.labels("slack", method, error).inc()
        log.warning("slack.api_error", method=method, error=error)
