"""Whether a chat says someone is away. Chats that know (Slack) plug in; others say nothing."""

from __future__ import annotations

from typing import Protocol


class Presence(Protocol):
    async def away(self, user_id: str) -> str | None:
        """Why the chat considers this person unavailable, or None if it doesn't."""
        ...
