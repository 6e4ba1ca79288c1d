"""Deliver the outbox's messages to Slack with chat.postMessage: announcements to the
production channel, direct messages to a person."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from marvin.metrics import Metrics
from marvin.outbox import DeliveryError
from marvin.slack.errors import error_name
from marvin.slack.render import announcement_message, escape

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
        await post(self._client, self._metrics, channel=channel, **message)


class SlackDirectMessenger:
    """Direct messages (a watch ended, a reminder): chat.postMessage to the person's user
    id, which Slack delivers in their conversation with the app."""

    def __init__(self, client: AsyncWebClient, metrics: Metrics) -> None:
        self._client = client
        self._metrics = metrics

    async def deliver(self, payload: Mapping[str, Any], idempotency_key: str) -> None:
        text = escape(str(payload["text"]))
        await post(self._client, self._metrics, channel=str(payload["user_id"]), text=text)
