from __future__ import annotations

from marvin.accounts import Caller
from marvin.policies.base import Decision, GateRequest
from marvin.spec import Needs

# Production ssh access (support, release managers) is not a grant that changes anything
# here: it does not let anyone delete flags or override the production check.
PRODUCTION_ROLE = "production"


def meets(caller: Caller, needs: Needs) -> bool:
    """A grant is held directly or through the `production` role; a role only itself."""
    if needs.kind == "role":
        return caller.has_role(needs.name)
    return caller.has_grant(needs.name) or caller.has_role(PRODUCTION_ROLE)


class RolePolicy:
    """Each command's requirement is declared on its spec, where it cannot drift away."""

    name = "roles"

    def check(self, req: GateRequest) -> Decision:
        caller = req.caller
        needs = req.spec.needs
        if needs is not None and not meets(caller, needs):
            if needs.kind == "grant":
                return Decision.deny(
                    f"`{req.spec.name}` needs the `{needs.name}` grant, which you don't have. "
                    "Request it with an issue labelled `access request`: "
                    f'`access request {needs.name} "<why>"` opens one.'
                )
            return Decision.deny(
                f"`{req.spec.name}` is for production engineers (the `{needs.name}` role) only."
            )
        for override in ("ignore_production_check", "ignore_feature_flag_consistency_check"):
            if getattr(req.command, override, None) and not caller.has_role(PRODUCTION_ROLE):
                return Decision.deny(
                    "Only production engineers (the `production` role) may use "
                    f"`--{override.replace('_', '-')}`."
                )
        return Decision.allow()
