"""Plans that policies judge: the facts of a proposed change, gathered under lock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

from marvin.commands.base import Change
from marvin.flags import ZERO, Environment, FlagState


@dataclass(frozen=True)
class FlagPlan(Change):
    flag: str
    env: Environment
    action: Literal["set", "delete"]
    before: FlagState | None
    after: FlagState | None  # None: the flag is deleted
    other: FlagState | None  # the same flag in the other environment
    exposed_since: datetime | None
    oncall: str | None
    oncall_away: bool = False
    of_time: bool = False
    issue_ref: str | None = None
    override_reason: str | None = None

    @property
    def exposure_before(self) -> Decimal:
        return self.before.exposure() if self.before else ZERO

    @property
    def exposure_after(self) -> Decimal:
        return self.after.exposure() if self.after else ZERO

    def lowers(self) -> bool:
        """True when nobody who lacked the feature gets it: the safe direction."""
        if self.after is None:
            return False  # a deleted flag falls back to its code default, which may be on
        before = self.before or FlagState()
        return (
            self.exposure_after <= self.exposure_before
            and set(self.after.actors) <= set(before.actors)
            and (before.enabled or not self.after.enabled)
        )

    def summary(self) -> str:
        return f"feature {self.action} {self.flag} ({self.env.value})"

    def confirmation_reason(self) -> str | None:
        if self.action == "delete":
            return f"deleting `{self.flag}` in {self.env.value} can't be undone"
        if self.issue_ref and not self.lowers():
            return (
                f"`{self.flag}` goes to {self.after.describe() if self.after else 'off'} in "
                f"{self.env.value} by deviation {self.issue_ref}"
            )
        return None


@dataclass(frozen=True)
class StatusPlan(Change):
    away: bool
    reason: str | None

    def summary(self) -> str:
        return "status away" if self.away else "status back"
