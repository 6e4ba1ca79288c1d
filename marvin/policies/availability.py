from __future__ import annotations

from marvin.commands.base import Change, ProductionChange
from marvin.facts import Known
from marvin.policies.base import Decision, Request


class AvailabilityPolicy:
    """Whoever changes production stays to watch it, and a production engineer is on call.

    Except for a change that lowers exposure: that is how an outage is stopped, and it never
    waits for anyone. It goes ahead, and the announcement says who was missing.
    """

    name = "availability"
    mandatory = True
    judges: tuple[type[Change], ...] = (ProductionChange,)

    def check(self, req: Request) -> Decision:
        assert isinstance(req.plan, ProductionChange)
        lowers = req.plan.impact().lowers
        caller, oncall = self._caller(req), self._oncall(req)
        if not lowers:
            for problem in (caller, oncall):
                if problem is not None and problem.blocks:
                    return Decision.deny(problem.reason)
        notes = []
        if caller is not None:
            notes.append(f"@{req.caller.handle} lowered it {caller.note}")
        if oncall is not None:
            notes.append(oncall.note)
        else:
            on_call = req.facts.oncall
            assert isinstance(on_call, Known)
            notes.append(f"On call: @{on_call.value.handle}")
        return Decision.allow(note=". ".join(notes))

    def _caller(self, req: Request) -> _Problem | None:
        hours = f"{req.settings.availability.watch_hours:g}"
        if req.caller.account.away_since is not None:
            return _Problem(
                f"You're marked away, and whoever changes a flag watches it for the next "
                f"{hours} hours. Run `status back` first if you're here.",
                "while marked away",
            )
        presence = req.facts.presence
        if not isinstance(presence, Known):
            # Not knowing whether someone is there is not knowing they are: fail closed.
            return _Problem(
                f"I couldn't tell whether you're around to watch this change "
                f"({presence.shown()}), so I didn't make it. Try again in a minute.",
                f"without my knowing whether they are around ({presence.shown()})",
            )
        if presence.value:
            return _Problem(
                f"Your chat status says you're away ({presence.value}), and whoever changes a "
                f"flag watches it for the next {hours} hours.",
                f"while their chat status says away ({presence.value})",
            )
        return None

    def _oncall(self, req: Request) -> _Problem | None:
        require = req.settings.availability.require_oncall
        oncall = req.facts.oncall
        if not isinstance(oncall, Known):
            return _Problem(
                f"I couldn't tell who is on call ({oncall.shown()}); flag changes wait until "
                "I can.",
                "On call: unknown",
                blocks=require,
            )
        who = oncall.value
        if who.handle is None or who.away:
            why = f"@{who.handle} is marked away" if who.handle else "nobody is on call"
            return _Problem(
                f"No production engineer is available ({why}); flag changes wait until "
                "someone is on call.",
                f"No production engineer is on call ({why})"
                if who.handle
                else "No production engineer is on call",
                blocks=require,
            )
        return None


class _Problem:
    def __init__(self, reason: str, note: str, *, blocks: bool = True) -> None:
        self.reason = reason  # the refusal, for a change that raises exposure
        self.note = note  # the announcement's words, when it goes ahead anyway
        self.blocks = blocks
