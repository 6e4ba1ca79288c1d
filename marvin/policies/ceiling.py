from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal

from marvin.adapters.errors import NotFound, Refused
from marvin.clock import as_utc
from marvin.commands.base import Change
from marvin.commands.plans import FlagPlan
from marvin.facts import Known
from marvin.flags import fmt_percent
from marvin.policies.base import Decision, Request


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f}h"


class CeilingPolicy:
    """New flags expose at most 1% of traffic until they have soaked, or a deviation is approved."""

    name = "ceiling"
    mandatory = False
    judges: tuple[type[Change], ...] = (FlagPlan,)

    def check(self, req: Request) -> Decision:
        plan = req.plan
        assert isinstance(plan, FlagPlan)
        if plan.action != "set":
            return Decision.allow()
        settings = req.settings.flags
        if plan.of_time and not settings.allow_random:
            return Decision.deny(
                "A percentage of time (`--random`) flips the feature within a single request "
                "and is turned off here. Use `--actors`."
            )
        if plan.env.value not in settings.ceiling_environments:
            return Decision.allow()
        broad = self._broad_gates(plan, settings.broad_gates, settings.dogfood_groups)
        if broad:
            if plan.issue_ref:
                return self._deviation(req)
            return Decision.deny(
                f"{', '.join(f'`{g}`' for g in broad)} reaches a whole group at once, which "
                f"counts as more than the ceiling in {plan.env.value}; groups that dogfood "
                f"new features ({', '.join(settings.dogfood_groups) or 'none configured'}) "
                f"are the exception. Link an approved deviation issue with `--issue <ref>` "
                f"(label `{settings.approval_labels[0]}`)."
            )
        ceiling = Decimal(str(settings.ceiling_percent))
        after = plan.exposure_after
        if after <= plan.exposure_before or after <= ceiling:
            return Decision.allow()
        soak = timedelta(hours=settings.soak_hours)
        exposed = req.now - as_utc(plan.exposed_since) if plan.exposed_since else timedelta(0)
        if plan.exposed_since is not None and plan.exposure_before > 0 and exposed >= soak:
            step = after - plan.exposure_before
            largest = Decimal(str(settings.max_step_percent))
            if step <= largest:
                return Decision.allow()
            if plan.issue_ref:
                return self._deviation(req)
            return Decision.deny(
                f"{fmt_percent(plan.exposure_before)} → {fmt_percent(after)} raises `{plan.flag}` "
                f"in {plan.env.value} by {fmt_percent(step)} at once; a step is at most "
                f"{fmt_percent(largest)}. Go up in smaller steps, or link an approved deviation "
                f"issue with `--issue <ref>` (label `{settings.approval_labels[0]}`)."
            )
        if plan.issue_ref:
            return self._deviation(req)
        soaked = (
            f"it has been exposed for {_hours(exposed)} of the {_hours(soak)} soak time"
            if plan.exposed_since
            else "it isn't exposed to any share of traffic yet"
        )
        return Decision.deny(
            f"{fmt_percent(after)} is above the {fmt_percent(ceiling)} ceiling for `{plan.flag}` "
            f"in {plan.env.value}: {soaked}. Go to {fmt_percent(ceiling)} first, or link an "
            f"approved deviation issue with `--issue <ref>` (label "
            f"`{settings.approval_labels[0]}`)."
        )

    @staticmethod
    def _broad_gates(plan: FlagPlan, kinds: Sequence[str], dogfood: Sequence[str]) -> list[str]:
        """The gates this change adds that reach a whole group, outside the dogfooders."""
        before = set(plan.before.actors) if plan.before else set()
        added = set(plan.after.actors) - before if plan.after else set()
        return sorted(
            gate
            for gate in added
            if gate.split(":", 1)[0] in kinds and gate.split(":", 1)[1] not in dogfood
        )

    def _deviation(self, req: Request) -> Decision:
        plan = req.plan
        assert isinstance(plan, FlagPlan)
        settings = req.settings.flags
        labels = settings.approval_labels
        fact = plan.deviation
        if not isinstance(fact, Known):
            if fact is None:
                return Decision.deny(f"I haven't looked up issue {plan.issue_ref}.")
            error = fact.error
            if isinstance(error, NotFound):
                return Decision.deny(f"I can't find issue {plan.issue_ref} in the tracker.")
            if isinstance(error, Refused):
                return Decision.deny(f"{error.shown()}.")
            # Unreachable is not unapproved, but it is not approved either: fail closed.
            return Decision.deny(
                f"I couldn't check deviation issue {plan.issue_ref}: {error.shown()}. "
                "Nothing was changed; try again in a minute."
            )
        issue, binding = fact.value.issue, fact.value.binding
        ask = (
            f"Ask for one with `feature deviate {plan.flag} {fmt_percent(plan.exposure_after)} "
            f'"<why>" --{plan.env.value}` and I\'ll open its issue.'
        )
        if binding is None:
            return Decision.deny(
                f"Issue {issue.ref} isn't a deviation I opened, so it approves nothing: what a "
                f"deviation allows is written by me when it's asked for. {ask}"
            )
        if binding.flag != plan.flag:
            return Decision.deny(
                f"Issue {issue.ref} is the deviation for `{binding.flag}`, not `{plan.flag}`. {ask}"
            )
        if plan.env.value not in binding.environments:
            return Decision.deny(
                f"Issue {issue.ref} approves {binding.allows()}, not {plan.env.value}. {ask}"
            )
        if plan.exposure_after > binding.max_exposure:
            return Decision.deny(
                f"Issue {issue.ref} approves {binding.allows()}; "
                f"{fmt_percent(plan.exposure_after)} is more than that. {ask}"
            )
        if not issue.is_open:
            return Decision.deny(f"Issue {issue.ref} is closed; a deviation needs an open issue.")
        if not set(labels) & set(issue.labels):
            return Decision.deny(
                f"Issue {issue.ref} isn't approved: it needs the label `{labels[0]}`."
            )
        approved = fact.value.approved_at
        if approved is None:
            return Decision.deny(
                f"I can't tell from the tracker when issue {issue.ref} was approved, so I can't "
                "tell whether its approval still holds. Nothing was changed."
            )
        valid = settings.deviation_valid_hours
        if req.now - as_utc(approved) > timedelta(hours=valid):
            return Decision.deny(
                f"Issue {issue.ref} was approved at {as_utc(approved):%Y-%m-%d %H:%M UTC}, more "
                f"than {valid:g} hours ago, so it no longer approves anything. {ask}"
            )
        return Decision.allow(note=f"Above the ceiling by approved deviation {issue.ref}")
