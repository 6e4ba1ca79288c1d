"""Deploy slots: who may book which environment, and what a window may not collide with.

A pure function of the plan, the caller and the gathered facts, so the scheduler judges a
slot again when it comes due, on behalf of whoever booked it, with the same code (and the
same mandatory policies after it, `marvin.policies.judge_all`).
Order: who, then the environment's lock, freezes (Marvin's and GitLab's), incidents, and
last the other slots. Everything but a collision with another slot may be overridden by a
production engineer with a reason (`--ignore-production-check`, gated by the roles policy).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from marvin.accounts import Caller
from marvin.clock import as_utc
from marvin.commands.base import Change
from marvin.config import Settings
from marvin.deploys import freezes
from marvin.deploys.plans import AdminPlan, SlotPlan
from marvin.facts import OpenIncident, Unknown
from marvin.policies.base import Decision, Request
from marvin.policies.roles import PRODUCTION_ROLE

_WHEN = "%Y-%m-%d %H:%M UTC"


def judge(
    plan: SlotPlan | AdminPlan,
    caller: Caller,
    settings: Settings,
    incidents: Sequence[OpenIncident],
) -> Decision:
    """`incidents`: the open incidents, as every production change gathers them."""
    if isinstance(plan, AdminPlan):
        return _admin(plan, caller, settings)
    who = _who(plan, caller, settings)
    if who is not None:
        return Decision.deny(who)
    if plan.action in ("cancel", "done"):
        return Decision.allow()
    blocks = _blocks(plan, settings, incidents)
    overlap = _overlap(plan)
    if blocks and not plan.override_reason:
        return Decision.deny(
            f"{plan.environment.capitalize()} takes no deploys then: {'; '.join(blocks)}. A "
            'production engineer can override with `--ignore-production-check "<reason>"`.'
        )
    if overlap is not None:
        return Decision.deny(overlap)
    requests = plan.facts.change_requests
    notes = []
    if isinstance(requests, Unknown):
        return Decision.deny(
            f"{plan.environment.capitalize()} deploys need an open change request, and I "
            f"couldn't look for one ({requests.shown()}). Try again in a minute."
        )
    if requests is not None:
        label = settings.deploys.change_request_label
        if not requests.value:
            return Decision.deny(
                f"{plan.environment.capitalize()} deploys need an open change request: an "
                f"open issue labelled `{label}` with {plan.version} in its title. I found none."
            )
        notes.append(f"Change request {', '.join(requests.value)}")
    if blocks:
        notes.append(f"Deploy check overridden ({'; '.join(blocks)}): {plan.override_reason}")
    return Decision.allow(note=". ".join(notes) if notes else None)


def _admin(plan: AdminPlan, caller: Caller, settings: Settings) -> Decision:
    role = settings.deploys.release_role
    if caller.has_role(role) or caller.has_role(PRODUCTION_ROLE):
        return Decision.allow()
    return Decision.deny(
        f"`{plan.action}` is for release managers (the `{role}` role) and production "
        f"engineers (the `{PRODUCTION_ROLE}` role)."
    )


def _who(plan: SlotPlan, caller: Caller, settings: Settings) -> str | None:
    role = settings.deploys.release_role
    release = caller.has_role(role)
    if plan.action in ("cancel", "done"):
        if caller.handle == plan.booked_by or release or caller.has_role(PRODUCTION_ROLE):
            return None
        return (
            f"Slot #{plan.slot_id} is @{plan.booked_by}'s: only they, a release manager or a "
            f"production engineer may {plan.action} it."
        )
    if plan.environment in settings.deploys.protected and not release:
        return (
            f"Deploys to {plan.environment} are booked and started by release managers (the "
            f"`{role}` role) only. Staging is open to anyone registered."
        )
    return None


def _blocks(plan: SlotPlan, settings: Settings, incidents: Sequence[OpenIncident]) -> list[str]:
    facts = plan.facts
    start, end = plan.starts_at, plan.ends_at
    found: list[str] = []
    if facts.lock is not None:
        reason, by = facts.lock
        found.append(f"it is locked by @{by}: {reason}")
    for window in facts.freezes:
        found.append(f"{window.what} lasts {_span(window.starts_at, window.ends_at)}")
    if isinstance(facts.gitlab, Unknown):
        # Not knowing whether GitLab freezes it is not knowing it is open: fail closed.
        found.append(f"I couldn't read GitLab's freeze periods ({facts.gitlab.shown()})")
    elif facts.gitlab is not None:
        for period in facts.gitlab.value:
            try:
                hit = freezes.overlapping(period, start, end)
            except freezes.Unreadable as exc:
                # A period Marvin can't evaluate may freeze this window: fail closed.
                found.append(f"I can't evaluate {freezes.describe(period)}: {exc}")
                continue
            if hit is not None:
                found.append(f"{hit.what} lasts {_span(hit.starts_at, hit.ends_at)}")
    # An incident holds the environments with production's traffic (the protected ones).
    if plan.environment in settings.deploys.protected:
        found += [
            f"incident {i.ref} (S{i.severity}) “{i.title}” blocks deployments"
            for i in incidents
            if i.severity in settings.change_lock.incident_severities
        ]
    return found


def _overlap(plan: SlotPlan) -> str | None:
    if not plan.facts.others:
        return None
    listed = "; ".join(
        f"#{s.id} {s.version} by @{s.booked_by}, {_span(s.starts_at, s.ends_at)}"
        for s in plan.facts.others
    )
    return (
        f"That window collides with another {plan.environment} slot: {listed}. Pick a time "
        "after it, or join the queue (`deploy queue "
        f"{plan.environment}`)."
    )


def _span(start: datetime, end: datetime) -> str:
    return f"{as_utc(start):{_WHEN}} to {as_utc(end):{_WHEN}}"


class DeployPolicy:
    name = "deploys"
    mandatory = False
    judges: tuple[type[Change], ...] = (SlotPlan, AdminPlan)

    def check(self, req: Request) -> Decision:
        plan = req.plan
        assert isinstance(plan, SlotPlan | AdminPlan)
        return judge(plan, req.caller, req.settings, req.facts.incidents)
