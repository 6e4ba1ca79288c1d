"""Plans that policies judge: the facts of a proposed change, gathered before judging."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from marvin.commands.base import Change, Impact, ProductionChange
from marvin.deviations import DeviationFact
from marvin.facts import Known, Unknown
from marvin.flags import ZERO, Environment, FlagState


@dataclass(frozen=True)
class Neighbour:
    """The same flag in an environment the change is judged against for consistency."""

    env: Environment
    state: FlagState | None
    version: int  # its ledger version when judged: reserving re-checks it
    # True: the changed environment follows this one (must not run ahead of it); False:
    # this one follows the changed environment.
    followed: bool

    def is_on(self) -> bool:
        return self.state is not None and self.state.is_on()


@dataclass(frozen=True)
class FlagPlan(ProductionChange):
    flag: str
    env: Environment
    action: Literal["set", "delete"]
    before: FlagState | None
    after: FlagState | None  # None: the flag is deleted
    exposed_since: datetime | None
    # The ledger version the plan was decided on: reserving re-checks it.
    version: int = 0
    neighbours: tuple[Neighbour, ...] = ()
    backend: str = "local"
    remote: bool = False
    of_time: bool = False
    issue_ref: str | None = None
    deviation: Known[DeviationFact] | Unknown | None = None  # the --issue, looked up
    override_reason: str | None = None
    # --ignore-feature-flag-consistency-check: production may differ from staging.
    skip_consistency: bool = False
    # --rollout-issue: the flag's rollout issue, which gets a note of the change.
    rollout_issue: str | None = None

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

    def impact(self) -> Impact:
        lowers = self.lowers()
        deviation = None
        if self.issue_ref and not lowers:
            deviation = f"by deviation {self.issue_ref}"
        elif self.override_reason:
            deviation = f"overriding the production check ({self.override_reason})"
        return Impact(
            environment=self.env.value,
            lowers=lowers,
            kind="feature-flags",
            target=f"feature flag `{self.flag}`",
            override_reason=self.override_reason,
            deviation=deviation,
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

    @classmethod
    def from_intent(cls, intent: dict[str, Any]) -> FlagPlan:
        def state(raw: Any) -> FlagState | None:
            return FlagState.model_validate(raw) if raw is not None else None

        return cls(
            flag=intent["flag"],
            env=Environment(intent["env"]),
            action=intent["action"],
            before=state(intent["before"]),
            after=state(intent["after"]),
            exposed_since=None,
            backend=intent["backend"],
            remote=True,
            issue_ref=intent.get("issue_ref"),
            override_reason=intent.get("override_reason"),
            rollout_issue=intent.get("rollout_issue"),
        )

    def intent(self) -> dict[str, Any]:
        """What a reconciler needs to settle this change if its outcome is unknown."""
        return {
            "flag": self.flag,
            "env": self.env.value,
            "action": self.action,
            "backend": self.backend,
            "before": self.before.model_dump(mode="json") if self.before else None,
            "after": self.after.model_dump(mode="json") if self.after else None,
            "issue_ref": self.issue_ref,
            "override_reason": self.override_reason,
            "rollout_issue": self.rollout_issue,
        }


@dataclass(frozen=True)
class StatusPlan(Change):
    away: bool
    reason: str | None

    def summary(self) -> str:
        return "status away" if self.away else "status back"
