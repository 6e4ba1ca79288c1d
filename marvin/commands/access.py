"""`access`: who has production access and why, from the configured roles registry; access
requests, grants and the access review. The commands live in `access_queries`,
`access_grants` and `access_review`; this is their one list, in the order help shows."""

from __future__ import annotations

from marvin.access import requests
from marvin.commands.access_common import PRODUCTION_ONLY
from marvin.commands.access_grants import (
    AccessGrant,
    AccessRequest,
    AccessRevoke,
    GrantHandler,
    GrantPlan,
    RequestHandler,
    RequestPlan,
    RevokeHandler,
    RevokePlan,
)
from marvin.commands.access_queries import (
    ENV_OPT,
    AccessCheck,
    AccessMine,
    AccessRefresh,
    AccessWho,
    CheckHandler,
    MineHandler,
    RefreshHandler,
    RefreshPlan,
    WhoHandler,
)
from marvin.commands.access_review import (
    AccessReport,
    AccessReviewed,
    ReportHandler,
    ReviewedHandler,
    ReviewedPlan,
)
from marvin.spec import Arg, CommandSpec, Opt

SPECS = (
    CommandSpec(
        "access",
        "who",
        "Who has access, grouped by role, with how each person holds it.",
        AccessWho,
        WhoHandler(),
        (Arg("role", "only this role", required=False),),
        (ENV_OPT,),
        examples=("access who", "access who --env production", "access who support"),
    ),
    CommandSpec(
        "access",
        "check",
        "Someone's roles, environments and grants, and why they have them.",
        AccessCheck,
        CheckHandler(),
        (Arg("person", "@handle or GitLab username"),),
        examples=("access check @bob",),
    ),
    CommandSpec(
        "access", "mine", "Your roles, environments and grants.", AccessMine, MineHandler()
    ),
    CommandSpec(
        "access",
        "request",
        "Ask for a grant or for access: opens an issue in the infrastructure tracker.",
        AccessRequest,
        RequestHandler(),
        (
            Arg("what", "feature_flags, production, staging or runners"),
            Arg("reason", "why you need it", rest=True),
        ),
        examples=('access request feature_flags "to roll out new_nav"',),
        plans=(RequestPlan,),
    ),
    CommandSpec(
        "access",
        "grant",
        "Give someone a grant, on their access request issue (production role).",
        AccessGrant,
        GrantHandler(),
        (Arg("grant", "feature_flags"), Arg("person", "@handle or GitLab username")),
        (
            Opt("issue", "their `access request` issue (#12)", "ref"),
            Opt("expires", f"how long it lasts (default {requests.DEFAULT_GRANT_DAYS}d)", "90d"),
        ),
        needs=PRODUCTION_ONLY,
        examples=("access grant feature_flags @bob --issue #12 --expires 90d",),
        plans=(GrantPlan,),
    ),
    CommandSpec(
        "access",
        "revoke",
        "Take back a grant given in Marvin (production role).",
        AccessRevoke,
        RevokeHandler(),
        (Arg("grant", "feature_flags"), Arg("person", "@handle or GitLab username")),
        needs=PRODUCTION_ONLY,
        examples=("access revoke feature_flags @bob",),
        plans=(RevokePlan,),
    ),
    CommandSpec(
        "access",
        "report",
        "The access review: who has production or staging access and how, when reviewed, "
        "grants near expiry, idle members (production role).",
        AccessReport,
        ReportHandler(),
        needs=PRODUCTION_ONLY,
    ),
    CommandSpec(
        "access",
        "reviewed",
        "Record that you reviewed someone's access (production role).",
        AccessReviewed,
        ReviewedHandler(),
        (Arg("person", "@handle or GitLab username"), Arg("note", "optional", False, True)),
        needs=PRODUCTION_ONLY,
        plans=(ReviewedPlan,),
    ),
    CommandSpec(
        "access",
        "refresh",
        "Sync the roles registry's GitLab mirror now (production role).",
        AccessRefresh,
        RefreshHandler(),
        needs=PRODUCTION_ONLY,
        plans=(RefreshPlan,),
    ),
)
