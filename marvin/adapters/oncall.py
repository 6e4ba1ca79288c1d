"""Who is on call. `file` computes it from a rotation and overrides in config."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Protocol

from marvin.clock import as_utc
from marvin.config import OncallConfig


class Oncall(Protocol):
    name: str

    async def on_call(self, at: datetime) -> str | None:
        """The handle of the production engineer on call at `at`, or None."""
        ...


class FileRotation:
    name = "file"

    def __init__(self, config: OncallConfig) -> None:
        self._config = config

    async def on_call(self, at: datetime) -> str | None:
        at = as_utc(at)
        # Overrides (swaps, cover for holidays) win over the rotation; the latest-added wins.
        for shift in reversed(self._config.overrides):
            if as_utc(shift.starts_at) <= at < as_utc(shift.ends_at):
                return shift.handle
        rotation = self._config.rotation
        if not rotation.people:
            return None
        start = as_utc(rotation.starts_at)
        if at < start:
            return None
        shifts = math.floor((at - start) / timedelta(hours=rotation.shift_hours))
        return rotation.people[shifts % len(rotation.people)]
