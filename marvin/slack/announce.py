"""Deliver the outbox's messages to Slack with chat.postMessage: announcements to the
production channel, direct messages to a person."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from marvin.metrics import Metrics
from marvin.outbox import ANNOUNCE, DeliveryError, Sink
from marvin.slack.errors import error_name
from marvin.slack.render import announcement_message, escape

log = structlog.get_logger(__name__)

# Errors that another try cannot fix; the message stays in the outbox, marked failed.
PERMANENT = {
    "channel_not_found",
    "is_archived",
    "msg_too_long",
    "no_text",
    "invalid_blocks",
    "not_in_channel",
    "user_not_found",
}
# The message metadata that names the outbox messages a post carries, so that a post whose
# answer was lost (a crash, a dropped connection) is found in the channel's history before
# it is sent again. Slack returns it with `include_all_metadata`.
EVENT_TYPE = "marvin_outbox"
# How far back, before the message was written, its post is looked for (clocks differ).
LOOK_BACK = timedelta(minutes=5)
HISTORY_PAGE = 200
HISTORY_PAGES = 5


async def post(client: AsyncWebClient, metrics: Metrics, **message: Any) -> None:
    """chat.postMessage, its failures as the outbox understands them."""
    try:
        await client.chat_postMessage(unfurl_links=False, unfurl_media=False, **message)
    except SlackApiError as exc:
        error = error_name(exc)
        metrics.api_errors.labels("slack", "chat.postMessage", error).inc()
        if exc.response.status_code == 429:
            retry_after = exc.response.headers.get("Retry-After")
            raise DeliveryError(f"rate limited: {error}", after=float(retry_after or 1)) from None
        raise DeliveryError(error, retry=error not in PERMANENT) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        metrics.api_errors.labels("slack", "chat.postMessage", error_name(exc)).inc()
        raise DeliveryError(f"Slack unreachable: {type(exc).__name__}") from None


class SlackAnnouncer:
    # More than this in one message stops being readable; the rest go in the next one.
    max_batch = 10

    def __init__(self, client: AsyncWebClient, metrics: Metrics) -> None:
        self._client = client
        self._metrics = metrics

    async def deliver(self, payload: Mapping[str, Any], idempotency_key: str) -> None:
        await self.deliver_batch([(idempotency_key, payload)])

    async def deliver_batch(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        channel = str(items[0][1]["channel_id"])
        message = announcement_message([payload for _, payload in items])
        metadata = {
            "event_type": EVENT_TYPE,
            "event_payload": {"outbox_keys": " ".join(key for key, _ in items)},
        }
        await post(self._client, self._metrics, channel=channel, metadata=metadata, **message)

    async def arrived(
        self, items: Sequence[tuple[str, Mapping[str, Any]]], since: datetime
    ) -> set[str]:
        """Which of these (tried before) are in their channel already, by the keys their
        post carries in its metadata: the channel's history since they were written."""
        wanted: dict[str, set[str]] = {}
        for key, payload in items:
            wanted.setdefault(str(payload["channel_id"]), set()).add(key)
        oldest = f"{(since - LOOK_BACK).timestamp():.6f}"
        found: set[str] = set()
        for channel, keys in wanted.items():
            found |= keys & await self._posted_keys(channel, oldest)
        return found

    async def _posted_keys(self, channel: str, oldest: str) -> set[str]:
        keys: set[str] = set()
        cursor: str | None = None
        for _ in range(HISTORY_PAGES):
            try:
                page = await self._client.conversations_history(
                    channel=channel,
                    oldest=oldest,
                    limit=HISTORY_PAGE,
                    include_all_metadata=True,
                    cursor=cursor,
                )
            except SlackApiError as exc:
                error = error_name(exc)
                self._metrics.api_errors.labels("slack", "conversations.history", error).inc()
                if error in ("missing_scope", "not_in_channel", "channel_not_found"):
                    # The history can't be read (an app installed before it asked for
                    # channels:history): an announcement doubled beats one never sent.
                    log.warning("slack.history_unreadable", channel=channel, error=error)
                    return set()
                raise DeliveryError(f"couldn't read the channel's history: {error}") from None
            except (aiohttp.ClientError, TimeoutError) as exc:
                self._metrics.api_errors.labels(
                    "slack", "conversations.history", error_name(exc)
                ).inc()
                raise DeliveryError(f"Slack unreachable: {type(exc).__name__}") from None
            for message in page.get("messages") or []:
                metadata = message.get("metadata") if isinstance(message, dict) else None
                if isinstance(metadata, dict) and metadata.get("event_type") == EVENT_TYPE:
                    payload = metadata.get("event_payload")
                    if isinstance(payload, dict):
                        keys.update(str(payload.get("outbox_keys", "")).split())
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not page.get("has_more") or not cursor:
                break
        return keys


class SlackDirectMessenger:
    """Direct messages (a watch ended, a reminder): chat.postMessage to the person's user
    id, which Slack delivers in their conversation with the app."""

    def __init__(self, client: AsyncWebClient, metrics: Metrics) -> None:
        self._client = client
        self._metrics = metrics

    async def deliver(self, payload: Mapping[str, Any], idempotency_key: str) -> None:
        text = escape(str(payload["text"]))
        await post(self._client, self._metrics, channel=str(payload["user_id"]), text=text)


def chat_sinks(client: AsyncWebClient, metrics: Metrics) -> dict[str, Sink]:
    """What Slack delivers from the outbox: the production channel's announcements and the
    direct messages (watch reminders) of people who use Marvin through Slack."""
    from marvin.slack.app import TRANSPORT  # the transport imports this module
    from marvin.watches import dm_kind

    return {
        ANNOUNCE: SlackAnnouncer(client, metrics),
        dm_kind(TRANSPORT): SlackDirectMessenger(client, metrics),
    }
