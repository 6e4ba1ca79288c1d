"""The environments flags are set in, as configured: their names, the default, and which
environment each one follows. Pure: no I/O here.

An environment that *follows* another must not run a feature ahead of it: a flag is turned
on there only once it is on in the one it follows, and that one is turned off only after
every environment following it (GitLab's ChatOps consistency check, production following
staging, generalised to whatever a team runs: dev, staging-ref, pre, ops...).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping

from marvin.flags import Environment

# A name is also the option that picks it (`--staging-ref`): lowercase, digits, dashes.
NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*\Z")


# What the `feature` commands already take (options and fields): an environment can't be
# named the same, or `--issue` would mean both. (tests/test_environments.py keeps it whole.)
RESERVED = frozenset(
    {
        "actors",
        "enabled",
        "environments",
        "feature-group",
        "group",
        "ignore-feature-flag-consistency-check",
        "ignore-production-check",
        "issue",
        "limit",
        "match",
        "name",
        "namespace",
        "pattern",
        "project",
        "random",
        "rollout-issue",
        "user",
        "value",
        "why",
    }
)


class Environments:
    def __init__(self, follows: Mapping[str, str | None], default: str) -> None:
        problems = environment_problems(follows, default)
        if problems:
            raise ValueError("; ".join(problems))
        self.names = tuple(Environment(name) for name in follows)
        self.default = Environment(default)
        self._follows = {
            Environment(name): Environment(ahead) for name, ahead in follows.items() if ahead
        }

    def __iter__(self) -> Iterator[Environment]:
        return iter(self.names)

    def __repr__(self) -> str:
        return f"Environments({list(self.names)}, default={self.default!r})"

    def follows(self, env: Environment) -> Environment | None:
        """The environment `env` must not run ahead of, if any."""
        return self._follows.get(env)

    def followers(self, env: Environment) -> list[Environment]:
        """The environments that must not run ahead of `env`, in configured order."""
        return [name for name in self.names if self._follows.get(name) == env]

    def related(self, env: Environment) -> list[Environment]:
        """The environments a change in `env` is judged against for consistency."""
        ahead = self.follows(env)
        return ([ahead] if ahead else []) + self.followers(env)

    def depth(self, env: Environment) -> int:
        depth = 0
        while (ahead := self._follows.get(env)) is not None:
            env, depth = ahead, depth + 1
        return depth

    def in_order(self, envs: Iterable[Environment], *, lowering: bool) -> list[Environment]:
        """`envs` in the order a change goes through them: the followed first when raising,
        the followers first when lowering (no environment ever runs ahead of its own)."""
        chosen = list(dict.fromkeys(envs))
        rank = {name: i for i, name in enumerate(self.names)}
        ordered = sorted(chosen, key=lambda env: (self.depth(env), rank.get(env, len(rank))))
        return ordered[::-1] if lowering else ordered

    def options(self) -> str:
        """How a person names them: `--staging`, `--production`."""
        return ", ".join(f"`--{name}`" for name in self.names)


def environment_problems(follows: Mapping[str, str | None], default: str) -> list[str]:
    """What is wrong with a configuration of environments, as sentences (empty: nothing)."""
    problems: list[str] = []
    if not follows:
        return ["name at least one environment"]
    for name, ahead in follows.items():
        if not NAME.match(name) or len(name) > 32:
            problems.append(
                f"{name!r} can't name an environment: lowercase letters, digits and dashes "
                "(it is also its option, --staging-ref), at most 32 characters"
            )
        elif name in RESERVED:
            problems.append(
                f"{name!r} can't name an environment: `--{name}` is already an option of `feature`"
            )
        if ahead is not None and ahead not in follows:
            problems.append(f"{name} follows {ahead!r}, which is not one of the environments")
        if ahead == name:
            problems.append(f"{name} can't follow itself")
    if default not in follows:
        problems.append(f"the default environment {default!r} is not one of the environments")
    circles: set[tuple[str, ...]] = set()
    for name in follows:
        walked, ahead = [name], follows.get(name)
        while ahead is not None and ahead in follows and ahead not in walked:
            walked.append(ahead)
            ahead = follows.get(ahead)
        if ahead == name and len(walked) > 1:
            circles.add(tuple(sorted(walked)))
    for circle in circles:
        problems.append(f"{', '.join(circle)} follow each other in a circle")
    return sorted(set(problems))


DEFAULT_FOLLOWS: dict[str, str | None] = {"staging": None, "production": "staging"}
DEFAULT = Environments(DEFAULT_FOLLOWS, "production")
