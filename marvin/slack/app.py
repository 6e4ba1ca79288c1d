"""The Bolt app: slash command, DMs and mentions, and Marvin's buttons (confirm, approve, decline).

Each listener writes the delivery to the inbox, acks, and leaves the work to a background
task, so the ack waits for one small local write and nothing else. Bolt runs with
`process_before_response=True`, so the ack goes out as the listener returns rather than at
the next ~10 ms poll of Bolt's default runner. The work runs from what the inbox stored, so
work acknowledged before a crash is taken up again on start, on the very same path.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import structlog
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from marvin import inbox
from marvin.accounts import account_for_chat_user
from marvin.adapters.errors import Unavailable
from marvin.config import Settings
from marvin.logs import redact_text
from marvin.metrics import Metrics
from marvin.models import Invocation, Place, Reply
from marvin.outbox import OutboxWorker
from marvin.pipeline import Pipeline
from marvin.slack.errors import error_name
from marvin.slack.modals import DECLARE_CALLBACK, TITLE, declare_view, opens_form, read_declare
from marvin.slack.people import SlackPeople
from marvin.slack.pins import pin_command, reaction_matches
from marvin.slack.render import BUTTON_COMMANDS, escape, reply_message
from marvin.store.db import Store
from marvin.workers import WorkPool

log = structlog.get_logger(__name__)

TRANSPORT = "slack"
_LEADING_MENTION = re.compile(r"^\s*<@[A-Z0-9]+>[\s:,]*")
# `<@U123>` or `<@U123|name>`: Slack's way of naming a person in text.
_MENTION = re.compile(r"<@([A-Z0-9]{1,32})(?:\|([^>]{0,80}))?>")
# A response_url answers for 30 minutes; work older than this can no longer reply there.
REDO_WITHIN = timedelta(minutes=25)
UNAVAILABLE = (
    "I can't take commands right now: my database isn't answering. Nothing was done; "
    "please try again in a minute."
)
OVERLOADED = "I'm overloaded; nothing was done, try again in a minute."


# What is stored for each delivery: the same keys whatever Slack sent, so the work (live,
# or taken up again after a crash) reads one shape.


def _command_payload(body: dict[str, Any]) -> dict[str, Any]:
    channel_id = str(body.get("channel_id") or "")
    return {
        "user_id": body.get("user_id"),
        "user_name": body.get("user_name"),
        "channel_id": channel_id,
        "channel_name": body.get("channel_name"),
        "is_dm": channel_id.startswith("D") or body.get("channel_name") == "directmessage",
        "text": redact_text(str(body.get("text") or "").strip()) or "help",
        "response_url": body.get("response_url"),
    }


def _action_payload(body: dict[str, Any]) -> dict[str, Any]:
    action = (body.get("actions") or [{}])[0]
    verb = BUTTON_COMMANDS.get(str(action.get("action_id") or ""), "confirm")
    user = body.get("user") or {}
    channel = body.get("channel") or {}
    channel_id = str(channel.get("id") or "")
    return {
        "user_id": user.get("id"),
        "user_name": user.get("username") or user.get("name"),
        "channel_id": channel_id,
        "channel_name": channel.get("name"),
        "is_dm": channel_id.startswith("D"),
        "text": f"{verb} {action.get('value') or ''}",
        "response_url": body.get("response_url"),
    }


def _event_payload(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "user_id": event.get("user"),
        "channel_id": event.get("channel"),
        "is_dm": event.get("channel_type") == "im",
        "text": redact_text(_LEADING_MENTION.sub("", str(event.get("text") or "")).strip())
        or "help",
        "thread_ts": event.get("thread_ts") or event.get("ts"),
    }


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
        owner: str,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.client = client
        self.people = people
        self.metrics = metrics
        self.outbox = outbox
        self.signing_secret = signing_secret
        # This replica's name: what it accepts is its own until its lease runs out.
        self.owner = owner
        self.lease = timedelta(seconds=settings.inbox.lease_seconds)
        self.acceptor = inbox.Acceptor(pipeline.services.store)
        self.finisher = inbox.Finisher(pipeline.services.store, pipeline.services.clock)
        self.pool = WorkPool(settings.inbox.workers, settings.inbox.max_answer_seconds)
        self._tasks: set[asyncio.Task[None]] = set()
        self._working: set[int] = set()
        self._turns: dict[str, asyncio.Lock] = {}
        self._identity: AuthorizeResult | None = None
        self.app = self._bolt_app(client, signing_secret)
        self.app.command(settings.slack.command)(self._on_command)
        for event, listener in self.events().items():
            self.app.event(event)(listener)
        for action_id in BUTTON_COMMANDS:
            self.app.action(action_id)(self._on_button)
        self.app.view(DECLARE_CALLBACK)(self._on_declare_form)

    def events(self) -> dict[str, Callable[..., Awaitable[None]]]:
        """The Events API events Marvin listens for: each must be subscribed in the app
        manifest (slack/manifest.yaml), or Slack never sends it."""
        return {
            "app_mention": self._on_mention,
            "message": self._on_message,  # message.im: direct messages
            "reaction_added": self._on_reaction,
        }

    def _bolt_app(self, client: AsyncWebClient, signing_secret: str | None) -> AsyncApp:
        # While it is built, Bolt warns that the token "will be unused" (the client is given,
        # and SLACK_BOT_TOKEN is set) and "will be ignored" (`authorize` is given). Neither is
        # so: `authorize` answers with the client's own token. A level can't quiet them:
        # Bolt sets its logger's level from the root logger's as it starts. These two
        # messages, and only these, are dropped while the app is built.
        from slack_bolt.logger.messages import (
            warning_client_prioritized_and_token_skipped,
            warning_token_skipped,
        )

        unfounded = {warning_client_prioritized_and_token_skipped(), warning_token_skipped()}

        def founded(record: logging.LogRecord) -> bool:
            return record.getMessage() not in unfounded

        framework = logging.getLogger("slack_bolt.AsyncApp")
        framework.addFilter(founded)
        try:
            return AsyncApp(
                client=client,
                signing_secret=signing_secret,
                # Socket Mode has no HTTP requests to verify; HTTP mode always verifies.
                request_verification_enabled=signing_secret is not None,
                process_before_response=True,
                authorize=self._authorizer(),
                logger=None,
            )
        finally:
            framework.removeFilter(founded)

    @property
    def _store(self) -> Store:
        return self.pipeline.services.store

    def _now(self) -> datetime:
        return self.pipeline.services.clock.now()

    # --- who we are: asked once, not on the first request's ack path --------------------

    def _http(self) -> aiohttp.ClientSession:
        """One HTTP session for every call to Slack, so connections are kept and reused
        (slack_sdk opens a new one per call when it isn't given one)."""
        session = self.client.session
        if session is None or session.closed:
            session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.slack.timeout_seconds * 2),
                connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=30),
            )
            self.client.session = session
        return session

    async def close(self) -> None:
        session, self.client.session = self.client.session, None
        if session is not None and not session.closed:
            await session.close()

    async def prepare(self) -> None:
        """Ask Slack who this bot is (auth.test); raises SlackApiError on a bad token."""
        self._http()
        response = await self.client.auth_test()
        self._identity = AuthorizeResult.from_auth_test_response(
            auth_test_response=response, bot_token=self.client.token
        )

    def _authorizer(self) -> Callable[..., Awaitable[AuthorizeResult]]:
        # Bolt passes the arguments a function names; a bound method's `self` confuses it.
        async def authorize(
            enterprise_id: str | None = None, team_id: str | None = None
        ) -> AuthorizeResult:
            if self._identity is None:
                await self.prepare()
            assert self._identity is not None
            return self._identity

        return authorize

    # --- listeners: write the delivery down, ack, then work in the background -----------

    async def _on_command(self, ack: Any, body: dict[str, Any]) -> None:
        payload = _command_payload(body)
        trigger = str(body.get("trigger_id") or "")
        if trigger and opens_form(str(payload["text"])):
            # Nothing is done until the form comes back: no inbox item, an empty ack, and
            # the form opened at once (its trigger_id is good for 3 seconds).
            await ack()
            self._background(self._open_declare_form(trigger, payload))
            return
        if self._refuse("command"):
            await ack(response_type="ephemeral", text=OVERLOADED)
            return
        try:
            item = await self._accept(
                f"command:{body.get('trigger_id') or uuid.uuid4().hex}", "command", payload
            )
        except Exception:
            log.exception("slack.accept_failed", kind="command")
            await ack(response_type="ephemeral", text=UNAVAILABLE)
            return
        text = str(payload["text"])
        shown = escape(text if len(text) <= 60 else text[:60] + "…")
        await ack(response_type="ephemeral", text=f"Working on `{shown or 'help'}`…")
        if item is not None:
            self._spawn(self._work(item, "command", payload))

    async def _on_mention(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        # Another bot naming Marvin is not a person asking (and two bots could loop).
        if event.get("bot_id") or event.get("subtype"):
            return
        await self._on_event(body, event)

    async def _on_message(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        # Only direct messages from people: not edits, joins, or other bots (ourselves).
        if event.get("channel_type") != "im" or event.get("subtype") or event.get("bot_id"):
            return
        await self._on_event(body, event)

    async def _on_event(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        # Slack redelivers an event it thinks was lost (same event_id): the inbox keeps one.
        # If the inbox can't be written this raises, Slack gets an error, and tries again.
        event_id = str(body.get("event_id") or f"{event.get('channel')}:{event.get('ts')}")
        payload = _event_payload(event)
        if self._refuse("event"):
            self._background(self._in_thread(payload, OVERLOADED))
            return
        item = await self._accept(f"event:{event_id}", "event", payload)
        if item is None:
            log.info("slack.duplicate_event", event_id=event_id)
            return
        self._spawn(self._work(item, "event", payload))

    async def _on_reaction(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        """The timeline reaction on a message: the message goes on an incident's timeline
        (`marvin.slack.pins`); every other reaction is none of Marvin's business."""
        item = event.get("item") or {}
        if item.get("type") != "message" or not reaction_matches(
            str(event.get("reaction") or ""), self.settings
        ):
            return
        event_id = str(body.get("event_id") or f"{item.get('channel')}:{event.get('event_ts')}")
        payload = {
            "user_id": event.get("user"),
            "channel_id": item.get("channel"),
            "item_ts": item.get("ts"),
            "is_dm": False,
            "text": "",
        }
        if self._refuse("event"):
            return  # a pin is not worth an error message; the person can pin again
        item_id = await self._accept(f"event:{event_id}", "reaction", payload)
        if item_id is not None:
            self._spawn(self._work(item_id, "reaction", payload))

    async def _pin(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        """The reaction's command, read from the message it is on; None: nothing to do."""
        identity = self._identity
        try:
            text = await pin_command(
                self.client,
                self.settings,
                payload,
                bot_user_id=identity.bot_user_id if identity is not None else None,
            )
        except SlackApiError as exc:
            self._api_error("conversations.history", exc)
            await self._post_ephemeral(
                str(payload.get("channel_id") or ""),
                str(payload.get("user_id") or ""),
                f"I couldn't read the message you pinned ({error_name(exc)}), so it isn't on "
                "the incident's timeline; `incident timeline` adds it by hand.",
            )
            return None
        return {**payload, "text": text} if text is not None else None

    async def _on_button(self, ack: Any, body: dict[str, Any]) -> None:
        payload = _action_payload(body)
        action = (body.get("actions") or [{}])[0]
        key = f"action:{payload['user_id']}:{action.get('action_ts') or uuid.uuid4().hex}"
        channel, user = str(payload["channel_id"] or ""), str(payload["user_id"] or "")
        if self._refuse("action"):
            await ack()
            self._background(self._post_ephemeral(channel, user, OVERLOADED))
            return
        try:
            item = await self._accept(key, "action", payload)
        except Exception:
            log.exception("slack.accept_failed", kind="action")
            await ack()
            self._background(self._post_ephemeral(channel, user, UNAVAILABLE))
            return
        await ack()
        if item is not None:
            self._spawn(self._work(item, "action", payload))

    async def _open_declare_form(self, trigger_id: str, payload: dict[str, Any]) -> None:
        view = declare_view(
            self.settings,
            channel_id=str(payload["channel_id"] or ""),
            channel_name=payload.get("channel_name"),
        )
        try:
            await self.client.views_open(trigger_id=trigger_id, view=view)
        except SlackApiError as exc:
            self._api_error("views.open", exc)
            await self._post_ephemeral(
                str(payload["channel_id"] or ""),
                str(payload["user_id"] or ""),
                f"I couldn't open the form ({error_name(exc)}). Type it whole instead: "
                '`incident declare "<what is broken>" --severity 1..4`.',
            )

    async def _on_declare_form(self, ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
        """The form came back: errors next to its fields, or the command, run as typed
        where the form was opened (through the inbox, like any command)."""
        submitted = read_declare(view, self.settings)
        if submitted.text is None:
            await ack(response_action="errors", errors=submitted.errors)
            return
        user = body.get("user") or {}
        channel_id = submitted.channel_id
        payload = {
            "user_id": user.get("id"),
            "user_name": user.get("username") or user.get("name"),
            "channel_id": channel_id,
            "channel_name": submitted.channel_name,
            "is_dm": channel_id.startswith("D"),
            "text": redact_text(submitted.text),
            "response_url": None,  # the answer goes to where the form was opened
        }
        if self._refuse("view"):
            await ack(response_action="errors", errors={TITLE: OVERLOADED})
            return
        try:
            # A form is submitted once: its view id keeps a redelivery from declaring twice.
            key = f"view:{view.get('id') or uuid.uuid4().hex}"
            item = await self._accept(key, "command", payload)
        except Exception:
            log.exception("slack.accept_failed", kind="view")
            await ack(response_action="errors", errors={TITLE: UNAVAILABLE})
            return
        await ack()
        if item is not None:
            self._spawn(self._work(item, "command", payload))

    def _refuse(self, kind: str) -> bool:
        """Too much waiting already: better a "no" now than an answer minutes late."""
        if not self.pool.overloaded():
            return False
        self.metrics.refused.labels(kind=kind).inc()
        log.warning("slack.overloaded", kind=kind, expected_wait=self.pool.expected_wait())
        return True

    async def _accept(self, key: str, kind: str, payload: dict[str, Any]) -> int | None:
        return await self.acceptor.accept(
            key=f"slack:{key}",
            transport=TRANSPORT,
            kind=kind,
            payload=payload,
            now=self._now(),
            owner=self.owner,
            lease=self.lease,
        )

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Queue acknowledged work for the workers."""
        self.pool.submit(lambda: work)

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        """A small side job (telling someone no): not queued behind the work."""
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
        """Wait, up to `grace` seconds, for the acknowledged work to be done."""
        await self.pool.join(grace)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        await self.finisher.flush()

    async def stop(self, grace: float = 20.0) -> None:
        """Shutting down: let acknowledged work finish (it was accepted); what is still
        running after `grace` is stopped and given back to the inbox, undone."""
        await self.pool.stop(grace)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
        await self.finisher.flush()

    async def renew(self) -> int:
        """Tell the other replicas this one is alive and still on what it holds."""
        return await inbox.renew(self._store, self.owner, self._now(), self.lease)

    async def release(self) -> int:
        """Stopping: give back what this replica holds but did not finish."""
        return await inbox.release(self._store, self.owner, self._now())

    async def recover(self, *, everything: bool = False) -> int:
        """Take up work whose replica's lease ran out (a crash, a replica gone; with
        `everything`, all pending work: this is the only replica); tell people about work
        too old to do."""
        redo, expired = await inbox.take_over(
            self._store,
            TRANSPORT,
            owner=self.owner,
            now=self._now(),
            lease=self.lease,
            max_age=REDO_WITHIN,
            everything=everything,
        )
        for item in redo:
            if item.id not in self._working:
                self._spawn(
                    self._work(
                        item.id, item.kind, item.payload, redelivered=True, asked=item.received_at
                    )
                )
        for item in expired:
            channel, user = item.payload.get("channel_id"), item.payload.get("user_id")
            if channel and user:
                await self._post_ephemeral(
                    str(channel),
                    str(user),
                    "I was restarted while working on something you asked and couldn't get "
                    "back to it in time. Check its state (e.g. `feature history`) before "
                    "asking again.",
                )
        if redo or expired:
            log.info("slack.recovered", redone=len(redo), abandoned=len(expired))
        return len(redo)

    # --- the work, from the stored payload (live, or taken up again after a crash) ------

    async def _work(
        self,
        item: int,
        kind: str,
        payload: dict[str, Any],
        *,
        redelivered: bool = False,
        asked: datetime | None = None,
    ) -> None:
        if item in self._working:
            return
        self._working.add(item)
        # One person's commands are worked on in the order they came (`status away`, then
        # `status back`); different people's at once.
        person = str(payload.get("user_id") or "")
        turn = self._turns.setdefault(person, asyncio.Lock())
        try:
            async with turn:
                await self._work_on(item, kind, payload, redelivered, asked)
        finally:
            self._working.discard(item)
            if not turn.locked() and self._turns.get(person) is turn:
                del self._turns[person]

    async def _work_on(
        self,
        item: int,
        kind: str,
        payload: dict[str, Any],
        redelivered: bool,
        asked: datetime | None,
    ) -> None:
        try:
            request_id = f"slack-{item}"  # the same on a redo: one announcement, not two
            if kind == "reaction":
                pinned = await self._pin(payload)
                if pinned is None:
                    self.finisher.finish(item)
                    return
                payload = pinned
            inv = await self._invocation(request_id, payload, redelivered, asked)
            reply = await self._handle(inv)
            if kind == "event":
                await self._in_thread(payload, reply)
            elif kind == "reaction":  # only the one who pinned hears about it
                await self._post_ephemeral(inv.place.id, inv.user_id, reply)
            else:  # a slash command or a button click: answered through its response_url
                await self._answer(payload.get("response_url"), inv, reply)
        except BaseException:
            # Not done: give it back, so recovery takes it up again (within its tries).
            await asyncio.shield(inbox.release_one(self._store, item, self._now()))
            raise
        # Done only once it was worked on and answered.
        self.finisher.finish(item)

    async def _invocation(
        self,
        request_id: str,
        payload: dict[str, Any],
        redelivered: bool = False,
        asked: datetime | None = None,
    ) -> Invocation:
        user_id = str(payload.get("user_id") or "")
        identity_error: str | None = None
        name, email, tz = str(payload.get("user_name") or user_id), None, None
        try:
            info = await self.people.get(user_id)
            name, email, tz = str(payload.get("user_name") or info.name), info.email, info.tz
        except Unavailable as exc:
            # Unknown is not "nobody": the pipeline says Slack didn't answer, if it matters.
            identity_error = exc.service
        text, unresolved = await self._resolve_mentions(str(payload.get("text") or "help"))
        return Invocation(
            request_id=request_id,
            transport=TRANSPORT,
            user_id=user_id,
            user_name=name,
            user_email=email,
            place=Place(
                id=str(payload.get("channel_id") or ""),
                name=payload.get("channel_name"),
                is_dm=bool(payload.get("is_dm")),
            ),
            text=text,
            # When it was asked: for work taken up again, when it was first acknowledged.
            received_at=asked or self._now(),
            unresolved=unresolved,
            identity_error=identity_error,
            redelivered=redelivered,
            timezone=tz,
        )

    async def _resolve_mentions(self, text: str) -> tuple[str, tuple[str, ...]]:
        """Slack's `<@U123>` becomes `@<gitlab username>`: the core sees people, not Slack
        ids. Whom Marvin can't place is named as Slack shows them, and listed."""
        found = {m.group(1): m.group(2) for m in _MENTION.finditer(text)}
        if not found:
            return text, ()
        names: dict[str, str] = {}
        unresolved: list[str] = []
        for chat_id, label in found.items():
            username = await self._gitlab_username(chat_id)
            if username is None:
                shown = f"@{label or chat_id}"
                unresolved.append(shown)
                names[chat_id] = shown
            else:
                names[chat_id] = f"@{username}"
        return _MENTION.sub(lambda m: names[m.group(1)], text), tuple(unresolved)

    async def _gitlab_username(self, chat_id: str) -> str | None:
        async with self._store.transaction() as session:
            account = await account_for_chat_user(session, TRANSPORT, chat_id)
        if account is not None and account.gitlab_username:
            return account.gitlab_username
        try:
            info = await self.people.get(chat_id)
        except Unavailable:
            return None
        directory = self.pipeline.services.directory
        person = await directory.by_email(info.email) if info.email else None
        return person.gitlab_username if person else None

    async def _in_thread(self, payload: dict[str, Any], reply: Reply | str) -> None:
        try:
            await self.client.chat_postMessage(
                channel=str(payload.get("channel_id") or ""),
                thread_ts=payload.get("thread_ts"),
                unfurl_links=False,
                **(reply_message(reply) if isinstance(reply, Reply) else {"text": escape(reply)}),
            )
        except SlackApiError as exc:
            self._api_error("chat.postMessage", exc)

    async def _handle(self, inv: Invocation) -> Reply:
        reply = await self.pipeline.handle(inv)
        self.metrics.command(reply)
        if reply.announcement is not None and self.outbox is not None:
            self.outbox.wake()
        return reply

    async def _answer(self, response_url: Any, inv: Invocation, reply: Reply) -> None:
        """Privately, through the response_url; or, when that has expired or been used up,
        as an ephemeral message where the person is."""
        if not response_url:  # a form's submission: answered where it was opened
            await self._post_ephemeral(inv.place.id, inv.user_id, reply)
            return
        message = {"response_type": "ephemeral", "replace_original": True, **reply_message(reply)}
        try:
            webhook = AsyncWebhookClient(str(response_url), session=self._http())
            response = await webhook.send_dict(message)
        except Exception as exc:
            error = type(exc).__name__
        else:
            # A used-up or expired response_url answers 4xx without raising.
            if response.status_code < 400:
                return
            error = str(response.body or response.status_code)[:100]
        self.metrics.api_errors.labels("slack", "response_url", error).inc()
        log.warning("slack.respond_failed", error=error)
        await self._post_ephemeral(inv.place.id, inv.user_id, reply)

    async def _post_ephemeral(self, channel_id: str, user_id: str, reply: Reply | str) -> None:
        message = reply_message(reply) if isinstance(reply, Reply) else {"text": escape(reply)}
        try:
            await self.client.chat_postEphemeral(channel=channel_id, user=user_id, **message)
        except SlackApiError as exc:
            self._api_error("chat.postEphemeral", exc)

    def _api_error(self, method: str, exc: SlackApiError) -> None:
        error = error_name(exc)
        self.metrics.api_errors.labels("slack", method, error).inc()
        log.warning("slack.api_error", method=method, error=error)
