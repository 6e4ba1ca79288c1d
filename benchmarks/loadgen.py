"""The busy-hour load generator: signed slash commands at a fixed rate, in its own process.

Open loop (`--mode open`): command i is due at t0 + i/R whatever happened to the ones
before it, and each is sent at its due time over a large connection pool (optionally from
several worker processes). Latencies are measured FROM THE DUE TIME, so queueing anywhere
(here, in the kernel, in the server) counts; how late the generator itself started each
request is reported apart, as its lag.

* ack latency: due time -> the HTTP answer to the signed POST (client timeout `--timeout`);
* answer latency: due time -> the wall-clock time the Slack stub received the post on that
  command's own response_url (every process is on this machine; both use time.time()).

A command acked with HTTP 200 whose answer has not arrived `--drain` seconds after the last
command was due is LOST, unless the ack itself refused it: saying "overloaded", or that the
server can't take commands right now (Marvin's ack when its database is unreachable), which
tells the person nothing was done.

Closed loop (`--mode closed`): `--clients` clients, each sending its next command when the
previous one's answer arrived; it reports the answered throughput at saturation.

    .venv/bin/python -m benchmarks.loadgen --target URL --control URL --people FILE
        --secret S --phase NAME [--mode open --rate R --duration D [--workers N]]
        [--mode closed --clients C --duration D] [--timeout 20] [--drain 30] --out FILE

It writes one JSON object (counts, percentiles in ms, a per-second series) to `--out`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import resource
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlparse

import aiohttp

from tests.fakes.slack_requests import slash_command

# The mix of a busy hour in the production channel: kind, weight.
MIX: tuple[tuple[str, int], ...] = (
    ("help", 10),
    ("whoami", 15),
    ("feature get", 25),
    ("feature list", 10),
    ("set staging", 30),  # allowed: feature set <flag> true --staging
    ("refused ceiling", 5),  # feature set <hot flag> 50 --actors: above the 1% ceiling
    ("refused no grant", 5),  # feature set by someone without the feature_flags grant
)
READS_ELSEWHERE = 0.3  # share of reads asked from another channel than the production one
SLACK_TIMEOUT_S = 3.0  # Slack shows the person an error when the ack takes longer
OVERLOADED = "overloaded"
# An ack saying one of these refused the command: no answer is to come.
UNAVAILABLE = ("can't take commands", "cannot take commands", "try again")
MINT_BATCH = 5000
# A command drawn from the mix: kind, text, user (id, name), channel (id, name).
Drawn = tuple[str, str, tuple[str, str], tuple[str, str]]


class Command(NamedTuple):
    seq: int
    kind: str
    text: str
    user_id: str
    user_name: str
    channel_id: str
    channel_name: str
    url: str  # its own response_url on the Slack stub


class Sent(NamedTuple):
    """What the sender saw of one command (times in seconds; None when it did not happen)."""

    seq: int
    lag: float  # how late the request was started against its due time
    ack: float | None  # due time -> ack response read; None on an error
    elapsed: float  # due time -> ack or error (a timeout's is the timeout)
    status: int | None
    refused: str | None  # "overloaded" or "unavailable" when the ack refused the command
    ack_text: str  # the start of the ack's body, to show what acks said
    error: str | None


@dataclass(frozen=True)
class Population:
    granted: list[tuple[str, str]]  # (id, name) with the feature_flags grant
    ungranted: list[tuple[str, str]]
    production: tuple[str, str]  # channel (id, name)
    elsewhere: tuple[str, str]
    flags: list[str]
    hot_flags: list[str]  # on in staging before the load: raising them in production is refused

    @classmethod
    def load(cls, path: Path) -> Population:
        data = json.loads(path.read_text())
        granted = [(p["id"], p["name"]) for p in data["people"] if p.get("grant")]
        ungranted = [(p["id"], p["name"]) for p in data["people"] if not p.get("grant")]
        channels = data["channels"]
        production = next(c for c in channels if c.get("production"))
        elsewhere = next(c for c in channels if not c.get("production"))
        return cls(
            granted=granted,
            ungranted=ungranted,
            production=(production["id"], production["name"]),
            elsewhere=(elsewhere["id"], elsewhere["name"]),
            flags=list(data["flags"]),
            hot_flags=list(data["hot_flags"]),
        )


def command_stream(people: Population, seed: str) -> Iterator[Drawn]:
    """(kind, text, user, channel) forever, drawn from MIX by many distinct users."""
    rng = random.Random(seed)
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    everyone = people.granted + people.ungranted
    while True:
        kind = rng.choices(kinds, weights)[0]
        flag = rng.choice(people.flags)
        hot = rng.choice(people.hot_flags)
        channel = people.production
        user = rng.choice(everyone)
        if kind == "help":
            text = "help"
        elif kind == "whoami":
            text = "whoami"
        elif kind == "feature get":
            text = f"feature get {hot if rng.random() < 0.5 else flag}"
        elif kind == "feature list":
            text = "feature list"
        elif kind == "set staging":
            user, text = rng.choice(people.granted), f"feature set {flag} true --staging"
        elif kind == "refused ceiling":
            user, text = rng.choice(people.granted), f"feature set {hot} 50 --actors"
        else:
            user, text = rng.choice(people.ungranted), f"feature set {flag} true --staging"
        if kind in ("help", "whoami", "feature get", "feature list"):
            if rng.random() < READS_ELSEWHERE:
                channel = people.elsewhere
        yield kind, text, user, channel


async def mint(
    session: aiohttp.ClientSession,
    control: str,
    phase: str,
    drawn: Sequence[Drawn],
    first_index: int,
) -> list[Command]:
    """Give each drawn command its own response_url, minted by the stub for this phase."""
    commands: list[Command] = []
    for start in range(0, len(drawn), MINT_BATCH):
        chunk = drawn[start : start + MINT_BATCH]
        pairs = [[channel[0], user[0]] for _, _, user, channel in chunk]
        async with session.post(
            f"{control}/bench/response_urls", json={"phase": phase, "pairs": pairs}
        ) as response:
            response.raise_for_status()
            urls: list[str] = (await response.json())["urls"]
        for offset, ((kind, text, user, channel), url) in enumerate(zip(chunk, urls, strict=True)):
            commands.append(
                Command(
                    first_index + start + offset,
                    kind,
                    text,
                    user[0],
                    user[1],
                    channel[0],
                    channel[1],
                    url,
                )
            )
    return commands


def _path(url: str) -> str:
    return urlparse(url).path


# ------------------------------------------------------------------ answers, as they arrive


@dataclass
class Answers:
    """Follows the stub's answer stream: first arrival per response_url path."""

    first: dict[str, dict[str, Any]] = field(default_factory=dict)
    waiting: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    outstanding: set[str] = field(default_factory=set)
    all_in: asyncio.Event = field(default_factory=asyncio.Event)
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)

    def arrived(self, answer: dict[str, Any]) -> None:
        path = str(answer["path"])
        if path in self.first:
            return
        self.first[path] = answer
        future = self.waiting.pop(path, None)
        if future is not None and not future.done():
            future.set_result(answer)
        self.outstanding.discard(path)
        if not self.outstanding:
            self.all_in.set()

    def expect(self, paths: set[str]) -> None:
        """Wait (with `all_in`) for these paths, minus those already answered."""
        self.outstanding = {p for p in paths if p not in self.first}
        if self.outstanding:
            self.all_in.clear()
        else:
            self.all_in.set()

    def future(self, path: str) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if path in self.first:
            future.set_result(self.first[path])
        else:
            self.waiting[path] = future
        return future

    async def follow(self, session: aiohttp.ClientSession, control: str, phase: str) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with session.get(
            f"{control}/bench/stream", params={"phase": phase}, timeout=timeout
        ) as response:
            async for line in response.content:
                if not line.strip():
                    continue
                item = json.loads(line)
                if item.get("subscribed"):
                    self.subscribed.set()
                    continue
                self.arrived(item)


