"""Whether a chat says someone is away. Chats that know (Slack) plug in; others say nothing."""

from __future__ import annotations

from typing import Protocol


class Presence(Protocol):
    name: str  # the service asked, as a person reads it ("Slack")

    async def away(self, user_id: str) -> str | None:
        """Why the chat considers this person unavailable, or None if it doesn't.

        Raises `Unavailable` when the chat could not be asked: that is not "available"."""
        ...
