"""Flags in a GitLab project's feature flags (`/api/v4/projects/:id/feature_flags`).

python-gitlab has no manager for them, so this speaks the REST API through its `http_*`
methods, in a thread under GitLabClient's deadline, with its typed errors. One Marvin
environment is one GitLab *environment scope* (`environment_scopes`, by default the same
name): Marvin reads and writes only the strategies scoped exactly to it.

The state of a flag in an environment, as strategies scoped to that environment (GitLab
combines strategies with OR, like Flipper's gates):

- on for everyone: `default` {}
- a percentage of actors: `flexibleRollout` {groupId, rollout, stickiness: "default"}
- a percentage of the time: `flexibleRollout` {groupId, rollout, stickiness: "random"}
- actors `user:<name>`: `userWithId` {userIds: "<name>,<name>"}
- off, but the flag is there: `flexibleRollout` with rollout "0" (on for nobody). Without it
  the environment would have no strategy, and that is how Marvin tells "no such flag here".

What GitLab can't hold is `Refused` before anything is sent, never rounded or dropped:
- GitLab takes rollouts as whole numbers ("0" to "100"): 0.5% is refused, saying so.
- GitLab flags target users only: `group:` and `project:` actors are refused.

Decisions:
- `groupId` is the flag's name with everything but its letters dropped (GitLab wants 1 to 32
  lowercase letters). A rollout that is edited keeps the groupId it has, so raising 1% to 5%
  keeps the 1% who already see it (the buckets are hashes of groupId and user).
- `active` is the flag's switch for every environment at once. Marvin creates flags active
  and leaves `active` alone otherwise. An inactive flag is off everywhere, so it reads as
  off in every environment it has strategies for. Turning an inactive flag on for one
  environment would also turn it on for the others, so Marvin does that only when the flag
  has no strategy for any other environment, and otherwise refuses and says why.
- Other environments are never touched: a strategy shared with other scopes loses only this
  environment's scope (`_destroy` on the scope); Marvin's own strategies are edited by id
  and removed with `_destroy`, all in one PUT, which GitLab validates and saves as a whole.
- A strategy scoped by a wildcard (`*`, `review/*`) that matches this environment also
  decides what it sees: it is read as part of the state, but Marvin won't edit or remove it
  (that would change other environments too), so a put or delete then is refused.
- Deleting a flag in one environment removes only that environment's strategies and
  scopes; the flag itself goes only when no other environment's scope is left on it.
- Strategies Marvin does not write are read as faithfully as they can be
  (`gradualRolloutUserId` as a percentage of actors, `gitlabUserList` as its users) and
  anything else as an actor `gitlab:<strategy>`, so the flag never reads as more off than
  it is.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import gitlab
from gitlab import exceptions as gle

from marvin.adapters.errors import Conflict, NotFound, Refused
from marvin.adapters.gitlab import SERVICE, GitLabClient
from marvin.flags import OFF, ZERO, Environment, FlagState, fmt_percent, percent

Strategy = dict[str, Any]
Strategies = list[Strategy]  # (in the class, `list` is the method)

USER_ID_MAX = 256  # GitLab's FeatureFlagUserXidsValidator
GROUP_ID_MAX = 32
_GROUP_ID = re.compile(r"[a-z]{1,32}\Z")
_DIGITS = re.compile(r"[0-9]+\Z")
_USER_ID = re.compile(r"[^\s,]+\Z")


class GitLabProjectFlags:
    name = "gitlab_project"

    def __init__(
        self,
        client: GitLabClient,
        project: str | int,
        environment_scopes: Mapping[str, str] | None = None,
        *,
        page_size: int = 100,
    ) -> None:
        self.client = client
        self.project = str(project)
        self._scopes = dict(environment_scopes or {})
        self._page_size = page_size
        self._base = f"/projects/{quote(self.project, safe='')}/feature_flags"
        self.label = f"GitLab project {self.project} ({client.url})"

    def _scope(self, env: Environment) -> str:
        """The environment scope of `env`: the same name unless mapped."""
        return self._scopes.get(env, env.value)

    # --- reading -------------------------------------------------------------------------

    async def get(self, flag: str, env: Environment) -> FlagState | None:
        entity = await self._flag(flag)
        return None if entity is None else _read(entity, self._scope(env))

    async def list(self, env: Environment, pattern: str | None) -> list[tuple[str, FlagState]]:
        gl = self.client.gl
        entities = await self._call(
            gl.http_list, self._base, get_all=True, per_page=self._page_size
        )
        found = []
        for entity in sorted(entities, key=lambda e: str(e.get("name"))):
            name = str(entity.get("name"))
            if pattern is not None and not fnmatch.fnmatchcase(name, pattern):
                continue
            state = _read(entity, self._scope(env))
            if state is not None:
                found.append((name, state))
        return found

    # --- writing -------------------------------------------------------------------------

    async def put(self, flag: str, env: Environment, state: FlagState) -> FlagState:
        wanted = _normalized(state)
        scope = self._scope(env)
        specs = _strategies(flag, wanted)  # Refused here, before anything is sent
        entity = await self._flag(flag)
        if entity is None:
            await self._create(
                flag, [{**s, "scopes": [{"environment_scope": scope}]} for s in specs]
            )
        else:
            self._refuse_wildcards(flag, entity, scope, "change")
            data = _changes(entity, scope, specs)
            if wanted != OFF and not entity.get("active", True):
                if _other_scopes(entity, scope):
                    raise Refused(
                        SERVICE,
                        f"has `{flag}` switched off as a whole (inactive), and switching it on "
                        f"for {scope} would switch on its other environments too "
                        f"({', '.join(sorted(_other_scopes(entity, scope)))}): "
                        "activate it in GitLab first",
                    )
                data["active"] = True
            if data:
                await self._call(
                    self.client.gl.http_put, self._path(flag), post_data=data, changes=True
                )
        confirmed = await self.get(flag, env) or OFF
        if confirmed != wanted:
            raise Conflict(
                SERVICE,
                f"holds {confirmed.describe()} for `{flag}` in {scope} after Marvin's change, "
                f"not {wanted.describe()}: someone changed it at the same time",
            )
        return confirmed

    async def delete(self, flag: str, env: Environment) -> None:
        scope = self._scope(env)
        entity = await self._flag(flag)
        if entity is None or _read(entity, scope) is None:
            return  # nothing of this environment's (quiet, like a missing flag)
        self._refuse_wildcards(flag, entity, scope, "remove")
        if not _other_scopes(entity, scope):
            try:
                await self._call(self.client.gl.http_delete, self._path(flag), changes=True)
            except NotFound:
                pass  # gone meanwhile: what was asked
            return
        removals = _changes(entity, scope, [])
        await self._call(
            self.client.gl.http_put, self._path(flag), post_data=removals, changes=True
        )

    # --- GitLab --------------------------------------------------------------------------

    def _path(self, flag: str) -> str:
        return f"{self._base}/{quote(flag, safe='')}"

    async def _call(
        self, fn: Callable[..., Any], *args: Any, changes: bool = False, **kw: Any
    ) -> Any:
        try:
            return await self.client.call(fn, *args, changes=changes, **kw)
        except NotFound as exc:
            if "project" in exc.message.lower():
                raise NotFound(
                    SERVICE,
                    f"has no project {self.project} that Marvin's token can see (404): check "
                    "gitlab.flags_project and that the token's user is a Developer there",
                ) from exc
            raise

    async def _flag(self, flag: str) -> Strategy | None:
        entity = await self._call(_get_or_none, self.client.gl, self._path(flag))
        assert entity is None or isinstance(entity, dict)
        return entity

    async def _create(self, flag: str, strategies: Strategies) -> None:
        data = {
            "name": flag,
            "version": "new_version_flag",
            "active": True,
            "strategies": strategies,
        }
        try:
            await self._call(self.client.gl.http_post, self._base, post_data=data, changes=True)
        except Refused as exc:
            if "already been taken" in exc.message:
                raise Conflict(
                    SERVICE, f"has a flag `{flag}` created at the same time by someone else"
                ) from exc
            raise

    def _refuse_wildcards(self, flag: str, entity: Strategy, scope: str, what: str) -> None:
        shared = sorted(
            {
                sc
                for s in entity.get("strategies") or []
                for sc in _scope_names(s)
                if sc != scope and _matches(sc, scope)
            }
        )
        if shared:
            raise Refused(
                SERVICE,
                f"has strategies for `{flag}` scoped {', '.join(shared)}, which also apply to "
                f"{scope} and to other environments: Marvin won't {what} them from here; "
                "change them in GitLab",
            )


def _get_or_none(gl: gitlab.Gitlab, path: str) -> Any:
    """GET, with a 404 for the flag (not for the project) as None."""
    try:
        return gl.http_get(path)
    except gle.GitlabHttpError as exc:
        said = str(exc.error_message or "")
        if exc.response_code == 404 and "project" not in said.lower():
            return None
        raise


# --- reading strategies ----------------------------------------------------------------------


def _scope_names(strategy: Strategy) -> list[str]:
    return [str(sc.get("environment_scope")) for sc in strategy.get("scopes") or []]


def _matches(pattern: str, scope: str) -> bool:
    """GitLab's environment scope matching: `*` is a wildcard, everything else is literal."""
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, scope) is not None