# ------------------------------------------------------------------ sending


async def _send_one(
    session: aiohttp.ClientSession,
    target: str,
    secret: str,
    command: Command,
    due: float,
    ack_timeout: float,
) -> Sent:
    started = time.monotonic()
    body, headers = slash_command(
        secret,
        text=command.text,
        user_id=command.user_id,
        user_name=command.user_name,
        channel_id=command.channel_id,
        channel_name=command.channel_name,
        response_url=command.url,
        trigger_id=f"bench.{command.seq}.{int(started * 1e6)}",
    )
    status: int | None = None
    error: str | None = None
    refused: str | None = None
    ack_text = ""
    ack: float | None = None
    try:
        async with session.post(
            target, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=ack_timeout)
        ) as response:
            text = await response.text()
            status = response.status
        ack = time.monotonic() - due
        lowered = text.lower()
        if OVERLOADED in lowered:
            refused = "overloaded"
        elif any(marker in lowered for marker in UNAVAILABLE):
            refused = "unavailable"
        ack_text = text[:48]
        if status != 200:
            error = f"HTTP {status}"
    except TimeoutError:
        error = "timeout"
    except aiohttp.ClientError as exc:
        error = type(exc).__name__
    elapsed = time.monotonic() - due
    return Sent(command.seq, started - due, ack, elapsed, status, refused, ack_text, error)


