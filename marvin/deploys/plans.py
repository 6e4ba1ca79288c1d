"""What a deploy command proposes, with the facts it was gathered on, for the policies."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from marvin.adapters.gitlab_deploys import FreezePeriod
from marvin.commands.base import Change, Impact, ProductionChange
from marvin.deploys.freezes import Window
from marvin.facts import Known, Unknown


@dataclass(frozen=True)
class SlotView:
    id: int
    version: str
    starts_at: datetime
    ends_at: datetime
    booked_by: str


@dataclass(frozen=True)
class DeployFacts:
    """Everything a slot's window is judged by, gathered with no transaction open."""

    others: tuple[SlotView, ...]  # the environment's other slots in the window
    freezes: tuple[Window, ...]  # Marvin's freezes of the environment in the window
    # GitLab's freeze periods (None: no deploys.gitlab_project, or not for this environment).
    gitlab: Known[tuple[FreezePeriod, ...]] | Unknown | None
    lock: tuple[str, str] | None  # (reason, by) when the environment is locked
    # Open incidents are not here: every production change gathers them (`marvin.facts`).
    # The open change requests for the version (None: none are required here).
    change_requests: Known[tuple[str, ...]] | Unknown | None = None


SlotAction = Literal["schedule", "move", "cancel", "start", "done"]


@dataclass(frozen=True)
class SlotPlan(ProductionChange):
    action: SlotAction
    environment: str
    version: str
    starts_at: datetime
    ends_at: datetime
    booked_by: str
    facts: DeployFacts
    slot_id: int | None = None
    override_reason: str | None = None
    note: str | None = None
    failed: str | None = None  # `deploy done --failed "<why>"`
    state: str | None = None  # the slot's state it was planned on: reserve re-checks it

    def impact(self) -> Impact:
        # Booking, moving or cancelling a window changes nothing running; starting does.
        return Impact(
            environment=self.environment,
            lowers=self.action != "start",
            kind="deployments",
            target=f"deploy of {self.version} to {self.environment}",
            override_reason=self.override_reason,
            deviation=(
                f"deploy checks overridden: {self.override_reason}"
                if self.override_reason
                else None
            ),
        )

    def summary(self) -> str:
        ref = f" #{self.slot_id}" if self.slot_id else ""
        return f"deploy {self.action}{ref}: {self.version} to {self.environment}"


@dataclass(frozen=True)
class AdminPlan(ProductionChange):
    """A lock, an unlock, a freeze added or removed: release managers and production."""

    action: Literal["lock", "unlock", "freeze add", "freeze remove"]
    environment: str
    reason: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    freeze_id: int | None = None

    def impact(self) -> Impact:
        return Impact(
            environment=self.environment,
            lowers=True,  # stopping deploys exposes nothing; lifting a stop starts none
            kind="deployments",
            target=f"deploys to {self.environment}",
        )

    def summary(self) -> str:
        return f"{self.action} {self.environment}"


@dataclass(frozen=True)
class QueuePlan(Change):
    action: Literal["join", "leave"]
    environment: str
    version: str | None = None

    def summary(self) -> str:
        return f"deploy queue {self.action} {self.environment}"
