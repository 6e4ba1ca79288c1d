from __future__ import annotations

from marvin.policies.base import Decision, GateRequest


class RegistrationPolicy:
    """Only known, active accounts change production."""

    name = "registration"

    def check(self, req: GateRequest) -> Decision:
        account = req.caller.account
        if account.state != "active":
            return Decision.deny("Your Marvin account is blocked; ask a production engineer.")
        if req.spec.production_change and req.caller.person is None:
            email = account.email or "no e-mail known"
            return Decision.deny(
                f"I can't find you in the roles registry ({email}), so I can't tell what "
                "you may change. Ask to be added to the directory, then try again."
            )
        return Decision.allow()
