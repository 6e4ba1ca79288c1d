"""Flags in Unleash, through its Admin API (aiohttp; one session per adapter, made lazily).

One Marvin environment is one Unleash environment (`environments`; open-source Unleash has
only `development` and `production`, so staging is `development` unless configured). All
flags are in one Unleash project. The token (UNLEASH_ADMIN_TOKEN: an admin API token, or a
personal access token) goes in the Authorization header and nowhere else: it is never
logged and never part of an error.

The state of a flag in an environment is the environment's switch and its strategies, each a
`flexibleRollout` (Unleash ORs strategies, like Flipper's gates), titled "Marvin: ...":

- on for everyone: rollout "100", stickiness "default"
- a percentage of actors: rollout "<n>", stickiness "default", groupId <flag>
- a percentage of the time: rollout "<n>", stickiness "random"
- actors `user:<name>`: rollout "100" with the constraint `userId IN [<name>, ...]`
- off, but the flag is there: the environment switched off, one strategy at rollout "0".
  An environment with no strategy and switched off is "no such flag here".

Decisions:
- Unleash stores any rollout string, and its SDKs read a rollout as a whole number from 0 to
  100 (anything else is 0%, on for nobody). So Marvin validates before sending: 0.5% is
  `Refused` ("whole percentages only"), never rounded. Actors other than users (`group:`,
  `project:`) have no standard Unleash context field: `Refused`.
- A 100% share and "on for everyone" are the same rollout; the strategy's title tells them
  apart, so what Marvin put is what it reads back.
- Unleash turns an environment with no strategy on for everyone when it is switched on, so
  Marvin writes its strategies while the environment is off and switches it on last. From
  on to on, it first narrows every gate to what both states share, then widens to the new
  state (strategies are added before others are removed: removing the last one would switch
  the environment off); when the two states share nobody, it switches off, rewrites and
  switches on. No moment exposes more than the state before or the state after.
- A rollout that is edited keeps its groupId, so raising 1% to 5% keeps the 1% who already
  see it.
- Delete switches the environment off and removes its strategies; the flag is archived (for
  every environment: Unleash archives whole flags) only when no other environment is
  switched on or has strategies. `feature set` on an archived name revives the flag (its
  environments come back switched off) and then sets it.
- A put is several calls. Once one of them has changed something, a later failure is
  `OutcomeUnknown`: the flag may be anywhere between the two states. The state is read
  back at the end, and `Conflict` is raised if it is not what was asked.
- Strategies Marvin does not write (constraints other than `userId IN`, segments, other
  strategy types, rollouts the SDKs can't read) are read as an actor `unleash:<what>`, so
  the flag never reads as more off than it is; a put replaces them.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import aiohttp

from marvin.adapters.errors import (
    AdapterError,
    Conflict,
    NotFound,
    OutcomeUnknown,
    Refused,
    Unavailable,
)
from marvin.flags import HUNDRED, OFF, ZERO, Environment, FlagState, fmt_percent, percent

SERVICE = "Unleash"
TOKEN_ENV = "UNLEASH_ADMIN_TOKEN"  # noqa: S105 (the name of the variable)
# Open-source Unleash has development and production: staging is the first. Any other
# environment is Unleash's of the same name unless mapped.
DEFAULT_ENVIRONMENTS = {"staging": "development"}
TITLE = "Marvin: "
LIST_CONCURRENCY = 8

Json = dict[str, Any]
Jsons = list[Json]  # (in the class, `list` is the method)
_DIGITS = re.compile(r"[0-9]{1,3}\Z")
_WHERE = "in Unleash"


def admin_token_from_env() -> str | None:
    """Marvin's Unleash token, from the environment only."""
    return os.environ.get(TOKEN_ENV, "").strip() or None


