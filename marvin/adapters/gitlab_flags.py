"""Flags in GitLab's instance features (`/api/v4/features`), as GitLab's own ChatOps drives.

Instance features are global to a GitLab instance, so each environment is its own instance
(`gitlab.instances`: staging.gitlab.com for staging, gitlab.com for production). The state
is read back from the gates GitLab answers with; actors come back as Flipper ids
(`User:12`), which are turned back into names (cached).

A desired state is reached with Flipper's operations, in an order that never exposes more
than the start or the end state would: `false` clears every gate, `true` enables for
everyone and clears the rest, a percentage replaces its gate, actors are added or removed
one by one. A percentage of zero would clear every gate in GitLab, so zero is "no gate".
"""

from __future__ import annotations

import fnmatch
from typing import Any

from marvin.adapters.errors import Conflict, Refused
from marvin.adapters.gitlab import SERVICE, GitLabClient
from marvin.flags import OFF, Environment, FlagState, percent

# FlagState's actor kinds, and the API parameter each is set with.
_PARAMS = {"user": "user", "project": "project", "group": "group"}


class GitLabInstanceFlags:
    name = "gitlab_instance"

    def __init__(self, client: GitLabClient, env: Environment) -> None:
        self.client = client
        self.env = env
        self.label = f"GitLab ({client.url})"
        self._names: dict[str, str] = {}  # Flipper id -> name ("User:12" -> "user:bob")

    async def _features(self) -> list[dict[str, Any]]:
        answer = await self.client.call(self.client.gl.http_get, "/features")
        assert isinstance(answer, list)
        return answer

    async def _state(self, feature: dict[str, Any]) -> FlagState:
        enabled = False
        of_actors = of_time = None
        actors: list[str] = []
        for gate in feature.get("gates") or []:
            key, value = gate.get("key"), gate.get("value")
            if key == "boolean":
                enabled = bool(value)
            elif key == "percentage_of_actors" and value:
                of_actors = percent(value)
            elif key == "percentage_of_time" and value:
                of_time = percent(value)
            elif key == "actors":
                actors += [await self._actor_name(str(v)) for v in value or []]
            elif key == "groups":
                actors += [f"feature_group:{v}" for v in value or []]
        return FlagState(
            enabled=enabled,
            percentage_of_actors=of_actors,
            percentage_of_time=of_time,
            actors=tuple(sorted(dict.fromkeys(actors))),
        )

    async def _actor_name(self, flipper_id: str) -> str:
        known = self._names.get(flipper_id)
        if known is not None:
            return known
        kind, _, ident = flipper_id.partition(":")
        name = f"gitlab:{flipper_id}"  # a kind Marvin doesn't set (kept, never dropped)
        lookups = {
            "User": ("users", "username", "user"),
            "Project": ("projects", "path_with_namespace", "project"),
            "Group": ("groups", "full_path", "group"),
        }
        if kind in lookups and ident.isdigit():
            collection, field, ours = lookups[kind]
            answer = await self.client.call(self.client.gl.http_get, f"/{collection}/{ident}")
            if isinstance(answer, dict):
                name = f"{ours}:{answer[field]}"
        self._names[flipper_id] = name
        return name

    async def get(self, flag: str, env: Environment) -> FlagState | None:
        for feature in await self._features():
            if feature.get("name") == flag:
                return await self._state(feature)
        return None

    async def list(self, env: Environment, pattern: str | None) -> list[tuple[str, FlagState]]:
        found = []
        for feature in sorted(await self._features(), key=lambda f: str(f.get("name"))):
            name = str(feature.get("name"))
            if pattern is None or fnmatch.fnmatchcase(name, pattern):
                found.append((name, await self._state(feature)))
        return found

    async def put(self, flag: str, env: Environment, state: FlagState) -> FlagState:
        existing = await self.get(flag, env)
        # An off flag that GitLab doesn't know yet is persisted, as off.
        steps = _steps(existing or OFF, state) or ([] if existing else [{"value": "false"}])
        for data in steps:
            await self.client.call(
                self.client.gl.http_post, f"/features/{flag}", post_data=data, changes=True
            )
        confirmed = await self.get(flag, env) or OFF
        if confirmed != state:
            raise Conflict(
                SERVICE,
                f"holds {confirmed.describe()} for `{flag}` after the change, not "
                f"{state.describe()}: someone changed it at the same time",
            )
        return confirmed

    async def delete(self, flag: str, env: Environment) -> None:
        await self.client.call(self.client.gl.http_delete, f"/features/{flag}", changes=True)


def _steps(current: FlagState, wanted: FlagState) -> list[dict[str, Any]]:
    """The Flipper operations from `current` to `wanted`."""
    steps: list[dict[str, Any]] = []
    base = current
    dropped = (
        (current.enabled and not wanted.enabled)
        or (current.percentage_of_actors is not None and wanted.percentage_of_actors is None)
        or (current.percentage_of_time is not None and wanted.percentage_of_time is None)
    )
    if dropped or (wanted == OFF and current != OFF):
        steps.append({"value": "false"})
        base = OFF
    if wanted.enabled and not base.enabled:
        steps.append({"value": "true"})  # clears every other gate
        base = FlagState(enabled=True)
    for key in ("percentage_of_actors", "percentage_of_time"):
        share = getattr(wanted, key)
        if share is not None and share != getattr(base, key):
            steps.append({"value": f"{share:f}", "key": key})
    # Removals before additions: in between, fewer actors see it, never more.
    for actor in sorted(set(base.actors) - set(wanted.actors)):
        steps.append(_actor_step(actor, "false"))
    for actor in sorted(set(wanted.actors) - set(base.actors)):
        steps.append(_actor_step(actor, "true"))
    return steps


def _actor_step(actor: str, value: str) -> dict[str, Any]:
    kind, _, name = actor.partition(":")
    if kind == "feature_group":
        return {"value": value, "feature_group": name}
    param = _PARAMS.get(kind)
    if param is None:
        raise Refused(
            SERVICE,
            f"reads a namespace gate back as its group or user, so Marvin sets {actor!r} "
            "only as --group or --user",
        )
    return {"value": value, param: name}
