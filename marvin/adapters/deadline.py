"""Every outside call runs under a deadline from config, and a late answer is `Unavailable`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from marvin.adapters.errors import OutcomeUnknown, Unavailable

T = TypeVar("T")


async def within(seconds: float, service: str, call: Awaitable[T], *, changes: bool = False) -> T:
    """`call`'s result, or `Unavailable` after `seconds`.

    `changes` marks a call that changes something: when it times out, nobody knows whether
    the change was made, and the error says so (`OutcomeUnknown`).
    """
    try:
        return await asyncio.wait_for(call, timeout=seconds)
    except TimeoutError:
        error = OutcomeUnknown if changes else Unavailable
        raise error(service, f"did not answer within {seconds:g} s") from None
