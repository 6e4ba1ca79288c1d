from __future__ import annotations

from marvin.policies.base import Decision, GateRequest


class ChannelPolicy:
    """Production changes happen in the production channel, in front of everyone."""

    name = "channel"

    def check(self, req: GateRequest) -> Decision:
        if not req.spec.production_change:
            return Decision.allow()
        channel = req.settings.production_channel
        place = req.invocation.place
        # By id, not name: a channel can be renamed, or another one given the same name.
        if not place.is_dm and place.id == channel.id:
            return Decision.allow()
        return Decision.deny(
            # Not "changes production": staging holds production data and is changed in
            # the open too, and the refusal must be true for both.
            f"`{req.spec.name}` is a change, and changes (to staging as to production) run "
            f"only in #{channel.name}, where everyone can see them. You're in {place.label()}."
        )