def _own(entity: Strategy, scope: str) -> list[Strategy]:
    return [s for s in entity.get("strategies") or [] if scope in _scope_names(s)]


def _other_scopes(entity: Strategy, scope: str) -> set[str]:
    return {sc for s in entity.get("strategies") or [] for sc in _scope_names(s) if sc != scope}


def _read(entity: Strategy, scope: str) -> FlagState | None:
    applying = [
        s
        for s in entity.get("strategies") or []
        if any(_matches(sc, scope) for sc in _scope_names(s))
    ]
    if not applying:
        return None  # not in this environment
    if not entity.get("active", True):
        return OFF  # switched off as a whole
    enabled = False
    of_actors: Decimal | None = None
    of_time: Decimal | None = None
    actors: list[str] = []
    for strategy in applying:
        name = str(strategy.get("name"))
        params = strategy.get("parameters") or {}
        if name == "default":
            enabled = True
        elif name in ("flexibleRollout", "gradualRolloutUserId"):
            raw = params.get("rollout" if name == "flexibleRollout" else "percentage")
            share = _share(raw)
            if share is None:
                actors.append(f"gitlab:{name}({raw})")
            elif share == ZERO:
                continue
            elif params.get("stickiness") == "random":
                of_time = max(of_time or ZERO, share)
            else:
                of_actors = max(of_actors or ZERO, share)
        elif name == "userWithId":
            actors += [f"user:{u}" for u in str(params.get("userIds") or "").split(",") if u]
        elif name == "gitlabUserList":
            xids = str((strategy.get("user_list") or {}).get("user_xids") or "")
            actors += [f"user:{u}" for u in xids.split(",") if u]
        else:
            actors.append(f"gitlab:{name}")
    return FlagState(
        enabled=enabled,
        percentage_of_actors=of_actors,
        percentage_of_time=of_time,
        actors=tuple(sorted(set(actors))),
    )


