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


Message = Mapping[str, Any]
# Slack's own advice for a page of conversations.replies; a thread longer than that is paged.
REPLIES_PAGE = 200


async def _message(
    client: AsyncWebClient, channel: str, ts: str
) -> tuple[Message | None, Message | None]:
    """The message at `ts` and the top of its thread (None when it is in none): from the
    channel's history, or, a reply, from its thread, each read once."""
    history = await client.conversations_history(
        channel=channel, latest=ts, oldest=ts, inclusive=True, limit=1
    )
    for message in history.get("messages") or []:
        if message.get("ts") == ts:
            thread = message.get("thread_ts")
            if not thread or thread == ts:  # alone, or the top of its own thread
                return dict(message), (dict(message) if thread else None)
            # A reply also sent to the channel: its thread's top is read below.
            return dict(message), (await _thread(client, channel, str(thread), None))[1]
    return await _thread(client, channel, ts, ts)


async def _thread(
    client: AsyncWebClient, channel: str, ts: str, wanted: str | None
) -> tuple[Message | None, Message | None]:
    """From the thread `ts` is in: the message `wanted` (None: none), and the thread's top,
    paging through the replies as far as it takes to find them."""
    found: Message | None = None
    top: Message | None = None
    cursor: str | None = None
    while True:
        replies = await client.conversations_replies(
            channel=channel, ts=ts, limit=REPLIES_PAGE, cursor=cursor
        )
        for message in replies.get("messages") or []:
            if top is None and message.get("ts") == message.get("thread_ts"):
                top = dict(message)
            if wanted is not None and message.get("ts") == wanted:
                found = dict(message)
        cursor = (replies.get("response_metadata") or {}).get("next_cursor") or None
        if (top is not None and (wanted is None or found is not None)) or cursor is None:
            return found, top


def _thread_incident(top: Message | None, bot_user_id: str | None) -> int | None:
    """The incident a thread is about: the one Marvin's message at its top names."""
    if top is None:
        return None
    mine = top.get("bot_id") or (bot_user_id and top.get("user") == bot_user_id)
    if not mine:
        return None
    found = _INCIDENT.search(str(top.get("text") or ""))
    return int(found.group(1)) if found else None


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
    message, top = await _message(client, channel, ts)
    if message is None or message.get("subtype") in ("message_deleted", "tombstone"):
        return None
    incident = _thread_incident(top, bot_user_id)
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
