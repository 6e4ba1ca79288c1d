"""The policies, in the one order they are evaluated. The first deny wins.

The order follows GitLab's own ChatOps: who and where first (the gates, before anything is
gathered from outside), then the production check, then consistency, then the rollout
rules, and last whether people are there to watch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import structlog

from marvin.policies.availability import AvailabilityPolicy
from marvin.policies.base import Decision, Gate, GateRequest, Policy, Request
from marvin.policies.ceiling import CeilingPolicy
from marvin.policies.change_lock import ChangeLockPolicy
from marvin.policies.channel import ChannelPolicy
from marvin.policies.consistency import ConsistencyPolicy
from marvin.policies.deploys import DeployPolicy
from marvin.policies.registration import RegistrationPolicy
from marvin.policies.registry import RegistryFreshnessPolicy
from marvin.policies.roles import RolePolicy

GATES: tuple[Gate, ...] = (
    ChannelPolicy(),
    RegistrationPolicy(),
    RolePolicy(),
)

POLICIES: tuple[Policy, ...] = (
    DeployPolicy(),
    ChangeLockPolicy(),
    RegistryFreshnessPolicy(),
    ConsistencyPolicy(),
    CeilingPolicy(),
    AvailabilityPolicy(),
)

log = structlog.get_logger(__name__)

FAILED_CLOSED = "A safety check could not run, so I stopped here; nothing was changed."
R = TypeVar("R")


def decide(name: str, check: Callable[[R], Decision], req: R) -> Decision:
    try:
        decision = check(req)
    except Exception:
        # A check that cannot run must not let the change through (fail closed).
        log.exception("policy.failed", policy=name)
        return Decision.deny(FAILED_CLOSED)
    return decision


def judge_all(policies: Sequence[Policy], request: Request) -> list[str] | tuple[str, str]:
    """The notes of every policy that allowed, or (policy, reason) of the first deny.

    One loop for every production change, whether a person asked for it (the pipeline) or
    it comes due by itself (a deploy slot's start), so neither can skip a mandatory rule."""
    notes: list[str] = []
    for policy in policies:
        if not isinstance(request.plan, policy.judges):
            if policy.mandatory:
                # A change this policy doesn't understand is a change it can't allow.
                return policy.name, (
                    f"I can't check this change against the {policy.name} rule, so I "
                    "didn't make it."
                )
            continue
        decision = decide(policy.name, policy.check, request)
        if not decision.allowed:
            log.info("command.denied", command=request.spec.name, policy=policy.name)
            return policy.name, decision.reason
        if decision.note:
            notes.append(decision.note)
    return notes


__all__ = [
    "FAILED_CLOSED",
    "GATES",
    "POLICIES",
    "Decision",
    "Gate",
    "GateRequest",
    "Policy",
    "Request",
    "decide",
    "judge_all",
]