def _share(raw: Any) -> Decimal | None:
    if isinstance(raw, str) and _DIGITS.match(raw) and int(raw) <= 100:
        return percent(int(raw))
    return None


# --- writing strategies ----------------------------------------------------------------------


def _normalized(state: FlagState) -> FlagState:
    """One spelling for a state: no 0% gates, actors sorted once."""
    return FlagState(
        enabled=state.enabled,
        percentage_of_actors=state.percentage_of_actors or None,
        percentage_of_time=state.percentage_of_time or None,
        actors=tuple(sorted(set(state.actors))),
    )


def _group_id(flag: str) -> str:
    """The flag's name as GitLab's groupId wants it: its letters only, at most 32."""
    return "".join(c for c in flag if "a" <= c <= "z")[:GROUP_ID_MAX] or "marvin"


def _whole(share: Decimal, service: str, where: str) -> str:
    """The rollout string for a whole percentage; anything else is refused, never rounded."""
    if share != share.to_integral_value():
        low, high = int(share), int(share) + 1
        raise Refused(
            service,
            f"takes whole percentages only {where}, and {fmt_percent(share)} is not one; "
            f"Marvin won't round it: use {low}%{' (off)' if low == 0 else ''} or {high}%",
        )
    return str(int(share))


def _user_ids(actors: tuple[str, ...], service: str, where: str) -> list[str]:
    """The user names of `user:` actors; any other kind of actor is refused."""
    others = [a for a in actors if not a.startswith("user:")]
    if others:
        raise Refused(
            service,
            f"can only target users {where} (user:<name>), not {', '.join(others)}",
        )
    names = [a.removeprefix("user:") for a in actors]
    for name in names:
        if not _USER_ID.match(name) or len(name) > USER_ID_MAX:
            raise Refused(service, f"can't target the user {name!r} {where}")
    return names


