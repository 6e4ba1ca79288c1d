"""The busy hour: Marvin and bare Bolt under open-loop load, every part its own process.

For each target (a bare Bolt app with Bolt's default runner and with
process_before_response=True; `marvin serve` on SQLite and on PostgreSQL; Marvin again with
Slack answering users.getPresence and users.info after 2.5 s) it starts the Slack stub
(`benchmarks.slack_stub`) and the server as subprocesses, waits for /healthz, then runs the
load generator (`benchmarks.loadgen`, another process) at each offered rate in turn, and
finally a closed-loop saturation run. Latencies are measured from each command's intended
send time; answers are timed by the Slack stub on each command's own response_url.

    .venv/bin/python -m benchmarks.busy_hour [--quick] [--rates 20,50,100]
        [--duration 20] [--targets bolt,bolt-pbr,sqlite,postgres,sqlite-slow,postgres-slow]
        [--out DIR] [--keep-going]

Default: rates 20, 50, 100, 200/s for 20 s each, then 15 s closed loop with 64 clients, under
15 minutes on 2 cores (`--rates 20,50,100,200,500` adds 500/s, where on 2 shared cores the
load generator itself starts to lag). A phase that leaves commands unanswered 30 s after its load
ended restarts the target (fresh stub, server and database), so one overloaded rate does not
spill into the next; by default the target's higher rates are then skipped (more load only
shows a worse collapse; the closed loop still measures its capacity). `--quick`: rates 20,
50, 200/s for 10 s each, every rate run.

One run writes `DIR/busy_hour-<timestamp>.json` (everything) and `.png` (ack and answer
latency against offered load), and prints markdown tables. Everything started is stopped,
also on Ctrl-C or SIGTERM, and the PostgreSQL databases made here are dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import yaml

from benchmarks.loadgen import MIX

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
MARVIN = str(Path(sys.executable).parent / "marvin")
RESULTS = ROOT / "benchmarks" / "results"

SECRET = "busy-hour-signing-secret"
BOT_TOKEN = "xoxb-busy-hour-bench"
PRODUCTION = ("CPRODBENCH", "production")
ELSEWHERE = ("CRANDOMBENCH", "random")
PEOPLE = 500
FLAGS = 1500
# Turned on in staging before the load (`marvin shell`), so that raising one to 50% in
# production is refused by the ceiling rather than by the staging-first rule.
HOT_FLAGS = [f"bench_hot_{i:02d}" for i in range(20)]
SLOW_SLACK_S = 2.5
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"

# 500/s is left to --rates: on 2 shared cores the generator itself lags by ~0.5 s there.
DEFAULT_RATES = (20, 50, 100, 200)
QUICK_RATES = (20, 50, 200)
DEFAULT_DURATION = 20.0  # 6 targets x 5 rates x 30 s alone would be the whole 15 minutes
QUICK_DURATION = 10.0
ACK_TIMEOUT = 20.0
DRAIN = 30.0
SATURATION_CLIENTS = 64
READY_LIMIT = 60.0
# The Slack stub and the load generator run at this (higher) priority where permitted.
HELPER_PRIORITY = -5

Database = Literal["sqlite", "postgres"]


@dataclass(frozen=True)
class Target:
    key: str
    label: str
    server: Literal["bolt", "marvin"]
    process_before_response: bool = False
    database: Database | None = None
    slow_slack: float = 0.0


TARGETS: dict[str, Target] = {
    t.key: t
    for t in (
        Target("bolt", "bare Bolt", "bolt"),
        Target("bolt-pbr", "bare Bolt, process_before_response", "bolt", True),
        Target("sqlite", "Marvin SQLite", "marvin", database="sqlite"),
        Target("postgres", "Marvin PostgreSQL", "marvin", database="postgres"),
        Target(
            "sqlite-slow",
            f"Marvin SQLite, Slack people calls {SLOW_SLACK_S} s",
            "marvin",
            database="sqlite",
            slow_slack=SLOW_SLACK_S,
        ),
        Target(
            "postgres-slow",
            f"Marvin PostgreSQL, Slack people calls {SLOW_SLACK_S} s",
            "marvin",
            database="postgres",
            slow_slack=SLOW_SLACK_S,
        ),
    )
}
BASELINE = "bolt"


# ------------------------------------------------------------------ the people and config


@dataclass(frozen=True)
class Person:
    handle: str
    slack_id: str
    email: str
    grant: bool  # the feature_flags grant (directly, or through the production role)
    production: bool


def make_people(count: int = PEOPLE) -> list[Person]:
    """user0001...: most hold feature_flags, every tenth does not, five are in production."""
    people = []
    for i in range(1, count + 1):
        production = i <= 5
        people.append(
            Person(
                handle=f"user{i:04d}",
                slack_id=f"UBENCH{i:04d}",
                email=f"user{i:04d}@example.com",
                grant=production or i % 10 != 0,
                production=production,
            )
        )
    return people


def write_people_files(people: Sequence[Person], workdir: Path) -> tuple[Path, Path]:
    """The roles file Marvin reads, and the same people for the Slack stub and the load."""
    roles = {
        "people": [
            {
                "handle": p.handle,
                "name": f"User {p.handle[4:]}",
                "email": p.email,
                "gitlab_username": p.handle,
                **({"grants": ["feature_flags"]} if p.grant and not p.production else {}),
            }
            for p in people
        ],
        "roles": {
            "production": {
                "description": "Production engineers",
                "grants": ["feature_flags", "production_ssh", "production_db"],
                "members": [p.handle for p in people if p.production],
            },
            "developer": {
                "description": "Developers",
                "grants": [],
                "members": [p.handle for p in people if not p.production],
            },
        },
    }
    roles_file = workdir / "roles.yaml"
    roles_file.write_text(yaml.safe_dump(roles, sort_keys=False))
    people_file = workdir / "people.json"
    people_file.write_text(
        json.dumps(
            {
                "people": [
                    {"id": p.slack_id, "name": p.handle, "email": p.email, "grant": p.grant}
                    for p in people
                ],
                "channels": [
                    {"id": PRODUCTION[0], "name": PRODUCTION[1], "production": True},
                    {"id": ELSEWHERE[0], "name": ELSEWHERE[1], "production": False},
                ],
                "flags": [f"bench_flag_{i:04d}" for i in range(FLAGS)],
                "hot_flags": HOT_FLAGS,
            }
        )
    )
    return roles_file, people_file


def _chat_key() -> dict[str, str]:
    """`production_channel.chat: slack` where this Marvin has that key (serve needs it)."""
    try:
        from marvin.config import ChannelConfig
    except Exception:  # Marvin mid-change: say it; the server's own check has the last word
        return {"chat": "slack"}
    return {"chat": "slack"} if "chat" in ChannelConfig.model_fields else {}


def write_marvin_config(
    path: Path, *, database_url: str, api_base_url: str, roles_file: Path, oncall: str
) -> Path:
    """Marvin's whole configuration for a benchmark server: the one place it is written.

    Everything not named here keeps its shipped default (ceiling, soak time, caches,
    logging at info as JSON, written to the server's log file).
    """
    config = {
        "production_channel": {"id": PRODUCTION[0], "name": PRODUCTION[1], **_chat_key()},
        "database": {"url": database_url},
        "directory": {"backend": "file", "path": str(roles_file)},
        "oncall": {
            "backend": "file",
            "rotation": {
                "starts_at": "2020-01-06T00:00:00Z",
                "shift_hours": 168,
                "people": [oncall],
            },
        },
        "logging": {"level": "info", "format": "json"},
        "slack": {"mode": "http", "host": "127.0.0.1", "api_base_url": api_base_url},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# ------------------------------------------------------------------ processes


def _before_exec(priority: int) -> Callable[[], None]:
    def prepare() -> None:
        """In the child, before exec: SIGTERM when the orchestrator dies (even by SIGKILL),
        and the scheduling priority asked for, where allowed."""
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PDEATHSIG
        if priority:
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, 0, priority)

    return prepare


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    # MARVIN_* overrides from the caller's shell would silently change what is measured.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARVIN_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env | (extra or {})


class Child:
    """A subprocess in its own session (Ctrl-C is the orchestrator's to handle), its
    output in a log file."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.name = name
        self.proc = proc
        self.log = log

    @classmethod
    async def spawn(
        cls,
        name: str,
        argv: Sequence[str],
        log: Path,
        env: dict[str, str] | None = None,
        *,
        priority: int = 0,
    ) -> Child:
        """`priority` < 0 (root only) for what stands in for the world outside the server:
        on a shared machine Slack and its users must not queue behind the server's CPU."""
        with log.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=ROOT,
                env=env or child_env(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                preexec_fn=_before_exec(priority),
            )
        return cls(name, proc, log)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.returncode is None

    async def stop(self, grace: float) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode

    def tail(self, lines: int = 15) -> str:
        return "\n".join(read_text(self.log).splitlines()[-lines:])


def read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------ a process tree: RSS, CPU


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    todo.extend(int(c) for c in children.read().split())
    return pids


def tree_rss_kb(pid: int) -> int:
    """VmRSS of a process and all its descendants, in kB."""
    total = 0
    for member in _tree(pid):
        with contextlib.suppress(OSError), open(f"/proc/{member}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
    return total


def tree_cpu_s(pid: int) -> float:
    """User + system CPU time of a process and its descendants, in seconds."""
    ticks = 0
    for member in _tree(pid):
        with (
            contextlib.suppress(OSError, ValueError, IndexError),
            open(f"/proc/{member}/stat") as stat,
        ):
            fields = stat.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


class RssSampler:
    """Samples a process tree's RSS every 100 ms: the peak since the phase began, overall."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.first_kb = 0
        self.peak_kb = 0
        self.phase_peak_kb = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.first_kb = tree_rss_kb(self.pid)
        self.peak_kb = self.phase_peak_kb = self.first_kb
        self._task = asyncio.create_task(self._run())

    def new_phase(self) -> None:
        self.phase_peak_kb = tree_rss_kb(self.pid)

    async def _run(self) -> None:
        while True:
            rss = tree_rss_kb(self.pid)
            self.peak_kb = max(self.peak_kb, rss)
            self.phase_peak_kb = max(self.phase_peak_kb, rss)
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


# ------------------------------------------------------------------ PostgreSQL


async def create_database(admin_url: str, name: str, *, template: str | None = None) -> None:
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        copied = f' TEMPLATE "{template}"' if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{copied}')
    finally:
        await conn.close()


async def drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def asyncpg_url(admin_url: str, database: str) -> str:
    base = admin_url.split("://", 1)[1].rsplit("/", 1)[0]
    return f"postgresql+asyncpg://{base}/{database}"


# ------------------------------------------------------------------ template databases


def migrations_key() -> tuple[tuple[str, int], ...]:
    """The migration files and their modification times: changes when a migration lands."""
    versions = ROOT / "migrations" / "versions"
    return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in versions.glob("*.py")))


class Templates:
    """One migrated (`marvin db upgrade`) and seeded database per kind, made on first use;
    every server start gets a copy (a file copy, or CREATE DATABASE ... TEMPLATE)."""

    def __init__(self, workdir: Path, roles_file: Path, oncall: str, postgres_admin: str) -> None:
        self.workdir = workdir
        self.roles_file = roles_file
        self.oncall = oncall
        self.postgres_admin = postgres_admin
        self.made: dict[str, str] = {}  # kind -> SQLite file or PostgreSQL database name
        self.made_for: dict[str, tuple[tuple[str, int], ...]] = {}  # kind -> migrations_key()
        self.timings: dict[str, float] = {}
        self.created: list[str] = []  # PostgreSQL databases made here
        self._lock = asyncio.Lock()

    async def get(self, kind: Database) -> str:
        async with self._lock:
            key = migrations_key()
            if self.made_for.get(kind) != key:
                # New migrations since the template was made (Marvin changed under a long
                # run): `serve` would refuse the old schema, so the template is made again.
                self.made.pop(kind, None)
                started = time.monotonic()
                self.made[kind] = await self._make(kind)
                self.made_for[kind] = key
                self.timings[f"{kind}_template_s"] = round(time.monotonic() - started, 3)
            return self.made[kind]

    async def _make(self, kind: Database) -> str:
        if kind == "postgres":
            name = f"marvin_bench_{os.getpid()}_template_{len(self.created) + 1}"
            self.created.append(name)  # dropped at the end even if what follows fails
            await create_database(self.postgres_admin, name)
            url = asyncpg_url(self.postgres_admin, name)
        else:
            name = str(self.workdir / f"template-{len(self.timings) + 1}-marvin.db")
            url = f"sqlite+aiosqlite:///{name}"
        config = write_marvin_config(
            self.workdir / f"template-{kind}.yaml",
            database_url=url,
            api_base_url="http://127.0.0.1:9/api/",  # the shell never calls Slack
            roles_file=self.roles_file,
            oncall=self.oncall,
        )
        upgrade = await Child.spawn(
            "marvin db upgrade",
            [MARVIN, "--config", str(config), "db", "upgrade"],
            self.workdir / f"template-{kind}-migrate.log",
        )
        if await upgrade.proc.wait() != 0:
            raise StartFailed(f"marvin db upgrade failed:\n{upgrade.tail()}")
        await self._seed(config)
        return name

    async def _seed(self, config: Path) -> None:
        """The hot flags on in staging, through `marvin shell` as the on-call engineer."""
        lines = "".join(f"feature set {flag} true --staging\n" for flag in HOT_FLAGS)
        shell = await asyncio.create_subprocess_exec(
            *[MARVIN, "--config", str(config), "shell", "--user", self.oncall, "--json"],
            cwd=ROOT,
            env=child_env(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=_before_exec(0),
        )
        try:
            out, err = await asyncio.wait_for(shell.communicate(lines.encode()), 60)
        finally:
            if shell.returncode is None:
                shell.kill()
                await shell.wait()
        replies = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
        if shell.returncode != 0 or len(replies) != len(HOT_FLAGS):
            raise StartFailed(f"seeding the hot flags failed:\n{err.decode()[-2000:]}")
        refused = [r.get("text", "") for r in replies if not r.get("ok")]
        if refused:
            raise StartFailed(f"seeding the hot flags was refused: {refused[0]}")

    async def drop(self) -> None:
        self.made.pop("postgres", None)
        while self.created:
            await drop_database(self.postgres_admin, self.created.pop())


# ------------------------------------------------------------------ one target's processes


class StartFailed(Exception):
    pass


@dataclass
class Rig:
    """The Slack stub, the database and the server of one target, started and stopped as one."""

    target: Target
    templates: Templates
    people_file: Path
    generation: int = 0
    stub: Child | None = None
    server: Child | None = None
    sampler: RssSampler | None = None
    api_url: str = ""
    control_url: str = ""
    port: int = 0
    database: str | None = None  # the PostgreSQL database made for this generation
    peak_kb: int = 0  # the server's peak RSS over every start
    starts: list[dict[str, float]] = field(default_factory=list)

    @property
    def workdir(self) -> Path:
        return self.templates.workdir

    @property
    def roles_file(self) -> Path:
        return self.templates.roles_file

    @property
    def oncall(self) -> str:
        return self.templates.oncall

    @property
    def postgres_admin(self) -> str:
        return self.templates.postgres_admin

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def _path(self, name: str) -> Path:
        return self.workdir / f"{self.target.key}-{self.generation}-{name}"

    async def start(self) -> dict[str, float]:
        self.generation += 1
        spawned = time.monotonic()
        await self._start_stub()
        timings: dict[str, float] = {}
        env = child_env({"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SECRET})
        self.port = free_port()
        if self.target.server == "bolt":
            argv = [PYTHON, "-m", "benchmarks.bare_bolt", "--port", str(self.port)]
            argv += ["--api-base-url", self.api_url]
            if self.target.process_before_response:
                argv.append("--process-before-response")
        else:
            config = await self._prepare_marvin(timings)
            argv = [MARVIN, "--config", str(config), "serve", "--port", str(self.port)]
        started = time.monotonic()
        self.server = await Child.spawn("server", argv, self._path("server.log"), env)
        timings["ready_in_s"] = round(await self._wait_healthy(), 3)
        timings["spawn_to_ready_s"] = round(time.monotonic() - started, 3)
        timings["setup_s"] = round(time.monotonic() - spawned, 3)
        self.sampler = RssSampler(self.server.pid)
        self.sampler.start()
        timings["idle_rss_mb"] = round(self.sampler.first_kb / 1024, 1)
        self.starts.append(timings)
        return timings

    async def _start_stub(self) -> None:
        ready = self._path("stub.json")
        argv = [PYTHON, "-m", "benchmarks.slack_stub", "--people", str(self.people_file)]
        argv += ["--bot-token", BOT_TOKEN, "--ready-file", str(ready)]
        if self.target.slow_slack:
            argv += ["--slow-people", str(self.target.slow_slack)]
        self.stub = await Child.spawn(
            "slack stub", argv, self._path("stub.log"), priority=HELPER_PRIORITY
        )
        deadline = time.monotonic() + 20
        while not read_text(ready).strip():
            if not self.stub.running or time.monotonic() > deadline:
                raise StartFailed(f"the Slack stub did not start:\n{self.stub.tail()}")
            await asyncio.sleep(0.05)
        announced = json.loads(read_text(ready))
        self.api_url, self.control_url = announced["api_url"], announced["control_url"]

    async def _prepare_marvin(self, timings: dict[str, float]) -> Path:
        """A fresh database, copied from the migrated and seeded template, and the config."""
        started = time.monotonic()
        kind = self.target.database
        assert kind is not None
        template = await self.templates.get(kind)
        if kind == "postgres":
            self.database = f"marvin_bench_{os.getpid()}_{self.target.key}_{self.generation}"
            self.database = self.database.replace("-", "_")
            await create_database(self.postgres_admin, self.database, template=template)
            url = asyncpg_url(self.postgres_admin, self.database)
        else:
            db_file = self._path("marvin.db")
            shutil.copyfile(template, db_file)
            url = f"sqlite+aiosqlite:///{db_file}"
        timings["database_s"] = round(time.monotonic() - started, 3)
        return write_marvin_config(
            self._path("marvin.yaml"),
            database_url=url,
            api_base_url=self.api_url,
            roles_file=self.roles_file,
            oncall=self.oncall,
        )

    async def _wait_healthy(self) -> float:
        assert self.server is not None
        started = time.monotonic()
        url = f"http://127.0.0.1:{self.port}/healthz"
        async with aiohttp.ClientSession() as session:
            while time.monotonic() - started < READY_LIMIT:
                if not self.server.running:
                    raise StartFailed(f"the server exited:\n{self.server.tail()}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as r:
                        if r.status == 200:
                            return time.monotonic() - started
                await asyncio.sleep(0.05)
        raise StartFailed(f"/healthz did not answer within {READY_LIMIT:.0f} s")

    async def slack_calls(self) -> dict[str, int]:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with (
                aiohttp.ClientSession() as session,
                session.get(
                    f"{self.control_url}/bench/calls", timeout=aiohttp.ClientTimeout(total=10)
                ) as response,
            ):
                calls: dict[str, int] = (await response.json())["by_method"]
                return calls
        return {}

    def log_counts(self) -> dict[str, Any]:
        """Warnings, errors and tracebacks in the server's logs (every start of it): counts,
        the events most logged, and the last line of the first few distinct tracebacks."""
        counts: dict[str, Any] = {"warning": 0, "error": 0, "traceback": 0}
        events: Counter[str] = Counter()
        exceptions: Counter[str] = Counter()
        for generation in range(1, self.generation + 1):
            text = read_text(self.workdir / f"{self.target.key}-{generation}-server.log")
            for line in text.splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(entry, dict) or entry.get("level") not in counts:
                    continue
                counts[entry["level"]] += 1
                events[f"{entry['level']} {entry.get('event')}"] += 1
                trace = str(entry.get("exception") or "")
                if trace:
                    counts["traceback"] += 1
                    exceptions[trace.strip().splitlines()[-1][:300]] += 1
        counts["events"] = dict(events.most_common(10))
        counts["exceptions"] = dict(exceptions.most_common(5))
        return counts

    async def stop(self, grace: float = 25.0) -> None:
        """Server first (it drains what it acknowledged), then the stub, then the database."""
        if self.sampler is not None:
            await self.sampler.stop()
            self.peak_kb = max(self.peak_kb, self.sampler.peak_kb)
            self.sampler = None
        try:
            if self.server is not None:
                await self.server.stop(grace)
            if self.stub is not None:
                await self.stub.stop(5)
        finally:
            self.server = self.stub = None
            if self.database is not None:
                database, self.database = self.database, None
                await drop_database(self.postgres_admin, database)


# ------------------------------------------------------------------ phases


@dataclass(frozen=True)
class Plan:
    rates: tuple[float, ...]
    duration: float
    saturation_s: float
    clients: int
    ack_timeout: float
    drain: float
    workers: int  # 0: one sender process below 300/s, two from there on
    connections: int
    keep_going: bool  # run every rate, also past one where answers were lost


async def run_phase(
    rig: Rig, plan: Plan, name: str, *, rate: float | None, duration: float
) -> dict[str, Any]:
    assert rig.server is not None and rig.sampler is not None
    out = rig.workdir / f"{name}.json"
    argv = [PYTHON, "-m", "benchmarks.loadgen", "--target", rig.events_url]
    argv += ["--control", rig.control_url, "--people", str(rig.people_file)]
    argv += ["--secret", SECRET, "--phase", name, "--duration", str(duration)]
    argv += ["--timeout", str(plan.ack_timeout), "--drain", str(plan.drain), "--out", str(out)]
    if rate is None:
        argv += ["--mode", "closed", "--clients", str(plan.clients)]
    else:
        workers = plan.workers or (1 if rate < 300 else 2)
        argv += ["--mode", "open", "--rate", str(rate), "--workers", str(workers)]
        argv += ["--connections", str(plan.connections)]
    calls_before = await rig.slack_calls()
    cpu_before = tree_cpu_s(rig.server.pid)
    rig.sampler.new_phase()
    started = time.monotonic()
    loadgen = await Child.spawn(
        "load generator", argv, rig.workdir / f"{name}.log", priority=HELPER_PRIORITY
    )
    limit = duration + plan.ack_timeout + plan.drain + 120
    try:
        await asyncio.wait_for(loadgen.proc.wait(), limit)
    except TimeoutError:
        await loadgen.stop(5)
        raise StartFailed(f"the load generator took over {limit:.0f} s") from None
    finally:
        await loadgen.stop(5)
    if loadgen.proc.returncode != 0 or not out.exists():
        raise StartFailed(f"the load generator failed:\n{loadgen.tail()}")
    result: dict[str, Any] = json.loads(out.read_text())
    calls_after = await rig.slack_calls()
    result["phase_s"] = round(time.monotonic() - started, 3)
    result["server_peak_rss_mb"] = round(rig.sampler.phase_peak_kb / 1024, 1)
    result["server_cpu_s"] = round(tree_cpu_s(rig.server.pid) - cpu_before, 2)
    result["slack_api_calls"] = {
        method: count - calls_before.get(method, 0)
        for method, count in sorted(calls_after.items())
        if count - calls_before.get(method, 0)
    }
    result["server_alive"] = rig.server.running
    return result


def phase_line(target: Target, result: dict[str, Any]) -> str:
    offered = (
        f"{result['offered_per_s']:g}/s"
        if result["mode"] == "open"
        else f"closed loop x{result['clients']}"
    )
    ack, answer = result["ack_ms"], result["answer_ms"]
    return (
        f"  {target.key:<14} {offered:>16}: sent {result['sent']}, acked {result['acked']}, "
        f"answered {result['answered']}, refused {result['overloaded']} overloaded + "
        f"{result.get('unavailable', 0)} unavailable, lost {result['lost']}, "
        f"ack p50/p99 {fmt_ms(ack, 'p50')}/{fmt_ms(ack, 'p99')}, "
        f"answer p50/p99 {fmt_ms(answer, 'p50')}/{fmt_ms(answer, 'p99')}, "
        f"answered {result['answered_per_s']}/s, RSS {result['server_peak_rss_mb']} MB, "
        f"gen lag p99 {fmt_ms(result['lag_ms'], 'p99')} ({result['phase_s']:.0f} s)"
    )


async def run_target(
    target: Target,
    plan: Plan,
    templates: Templates,
    people_file: Path,
    record: dict[str, Any],
) -> None:
    """Every phase of one target, written into `record` as it goes (kept if interrupted)."""
    record.update(
        target=target.key,
        label=target.label,
        server=target.server,
        database=target.database,
        process_before_response=target.process_before_response or target.server == "marvin",
        slow_slack_s=target.slow_slack,
        phases=[],
        skipped=[],
        saturation=None,
        error=None,
    )
    rig = Rig(target, templates, people_file)
    record["starts"] = rig.starts
    finished = False
    try:
        timings = await rig.start()
        print(f"{target.label}: ready in {timings['ready_in_s']:.2f} s", flush=True)
        dirty = False
        lossy_at: float | None = None
        phases: list[tuple[str, float | None, float]] = [
            (f"{target.key}-{rate:g}", rate, plan.duration) for rate in plan.rates
        ]
        if plan.saturation_s > 0:
            phases.append((f"{target.key}-saturation", None, plan.saturation_s))
        for name, rate, duration in phases:
            if rate is not None and lossy_at is not None and not plan.keep_going:
                # Past the rate where answers were lost, more load only shows a worse
                # collapse; the closed-loop run still measures what it can do.
                record["skipped"].append(rate)
                record["skipped_reason"] = (
                    f"answers lost at {lossy_at:g}/s; higher rates not run (--keep-going runs them)"
                )
                print(
                    f"  {target.key:<14} {rate:>14g}/s: skipped, answers lost at {lossy_at:g}/s",
                    flush=True,
                )
                continue
            if dirty:
                print(f"  {target.key}: restarting (fresh stub, server, database)", flush=True)
                await rig.stop(grace=3)
                await rig.start()
            result = await run_phase(rig, plan, name, rate=rate, duration=duration)
            result["server_generation"] = rig.generation
            if rate is None:
                record["saturation"] = result
            else:
                record["phases"].append(result)
            print(phase_line(target, result), flush=True)
            dirty = not result["drained"] or not result["server_alive"]
            if dirty and rate is not None and lossy_at is None:
                lossy_at = rate
        finished = not dirty
    except (StartFailed, OSError, asyncpg.PostgresError) as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
        print(f"{target.label}: FAILED: {record['error']}", flush=True)
    finally:
        # A server with nothing left to do stops at once; one with a backlog (or an
        # interrupted run) is not waited for.
        await rig.stop(grace=25 if finished else 3)
        record["server_log"] = rig.log_counts()
        record["peak_rss_mb"] = round(rig.peak_kb / 1024, 1)


# ------------------------------------------------------------------ reporting


def fmt_ms(stats: dict[str, Any] | None, key: str) -> str:
    if not stats or stats.get(key) is None:
        return "—"
    value = float(stats[key])
    prefix = "≥" if stats.get(f"{key}_at_least") else ""
    if value >= 1000:
        return f"{prefix}{value / 1000:.1f} s"
    if value >= 10:
        return f"{prefix}{value:.0f} ms"
    return f"{prefix}{value:.1f} ms"


def _phase(results: dict[str, Any], key: str, rate: float) -> dict[str, Any] | None:
    target = results["targets"].get(key)
    if not target:
        return None
    for phase in target.get("phases", []):
        if phase["offered_per_s"] == rate:
            result: dict[str, Any] = phase
            return result
    return None


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """Each Marvin figure divided by bare Bolt's (default runner) at the same offered rate."""
    out: dict[str, Any] = {}
    figures = {
        "ack_p50": ("ack_ms", "p50"),
        "ack_p99": ("ack_ms", "p99"),
        "answer_p50": ("answer_ms", "p50"),
        "answer_p99": ("answer_ms", "p99"),
    }
    for key, target in results["targets"].items():
        if key == BASELINE or not target.get("phases"):
            continue
        rows = {}
        for phase in target["phases"]:
            rate = phase["offered_per_s"]
            base = _phase(results, BASELINE, rate)
            if base is None:
                continue
            row: dict[str, float | None] = {}
            for name, (group, pct) in figures.items():
                mine, theirs = phase[group].get(pct), base[group].get(pct)
                row[name] = round(mine / theirs, 2) if mine is not None and theirs else None
            row["peak_rss"] = (
                round(phase["server_peak_rss_mb"] / base["server_peak_rss_mb"], 2)
                if base["server_peak_rss_mb"]
                else None
            )
            row["cpu_s"] = (
                round(phase["server_cpu_s"] / base["server_cpu_s"], 2)
                if base["server_cpu_s"]
                else None
            )
            rows[f"{rate:g}"] = row
        if rows:
            out[key] = rows
    return out


def _missing(results: dict[str, Any], key: str, rate: float) -> str:
    target = results["targets"].get(key) or {}
    return "skipped" if rate in target.get("skipped", []) else "—"


def _pair(results: dict[str, Any], key: str, rate: float, group: str) -> str:
    phase = _phase(results, key, rate)
    if phase is None:
        return _missing(results, key, rate)
    return f"{fmt_ms(phase[group], 'p50')} / {fmt_ms(phase[group], 'p99')}"


def tables(results: dict[str, Any]) -> str:
    rates = results["config"]["rates"]
    lines: list[str] = []
    slow = f"users.getPresence and users.info answered after {SLOW_SLACK_S:g} s"
    for suffix, title in (("", "Slack answering at once"), ("-slow", slow)):
        sqlite_key, postgres_key = f"sqlite{suffix}", f"postgres{suffix}"
        if sqlite_key not in results["targets"] and postgres_key not in results["targets"]:
            continue
        lines += [
            *([""] if lines else []),
            f"**Marvin against bare Bolt ({title})**",
            "",
            "| offered | bare Bolt ack p99 | Marvin SQLite ack p50 / p99 | Marvin SQLite answer "
            "p50 / p99 | Marvin PostgreSQL ack p50 / p99 | answer p50 / p99 | RSS SQLite / "
            "PostgreSQL | refused overloaded / LOST: SQLite; PostgreSQL |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for rate in rates:
            bolt = _phase(results, BASELINE, rate)
            both = [_phase(results, key, rate) for key in (sqlite_key, postgres_key)]
            rss = " / ".join(
                f"{p['server_peak_rss_mb']:.0f} MB" if p else _missing(results, k, rate)
                for p, k in zip(both, (sqlite_key, postgres_key), strict=True)
            )
            lost = "; ".join(
                f"{p['overloaded']} / {p['lost']}" if p else _missing(results, k, rate)
                for p, k in zip(both, (sqlite_key, postgres_key), strict=True)
            )
            bolt_ack = fmt_ms(bolt["ack_ms"], "p99") if bolt else _missing(results, BASELINE, rate)
            lines.append(
                f"| {rate:g}/s | {bolt_ack} "
                f"| {_pair(results, sqlite_key, rate, 'ack_ms')} "
                f"| {_pair(results, sqlite_key, rate, 'answer_ms')} "
                f"| {_pair(results, postgres_key, rate, 'ack_ms')} "
                f"| {_pair(results, postgres_key, rate, 'answer_ms')} | {rss} | {lost} |"
            )
    lines += [
        "",
        "**Every target and rate** (latencies from the intended send time; ≥: at least, "
        "as timeouts and missing answers are counted at the time given up)",
        "",
        "| target | offered | sent | acked | ack >3 s | answered | refused: overloaded / "
        "unavailable | LOST | "
        "ack p50 / p99 / max | answer p50 / p99 / max | answered/s | peak RSS | server CPU "
        "| gen lag p99 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, target in results["targets"].items():
        if target.get("error") and not target.get("phases"):
            error = " ".join(target["error"].split()).replace("|", "/")[:160]
            lines.append(f"| {key} | failed: {error} |" + " |" * 12)
            continue
        rows = list(target.get("phases", []))
        if target.get("saturation"):
            rows.append(target["saturation"])
        for phase in rows:
            offered = (
                f"{phase['offered_per_s']:g}/s"
                if phase["mode"] == "open"
                else f"closed ×{phase['clients']}"
            )
            ack, answer = phase["ack_ms"], phase["answer_ms"]
            restarted = " (restarted)" if phase.get("server_generation", 1) > 1 else ""
            lines.append(
                f"| {key}{restarted} | {offered} | {phase['sent']} | {phase['acked']} "
                f"| {phase['ack_over_3s']} | {phase['answered']} "
                f"| {phase['overloaded']} / {phase.get('unavailable', 0)} "
                f"| {phase['lost']} "
                f"| {fmt_ms(ack, 'p50')} / {fmt_ms(ack, 'p99')} / {fmt_ms(ack, 'max')} "
                f"| {fmt_ms(answer, 'p50')} / {fmt_ms(answer, 'p99')} / "
                f"{fmt_ms(answer, 'max')} | {phase['answered_per_s']:g} "
                f"| {phase['server_peak_rss_mb']:.0f} MB | {phase['server_cpu_s']:.1f} s "
                f"| {fmt_ms(phase['lag_ms'], 'p99')} |"
            )
        for rate in target.get("skipped", []):
            lines.append(
                f"| {key} | {rate:g}/s | skipped: {target['skipped_reason']} |" + " |" * 11
            )
    table_ratios = results.get("ratios") or {}
    if table_ratios:
        lines += [
            "",
            "**Marvin's figures ÷ bare Bolt's (default runner) at the same offered rate**",
            "",
            "| × bare Bolt (default runner), same rate | offered | ack p50 | ack p99 "
            "| answer p50 | answer p99 | peak RSS | server CPU |",
            "|---|---|---|---|---|---|---|---|",
        ]

        def x(value: float | None) -> str:
            return "—" if value is None else f"{value:g}×"

        for key, rows_by_rate in table_ratios.items():
            for rate, row in rows_by_rate.items():
                lines.append(
                    f"| {key} | {rate}/s | {x(row['ack_p50'])} | {x(row['ack_p99'])} "
                    f"| {x(row['answer_p50'])} | {x(row['answer_p99'])} "
                    f"| {x(row['peak_rss'])} | {x(row['cpu_s'])} |"
                )
    lines += [
        "",
        f"**Start-up, and saturation (closed loop: {results['config']['clients']} clients, "
        "each sending its next command when the last one was answered)**",
        "",
        "| target | ready in | saturation: answered/s | refused overloaded | ack p99 "
        "| answer p99 | lost | peak RSS (whole run) | server log warnings / errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, target in results["targets"].items():
        starts = target.get("starts") or [{}]
        ready = starts[0].get("ready_in_s")
        sat = target.get("saturation")
        log = target.get("server_log") or {}
        lines.append(
            f"| {key} | {f'{ready:.2f} s' if ready is not None else '—'} "
            f"| {sat['answered_per_s'] if sat else '—'} "
            f"| {sat['overloaded'] if sat else '—'} "
            f"| {fmt_ms(sat['ack_ms'], 'p99') if sat else '—'} "
            f"| {fmt_ms(sat['answer_ms'], 'p99') if sat else '—'} "
            f"| {sat['lost'] if sat else '—'} | {target.get('peak_rss_mb', '—')} MB "
            f"| {log.get('warning', '—')} / {log.get('error', '—')} |"
        )
    return "\n".join(lines)


def write_outputs(results: dict[str, Any], out_dir: Path) -> tuple[Path, Path | None]:
    from benchmarks.plot import plot

    out_dir.mkdir(parents=True, exist_ok=True)
    ignore = out_dir / ".gitignore"
    if out_dir.resolve() == RESULTS.resolve() and not ignore.exists():
        ignore.write_text("# busy-hour results are not committed\n*\n")
    stem = f"busy_hour-{results['stamp']}"
    results["ratios"] = ratios(results)
    results["table_md"] = tables(results)
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(results, indent=1, default=str))
    png_path = out_dir / f"{stem}.png"
    return json_path, png_path if plot(results, png_path) else None


# ------------------------------------------------------------------ the run


async def run(args: argparse.Namespace, plan: Plan, results: dict[str, Any]) -> None:
    task = asyncio.current_task()
    assert task is not None

    def terminate() -> None:
        # Once: a second SIGTERM must not cancel the cleanup the first one started.
        if not task.cancelling():
            task.cancel()

    # Ctrl-C (SIGINT) is asyncio.run's: it cancels this task the same way.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, terminate)
    people = make_people()
    oncall = next(p.handle for p in people if p.production)
    with tempfile.TemporaryDirectory(prefix="busy_hour-") as tmp:
        workdir = Path(tmp)
        roles_file, people_file = write_people_files(people, workdir)
        templates = Templates(workdir, roles_file, oncall, args.postgres)
        try:
            for key in args.targets:
                record: dict[str, Any] = {}
                results["targets"][key] = record
                await run_target(TARGETS[key], plan, templates, people_file, record)
        finally:
            results["templates"] = templates.timings
            await templates.drop()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Busy-hour benchmark: Marvin vs bare Bolt under open-loop load."
    )
    parser.add_argument("--rates", help=f"commands/s, comma-separated (default {DEFAULT_RATES})")
    parser.add_argument("--duration", type=float, help="seconds of load per rate")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated")
    parser.add_argument("--quick", action="store_true", help=f"rates {QUICK_RATES}, 10 s each")
    parser.add_argument("--out", default=str(RESULTS), help="where results go")
    parser.add_argument(
        "--saturation", type=float, help="seconds of the closed-loop run (0 skips it)"
    )
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="run every rate even past one where answers were lost (--quick does)",
    )
    parser.add_argument("--clients", type=int, default=SATURATION_CLIENTS)
    parser.add_argument("--drain", type=float, default=DRAIN, help="wait for answers, seconds")
    parser.add_argument("--workers", type=int, default=0, help="load sender processes (0: auto)")
    parser.add_argument("--postgres", default=POSTGRES_ADMIN, help="admin URL (trust auth)")
    args = parser.parse_args(argv)
    unknown = [t for t in args.targets.split(",") if t not in TARGETS]
    if unknown:
        parser.error(f"unknown targets {unknown}; choose from {', '.join(TARGETS)}")
    args.targets = [t for t in args.targets.split(",") if t]
    return args


def make_plan(args: argparse.Namespace) -> Plan:
    rates = tuple(float(r) for r in args.rates.split(",")) if args.rates else None
    duration = args.duration or (QUICK_DURATION if args.quick else DEFAULT_DURATION)
    if args.saturation is not None:
        saturation = args.saturation
    else:
        saturation = 10.0 if args.quick else 15.0
    return Plan(
        rates=rates or (QUICK_RATES if args.quick else DEFAULT_RATES),
        duration=duration,
        saturation_s=saturation,
        clients=args.clients,
        ack_timeout=ACK_TIMEOUT,
        drain=args.drain,
        workers=args.workers,
        connections=4000,
        keep_going=args.keep_going or args.quick,
    )


def code_version() -> dict[str, Any]:
    """Which Marvin was measured: the commit, and whether marvin/ had uncommitted changes."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.strip()

    changed = git("status", "--porcelain", "--", "marvin", "migrations")
    return {
        "commit": git("rev-parse", "HEAD"),
        "subject": git("log", "-1", "--format=%s"),
        "uncommitted_files": len(changed.splitlines()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    started = time.time()
    results: dict[str, Any] = {
        "stamp": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        "started_at": datetime.now(UTC).isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "note": "server, Slack stub and load generator share this machine's CPUs",
            "helper_priority": HELPER_PRIORITY if os.geteuid() == 0 else 0,
            "load_average_at_start": os.getloadavg(),
        },
        "config": {
            **asdict(plan),
            "rates": list(plan.rates),
            "targets": args.targets,
            "people": PEOPLE,
            "flags": FLAGS,
            "slow_slack_s": SLOW_SLACK_S,
            "mix": dict(MIX),
            "latency_from": "each command's intended send time t0 + i/R",
        },
        "code_at_start": code_version(),
        "targets": {},
        "interrupted": False,
    }
    print(
        f"busy hour: targets {', '.join(args.targets)}; rates "
        f"{', '.join(f'{r:g}' for r in plan.rates)}/s for {plan.duration:g} s each, then "
        f"{plan.saturation_s:g} s closed loop x{plan.clients}; drain {plan.drain:g} s",
        flush=True,
    )
    try:
        asyncio.run(run(args, plan, results))
    except (KeyboardInterrupt, asyncio.CancelledError):
        results["interrupted"] = True
        print("interrupted: everything started was stopped; writing what was measured")
    results["elapsed_s"] = round(time.time() - started, 1)
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["code_at_end"] = code_version()
    json_path, png_path = write_outputs(results, Path(args.out))
    print()
    print(results["table_md"])
    print()
    print(f"results: {json_path}")
    print(f"plot:    {png_path or 'not drawn (pip install matplotlib)'}")
    print(f"took {results['elapsed_s']:.0f} s")
    return 1 if results["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())
