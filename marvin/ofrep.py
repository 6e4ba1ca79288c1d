"""OFREP: applications read Marvin's embedded flags through OpenFeature, no flag server needed.

The OpenFeature Remote Evaluation Protocol (open-feature/protocol, `service/openapi.yaml`):

- `POST /ofrep/v1/evaluate/flags/{key}` evaluates one flag: 200 `{key, value, reason,
  variant, metadata}`; 404 `{key, errorCode: FLAG_NOT_FOUND, errorDetails}`; 400 `{key,
  errorCode, errorDetails}` (PARSE_ERROR, INVALID_CONTEXT, TARGETING_KEY_MISSING).
- `POST /ofrep/v1/evaluate/flags` evaluates every flag of the environment: 200 `{flags:
  [...], metadata}` with an `ETag`; a request whose `If-None-Match` names the current ETag
  gets 304 and no body. The ETag covers the flags and the request's context, so a client
  polling with the same context pays one small read and no body until a flag changes.

The request body is `{"context": {"targetingKey": ..., "user": ..., ...}}` (see
`marvin/evaluation.py` for the keys Marvin reads); a body without `context` is evaluated
with an empty context. Each environment has its own token, from the process environment as
`MARVIN_OFREP_TOKEN_<ENVIRONMENT>`; the token a request carries (`Authorization: Bearer
<token>`, or `X-API-Key: <token>`) chooses the environment, and anything else gets 401.
Tokens are compared in constant time and never logged.

Evaluation opens no write transaction: each environment's flags are read in one read
transaction and kept for `cache_seconds` (1 s), so a change is served within about a
second whichever replica made it. When the database does not answer, the last flags read
are served (they are the last truth Marvin knew); with none, the answer is 503.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import structlog
from aiohttp import web
from pydantic import SecretStr

from marvin.adapters.errors import Unavailable
from marvin.adapters.flags import LocalFlagBackend
from marvin.clock import Clock
from marvin.environments import DEFAULT as DEFAULT_ENVIRONMENTS
from marvin.evaluation import ErrorCode, EvaluationError, evaluate, targeting_key
from marvin.flags import Environment, FlagState
from marvin.store.db import Store

log = structlog.get_logger(__name__)

BULK_PATH: Final = "/ofrep/v1/evaluate/flags"
FLAG_PATH: Final = BULK_PATH + "/{key}"
ENV_VARIABLE: Final = "MARVIN_OFREP_TOKEN_{}"
DEFAULT_MAX_BODY_BYTES: Final = 64 * 1024
DEFAULT_CACHE_SECONDS: Final = 1.0
_UNAUTHORIZED: Final = "missing or invalid token: send Authorization: Bearer <token>"


def tokens_from_env(
    env: Mapping[str, str] | None = None,
    environments: Iterable[Environment] = DEFAULT_ENVIRONMENTS,
) -> dict[Environment, SecretStr]:
    """Each environment's token, `MARVIN_OFREP_TOKEN_PRODUCTION`,
    `MARVIN_OFREP_TOKEN_STAGING_REF` and so on; unset or empty means that environment is
    not served."""
    env = os.environ if env is None else env
    tokens: dict[Environment, SecretStr] = {}
    for environment in environments:
        value = env.get(ENV_VARIABLE.format(environment.variable), "").strip()
        if value:
            tokens[environment] = SecretStr(value)
    return tokens


# --- the flags an environment serves, read at most once a second ------------------------------


@dataclass(frozen=True)
class Snapshot:
    environment: Environment
    flags: Mapping[str, FlagState]  # by name, sorted
    fingerprint: str  # of the flags' content: the same on every replica
    read_at: datetime


def fingerprint(flags: Mapping[str, FlagState]) -> str:
    canonical = json.dumps(
        [[name, state.model_dump(mode="json")] for name, state in sorted(flags.items())],
        separators=(",", ":"),
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class FlagSnapshots:
    """Each environment's flags, read in one read transaction, kept `max_age_seconds`."""

    def __init__(self, store: Store, clock: Clock, max_age_seconds: float) -> None:
        self._backend = LocalFlagBackend(store, clock)
        self._clock = clock
        self._max_age = max_age_seconds
        self._held: dict[Environment, Snapshot] = {}
        self._locks: dict[Environment, asyncio.Lock] = {}

    def _fresh(self, env: Environment, now: datetime) -> Snapshot | None:
        held = self._held.get(env)
        if held is None:
            return None
        age = (now - held.read_at).total_seconds()
        return held if 0 <= age < self._max_age else None

    async def get(self, env: Environment) -> Snapshot:
        """Raises `Unavailable` only when the database fails and nothing was read before."""
        held = self._fresh(env, self._clock.now())
        if held is not None:
            return held
        async with self._locks.setdefault(
            env, asyncio.Lock()
        ):  # one read per environment, whoever asks meanwhile
            now = self._clock.now()
            held = self._fresh(env, now)
            if held is not None:
                return held
            try:
                flags = dict(sorted(await self._backend.list(env, None)))
            except Unavailable as exc:
                stale = self._held.get(env)
                if stale is None:
                    raise
                log.warning("ofrep.serving_stale_flags", environment=env.value, error=exc.shown())
                # Asked again after another interval, not on every request meanwhile.
                self._held[env] = Snapshot(env, stale.flags, stale.fingerprint, now)
                return self._held[env]
            snapshot = Snapshot(env, flags, fingerprint(flags), now)
            self._held[env] = snapshot
            return snapshot


