"""Who a Slack user is (users.info) and whether Slack says they're away, cached briefly."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from marvin.adapters.deadline import within
from marvin.adapters.errors import Unavailable
from marvin.clock import Clock
from marvin.config import SlackConfig
from marvin.metrics import Metrics
from marvin.slack.errors import error_name

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class SlackUser:
    id: str
    name: str
    email: str | None
    status_text: str
    status_emoji: str
    status_expiration: int
    deleted: bool
    is_bot: bool
    tz: str | None = None  # the IANA zone of the person's Slack profile


class _TTLCache:
    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._items: dict[str, tuple[float, Any]] = {}

    def get(self, key: str) -> Any | None:
        item = self._items.get(key)
        if item is None or time.monotonic() - item[0] > self._seconds:
            return None
        return item[1]

    def put(self, key: str, value: Any) -> None:
        if len(self._items) > 10_000:
            self._items.clear()  # a crude bound: the cache only saves API calls
        self._items[key] = (time.monotonic(), value)


SERVICE = "Slack"


class SlackPeople:
    def __init__(self, client: AsyncWebClient, config: SlackConfig, metrics: Metrics) -> None:
        self._client = client
        self._metrics = metrics
        self._timeout = config.timeout_seconds
        self._cache = _TTLCache(config.people_cache_seconds)

    async def get(self, user_id: str, *, fresh: bool = False) -> SlackUser:
        """Who `user_id` is; `fresh` asks Slack even when a cached answer exists.

        Raises `Unavailable` when Slack did not answer in time or refused."""
        cached: SlackUser | None = None if fresh else self._cache.get(user_id)
        if cached is not None:
            return cached
        try:
            response = await within(self._timeout, SERVICE, self._client.users_info(user=user_id))
        except (SlackApiError, aiohttp.ClientError, Unavailable) as exc:
            self._metrics.api_errors.labels("slack", "users.info", error_name(exc)).inc()
            log.warning("slack.users_info_failed", user=user_id, error=error_name(exc))
            raise Unavailable(SERVICE, f"did not tell me ({error_name(exc)})") from exc
        raw = response.get("user") or {}
        profile = raw.get("profile") or {}
        user = SlackUser(
            id=user_id,
            name=str(raw.get("name") or profile.get("display_name") or user_id),
            email=profile.get("email"),
            status_text=str(profile.get("status_text") or ""),
            status_emoji=str(profile.get("status_emoji") or ""),
            status_expiration=int(profile.get("status_expiration") or 0),
            deleted=bool(raw.get("deleted")),
            is_bot=bool(raw.get("is_bot")),
            tz=str(raw["tz"]) if raw.get("tz") else None,
        )
        self._cache.put(user_id, user)
        return user


class SlackPresence:
    """Away when Slack says so: presence away, in do-not-disturb, or an out-of-office status.

    A bot token sees another person's scheduled do-not-disturb window but not their manual
    snooze (dnd.info only shows snooze fields to the person themselves). When Slack cannot
    be asked in time this raises `Unavailable`: not knowing is not "available", and the
    availability policy decides what that means.
    """

    name = SERVICE

    def __init__(
        self,
        client: AsyncWebClient,
        people: SlackPeople,
        config: SlackConfig,
        clock: Clock,
        metrics: Metrics,
    ) -> None:
        self._client = client
        self._people = people
        self._config = config
        self._clock = clock
        self._metrics = metrics
        self._cache = _TTLCache(config.presence_cache_seconds)

    async def away(self, user_id: str) -> str | None:
        cached: tuple[str | None] | None = self._cache.get(user_id)
        if cached is not None:
            return cached[0]
        # One deadline for the whole question (presence, do-not-disturb, status).
        reason = await within(self._config.timeout_seconds, SERVICE, self._ask(user_id))
        self._cache.put(user_id, (reason,))
        return reason

    async def _ask(self, user_id: str) -> str | None:
        now = self._clock.now().timestamp()
        try:
            presence = await self._client.users_getPresence(user=user_id)
            if presence.get("presence") == "away":
                return "Slack shows you as away"
            dnd = await self._client.dnd_info(user=user_id)
            if dnd.get("snooze_enabled"):
                return "notifications are snoozed"
            start, end = dnd.get("next_dnd_start_ts"), dnd.get("next_dnd_end_ts")
            if dnd.get("dnd_enabled") and start and end and start <= now < end:
                return "in do-not-disturb hours"
        except (SlackApiError, aiohttp.ClientError) as exc:
            self._metrics.api_errors.labels("slack", "presence", error_name(exc)).inc()
            log.warning("slack.presence_failed", user=user_id, error=error_name(exc))
            raise Unavailable(
                SERVICE, f"did not say whether you're away ({error_name(exc)})"
            ) from exc
        # The status is part of what this cache keeps (presence_cache_seconds), so it is
        # read afresh here rather than from the longer-lived people cache.
        user = await self._people.get(user_id, fresh=True)
        if user.status_expiration and user.status_expiration <= now:
            return None
        text = user.status_text.lower()
        if user.status_emoji in self._config.away_status_emojis or any(
            word in text for word in (w.lower() for w in self._config.away_status_texts)
        ):
            return f"status {user.status_emoji} {user.status_text}".strip()
        return None