_WHERE = "in a project feature flag"


def _strategies(flag: str, state: FlagState) -> list[Strategy]:
    """The strategies (name and parameters) that hold `state` in one environment."""
    users = _user_ids(state.actors, SERVICE, _WHERE)
    specs: list[Strategy] = []
    if state.enabled:
        specs.append({"name": "default", "parameters": {}})
    for share, stickiness in (
        (state.percentage_of_actors, "default"),
        (state.percentage_of_time, "random"),
    ):
        if share is not None:
            specs.append(_rollout(flag, _whole(share, SERVICE, _WHERE), stickiness))
    if users:
        specs.append({"name": "userWithId", "parameters": {"userIds": ",".join(users)}})
    return specs or [_rollout(flag, "0", "default")]  # off, but here


def _rollout(flag: str, rollout: str, stickiness: str) -> Strategy:
    return {
        "name": "flexibleRollout",
        "parameters": {"groupId": _group_id(flag), "rollout": rollout, "stickiness": stickiness},
    }


def _changes(entity: Strategy, scope: str, specs: list[Strategy]) -> dict[str, Any]:
    """The PUT that makes this environment's strategies `specs`, touching no other scope."""
    changes: list[Strategy] = []
    mine: list[Strategy] = []
    for strategy in _own(entity, scope):
        if set(_scope_names(strategy)) == {scope}:
            mine.append(strategy)
        else:  # shared with other environments: only this environment's scope goes
            gone = [{"id": sc["id"], "_destroy": True} for sc in strategy.get("scopes") or []
                    if sc.get("environment_scope") == scope]  # fmt: skip
            changes.append({"id": strategy["id"], "scopes": gone})
    todo = []
    for spec in specs:
        same = next((s for s in mine if _same(s, spec)), None)
        if same is not None:
            mine.remove(same)
        else:
            todo.append(spec)
    for spec in todo:
        peer = next((s for s in mine if _peer(s, spec)), None)
        if peer is None:
            changes.append({**spec, "scopes": [{"environment_scope": scope}]})
            continue
        mine.remove(peer)
        params = dict(spec["parameters"])
        kept = (peer.get("parameters") or {}).get("groupId")
        if "groupId" in params and isinstance(kept, str) and _GROUP_ID.match(kept):
            params["groupId"] = kept  # the same users stay in as the share grows
        if params != peer.get("parameters"):
            changes.append({"id": peer["id"], "parameters": params})
    changes += [{"id": s["id"], "_destroy": True} for s in mine]
    return {"strategies": changes} if changes else {}


def _same(strategy: Strategy, spec: Strategy) -> bool:
    return bool(
        strategy.get("name") == spec["name"]
        and (strategy.get("parameters") or {}) == spec["parameters"]
        and not strategy.get("user_list")
    )


def _peer(strategy: Strategy, spec: Strategy) -> bool:
    """An existing strategy that can be edited into `spec` (same name, same stickiness)."""
    if strategy.get("name") != spec["name"] or strategy.get("user_list"):
        return False
    if spec["name"] == "flexibleRollout":
        return bool(
            (strategy.get("parameters") or {}).get("stickiness") == spec["parameters"]["stickiness"]
        )
    return True