class UnleashFlags:
    name = "unleash"

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        project: str = "default",
        environments: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.project = project
        self.timeout = timeout
        self.label = f"Unleash ({self.url})"
        self._environments = {**DEFAULT_ENVIRONMENTS, **dict(environments or {})}
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = token
        self._session: aiohttp.ClientSession | None = None
        self._usable: set[str] | None = None  # the project's environments, once asked

    def _named(self, env: Environment) -> str:
        """`env`'s environment in Unleash."""
        return self._environments.get(env, env.value)

    def __repr__(self) -> str:  # no token in here
        return f"UnleashFlags({self.url!r}, project={self.project!r})"

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # --- the Flag backend ----------------------------------------------------------------

    async def get(self, flag: str, env: Environment) -> FlagState | None:
        call = _Calls(self)
        await self._check(call, env)
        feature = await self._feature(call, flag)
        return None if feature is None else _read(self._environment(feature, env))

    async def list(self, env: Environment, pattern: str | None) -> list[tuple[str, FlagState]]:
        call = _Calls(self)
        await self._check(call, env)
        answer = await call("GET", self._features())
        here = self._named(env)
        names = sorted(
            str(f.get("name"))
            for f in (answer or {}).get("features") or []
            if (pattern is None or fnmatch.fnmatchcase(str(f.get("name")), pattern))
            and any(
                e.get("name") == here and (e.get("enabled") or e.get("hasStrategies"))
                for e in f.get("environments") or []
            )
        )
        # The listing has no strategies: each flag is read on its own, a few at a time.
        gate = asyncio.Semaphore(LIST_CONCURRENCY)

        async def one(name: str) -> FlagState | None:
            async with gate:
                feature = await self._feature(call, name)
            return None if feature is None else _read(self._environment(feature, env))

        states = await asyncio.gather(*(one(name) for name in names))
        return [(n, s) for n, s in zip(names, states, strict=True) if s is not None]

    async def put(self, flag: str, env: Environment, state: FlagState) -> FlagState:
        wanted = _normalized(state)
        target = _strategies(flag, wanted)  # Refused here, before anything is sent
        here = self._named(env)
        call = _Calls(self)
        await self._check(call, env)
        feature = await self._feature(call, flag) or await self._create(call, flag)
        environment = self._environment(feature, env)
        now = _read(environment) or OFF
        was_on = bool(environment.get("enabled"))
        current = list(environment.get("strategies") or [])
        middle = _common(now, wanted)
        if was_on and wanted != OFF and middle != OFF:
            # Narrow to what both share, then widen to the new state; on all along.
            narrow = _strategies(flag, middle)
            current = await self._converge(call, flag, here, current, narrow)
            if middle != wanted:
                await self._converge(call, flag, here, current, target)
        else:
            if was_on:
                await call("POST", self._switch(flag, here, on=False), changes=True)
            await self._converge(call, flag, here, current, target)
            if wanted != OFF:
                await call("POST", self._switch(flag, here, on=True), changes=True)
        after = await self._feature(call, flag)
        confirmed = (_read(self._environment(after, env)) if after else None) or OFF
        if confirmed != wanted:
            raise Conflict(
                SERVICE,
                f"holds {confirmed.describe()} for `{flag}` in {here} after Marvin's change, "
                f"not {wanted.describe()}: someone changed it at the same time",
            )
        return confirmed

    async def delete(self, flag: str, env: Environment) -> None:
        here = self._named(env)
        call = _Calls(self)
        await self._check(call, env)
        feature = await self._feature(call, flag)
        if feature is None:
            return
        environment = self._environment(feature, env)
        strategies = list(environment.get("strategies") or [])
        if not strategies and not environment.get("enabled"):
            return  # nothing of this environment's (quiet, like a missing flag)
        if environment.get("enabled"):
            await call("POST", self._switch(flag, here, on=False), changes=True)
        for strategy in strategies:
            path = self._strategy(flag, here, strategy["id"])
            await call("DELETE", path, changes=True, missing_ok=True)
        # Archiving is for the whole flag: only when no other environment uses it (read
        # again, just before, to see a change made meanwhile).
        feature = await self._feature(call, flag)
        if feature is not None and not any(
            e.get("name") != here and (e.get("enabled") or e.get("strategies"))
            for e in feature.get("environments") or []
        ):
            await call("DELETE", self._features(flag), changes=True, missing_ok=True)

    # --- Unleash -------------------------------------------------------------------------

    def _features(self, flag: str = "") -> str:
        base = f"/api/admin/projects/{self.project}/features"
        return f"{base}/{flag}" if flag else base

    def _strategy(self, flag: str, env: str, strategy_id: str = "") -> str:
        base = f"{self._features(flag)}/environments/{env}/strategies"
        return f"{base}/{strategy_id}" if strategy_id else base

    def _switch(self, flag: str, env: str, *, on: bool) -> str:
        return f"{self._features(flag)}/environments/{env}/{'on' if on else 'off'}"

    def _environment(self, feature: Json, env: Environment) -> Json:
        here = self._named(env)
        for environment in feature.get("environments") or []:
            if environment.get("name") == here:
                return dict(environment)
        raise NotFound(
            SERVICE,
            f"has no environment `{here}` in project `{self.project}` (Marvin's {env.value}): "
            "check unleash.environments",
        )

    async def _check(self, call: _Calls, env: Environment) -> None:
        """That the project and the environment exist, asked once: Unleash lists an unknown
        project's flags as none at all rather than answering 404."""
        if self._usable is None:
            try:
                await call("GET", f"/api/admin/projects/{self.project}/overview")
            except NotFound as exc:
                raise NotFound(
                    SERVICE, f"has no project `{self.project}`: check unleash.project"
                ) from exc
            answer = await call("GET", f"/api/admin/environments/project/{self.project}")
            self._usable = {
                str(e.get("name"))
                for e in (answer or {}).get("environments") or []
                if e.get("enabled") and e.get("visible", True)
            }
        here = self._named(env)
        if here not in self._usable:
            raise NotFound(
                SERVICE,
                f"has no environment `{here}` in project `{self.project}` (Marvin's "
                f"{env.value}): check unleash.environments",
            )

    async def _feature(self, call: _Calls, flag: str) -> Json | None:
        try:
            answer = await call("GET", self._features(flag))
        except NotFound:
            return None  # missing, or archived
        if not isinstance(answer, dict):
            raise Unavailable(SERVICE, f"answered with something unexpected for `{flag}`")
        return answer

    async def _create(self, call: _Calls, flag: str) -> Json:
        body = {"name": flag, "type": "release", "description": "Managed by Marvin (ChatOps)"}
        try:
            await call("POST", self._features(), body, changes=True)
        except Conflict as exc:
            if "archived" in exc.message.lower():
                # Marvin archives flags on delete: setting one again brings it back.
                await call(
                    "POST", f"/api/admin/projects/{self.project}/revive",
                    {"features": [flag]}, changes=True,
                )  # fmt: skip
            # else: made meanwhile by someone else; it is read below either way
        feature = await self._feature(call, flag)
        if feature is None:
            raise Conflict(
                SERVICE,
                f"has a flag `{flag}` outside project `{self.project}` (flag names are "
                "unique across projects)",
            )
        return feature

    async def _converge(
        self, call: _Calls, flag: str, env: str, current: Jsons, target: Jsons
    ) -> Jsons:
        """Make the environment's strategies `target`: edit or add first, remove last.
        Returns the strategies it leaves (as Unleash answered for them)."""
        left = list(current)
        made: Jsons = []
        for spec in target:
            kind = _kind(spec)
            peer = next((s for s in left if _kind(s) == kind and kind is not None), None)
            if peer is None:
                made.append(await call("POST", self._strategy(flag, env), spec, changes=True))
                continue
            left.remove(peer)
            body = dict(spec)
            kept = (peer.get("parameters") or {}).get("groupId")
            if kind in ("actors", "time") and isinstance(kept, str) and kept:
                body["parameters"] = {**spec["parameters"], "groupId": kept}
            if _same(peer, body):
                made.append(peer)
            else:
                path = self._strategy(flag, env, peer["id"])
                made.append(await call("PUT", path, body, changes=True))
        for strategy in left:
            path = self._strategy(flag, env, strategy["id"])
            await call("DELETE", path, changes=True, missing_ok=True)
        if not all(isinstance(s, dict) and s.get("id") for s in made):
            raise OutcomeUnknown(SERVICE, "answered a strategy change without the strategy")
        return made

    # --- HTTP ----------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(
                    total=self.timeout, sock_connect=max(self.timeout / 2, 0.1)
                ),
            )
        return self._session

    async def request(self, method: str, path: str, body: Any = None, *, changes: bool) -> Any:
        """One call, its failure typed; `changes` says whether it is a write."""
        try:
            async with self._http().request(method, self.url + path, json=body) as response:
                status = response.status
                raw = await response.read()
        except aiohttp.ClientConnectorError:
            raise Unavailable(SERVICE, "could not be reached") from None
        except aiohttp.ConnectionTimeoutError:
            raise Unavailable(SERVICE, "could not be reached (connect timeout)") from None
        except TimeoutError:
            error = OutcomeUnknown if changes else Unavailable
            raise error(SERVICE, f"did not answer within {self.timeout:g} s") from None
        except aiohttp.ClientError as exc:
            if changes:
                raise OutcomeUnknown(SERVICE, "dropped the connection during the change") from None
            raise Unavailable(SERVICE, f"failed ({type(exc).__name__})") from None
        if status >= 400:
            raise _error(status, raw, changes=changes)
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            error = OutcomeUnknown if changes else Unavailable
            raise error(SERVICE, f"answered {status} with something that is not JSON") from None


