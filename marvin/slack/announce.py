"""Deliver announcements from the outbox with chat.postMessage."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from marvin.metrics import Metrics
from marvin.outbox import DeliveryError
from marvin.slack.errors import error_name
from marvin.slack.render import announcement_message

# Errors that another try cannot fix; the message stays in the outbox, marked failed.
PERMANENT = {
    "channel_not_found",
    "is_archived",
    "msg_too_long",
    "no_text",
    "invalid_blocks",
    "not_in_channel",
}


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
        payloads = [payload for _, payload in items]
        message = announcement_message(payloads)
        try:
            await self._client.chat_postMessage(
                channel=channel, unfurl_links=False, unfurl_media=False, **message
            )
        except SlackApiError as exc:
            error = error_name(exc)
            self._metrics.api_errors.labels("slack", "chat.postMessage", error).inc()
            retry_after = exc.response.headers.get("Retry-After") if exc.response else None
            if exc.response.status_code == 429:
                raise DeliveryError(
                    f"rate limited: {error}", after=float(retry_after or 1)
                ) from None
            raise DeliveryError(error, retry=error not in PERMANENT) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._metrics.api_errors.labels("slack", "chat.postMessage", error_name(exc)).inc()
            raise DeliveryError(f"Slack unreachable: {type(exc).__name__}") from None