async def send_share(
    target: str,
    secret: str,
    share: Sequence[tuple[Command, float]],
    t0_wall: float,
    ack_timeout: float,
    connections: int,
) -> list[Sent]:
    """Send each (command, offset) at t0 + offset; the records, in no particular order."""
    t0 = time.monotonic() + (t0_wall - time.time())
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks: list[asyncio.Task[Sent]] = []
        for command, offset in share:
            due = t0 + offset
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(
                asyncio.create_task(_send_one(session, target, secret, command, due, ack_timeout))
            )
        return list(await asyncio.gather(*tasks))


def _worker(
    target: str,
    secret: str,
    share: list[tuple[Command, float]],
    t0_wall: float,
    timeout: float,
    connections: int,
) -> list[Sent]:
    return asyncio.run(send_share(target, secret, share, t0_wall, timeout, connections))


# ------------------------------------------------------------------ statistics


def percentiles(
    values: Sequence[float], censored: Sequence[float] = ()
) -> dict[str, float | bool | int | None]:
    """Nearest-rank percentiles in ms. `censored` values are lower bounds (a timeout, an
    answer that never came): they are ranked where they are, and a percentile that lands
    on one is flagged, since the truth is at least that."""
    ranked = sorted([(v, False) for v in values] + [(v, True) for v in censored])
    out: dict[str, float | bool | int | None] = {"n": len(ranked), "censored": len(censored)}
    if not ranked:
        return out | {"p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    for name, q in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99)):
        value, lower_bound = ranked[max(0, math.ceil(q * len(ranked)) - 1)]
        out[name] = round(value * 1000, 3)
        out[f"{name}_at_least"] = lower_bound
    out["max"] = round(ranked[-1][0] * 1000, 3)
    out["max_at_least"] = ranked[-1][1]
    out["mean"] = round(sum(v for v, _ in ranked) / len(ranked) * 1000, 3)
    return out


def summarise(
    commands: Sequence[Command],
    offsets: Sequence[float],
    sent: Sequence[Sent],
    answers: dict[str, dict[str, Any]],
    t0_wall: float,
    gave_up_wall: float,
) -> dict[str, Any]:
    """Counts and latencies of one phase; `gave_up_wall` ends the wait for answers."""
    by_index = {s.seq: s for s in sent}
    ack_ok: list[float] = []
    ack_failed: list[float] = []
    answer_ok: list[float] = []
    answer_missing: list[float] = []
    lags: list[float] = []
    errors: Counter[str] = Counter()
    kinds: dict[str, list[float]] = defaultdict(list)
    kinds_missing: dict[str, list[float]] = defaultdict(list)
    seconds: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    sent_per_second: Counter[int] = Counter()
    arrivals: Counter[int] = Counter()
    acked = answered = answered_total = lost = overloaded = unavailable = over_3s = 0
    rejected = 0
    ack_texts: Counter[str] = Counter()
    for command, offset in zip(commands, offsets, strict=True):
        record = by_index[command.seq]
        due_wall = t0_wall + offset
        second = int(offset)
        lags.append(record.lag)
        sent_per_second[second] += 1
        answer = answers.get(_path(command.url))
        refused_busy = record.refused == "overloaded"
        unavailable += record.refused == "unavailable"
        if answer is not None:
            answered_total += 1
            refused_busy = refused_busy or OVERLOADED in str(answer.get("text", "")).lower()
            if int(answer.get("status", 200)) >= 400:
                rejected += 1
            arrivals[int(float(answer["at"]) - t0_wall)] += 1
        overloaded += refused_busy
        if record.status == 200 and record.ack is not None:
            acked += 1
            # What the acks said, with the echoed command cut off ("Working on `...").
            ack_texts[record.ack_text.split("`")[0][:40]] += 1
            ack_ok.append(record.ack)
            seconds[second]["ack"].append(record.ack)
            over_3s += record.ack > SLACK_TIMEOUT_S
            if answer is not None:
                answered += 1
                latency = float(answer["at"]) - due_wall
                answer_ok.append(latency)
                kinds[command.kind].append(latency)
                seconds[second]["answer"].append(latency)
            elif record.refused is None:
                lost += 1
                answer_missing.append(gave_up_wall - due_wall)
                kinds_missing[command.kind].append(gave_up_wall - due_wall)
        else:
            ack_failed.append(record.elapsed)
            over_3s += 1
            errors[record.error or f"HTTP {record.status}"] += 1
    per_second = []
    for second in range(max([*sent_per_second, *arrivals], default=-1) + 1):
        row = seconds[second]
        ack = percentiles(row.get("ack", []))
        answer = percentiles(row.get("answer", []))
        per_second.append(
            {
                "t": second,
                "sent": sent_per_second.get(second, 0),
                "acked": len(row.get("ack", [])),
                "ack_p50_ms": ack["p50"],
                "ack_p99_ms": ack["p99"],
                "answered": len(row.get("answer", [])),
                "answer_p50_ms": answer["p50"],
                "answer_p99_ms": answer["p99"],
                "answers_arriving": arrivals.get(second, 0),
            }
        )
    return {
        "sent": len(commands),
        "acked": acked,
        "ack_errors": dict(errors),
        "ack_over_3s": over_3s,
        "answered": answered,
        "answered_including_failed_acks": answered_total,
        "answer_rejected_by_stub": rejected,
        "overloaded": overloaded,
        "unavailable": unavailable,
        "ack_texts": dict(ack_texts.most_common(5)),
        "lost": lost,
        "ack_ms": percentiles(ack_ok, ack_failed),
        "answer_ms": percentiles(answer_ok, answer_missing),
        "lag_ms": percentiles(lags),
        "by_kind": {
            kind: {
                "answer_ms": percentiles(kinds.get(kind, []), kinds_missing.get(kind, [])),
                "lost": len(kinds_missing.get(kind, [])),
            }
            for kind, _ in MIX
        },
        "per_second": per_second,
    }


# ------------------------------------------------------------------ the two modes


async def _fetch_answers(
    session: aiohttp.ClientSession, control: str, phase: str
) -> dict[str, dict[str, Any]]:
    async with session.get(f"{control}/bench/answers", params={"phase": phase}) as response:
        response.raise_for_status()
        listed: list[dict[str, Any]] = (await response.json())["answers"]
    first: dict[str, dict[str, Any]] = {}
    for answer in listed:
        first.setdefault(str(answer["path"]), answer)
    return first


async def open_loop(args: argparse.Namespace, people: Population) -> dict[str, Any]:
    n = max(1, round(args.rate * args.duration))
    offsets = [i / args.rate for i in range(n)]
    draw = command_stream(people, f"{args.seed}:{args.phase}")
    connector = aiohttp.TCPConnector(limit=16)
    async with aiohttp.ClientSession(connector=connector) as control:
        commands = await mint(control, args.control, args.phase, [next(draw) for _ in range(n)], 0)
        answers = Answers()
        follower = asyncio.create_task(answers.follow(control, args.control, args.phase))
        try:
            await asyncio.wait_for(answers.subscribed.wait(), 10)
            workers = max(1, args.workers)
            shares: list[list[tuple[Command, float]]] = [[] for _ in range(workers)]
            for command, offset in zip(commands, offsets, strict=True):
                shares[command.seq % workers].append((command, offset))
            # Far enough ahead for worker processes to start and import.
            t0_wall = time.time() + (0.3 if workers == 1 else 2.0)
            per_worker = max(16, args.connections // workers)
            send_started = time.monotonic()
            if workers == 1:
                sent = await send_share(
                    args.target, args.secret, shares[0], t0_wall, args.timeout, per_worker
                )
            else:
                loop = asyncio.get_running_loop()
                with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                    parts = await asyncio.gather(
                        *(
                            loop.run_in_executor(
                                pool,
                                _worker,
                                args.target,
                                args.secret,
                                share,
                                t0_wall,
                                args.timeout,
                                per_worker,
                            )
                            for share in shares
                        )
                    )
                sent = [s for part in parts for s in part]
            acks_done = time.monotonic()
            by_index = {s.seq: s for s in sent}
            answers.expect(
                {
                    _path(c.url)
                    for c in commands
                    if by_index[c.seq].status == 200 and by_index[c.seq].refused is None
                }
            )
            # The drain period starts when the last command was due, not when its ack came:
            # an answer is lost if it has not come `drain` seconds after the load ended.
            load_ended_wall = t0_wall + offsets[-1]
            drain_left = load_ended_wall + args.drain - time.time()
            drained = True
            try:
                await asyncio.wait_for(answers.all_in.wait(), max(0.0, drain_left))
            except TimeoutError:
                drained = False
            drain_s = time.time() - load_ended_wall
            gave_up_wall = time.time()
            final = await _fetch_answers(control, args.control, args.phase)
        finally:
            follower.cancel()
    result = summarise(commands, offsets, sent, final, t0_wall, gave_up_wall)
    answer_times = [float(final[_path(c.url)]["at"]) for c in commands if _path(c.url) in final]
    # Answers per second over the whole phase: from the first due time to the last answer,
    # or to the end of the drain period when answers were still missing then.
    until = max(answer_times, default=t0_wall) if drained else gave_up_wall
    result |= {
        "mode": "open",
        "phase": args.phase,
        "offered_per_s": args.rate,
        "duration_s": args.duration,
        "workers": max(1, args.workers),
        "connections": args.connections,
        "sending_s": round(acks_done - send_started, 3),
        "drained": drained and result["lost"] == 0,
        "drain_s": round(drain_s, 3),  # from the last due time to the last answer awaited
        "unanswered_at_end": len(answers.outstanding),
        "acked_per_s": round(result["acked"] / args.duration, 2),
        "answered_per_s": round(len(answer_times) / max(until - t0_wall, 1e-9), 2),
    }
    return result


class UrlPool:
    """Commands with fresh response_urls, minted in batches as the closed loop needs them."""

    def __init__(
        self, session: aiohttp.ClientSession, args: argparse.Namespace, people: Population
    ) -> None:
        self._session = session
        self._args = args
        self._draw = command_stream(people, f"{args.seed}:{args.phase}")
        self._ready: list[Command] = []
        self._minted = 0
        self._lock = asyncio.Lock()
        self.issued: list[Command] = []

    async def refill(self) -> None:
        drawn = [next(self._draw) for _ in range(1000)]
        minted = await mint(
            self._session, self._args.control, self._args.phase, drawn, self._minted
        )
        self._ready = minted[::-1] + self._ready
        self._minted += len(drawn)

    async def next(self) -> Command:
        async with self._lock:
            if not self._ready:
                await self.refill()
            command = self._ready.pop()
            self.issued.append(command)
            return command


async def closed_loop(args: argparse.Namespace, people: Population) -> dict[str, Any]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16)) as control:
        pool = UrlPool(control, args, people)
        await pool.refill()  # the first batch before the clock starts
        answers = Answers()
        follower = asyncio.create_task(answers.follow(control, args.control, args.phase))
        await asyncio.wait_for(answers.subscribed.wait(), 10)
        t0_wall = time.time()
        t0 = time.monotonic()
        end = t0 + args.duration
        offsets: dict[int, float] = {}
        sent: list[Sent] = []
        connector = aiohttp.TCPConnector(limit=args.clients + 8)

        async def client(session: aiohttp.ClientSession) -> None:
            while time.monotonic() < end:
                command = await pool.next()
                due = time.monotonic()
                offsets[command.seq] = due - t0
                answered = answers.future(_path(command.url))
                record = await _send_one(
                    session, args.target, args.secret, command, due, args.timeout
                )
                sent.append(record)
                if record.status == 200 and record.refused is None:
                    try:
                        # As in the open loop: answers are awaited until `drain` seconds
                        # after the load ended, and no longer.
                        left = end + args.drain - time.monotonic()
                        await asyncio.wait_for(answered, max(0.0, left))
                    except TimeoutError:
                        pass
                else:
                    answered.cancel()

        try:
            async with aiohttp.ClientSession(connector=connector) as session:
                await asyncio.gather(*(client(session) for _ in range(args.clients)))
            gave_up_wall = time.time()
            final = await _fetch_answers(control, args.control, args.phase)
        finally:
            follower.cancel()
    commands = [c for c in pool.issued if c.seq in offsets]
    result = summarise(
        commands, [offsets[c.seq] for c in commands], sent, final, t0_wall, gave_up_wall
    )
    # Throughput while every client is busy: answers arriving from the first answer (the
    # pipeline is full by then) until the clients stop sending. When even the first answer
    # came after that, over everything: from the start to the last answer.
    arrived = sorted(
        float(final[_path(c.url)]["at"]) - t0_wall for c in commands if _path(c.url) in final
    )
    if arrived and arrived[0] < args.duration * 0.8:
        start = arrived[0]
        steady = sum(1 for t in arrived if start < t <= args.duration)
        answered_per_s = steady / (args.duration - start)
    else:
        answered_per_s = len(arrived) / max(arrived[-1] if arrived else 0.0, 1e-9)
    result |= {
        "mode": "closed",
        "phase": args.phase,
        "clients": args.clients,
        "duration_s": args.duration,
        "drained": result["lost"] == 0,
        "answered_per_s": round(answered_per_s, 2),
        "acked_per_s": round(result["acked"] / args.duration, 2),
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Busy-hour load generator (one phase).")
    parser.add_argument("--target", required=True, help="the server's /slack/events URL")
    parser.add_argument("--control", required=True, help="the Slack stub's control URL")
    parser.add_argument("--people", required=True, help="JSON file: people, channels, flags")
    parser.add_argument("--secret", required=True, help="the signing secret")
    parser.add_argument("--phase", required=True, help="a name for this phase's answers")
    parser.add_argument("--mode", choices=("open", "closed"), default="open")
    parser.add_argument("--rate", type=float, default=20.0, help="commands/s (open loop)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--workers", type=int, default=1, help="sender processes (open loop)")
    parser.add_argument("--connections", type=int, default=2000, help="connection pool size")
    parser.add_argument("--clients", type=int, default=64, help="clients (closed loop)")
    parser.add_argument("--timeout", type=float, default=20.0, help="ack timeout, seconds")
    parser.add_argument("--drain", type=float, default=30.0, help="wait for answers, seconds")
    parser.add_argument("--seed", default="busy-hour")
    parser.add_argument("--out", required=True, help="where to write the JSON result")
    args = parser.parse_args(argv)
    people = Population.load(Path(args.people))
    runner = open_loop if args.mode == "open" else closed_loop
    result = asyncio.run(runner(args, people))
    own = resource.getrusage(resource.RUSAGE_SELF)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["generator_cpu_s"] = round(
        own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime, 2
    )
    Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