class _Calls:
    """The calls of one operation: once one has changed something, a later failure means
    the flag may be half-way, which is `OutcomeUnknown`."""

    def __init__(self, adapter: UnleashFlags) -> None:
        self.adapter = adapter
        self.wrote = False

    async def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        changes: bool = False,
        missing_ok: bool = False,
    ) -> Any:
        try:
            answer = await self.adapter.request(method, path, body, changes=changes)
        except OutcomeUnknown:
            raise
        except NotFound:
            if missing_ok:
                return None  # already gone: what a removal wanted
            if self.wrote:
                raise OutcomeUnknown(
                    SERVICE, "lost the flag while Marvin was changing it"
                ) from None
            raise
        except AdapterError as exc:
            if self.wrote:
                raise OutcomeUnknown(
                    exc.service, f"{exc.message}, after part of the change was made"
                ) from exc
            raise
        if changes:
            self.wrote = True
        return answer


def _error(status: int, raw: bytes, *, changes: bool) -> AdapterError:
    if status == 401:
        return Refused(SERVICE, f"refused Marvin's token (401): check {TOKEN_ENV}")
    if status == 403:
        return Refused(
            SERVICE,
            "does not allow Marvin's token to do that (403): it needs an admin API token or "
            "a personal access token with the rights to change flags",
        )
    said = _said(raw)
    if status == 404:
        return NotFound(SERVICE, f"has no such thing (404: {said})")
    if status == 409:
        return Conflict(SERVICE, f"answered with a conflict (409: {said})")
    if status in (400, 422):
        return Refused(SERVICE, f"refused the request ({status}: {said})")
    if status == 429:
        return Unavailable(SERVICE, "is rate-limiting Marvin (429); try again shortly")
    if changes and status >= 500:
        return OutcomeUnknown(SERVICE, f"failed while making the change ({status})")
    return Unavailable(SERVICE, f"answered with an error ({status})")


