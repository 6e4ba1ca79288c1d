"""The timeline from chat: a reaction (`incidents.timeline_reaction`, :pushpin: by default)
on a message puts that message, its author and its time on an incident's timeline.

Which messages: those in the production channel or the status channel, and those in a
thread under Marvin's own word of an incident (its announcement names `incident N`), which
go on that incident's timeline; the others on the incident declared last that is open.

The transport turns the reaction into the command a person could type, `incident timeline
<text> --at <time> --message <where>`, run as the person who reacted: the core never sees
Slack, and the message goes on once however often it is pinned (`--message`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from marvin.config import Settings

_INCIDENT = re.compile(r"\bincident (\d{1,9})\b", re.IGNORECASE)
# Characters that open a quoted word when a word starts with them (marvin.grammar): a
# message's own quotes must stay letters, so at a word's start they become closing ones.
_OPENERS = {'"': "”", "'": "’", "“": "”", "‘": "’", "„": "”"}
MAX_TEXT = 1500


def reaction_matches(reaction: str, settings: Settings) -> bool:
    # Skin tones come as `name::skin-tone-2`.
    return reaction.split("::", 1)[0] == settings.incidents.timeline_reaction


def _as_words(text: str) -> str:
    # Invisible characters (emoji joiners, bidi marks) are refused in commands: dropped.
    visible = "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cf") or c.isspace())
    words = " ".join(visible.split()).split(" ")
    kept = [(_OPENERS.get(w[0], w[0]) + w[1:]) if w else w for w in words]
    line = " ".join(kept)
    return line if len(line) <= MAX_TEXT else line[: MAX_TEXT - 1] + "…"


async def _message(client: AsyncWebClient, channel: str, ts: str) -> Mapping[str, Any] | None:
    """The message at `ts`: from the channel's history, or, a reply, from its thread."""
    history = await client.conversations_history(
        channel=channel, latest=ts, oldest=ts, inclusive=True, limit=1
    )
    for message in history.get("messages") or []:
        if message.get("ts") == ts:
            return dict(message)
    replies = await client.conversations_replies(channel=channel, ts=ts, limit=200)
    for message in replies.get("messages") or []:
        if message.get("ts") == ts:
            return dict(message)
    return None


async def _thread_incident(
    client: AsyncWebClient, channel: str, message: Mapping[str, Any], bot_user_id: str | None
) -> int | None:
    """The incident a thread is about: the one Marvin's message at its top names."""
    thread = message.get("thread_ts")
    if not thread:
        return None
    history = await client.conversations_history(
        channel=channel, latest=thread, oldest=thread, inclusive=True, limit=1
    )
    for parent in history.get("messages") or []:
        mine = parent.get("bot_id") or (bot_user_id and parent.get("user") == bot_user_id)
        if parent.get("ts") == thread and mine:
            found = _INCIDENT.search(str(parent.get("text") or ""))
            return int(found.group(1)) if found else None
    return None


async def pin_command(
    client: AsyncWebClient,
    settings: Settings,
    payload: Mapping[str, Any],
    *,
    bot_user_id: str | None,
) -> str | None:
    """The command for a reaction (stored in the inbox as `payload`), or None when the
    message is not one for an incident's timeline (or is gone)."""
    channel, ts = str(payload.get("channel_id") or ""), str(payload.get("item_ts") or "")
    if not channel or not ts:
        return None
    message = await _message(client, channel, ts)
    if message is None or message.get("subtype") in ("message_deleted", "tombstone"):
        return None
    incident = await _thread_incident(client, channel, message, bot_user_id)
    watched = {settings.production_channel.id, settings.incidents.status_channel}
    if incident is None and channel not in watched:
        return None
    author = message.get("user")
    said = _as_words(str(message.get("text") or ""))
    if not said:
        return None
    try:
        at = datetime.fromtimestamp(float(ts), UTC)
    except ValueError:
        return None
    who = f"<@{author}>" if author else "someone"
    words = [
        "incident",
        "timeline",
        "--at",
        f"{at:%Y-%m-%dT%H:%M:%S}",
        "--message",
        f"slack:{channel}:{ts}",
    ]
    if incident is not None:
        words += ["--incident", str(incident)]
    # `--` ends the options: what was said is taken as it is, even a word like `--force`.
    return " ".join([*words, "--", f"{who} said: {said}"])