# --- requests -------------------------------------------------------------------------------


class BadRequest(Exception):
    def __init__(self, code: ErrorCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


@dataclass(frozen=True)
class RequestContext:
    values: dict[str, Any]
    canonical: str  # one spelling of it, for the bulk answer's ETag


async def read_context(request: web.Request, max_body_bytes: int) -> RequestContext:
    """The request's evaluation context, or `BadRequest` saying what is wrong with it."""
    too_large = BadRequest(
        ErrorCode.INVALID_CONTEXT, f"the request body is over {max_body_bytes} bytes"
    )
    if request.content_length is not None and request.content_length > max_body_bytes:
        raise too_large
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise too_large from exc
    if len(raw) > max_body_bytes:
        raise too_large
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadRequest(
            ErrorCode.PARSE_ERROR,
            'the request body is not JSON: send {"context": {"targetingKey": "..."}}',
        ) from exc
    if not isinstance(body, dict):
        raise BadRequest(ErrorCode.PARSE_ERROR, "the request body must be a JSON object")
    context = body.get("context", {})
    if context is None:
        context = {}
    if not isinstance(context, dict):
        raise BadRequest(ErrorCode.INVALID_CONTEXT, "context must be a JSON object")
    try:
        targeting_key(context)
    except EvaluationError as exc:
        raise BadRequest(exc.code, exc.details) from exc
    try:
        canonical = json.dumps(context, sort_keys=True, separators=(",", ":"))
    except (ValueError, RecursionError) as exc:  # nested deeper than we write back
        raise BadRequest(ErrorCode.INVALID_CONTEXT, "context is nested too deeply") from exc
    return RequestContext(context, canonical)


def etag_for(snapshot: Snapshot, context: RequestContext) -> str:
    """The bulk answer's entity tag: the environment, its flags and the caller's context."""
    digest = hashlib.sha256(
        f"{snapshot.environment.value}\n{snapshot.fingerprint}\n{context.canonical}".encode()
    ).hexdigest()
    return f'"{digest[:32]}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*":
            return True
        tag = tag.removeprefix("W/")
        if tag.strip('"') == etag.strip('"'):
            return True
    return False


def _success(key: str, state: FlagState, context: Mapping[str, Any], env: Environment) -> Any:
    resolution = evaluate(key, state, context)
    return {
        "key": key,
        "value": resolution.value,
        "reason": resolution.reason.value,
        "variant": resolution.variant,
        "metadata": {"environment": env.value},
    }


def _failure(key: str | None, code: ErrorCode, details: str) -> dict[str, Any]:
    answer: dict[str, Any] = {} if key is None else {"key": key}
    answer.update(errorCode=code.value, errorDetails=details)
    return answer


class Ofrep:
    """The two OFREP routes over one store; one instance per web application."""

    def __init__(
        self,
        snapshots: FlagSnapshots,
        tokens: Mapping[Environment, SecretStr | str],
        max_body_bytes: int,
    ) -> None:
        self.snapshots = snapshots
        self._tokens = [
            (env, (t.get_secret_value() if isinstance(t, SecretStr) else t).encode())
            for env, t in tokens.items()
        ]
        if any(not secret for _, secret in self._tokens):
            raise ValueError("an OFREP token is empty")
        if len({secret for _, secret in self._tokens}) != len(self._tokens):
            raise ValueError("two environments have the same OFREP token: each needs its own")
        self._max_body = max_body_bytes

    def environment(self, request: web.Request) -> Environment | None:
        """The environment whose token the request carries; None for no or a wrong one."""
        presented = _presented_token(request)
        if presented is None:
            return None
        given = presented.encode("utf-8", "surrogateescape")
        found: Environment | None = None
        for env, secret in self._tokens:  # every token compared: the time tells nothing
            if hmac.compare_digest(given, secret):
                found = env
        return found

    async def evaluate_flag(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        env = self.environment(request)
        if env is None:
            return _unauthorized()
        try:
            context = await read_context(request, self._max_body)
        except BadRequest as exc:
            return web.json_response(_failure(key, exc.code, exc.details), status=400)
        try:
            snapshot = await self.snapshots.get(env)
        except Unavailable:
            return _unavailable()
        state = snapshot.flags.get(key)
        if state is None:
            details = f"flag {key!r} was not found in {env.value}"
            return web.json_response(_failure(key, ErrorCode.FLAG_NOT_FOUND, details), status=404)
        try:
            return web.json_response(_success(key, state, context.values, env))
        except EvaluationError as exc:
            return web.json_response(_failure(key, exc.code, exc.details), status=400)

    async def evaluate_all(self, request: web.Request) -> web.StreamResponse:
        env = self.environment(request)
        if env is None:
            return _unauthorized()
        try:
            context = await read_context(request, self._max_body)
        except BadRequest as exc:
            return web.json_response(_failure(None, exc.code, exc.details), status=400)
        try:
            snapshot = await self.snapshots.get(env)
        except Unavailable:
            return _unavailable()
        etag = etag_for(snapshot, context)
        if etag_matches(request.headers.get("If-None-Match"), etag):
            return web.Response(status=304, headers={"ETag": etag})
        flags: list[dict[str, Any]] = []
        for key, state in snapshot.flags.items():
            try:
                flags.append(_success(key, state, context.values, env))
            except EvaluationError as exc:
                flags.append(_failure(key, exc.code, exc.details))
        return web.json_response(
            {"flags": flags, "metadata": {"environment": env.value}}, headers={"ETag": etag}
        )


def _presented_token(request: web.Request) -> str | None:
    authorization = request.headers.get("Authorization", "")
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    api_key = request.headers.get("X-API-Key", "").strip()
    return api_key or None


def _unauthorized() -> web.Response:
    return web.json_response(
        {"errorDetails": _UNAUTHORIZED},
        status=401,
        headers={"WWW-Authenticate": 'Bearer realm="ofrep"'},
    )


def _unavailable() -> web.Response:
    return web.json_response(
        {"errorDetails": "the flag store did not answer; try again shortly"},
        status=503,
        headers={"Retry-After": "1"},
    )


def add_ofrep_routes(
    app: web.Application,
    store: Store,
    clock: Clock,
    tokens: Mapping[Environment, SecretStr | str],
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    cache_seconds: float = DEFAULT_CACHE_SECONDS,
) -> Ofrep:
    """Serve OFREP on `app` for the environments that have a token."""
    ofrep = Ofrep(FlagSnapshots(store, clock, cache_seconds), tokens, max_body_bytes)
    app.router.add_post(BULK_PATH, ofrep.evaluate_all)
    app.router.add_post(FLAG_PATH, ofrep.evaluate_flag)
    if tokens:
        log.info("ofrep.serving", environments=sorted(env.value for env in tokens))
    else:
        log.warning(
            "ofrep.no_tokens",
            hint="set MARVIN_OFREP_TOKEN_PRODUCTION (and _STAGING) to serve flags over OFREP",
        )
    return ofrep
