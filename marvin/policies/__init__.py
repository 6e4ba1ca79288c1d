"""The policies, in the one order they are evaluated. The first deny wins.

The order follows GitLab's own ChatOps: who and where first (the gates, before anything is
gathered from outside), then the production check, then consistency, then the rollout
rules, and last whether people are there to watch.
"""

from __future__ import annotations

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

__all__ = ["GATES", "POLICIES", "Decision", "Gate", "GateRequest", "Policy", "Request"]
