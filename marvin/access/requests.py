"""Access requests and grants: what they ask, what they say on their issue, and durations.

The issue is opened (a request) or noted (a grant) through the configured tracker, by the
command's apply phase with no transaction open. Each carries a hidden marker, so an
outcome that was never heard is settled by looking for it (`marvin.intents`).
"""

from __future__ import annotations

import re
from datetime import timedelta

from marvin.adapters.directory import DirectoryPerson
from marvin.policies.roles import PRODUCTION_ROLE

FEATURE_FLAGS = "feature_flags"
# Marvin's grants go through an `access request` issue; environments through an `access` one.
REQUEST_LABEL = "access request"
ACCESS_LABEL = "access"
GRANTS = (FEATURE_FLAGS,)
DEFAULT_GRANT_DAYS = 90
MAX_GRANT_DAYS = 365
_DURATION = re.compile(r"^(\d{1,4})\s*([dw])$")


def labels_for(what: str) -> list[str]:
    return [REQUEST_LABEL] if what in GRANTS else [ACCESS_LABEL]


def duration(text: str) -> timedelta:
    """`90d` or `12w`: how long a grant lasts, at most a year."""
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise ValueError("give the expiry as days or weeks, like 90d or 12w")
    n, unit = int(match.group(1)), match.group(2)
    days = n * (7 if unit == "w" else 1)
    if not 1 <= days <= MAX_GRANT_DAYS:
        raise ValueError(f"a grant lasts from 1 to {MAX_GRANT_DAYS} days")
    return timedelta(days=days)


def already(person: DirectoryPerson | None, what: str, grants: frozenset[str]) -> str | None:
    """Why the person already holds `what` (None: they don't)."""
    if person is None:
        return None
    if what in GRANTS:
        roles = [h.role for h in person.holdings]
        if what in person.grants:
            return "through the registry (" + (", ".join(roles) or "your own entry") + ")"
        if what in grants:
            return "through a grant in Marvin"
        if PRODUCTION_ROLE in person.roles:
            return f"through the {PRODUCTION_ROLE} role"
        return None
    if what in person.environments:
        return "through your roles (" + ", ".join(person.roles) + ")"
    return None


def what_roles_give(person: DirectoryPerson | None) -> str:
    if person is None or not person.roles:
        return "no roles"
    envs = ", ".join(person.environments) or "no environment access"
    grants = ", ".join(person.grants) or "no grants"
    return f"roles {', '.join(person.roles)}: {envs}; {grants}"
