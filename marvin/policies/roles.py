from __future__ import annotations

from marvin.policies.base import Decision, Request

# Who may do what. Production ssh access (support, release managers) is not among these:
# it does not let anyone delete flags or override the production check.
FLAG_GRANT = "feature_flags"
PRODUCTION_ROLE = "production"
REQUIREMENTS: dict[str, tuple[str, str]] = {
    # command name -> ("grant" | "role", name)
    "feature set": ("grant", FLAG_GRANT),
    "feature delete": ("role", PRODUCTION_ROLE),
}


class RolePolicy:
    name = "roles"

    async def check(self, req: Request) -> Decision:
        caller = req.ctx.caller
        need = REQUIREMENTS.get(req.spec.name)
        if need is not None:
            kind, what = need
            if kind == "grant" and not (caller.has_grant(what) or caller.has_role(PRODUCTION_ROLE)):
                return Decision.deny(
                    f"`{req.spec.name}` needs the `{what}` grant, which you don't have. "
                    "Request it with an issue labelled `access request`."
                )
            if kind == "role" and not caller.has_role(what):
                return Decision.deny(
                    f"`{req.spec.name}` is for production engineers (the `{what}` role) only."
                )
        if getattr(req.command, "ignore_production_check", None) and not caller.has_role(
            PRODUCTION_ROLE
        ):
            return Decision.deny(
                "Only production engineers (the `production` role) may use "
                "`--ignore-production-check`."
            )
        return Decision.allow()