def _said(raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        return "no message"
    if not isinstance(body, dict):
        return "no message"
    messages = [str(body.get("message") or "")]
    for detail in body.get("details") or []:
        if isinstance(detail, dict) and detail.get("message") not in messages:
            messages.append(str(detail.get("message")))
    return "; ".join(m for m in messages if m)[:300] or "no message"


# --- strategies and states --------------------------------------------------------------------


def _normalized(state: FlagState) -> FlagState:
    """One spelling for a state: no 0% gates, actors sorted once."""
    return FlagState(
        enabled=state.enabled,
        percentage_of_actors=state.percentage_of_actors or None,
        percentage_of_time=state.percentage_of_time or None,
        actors=tuple(sorted(set(state.actors))),
    )


def _whole(share: Decimal) -> str:
    if share != share.to_integral_value():
        low, high = int(share), int(share) + 1
        raise Refused(
            SERVICE,
            f"takes whole percentages only (its SDKs read a rollout as a whole number from "
            f"0 to 100), and {fmt_percent(share)} is not one; Marvin won't round it: use "
            f"{low}%{' (off)' if low == 0 else ''} or {high}%",
        )
    return str(int(share))


def _users(actors: tuple[str, ...]) -> list[str]:
    others = [a for a in actors if not a.startswith("user:")]
    if others:
        raise Refused(
            SERVICE,
            f"can only target users {_WHERE} (user:<name>, as the userId constraint), not "
            f"{', '.join(others)}",
        )
    return [a.removeprefix("user:") for a in actors]


def _rollout(flag: str, rollout: str, stickiness: str, title: str) -> Json:
    return {
        "name": "flexibleRollout",
        "title": TITLE + title,
        "parameters": {"rollout": rollout, "stickiness": stickiness, "groupId": flag},
        "constraints": [],
        "disabled": False,
    }


def _strategies(flag: str, state: FlagState) -> list[Json]:
    """The strategies that hold `state` in one environment (validated: Refused if not)."""
    users = _users(state.actors)
    specs = []
    if state.enabled:
        specs.append(_rollout(flag, "100", "default", "on for everyone"))
    if state.percentage_of_actors is not None:
        share = _whole(state.percentage_of_actors)
        specs.append(_rollout(flag, share, "default", f"{share}% of actors"))
    if state.percentage_of_time is not None:
        share = _whole(state.percentage_of_time)
        specs.append(_rollout(flag, share, "random", f"{share}% of the time"))
    if users:
        spec = _rollout(flag, "100", "default", "listed users")
        spec["constraints"] = [
            {
                "contextName": "userId",
                "operator": "IN",
                "values": users,
                "inverted": False,
                "caseInsensitive": False,
            }
        ]
        specs.append(spec)
    return specs or [_rollout(flag, "0", "default", "off")]


def _common(a: FlagState, b: FlagState) -> FlagState:
    """A state that shows the flag to nobody whom `a` or `b` would not show it to."""

    def share(state: FlagState, kind: str) -> Decimal:
        return HUNDRED if state.enabled else getattr(state, kind) or ZERO

    def actors(state: FlagState) -> set[str] | None:  # None: everyone
        return None if state.enabled else {x for x in state.actors if x.startswith("user:")}

    enabled = a.enabled and b.enabled
    left, right = actors(a), actors(b)
    both = left if right is None else right if left is None else left & right
    return _normalized(
        FlagState(
            enabled=enabled,
            percentage_of_actors=None
            if enabled
            else min(share(a, "percentage_of_actors"), share(b, "percentage_of_actors")),
            percentage_of_time=None
            if enabled
            else min(share(a, "percentage_of_time"), share(b, "percentage_of_time")),
            actors=() if enabled else tuple(both or ()),
        )
    )


def _gate(strategy: Json) -> tuple[str, Any]:
    """What one strategy does: ("on", None), ("actors", share), ("time", share),
    ("users", [names]), ("off", None), or ("other", description)."""
    name = str(strategy.get("name"))
    params = strategy.get("parameters") or {}
    constraints = strategy.get("constraints") or []
    if strategy.get("segments"):
        return "other", f"unleash:{name} with segments"
    if name == "default" and not constraints:
        return "on", None
    if name != "flexibleRollout":
        return "other", f"unleash:{name}"
    raw = params.get("rollout", "100")
    if not isinstance(raw, str) or not _DIGITS.match(raw) or int(raw) > 100:
        return "other", f"unleash:{name} with rollout {raw!r}"
    share = percent(int(raw))
    title = str(strategy.get("title") or "")
    if constraints:
        if share == HUNDRED and len(constraints) == 1:
            (only,) = constraints
            if (
                only.get("contextName") == "userId"
                and only.get("operator") == "IN"
                and not only.get("inverted")
                and isinstance(only.get("values"), list)
            ):
                return "users", [str(v) for v in only["values"]]
        return "other", f"unleash:{name} with constraints"
    if share == ZERO:
        return "off", None
    random = params.get("stickiness") == "random"
    if share == HUNDRED and title != TITLE + ("100% of the time" if random else "100% of actors"):
        return "on", None
    return ("time" if random else "actors"), share


def _kind(strategy: Json) -> str | None:
    """What `_converge` may edit into what: strategies of the same kind, Marvin's only."""
    if strategy.get("disabled"):
        return None
    kind, _ = _gate(strategy)
    return None if kind == "other" else kind


def _same(strategy: Json, spec: Json) -> bool:
    def constraints(s: Json) -> list[tuple[Any, ...]]:
        return [
            (c.get("contextName"), c.get("operator"), sorted(c.get("values") or []),
             bool(c.get("inverted")), bool(c.get("caseInsensitive")))
            for c in s.get("constraints") or []
        ]  # fmt: skip

    return bool(
        strategy.get("name") == spec["name"]
        and (strategy.get("title") or None) == spec["title"]
        and (strategy.get("parameters") or {}) == spec["parameters"]
        and constraints(strategy) == constraints(spec)
        and not strategy.get("disabled")
        and not strategy.get("segments")
    )


def _read(environment: Json) -> FlagState | None:
    strategies = list(environment.get("strategies") or [])
    if not environment.get("enabled"):
        return OFF if strategies else None
    active = [s for s in strategies if not s.get("disabled")]
    if not active:
        return FlagState(enabled=True)  # Unleash serves an environment with no strategy to all
    enabled = False
    of_actors: Decimal | None = None
    of_time: Decimal | None = None
    actors: set[str] = set()
    for strategy in active:
        kind, value = _gate(strategy)
        if kind == "on":
            enabled = True
        elif kind == "actors":
            of_actors = max(of_actors or ZERO, value)
        elif kind == "time":
            of_time = max(of_time or ZERO, value)
        elif kind == "users":
            actors |= {f"user:{v}" for v in value}
        elif kind == "other":
            actors.add(value)
    return FlagState(
        enabled=enabled,
        percentage_of_actors=of_actors,
        percentage_of_time=of_time,
        actors=tuple(sorted(actors)),
    )
