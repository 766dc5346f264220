"""Benchmark shared-context-server against the floor server (a report, not a test).

Run from the repository root:

    .venv/bin/python tests/benchmarks/bench.py

With --search, runs bench_search.py instead (search latency on 1k, 10k and 100k messages;
its own options follow --search, e.g. ``bench.py --search --queries 50``).

Options: --only floor|product|realtime, --messages N (1000), --memory N (500), --procs N (20),
--per-proc N (200), --spawns N (5), --rounds N (2), --floor PATH (default
../shared/bench/floor_server.py), --json, --posts N (50), --idle-seconds S (10), --stdio
auto|threads (the product's transport; threads is the SDK's, as the floor uses),
--db URL or --pg-cluster, --pg-cpus LIST (below).

With ``--db postgresql://user@host:port/db`` (a role that may CREATE DATABASE) the product
on PostgreSQL runs as a third system, "postgres", in the same run and the same phases as
the product on a SQLite file: each phase gets a database of its own, made with CREATE
DATABASE on that server and dropped at the end, so runs never see each other's rows (the
URL's own database is only connected to). ``--pg-cluster`` does the same on a throwaway
cluster started here on 127.0.0.1 over TCP (tests/pg_cluster.py, synchronous_commit=off,
like the file's ``synchronous = NORMAL``). The table then gains a pg/sqlite column, and the
targets of issue 15 are checked: throughput >= 0.7x the file's, each tool's p50 <= 2x, 0
errors, news from another process in p50 <= 50 ms. ``--only product`` runs both engines
without the floor.

``--pg-cpus LIST`` (with ``--pg-cluster``, Linux only) gives PostgreSQL cores of its own,
as a team's server on another host would have: the cluster's postmaster, and so every
backend it forks, runs only on LIST (``taskset -c``, e.g. ``1`` or ``2-3``), and the bench
with every process it spawns (the servers on the file and on PostgreSQL, the clients'
connections) only on the CPUs it may use that are not in LIST (``sched_setaffinity`` at
start, inherited). The header says which CPUs each side had. A LIST that is not a list of
CPUs this process may use, or that takes them all, is refused. Without it every process
shares every core, as on one developer's machine.

Both systems are driven by the same client code (``ClientSession`` over ``stdio_client``,
handshake era), each on its own fresh temporary databases. Run-to-run noise on a small
shared machine is of the same order as the 1.2x targets, and the load moves between
phases, so every phase runs --rounds times, alternating which system goes first: round 1
floor then product, round 2 product then floor, and so on (with PostgreSQL, the three in
turn and reversed). Each round's figures and ratios are printed, and the headline figure
and ratio is the median of the rounds' (a ratio's median is taken over the rounds'
ratios, each from one round's paired measurements). In each round:

1. start-up: spawn to ``tools/list`` answered, median over --spawns (after one warm-up
   spawn per system before round 1), the round's first system first, then ABBA;
2. latency: both servers up at once and called in turn, the round's first system first at
   even steps and last at odd ones, so drift and neighbours' load land on both alike:
   p50/p99 of --messages
   sequential ``add_message`` calls into one session, then p50/p99 of 200 reads of the
   latest 50 messages (``get_context`` / floor ``get_messages``), and p50/p99 of --memory
   sequential ``set_memory`` calls cycling over 50 keys (most replace an entry);
3. concurrency: --procs server processes, --per-proc ``add_message`` calls each, all into one
   shared session, after one untimed warm-up post each, all at once (its p50 is reported
   as "first call"): msgs/s, p99, errors, lost rows (counted with stdlib sqlite3 afterwards;
   with psycopg on PostgreSQL); one system at a time (each saturates the machine), the
   round's first system first;
4. RSS of the server process after the latency phase (VmRSS from /proc).

Counts (errors, lost rows, failed spawns) are summed over the rounds.

Then, for the product alone, on each engine (``--only realtime`` runs just this):

5. real time: idle CPU of a server process subscribed to a session over --idle-seconds
   (utime+stime from /proc/PID/stat); then --posts messages from a second process, each
   after a random pause, timed from sending ``add_message`` in the second process to
   ``notifications/resources/updated`` in the subscriber (p50/p99), and the same for a
   ``wait_for_messages`` long poll in the subscriber returning the message. On
   PostgreSQL also the engine alone: NOTIFY committed by another process to the LISTEN
   connection's wake-up, without an MCP server in between.

Exit status is 0 unless something crashed; PASS/FAIL lines are informational.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import anyio
import bench_pg  # beside this file
import mcp.types as types
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPDeprecationWarning

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_FLOOR = REPO_ROOT.parent / "shared" / "bench" / "floor_server.py"

READ_CALLS = 200
READ_LIMIT = 50
MEMORY_KEYS = 50
WARMUP_WRITES = 20
WARMUP_READS = 10
VALIDATE_SAMPLES = 200

SPAWN_TIMEOUT_S = 60.0
SPAWN_ATTEMPTS = 3
CALL_TIMEOUT_S = 30.0
SHUTDOWN_TIMEOUT_S = 30.0


# --------------------------------------------------------------------------- systems


@dataclass(frozen=True)
class System:
    """How to launch one server and which tools/arguments it uses."""

    name: str
    marker: str  # a substring of the server's command line, to find its pid in /proc
    args: Callable[[str, str], list[str]]
    env: Callable[[str, str], dict[str, str]]
    read_tool: str
    read_args: Callable[[str, int], dict[str, Any]]
    add_tool: str = "add_message"
    create_tool: str = "create_session"
    memory_tool: str = "set_memory"
    engine: str = "sqlite"  # where its databases live: files, or PostgreSQL (--db URL)

    def params(self, db: str, agent: str) -> StdioServerParameters:
        return StdioServerParameters(
            command=sys.executable, args=self.args(db, agent), env=self.env(db, agent)
        )


def floor_system(path: Path) -> System:
    return System(
        name="floor",
        marker=str(path),
        args=lambda db, agent: [str(path)],
        env=lambda db, agent: {"FLOOR_DB": str(db), "AGENT_ID": agent},
        read_tool="get_messages",
        read_args=lambda sid, n: {"session_id": sid, "last": n},
    )


def product_system(stdio: str = "auto", engine: str = "sqlite") -> System:
    # The --db value tells the two products apart in /proc: a file path, or a URL.
    on_pg = engine == "postgres"
    return System(
        name="postgres" if on_pg else "product",
        marker="serve --db postgresql://" if on_pg else "serve --db /",
        engine=engine,
        args=lambda db, agent: [
            "-m",
            "shared_context_server",
            "serve",
            "--db",
            db,
            "--agent-id",
            agent,
            "--stdio",
            stdio,
        ],
        env=lambda db, agent: {"SHARED_CONTEXT_DB": db},
        read_tool="get_context",
        read_args=lambda sid, n: {"session_id": sid, "limit": n},
    )


# --------------------------------------------------------------------------- helpers


class BenchError(Exception):
    """A system misbehaved so badly that its figures cannot be measured."""


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), like numpy's default."""
    if not values:
        return math.nan
    data = sorted(values)
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def structured(result: types.CallToolResult) -> dict[str, Any]:
    """The result's structured content, falling back to JSON in the first text block."""
    if isinstance(result.structured_content, dict):
        return result.structured_content
    for block in result.content:
        if isinstance(block, types.TextContent):
            try:
                data = json.loads(block.text)
            except ValueError:
                break
            if isinstance(data, dict):
                return data
    return {}


def error_text(result: types.CallToolResult) -> str:
    texts = [b.text for b in result.content if isinstance(b, types.TextContent)]
    return " ".join(texts)[:300] or repr(result.structured_content)[:300]


def child_pids(marker: str) -> list[int]:
    """Pids of this process's children whose command line contains marker."""
    me = os.getpid()
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == me and marker in cmdline:
            found.append(int(entry.name))
    return found


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise BenchError(f"no VmRSS for pid {pid}")


def count_rows(system: System, db: str, session_id: str) -> int:
    if system.engine == "postgres":
        return bench_pg.count_rows(db, session_id)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30.0)
    try:
        row = conn.execute("SELECT COUNT(*) FROM messages WHERE session_id = ?", (session_id,))
        return int(row.fetchone()[0])
    finally:
        conn.close()


@asynccontextmanager
async def connect(
    system: System, db: str, agent: str, errlog: TextIO
) -> AsyncIterator[ClientSession]:
    """Spawn one server, initialize (handshake era) and list its tools."""
    async with (
        stdio_client(system.params(db, agent), errlog=errlog) as (read, write),
        ClientSession(read, write) as session,
    ):
        with anyio.fail_after(SPAWN_TIMEOUT_S):
            await session.initialize()
            tools = await session.list_tools()
        names = {t.name for t in tools.tools}
        missing = {system.create_tool, system.add_tool, system.read_tool} - names
        if missing:
            raise BenchError(f"{system.name}: tools missing: {sorted(missing)}")
        yield session


async def create_session(system: System, session: ClientSession, purpose: str) -> str:
    with anyio.fail_after(CALL_TIMEOUT_S):
        result = await session.call_tool(system.create_tool, {"purpose": purpose})
    if result.is_error:
        raise BenchError(f"{system.name}: create_session failed: {error_text(result)}")
    sid = structured(result).get("session_id")
    if not isinstance(sid, str | int):
        raise BenchError(f"{system.name}: create_session returned no session_id")
    return str(sid)


# --------------------------------------------------------------------------- phases


@dataclass
class Figures:
    startup_ms: float = math.nan
    startup_all_ms: list[float] = field(default_factory=list)
    add_p50_ms: float = math.nan
    add_p99_ms: float = math.nan
    add_errors: int = 0
    read_p50_ms: float = math.nan
    read_p99_ms: float = math.nan
    read_errors: int = 0
    read_returned: int = 0
    mem_p50_ms: float = math.nan
    mem_p99_ms: float = math.nan
    mem_errors: int = 0
    rss_mb: float = math.nan
    rss_all_mb: list[float] = field(default_factory=list)
    client_validate_us: float = math.nan
    conc_msgs_per_s: float = math.nan
    conc_p99_ms: float = math.nan
    conc_wall_s: float = math.nan
    conc_errors: int = 0
    conc_lost: int = 0
    conc_rows: int = 0
    conc_server_cpu_ms: float = math.nan
    conc_client_cpu_ms: float = math.nan
    conc_first_p50_ms: float = math.nan
    spawn_failures: int = 0
    first_error: str = ""
    crashed: str = ""


@dataclass
class Run:
    """One system's raw samples, pooled over the rounds, and the figures derived from them."""

    system: System
    workdir: Path
    errlog: TextIO
    # A fresh database for a phase's name: a file in workdir, or one on PostgreSQL.
    target: Callable[[str], str]
    figures: Figures = field(default_factory=Figures)
    startup_s: list[float] = field(default_factory=list)
    add_s: list[float] = field(default_factory=list)
    read_s: list[float] = field(default_factory=list)
    mem_s: list[float] = field(default_factory=list)
    validate_s: list[float] = field(default_factory=list)
    conc_s: list[float] = field(default_factory=list)
    conc_first_s: list[float] = field(default_factory=list)
    conc_wall: float = 0.0
    conc_ok: int = 0
    conc_server_cpu: float = 0.0
    conc_client_cpu: float = 0.0

    def note_error(self, text: str) -> None:
        if not self.figures.first_error:
            self.figures.first_error = text

    def spawn_failed(self, exc: BaseException, agent: str) -> None:
        self.figures.spawn_failures += 1
        inner = leaf(exc)
        self.errlog.flush()
        log = tail(self.workdir / "server-stderr.log", 3).replace("\n", " | ")
        self.note_error(f"spawn {agent}: {type(inner).__name__}: {inner}; stderr: {log}")

    async def open_session(self, stack: AsyncExitStack, db: str, agent: str) -> ClientSession:
        """connect() with retries; each failed spawn is counted and noted."""
        for attempt in range(1, SPAWN_ATTEMPTS + 1):
            try:
                return await stack.enter_async_context(connect(self.system, db, agent, self.errlog))
            except Exception as exc:
                if attempt == SPAWN_ATTEMPTS:
                    raise
                self.spawn_failed(exc, agent)
        raise AssertionError("unreachable")

    def summarise(self) -> None:
        fig = self.figures
        if self.startup_s:
            fig.startup_all_ms = [round(t * 1000.0, 1) for t in self.startup_s]
            fig.startup_ms = statistics.median(self.startup_s) * 1000.0
        if self.add_s:
            fig.add_p50_ms = statistics.median(self.add_s) * 1000.0
            fig.add_p99_ms = percentile(self.add_s, 99) * 1000.0
        if self.mem_s:
            fig.mem_p50_ms = statistics.median(self.mem_s) * 1000.0
            fig.mem_p99_ms = percentile(self.mem_s, 99) * 1000.0
        if self.read_s:
            fig.read_p50_ms = statistics.median(self.read_s) * 1000.0
            fig.read_p99_ms = percentile(self.read_s, 99) * 1000.0
        if fig.rss_all_mb:
            fig.rss_mb = statistics.median(fig.rss_all_mb)
        if self.validate_s:
            fig.client_validate_us = statistics.median(self.validate_s) * 1e6
        if self.conc_wall > 0:
            fig.conc_wall_s = self.conc_wall
            fig.conc_msgs_per_s = self.conc_ok / self.conc_wall
            fig.conc_p99_ms = percentile(self.conc_s, 99) * 1000.0
            fig.conc_server_cpu_ms = self.conc_server_cpu / self.conc_ok * 1000.0
            fig.conc_client_cpu_ms = self.conc_client_cpu / self.conc_ok * 1000.0
        if self.conc_first_s:
            fig.conc_first_p50_ms = statistics.median(self.conc_first_s) * 1000.0


async def spawn_once(run: Run, db: str, agent: str) -> float:
    """Seconds from spawn to tools/list answered (connect() lists the tools)."""
    for attempt in range(1, SPAWN_ATTEMPTS + 1):
        try:
            t0 = time.perf_counter()
            async with connect(run.system, db, agent, run.errlog):
                return time.perf_counter() - t0
        except Exception as exc:
            if attempt == SPAWN_ATTEMPTS:
                raise
            run.spawn_failed(exc, agent)
    raise AssertionError("unreachable")


@dataclass
class Lane:
    """One system's server in the latency phase: its session and what it was last sent."""

    run: Run
    session: ClientSession
    sid: str
    last: types.CallToolResult | None = None


async def open_lane(run: Run, stack: AsyncExitStack, rnd: int) -> Lane:
    system = run.system
    session = await run.open_session(stack, run.target(f"latency-{rnd}"), "bench-latency")
    warm = await create_session(system, session, "bench warm-up")
    lane = Lane(run, session, await create_session(system, session, "bench latency"))
    for i in range(WARMUP_WRITES):
        await session.call_tool(system.add_tool, {"session_id": warm, "content": f"w{i}"})
    return lane


async def add_once(lane: Lane, i: int) -> None:
    run, system = lane.run, lane.run.system
    args = {"session_id": lane.sid, "content": f"latency message {i} from bench"}
    t0 = time.perf_counter()
    result = await lane.session.call_tool(system.add_tool, args)
    run.add_s.append(time.perf_counter() - t0)
    if result.is_error:
        run.figures.add_errors += 1
        run.note_error(f"add_message: {error_text(result)}")
    else:
        lane.last = result


async def memory_once(lane: Lane, i: int) -> None:
    """One set_memory: MEMORY_KEYS keys in turn, so most calls replace an entry."""
    run, system = lane.run, lane.run.system
    args = {"key": f"bench-{i % MEMORY_KEYS}", "value": {"step": i, "note": "bench memory"}}
    t0 = time.perf_counter()
    result = await lane.session.call_tool(system.memory_tool, args)
    run.mem_s.append(time.perf_counter() - t0)
    if result.is_error:
        run.figures.mem_errors += 1
        run.note_error(f"set_memory: {error_text(result)}")


async def read_once(lane: Lane, timed: bool) -> None:
    run, system = lane.run, lane.run.system
    t0 = time.perf_counter()
    result = await lane.session.call_tool(system.read_tool, system.read_args(lane.sid, READ_LIMIT))
    if not timed:
        return
    run.read_s.append(time.perf_counter() - t0)
    if result.is_error:
        run.figures.read_errors += 1
        run.note_error(f"{system.read_tool}: {error_text(result)}")
    else:
        msgs = structured(result).get("messages")
        run.figures.read_returned = len(msgs) if isinstance(msgs, list) else -1


class LaneFailed(Exception):
    """One system failed in a phase that drives several at once."""

    def __init__(self, run: Run) -> None:
        super().__init__(run.system.name)
        self.run = run


def turns(lanes: list[Lane], step: int) -> list[Lane]:
    """The lanes in the order of this step: the round's first system first at even steps,
    last at odd ones, so neither always follows the other."""
    return lanes if step % 2 == 0 else lanes[::-1]


async def phase_latency(runs: list[Run], messages: int, memory_writes: int, rnd: int) -> None:
    """Every system's server up at once, called in turn (`runs` gives the round's order,
    alternated step by step): whatever the machine does meanwhile lands on all alike."""
    current = runs[0]
    try:
        async with AsyncExitStack() as stack:
            lanes = []
            for current in runs:
                lanes.append(await open_lane(current, stack, rnd))
            with anyio.fail_after(SHUTDOWN_TIMEOUT_S + (messages + memory_writes) * 2.0):
                for i in range(messages):
                    for lane in turns(lanes, i):
                        current = lane.run
                        await add_once(lane, i)
                for i in range(memory_writes):
                    for lane in turns(lanes, i):
                        current = lane.run
                        await memory_once(lane, i)
                for i in range(WARMUP_READS + READ_CALLS):
                    for lane in turns(lanes, i):
                        current = lane.run
                        await read_once(lane, timed=i >= WARMUP_READS)
            for lane in lanes:
                current = lane.run
                await measure_lane(lane)
    except Exception as exc:
        raise LaneFailed(current) from exc


async def measure_lane(lane: Lane) -> None:
    """RSS of the lane's server, and the client's output-schema check of a result."""
    run = lane.run
    pids = child_pids(run.system.marker)
    if len(pids) != 1:
        raise BenchError(f"{run.system.name}: expected one server child, found {pids}")
    run.figures.rss_all_mb.append(round(rss_mb(pids[0]), 2))
    if lane.last is not None:  # the SDK client does this on every call_tool
        t0 = time.perf_counter()
        for _ in range(VALIDATE_SAMPLES):
            await lane.session.validate_tool_result(run.system.add_tool, lane.last)
        run.validate_s.append((time.perf_counter() - t0) / VALIDATE_SAMPLES)


async def phase_concurrency(run: Run, procs: int, per_proc: int, rnd: int) -> None:
    system, fig = run.system, run.figures
    db = run.target(f"concurrency-{rnd}")
    latencies: list[float] = []
    errors = 0
    ready = 0
    all_ready = anyio.Event()
    warmed = 0
    all_warm = anyio.Event()
    first: list[float] = []
    go = anyio.Event()
    done = 0
    all_done = anyio.Event()
    sid_holder: list[str] = []

    async def worker(i: int) -> None:
        nonlocal ready, warmed, done, errors
        async with AsyncExitStack() as stack:
            session = await run.open_session(stack, db, f"bench-agent-{i:02d}")
            if i == 0:
                sid_holder.append(await create_session(system, session, "bench concurrency"))
            ready += 1
            if ready == procs:
                all_ready.set()
            await all_ready.wait()
            # Each session's first call, all at once and untimed by the phase, as the
            # latency phase warms up: an SDK client compiles a tool's output schema at its
            # first result (about 1 ms of the one bench process's CPU each, 50 at once).
            args = {"session_id": sid_holder[0], "content": f"agent {i} warm-up"}
            t0 = time.perf_counter()
            with anyio.fail_after(CALL_TIMEOUT_S):
                warm = await session.call_tool(system.add_tool, args)
            first.append(time.perf_counter() - t0)
            if warm.is_error:
                raise BenchError(f"{system.name}: warm-up add_message: {error_text(warm)}")
            warmed += 1
            if warmed == procs:
                all_warm.set()
            await go.wait()
            for n in range(per_proc):
                args["content"] = f"agent {i} message {n}"
                t0 = time.perf_counter()
                try:
                    with anyio.fail_after(CALL_TIMEOUT_S):
                        result = await session.call_tool(system.add_tool, args)
                except Exception as exc:
                    errors += 1
                    run.note_error(f"concurrent add_message raised {type(exc).__name__}: {exc}")
                    continue
                latencies.append(time.perf_counter() - t0)
                if result.is_error:
                    errors += 1
                    run.note_error(f"concurrent add_message: {error_text(result)}")
            done += 1
            if done == procs:
                all_done.set()
            await all_done.wait()  # keep every server up until the whole write phase ends

    spawn_budget = SPAWN_TIMEOUT_S + procs * 5.0
    write_budget = CALL_TIMEOUT_S + procs * per_proc * 0.5
    with anyio.fail_after(spawn_budget + write_budget + SHUTDOWN_TIMEOUT_S):
        async with anyio.create_task_group() as tg:
            for i in range(procs):
                tg.start_soon(worker, i)
            with anyio.fail_after(spawn_budget):
                await all_warm.wait()
            # CPU spent while writing, by the servers and by this client process: with
            # every process busy, latency is mostly a wait for a core, so this is the cost.
            pids = child_pids(system.marker)
            server_cpu = -sum(cpu_seconds(pid) for pid in pids)
            client_cpu = -time.process_time()
            t0 = time.perf_counter()
            go.set()
            with anyio.fail_after(write_budget):
                await all_done.wait()
            wall = time.perf_counter() - t0
            server_cpu += sum(cpu_seconds(pid) for pid in pids)
            client_cpu += time.process_time()

    expected = procs * (per_proc + 1)  # with the warm-up posts
    rows = count_rows(system, db, sid_holder[0])
    fig.conc_rows += rows
    fig.conc_errors += errors
    fig.conc_lost += expected - rows
    run.conc_ok += expected - errors
    run.conc_wall += wall
    run.conc_server_cpu += server_cpu
    run.conc_client_cpu += client_cpu
    run.conc_s.extend(latencies)
    run.conc_first_s.extend(first)


# --------------------------------------------------------------------------- real time


@dataclass
class Realtime:
    system: str = "product"
    idle_cpu_pct: float = math.nan
    idle_seconds: float = math.nan
    notify_p50_ms: float = math.nan
    notify_p99_ms: float = math.nan
    wait_p50_ms: float = math.nan
    wait_p99_ms: float = math.nan
    posts: int = 0
    # PostgreSQL alone: NOTIFY at COMMIT in one process to LISTEN's wake-up in another.
    push_p50_ms: float = math.nan
    push_p99_ms: float = math.nan
    crashed: str = ""


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` in seconds (fields 14 and 15 of /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def phase_realtime(
    system: System, db: str, errlog: TextIO, posts: int, idle_s: float
) -> Realtime:
    out = Realtime(system=system.name, idle_seconds=idle_s)
    arrived: dict[str, float] = {}
    news = anyio.Event()

    async def on_message(message: object) -> None:
        nonlocal news
        if isinstance(message, types.ResourceUpdatedNotification):
            arrived[message.params.uri] = time.perf_counter()
            news.set()
            news = anyio.Event()

    async with (
        stdio_client(system.params(db, "bench-subscriber"), errlog=errlog) as (read, write),
        ClientSession(read, write, message_handler=on_message) as watcher,
    ):
        with anyio.fail_after(SPAWN_TIMEOUT_S):
            await watcher.initialize()
        sid = await create_session(system, watcher, "bench real time")
        uri = f"session://{sid}"
        with warnings.catch_warnings():  # the handshake era is what today's hosts speak
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await watcher.subscribe_resource(uri)
        (pid,) = child_pids(system.marker)
        before = cpu_seconds(pid)
        await anyio.sleep(idle_s)
        out.idle_cpu_pct = (cpu_seconds(pid) - before) / idle_s * 100.0

        async with connect(system, db, "bench-poster", errlog) as poster:
            notify: list[float] = []
            last = 0
            for i in range(posts):
                await anyio.sleep(random.uniform(0.0, 0.15))  # land anywhere in a poll tick
                arrived.pop(uri, None)
                t0 = time.perf_counter()
                posted = await poster.call_tool(
                    system.add_tool, {"session_id": sid, "content": f"n{i}"}
                )
                last = int(structured(posted)["message_id"])
                with anyio.fail_after(CALL_TIMEOUT_S):
                    while uri not in arrived:
                        await news.wait()
                notify.append(arrived[uri] - t0)
            waits: list[float] = []

            async def wait_once(after_id: int, released: list[float]) -> None:
                args = {"session_id": sid, "after_id": after_id, "timeout_s": 30}
                result = await watcher.call_tool("wait_for_messages", args)
                released.append(time.perf_counter())
                if result.is_error or not structured(result).get("messages"):
                    raise BenchError(f"wait_for_messages: {error_text(result)}")

            for i in range(posts):
                released: list[float] = []
                async with anyio.create_task_group() as tg:
                    tg.start_soon(wait_once, last, released)
                    await anyio.sleep(random.uniform(0.05, 0.2))  # the wait is under way
                    t0 = time.perf_counter()
                    posted = await poster.call_tool(
                        system.add_tool, {"session_id": sid, "content": f"w{i}"}
                    )
                    last = int(structured(posted)["message_id"])
                waits.append(released[0] - t0)
    out.posts = posts
    out.notify_p50_ms = statistics.median(notify) * 1000.0
    out.notify_p99_ms = percentile(notify, 99) * 1000.0
    out.wait_p50_ms = statistics.median(waits) * 1000.0
    out.wait_p99_ms = percentile(waits, 99) * 1000.0
    return out


async def run_realtime(
    args: argparse.Namespace, tmp: Path, pg: bench_pg.PgServer | None
) -> list[Realtime]:
    """The real-time phase for the product on each engine in the run."""
    out: list[Realtime] = []
    for engine in ("sqlite", "postgres") if pg is not None else ("sqlite",):
        system = product_system(args.stdio, engine)
        workdir = tmp / f"realtime-{system.name}"
        workdir.mkdir()
        db = pg.fresh("realtime") if pg is not None and engine == "postgres" else ""
        print(f"[bench] {system.name}: real time", file=sys.stderr, flush=True)
        with (workdir / "server-stderr.log").open("w") as errlog:
            try:
                rt = await phase_realtime(
                    system,
                    db or str(workdir / "realtime.db"),
                    errlog,
                    args.posts,
                    args.idle_seconds,
                )
                if db:
                    push = partial(bench_pg.push_latency, db, args.posts * 4)
                    rt.push_p50_ms, rt.push_p99_ms = await anyio.to_thread.run_sync(push)
            except Exception as exc:
                traceback.print_exc(file=sys.stderr)
                inner = leaf(exc)
                rt = Realtime(system=system.name, crashed=f"{type(inner).__name__}: {inner}")
        out.append(rt)
    return out


def print_realtime(rt: Realtime) -> None:
    print()
    how = "LISTEN/NOTIFY" if rt.system == "postgres" else "poll interval 0.1 s"
    print(f"real time ({rt.system}): {rt.posts} posts from a second process, {how}")
    if rt.crashed:
        print(f"real time CRASHED: {rt.crashed}")
        return
    print(f"{'resources/updated p50 (ms)':<34}{rt.notify_p50_ms:>10.1f}")
    print(f"{'resources/updated p99 (ms)':<34}{rt.notify_p99_ms:>10.1f}")
    print(f"{'wait_for_messages release p50 (ms)':<34}{rt.wait_p50_ms:>10.1f}")
    print(f"{'wait_for_messages release p99 (ms)':<34}{rt.wait_p99_ms:>10.1f}")
    print(f"{f'idle CPU, subscribed, {rt.idle_seconds:.0f} s (%)':<34}{rt.idle_cpu_pct:>10.2f}")
    if not math.isnan(rt.push_p50_ms):
        print(f"{'engine only: NOTIFY->LISTEN p50':<34}{rt.push_p50_ms:>10.2f}")
        print(f"{'engine only: NOTIFY->LISTEN p99':<34}{rt.push_p99_ms:>10.2f}")


# --------------------------------------------------------------------------- report

METRICS: list[tuple[str, str, str]] = [
    # (label, Figures attribute, format)
    ("start-up median (ms)", "startup_ms", "{:.1f}"),
    ("add_message p50 (ms)", "add_p50_ms", "{:.3f}"),
    ("add_message p99 (ms)", "add_p99_ms", "{:.3f}"),
    ("set_memory p50 (ms)", "mem_p50_ms", "{:.3f}"),
    ("set_memory p99 (ms)", "mem_p99_ms", "{:.3f}"),
    ("read last 50 p50 (ms)", "read_p50_ms", "{:.3f}"),
    ("read last 50 p99 (ms)", "read_p99_ms", "{:.3f}"),
    ("latency-phase errors", "add_errors", "{:d}"),
    ("read errors", "read_errors", "{:d}"),
    ("set_memory errors", "mem_errors", "{:d}"),
    ("messages per read", "read_returned", "{:d}"),
    ("server RSS (MB)", "rss_mb", "{:.1f}"),
    ("client validate (us/call)", "client_validate_us", "{:.1f}"),
    ("concurrent msgs/s", "conc_msgs_per_s", "{:.0f}"),
    ("concurrent p99 (ms)", "conc_p99_ms", "{:.2f}"),
    ("concurrent wall (s)", "conc_wall_s", "{:.2f}"),
    ("conc. server CPU/msg (ms)", "conc_server_cpu_ms", "{:.3f}"),
    ("conc. client CPU/msg (ms)", "conc_client_cpu_ms", "{:.3f}"),
    ("conc. first call p50 (ms)", "conc_first_p50_ms", "{:.2f}"),
    ("concurrent errors", "conc_errors", "{:d}"),
    ("concurrent lost", "conc_lost", "{:d}"),
    ("failed spawns (retried)", "spawn_failures", "{:d}"),
]

RATIO_METRICS = {
    "startup_ms",
    "add_p50_ms",
    "add_p99_ms",
    "read_p50_ms",
    "read_p99_ms",
    "mem_p50_ms",
    "mem_p99_ms",
    "rss_mb",
    "conc_msgs_per_s",
    "conc_p99_ms",
    "conc_server_cpu_ms",
    "conc_client_cpu_ms",
    "conc_first_p50_ms",
}


@dataclass
class Target:
    name: str
    value: float
    limit: str
    ok: bool


def ratio(prod: Figures, floor: Figures, attr: str) -> float:
    a, b = float(getattr(prod, attr)), float(getattr(floor, attr))
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def targets(rounds: Rounds) -> list[Target]:
    """The product against the floor: each ratio is the median of the rounds' ratios."""
    out: list[Target] = []
    floor, prod = rounds.median.get("floor"), rounds.median.get("product")
    if prod is None:
        return out
    if prod.crashed:
        return [Target("product ran to completion", math.nan, "no crash", False)]

    def r_of(attr: str) -> float:
        return rounds.median_ratio("product", "floor", attr)

    if floor is not None:
        for attr, label in [
            ("add_p50_ms", "add_message p50"),
            ("add_p99_ms", "add_message p99"),
            ("read_p50_ms", "get_context p50"),
            ("read_p99_ms", "get_context p99"),
            ("mem_p50_ms", "set_memory p50"),
            ("mem_p99_ms", "set_memory p99"),
        ]:
            r = r_of(attr)
            out.append(Target(f"{label} <= 1.2x floor", r, "<= 1.20x", r <= 1.2))
        r = r_of("conc_msgs_per_s")
        out.append(Target("throughput >= 0.9x floor", r, ">= 0.90x", r >= 0.9))
        r = r_of("conc_p99_ms")
        out.append(Target("concurrent p99 <= 1.2x floor", r, "<= 1.20x", r <= 1.2))
    errors = error_count(prod)
    out.append(Target("0 errors", errors, "== 0", errors == 0))
    out.append(Target("0 lost", prod.conc_lost, "== 0", prod.conc_lost == 0))
    if floor is not None:
        d = prod.rss_mb - floor.rss_mb
        out.append(Target("RSS <= floor + 20 MB", d, "<= +20 MB", d <= 20.0))
        r = r_of("startup_ms")
        out.append(Target("start-up <= 1.15x floor", r, "<= 1.15x", r <= 1.15))
    return out


def error_count(fig: Figures) -> int:
    return fig.add_errors + fig.read_errors + fig.mem_errors + fig.conc_errors + fig.spawn_failures


# PostgreSQL's targets (issue 15): against the product on a SQLite file, in the same run.
PG_NEWS_P50_MS = 50.0


def pg_targets(rounds: Rounds | None, realtime: list[Realtime]) -> list[Target]:
    out: list[Target] = []
    sqlite = rounds.median.get("product") if rounds is not None else None
    pg = rounds.median.get("postgres") if rounds is not None else None
    if rounds is None or pg is None:
        return out
    if pg.crashed:
        return [Target("postgres ran to completion", math.nan, "no crash", False)]
    if sqlite is not None and not sqlite.crashed:
        r = rounds.median_ratio("postgres", "product", "conc_msgs_per_s")
        out.append(Target("pg throughput >= 0.7x sqlite", r, ">= 0.70x", r >= 0.7))
        for attr, label in [
            ("add_p50_ms", "add_message"),
            ("read_p50_ms", "get_context"),
            ("mem_p50_ms", "set_memory"),
        ]:
            r = rounds.median_ratio("postgres", "product", attr)
            out.append(Target(f"pg {label} p50 <= 2x sqlite", r, "<= 2.00x", r <= 2.0))
    errors = error_count(pg)
    out.append(Target("pg 0 errors", errors, "== 0", errors == 0))
    out.append(Target("pg 0 lost", pg.conc_lost, "== 0", pg.conc_lost == 0))
    for rt in realtime:
        if rt.system != "postgres":
            continue
        if rt.crashed:
            out.append(Target("pg real time ran", math.nan, "no crash", False))
            continue
        for value, label in [
            (rt.notify_p50_ms, "resources/updated"),
            (rt.wait_p50_ms, "long poll"),
        ]:
            out.append(
                Target(f"pg {label} p50 <= 50 ms", value, "<= 50 ms", value <= PG_NEWS_P50_MS)
            )
    return out


def print_targets(checks: list[Target]) -> None:
    if not checks:
        return
    print()
    print(f"{'target':<34}{'value':>12}{'limit':>12}  verdict")
    for t in checks:
        spec = (
            "{:+.1f} MB"
            if "MB" in t.limit
            else "{:.1f} ms"
            if "ms" in t.limit
            else "{:.2f}x"
            if "x" in t.limit
            else "{:.0f}"
        )
        verdict = "PASS" if t.ok else "FAIL"
        print(f"{t.name:<34}{fmt(float(t.value), spec):>12}{t.limit:>12}  {verdict}")


def fmt(value: object, spec: str) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "-"
    try:
        return spec.format(value)
    except (ValueError, TypeError):
        return str(value)


# The ratio columns: (label, numerator system, denominator system).
RATIO_COLUMNS = [("prod/floor", "product", "floor"), ("pg/sqlite", "postgres", "product")]


def print_table(rounds: Rounds, args: argparse.Namespace, pg: bench_pg.PgServer | None) -> None:
    """The median of the rounds for every figure and every ratio (a ratio's median is
    taken over the rounds' ratios), then each round's figures and ratios."""
    names = list(rounds.median)
    columns = [c for c in RATIO_COLUMNS if c[1] in names and c[2] in names]
    print(
        f"shared-context-server bench: messages={args.messages} memory={args.memory} "
        f"reads={READ_CALLS} "
        f"procs={args.procs} per-proc={args.per_proc} spawns={args.spawns} rounds={args.rounds} "
        f"product-stdio={args.stdio} "
        f"python={sys.version.split()[0]} cpus={os.cpu_count()} "
        f"load={' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    if pg is not None:
        print(f"postgres: {pg.describe()}, over TCP to {urlsplit(pg.url).hostname}")
    if args.pg_cpu_set:
        print(pinning(args))
    print(f"median of {len(rounds.per_round)} rounds (a ratio: the median of the rounds' ratios)")
    header = f"{'metric':<27}" + "".join(f"{name:>12}" for name in names)
    header += "".join(f"{label:>12}" for label, _, _ in columns)
    print(header)
    print("-" * len(header))
    for label, attr, spec in METRICS:
        line = f"{label:<27}"
        for name in names:
            line += f"{fmt(getattr(rounds.median[name], attr), spec):>12}"
        for _, num, den in columns:
            r = rounds.median_ratio(num, den, attr) if attr in RATIO_METRICS else math.nan
            line += f"{fmt(r, '{:.2f}x'):>12}"
        print(line.rstrip())
    for name, fig in rounds.median.items():
        if fig.startup_all_ms:
            print(f"{name} start-ups (ms): {fig.startup_all_ms}")
        if fig.rss_all_mb:
            print(f"{name} RSS per round (MB): {fig.rss_all_mb}")
        if fig.first_error:
            print(f"{name} first error: {fig.first_error}")
        if fig.crashed:
            print(f"{name} CRASHED: {fig.crashed}")
    print_tails(rounds)
    if len(rounds.per_round) > 1:
        print_rounds(rounds, columns)
    print_targets(targets(rounds))


TAIL_PERCENTILES = (50, 90, 95, 98, 99, 99.5, 99.9)


def print_tails(rounds: Rounds) -> None:
    """The concurrency phase's latencies of every round pooled, at percentiles from the
    middle to the far tail: where two systems' distributions part."""
    for name in rounds.median:
        pooled = [t for runs in rounds.per_round if name in runs for t in runs[name].conc_s]
        if pooled:
            cells = " ".join(
                f"p{q:g} {percentile(pooled, q) * 1000.0:.1f}" for q in TAIL_PERCENTILES
            )
            print(f"{name} concurrent, all rounds (ms): {cells}, max {max(pooled) * 1000.0:.0f}")


def pinning(args: argparse.Namespace) -> str:
    """Which CPUs each side had under --pg-cpus."""
    return (
        f"cpus: the PostgreSQL cluster on {bench_pg.cpu_list(args.pg_cpu_set)} only; "
        f"the bench and every server it spawns (file and PostgreSQL) on "
        f"{bench_pg.cpu_list(args.bench_cpu_set)}"
    )


def print_rounds(rounds: Rounds, columns: list[tuple[str, str, str]]) -> None:
    """Round by round: each system's figure, then each ratio, with its median."""
    print()
    firsts = ", ".join(next(iter(runs)) for runs in rounds.per_round)
    print(f"round by round (first in each phase: {firsts})")
    n = len(rounds.per_round)
    header = f"{'metric':<38}" + "".join(f"{f'r{i + 1}':>10}" for i in range(n))
    header += f"{'median':>10}"
    print(header)
    print("-" * len(header))
    for label, attr, spec in METRICS:
        if attr not in RATIO_METRICS:
            continue
        for name in rounds.median:
            values = [
                getattr(runs[name].figures, attr) if name in runs else math.nan
                for runs in rounds.per_round
            ]
            line = f"{f'{label}, {name}':<38}"
            line += "".join(f"{fmt(v, spec):>10}" for v in values)
            print(line + f"{fmt(getattr(rounds.median[name], attr), spec):>10}")
        for ratio_label, num, den in columns:
            values = rounds.ratios(num, den, attr)
            line = f"{f'{label}, {ratio_label}':<38}"
            line += "".join(f"{fmt(v, '{:.2f}x'):>10}" for v in values)
            print(line + f"{fmt(median_of(values), '{:.2f}x'):>10}")


def as_json(rounds: Rounds, args: argparse.Namespace, realtime: list[Realtime]) -> dict[str, Any]:
    def clean(v: object) -> object:
        return None if isinstance(v, float) and math.isnan(v) else v

    def figures(fig: Figures) -> dict[str, object]:
        return {k: clean(v) for k, v in vars(fig).items()}

    names = list(rounds.median)
    out: dict[str, Any] = {
        "config": {
            "messages": args.messages,
            "memory": args.memory,
            "reads": READ_CALLS,
            "read_limit": READ_LIMIT,
            "procs": args.procs,
            "per_proc": args.per_proc,
            "spawns": args.spawns,
            "rounds": args.rounds,
            "product_stdio": args.stdio,
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "pg_cpus": sorted(args.pg_cpu_set) if args.pg_cpu_set else None,
            "bench_cpus": sorted(args.bench_cpu_set) if args.bench_cpu_set else None,
            "load": os.getloadavg(),
        },
    }
    # Each system's figures and each ratio: the median of the rounds'.
    for name in names:
        out[name] = figures(rounds.median[name])
    for key, num, den in [
        ("ratios", "product", "floor"),
        ("ratios_pg_sqlite", "postgres", "product"),
    ]:
        if num in names and den in names:
            out[key] = {a: clean(rounds.median_ratio(num, den, a)) for a in sorted(RATIO_METRICS)}
    out["rounds"] = []
    for runs in rounds.per_round:
        one: dict[str, Any] = {"order": list(runs)}  # who went first in each phase
        for name, run in runs.items():
            one[name] = figures(run.figures)
        out["rounds"].append(one)
    out["targets"] = [
        {"name": t.name, "value": clean(float(t.value)), "limit": t.limit, "pass": t.ok}
        for t in targets(rounds)
    ]
    out["pg_targets"] = [
        {"name": t.name, "value": clean(float(t.value)), "limit": t.limit, "pass": t.ok}
        for t in pg_targets(rounds, realtime)
    ]
    out["realtime"] = [{k: clean(v) for k, v in vars(rt).items()} for rt in realtime]
    return out


# --------------------------------------------------------------------------- main


def file_target(workdir: Path, name: str) -> str:
    return str(workdir / f"{name}.db")


def leaf(exc: BaseException) -> BaseException:
    """The first innermost exception of a (nested) exception group."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class Rounds:
    """Every round's runs (one Run per system per round, in the order the systems were
    listed), and each system's figures as the median of its rounds."""

    per_round: list[dict[str, Run]]
    median: dict[str, Figures]

    def ratios(self, num: str, den: str, attr: str) -> list[float]:
        """num's figure over den's, round by round (nan where either is missing)."""
        out = []
        for runs in self.per_round:
            if num in runs and den in runs:
                out.append(ratio(runs[num].figures, runs[den].figures, attr))
        return out

    def median_ratio(self, num: str, den: str, attr: str) -> float:
        return median_of(self.ratios(num, den, attr))


def median_of(values: list[float]) -> float:
    """The median of the values that are numbers; nan if none is."""
    real = [v for v in values if not math.isnan(v)]
    return statistics.median(real) if real else math.nan


# Counts add up over the rounds; every other figure is the median of the rounds'.
SUMMED = {
    "add_errors",
    "read_errors",
    "mem_errors",
    "conc_errors",
    "conc_lost",
    "conc_rows",
    "spawn_failures",
}


def median_figures(rounds: list[Figures]) -> Figures:
    out = Figures()
    for name, value in vars(out).items():
        values = [getattr(f, name) for f in rounds]
        if name in SUMMED:
            setattr(out, name, sum(values))
        elif isinstance(value, float):
            setattr(out, name, median_of(values))
        elif isinstance(value, list):
            setattr(out, name, [x for v in values for x in v])
        elif isinstance(value, str):
            setattr(out, name, next((v for v in values if v), ""))
        else:  # read_returned: the last round that read
            setattr(out, name, next((v for v in reversed(values) if v), 0))
    return out


async def run_all(
    args: argparse.Namespace, systems: list[System], tmp: Path, pg: bench_pg.PgServer | None
) -> tuple[Rounds, bool]:
    """--rounds rounds of every phase. Round 1 runs the systems in the order given, round 2
    in the reverse order, and so on (floor, product; product, floor; ...), in each phase:
    on a shared machine the load moves between phases, and whichever system goes first
    meets a different machine from the one that follows it."""
    base: dict[str, Run] = {}
    for system in systems:
        workdir = tmp / system.name
        workdir.mkdir()
        errlog = (workdir / "server-stderr.log").open("w")
        if system.engine == "postgres" and pg is not None:
            target: Callable[[str], str] = pg.fresh
        else:
            target = partial(file_target, workdir)
        base[system.name] = Run(system, workdir, errlog, target)

    crashed: dict[str, str] = {}  # a system that crashed sits out the rounds after

    def record_crash(run: Run, phase_name: str, exc: BaseException) -> None:
        inner = leaf(exc)
        run.figures.crashed = f"{phase_name}: {type(inner).__name__}: {inner}"
        crashed[run.system.name] = run.figures.crashed
        traceback.print_exception(exc, file=sys.stderr)
        run.errlog.flush()
        log_tail = tail(run.workdir / "server-stderr.log")
        if log_tail:
            print(f"[bench] {run.system.name} server stderr tail:", file=sys.stderr)
            print(log_tail, file=sys.stderr)

    async def attempt(run: Run, phase_name: str, job: Callable[[], Awaitable[object]]) -> None:
        if run.figures.crashed:
            return
        print(f"[bench] {run.system.name}: {phase_name}", file=sys.stderr, flush=True)
        try:
            await job()
        except Exception as exc:
            record_crash(run, phase_name, exc)

    async def attempt_together(
        ordered: list[Run], phase_name: str, job: Callable[[list[Run]], Awaitable[object]]
    ) -> None:
        """attempt() for a phase that drives every system still standing at once."""
        live = [run for run in ordered if not run.figures.crashed]
        if not live:
            return
        names = ", ".join(run.system.name for run in live)
        print(f"[bench] {names}: {phase_name}", file=sys.stderr, flush=True)
        try:
            await job(live)
        except LaneFailed as failed:
            record_crash(failed.run, phase_name, failed.__cause__ or failed)

    for run in base.values():  # warm-up spawn: creates the database, warms the page cache
        db = run.target("startup")
        await attempt(run, "start-up warm-up", partial(spawn_once, run, db, "bench-warm"))
    per_round: list[dict[str, Run]] = []
    for rnd in range(args.rounds):
        runs = {
            name: Run(b.system, b.workdir, b.errlog, b.target)
            for name, b in base.items()
            if name not in crashed and not b.figures.crashed
        }
        if not runs:
            break
        ordered = list(runs.values())
        if rnd % 2:
            ordered.reverse()
        per_round.append({run.system.name: run for run in ordered})  # first goes first
        where = f"round {rnd + 1}/{args.rounds}"
        # Start-up: the round's first system spawns first, then the spawns alternate ABBA.
        for i in range(args.spawns):
            for run in ordered if i % 2 == 0 else ordered[::-1]:
                db = run.target("startup")
                spawn = partial(spawn_once, run, db, f"bench-startup-{rnd}-{i}")

                async def timed(r: Run = run, job: Callable[[], Awaitable[float]] = spawn) -> None:
                    r.startup_s.append(await job())

                await attempt(run, f"start-up {i + 1}/{args.spawns}, {where}", timed)
        job = partial(phase_latency, messages=args.messages, memory_writes=args.memory, rnd=rnd)
        await attempt_together(ordered, f"latency, {where}", job)
        for run in ordered:
            conc = partial(phase_concurrency, run, args.procs, args.per_proc, rnd)
            await attempt(run, f"concurrency, {where}", conc)
        for run in runs.values():
            run.summarise()
    for run in base.values():
        run.errlog.close()
        if run.figures.crashed:  # the warm-up spawn
            crashed.setdefault(run.system.name, run.figures.crashed)
    median = {
        name: median_figures([runs[name].figures for runs in per_round if name in runs])
        for name in base
    }
    for name, fig in median.items():
        if name in crashed:
            fig.crashed = crashed[name]
    return Rounds(per_round, median), bool(crashed)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", choices=["floor", "product", "realtime"], default=None)
    p.add_argument("--posts", type=int, default=50, help="real-time posts (product only)")
    p.add_argument("--idle-seconds", type=float, default=10.0, help="idle CPU window")
    p.add_argument("--floor", default=str(DEFAULT_FLOOR), help="floor server script")
    p.add_argument(
        "--stdio",
        choices=["auto", "threads"],
        default="auto",
        help="the product's stdio transport (threads: the SDK's, as the floor uses)",
    )
    p.add_argument("--messages", type=int, default=1000)
    p.add_argument("--memory", type=int, default=500, help="sequential set_memory calls")
    p.add_argument("--procs", type=int, default=20)
    p.add_argument("--per-proc", type=int, default=200)
    p.add_argument("--spawns", type=int, default=5)
    p.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="rounds of every phase, alternating which system goes first; figures and\n"
        "ratios are the median of the rounds'",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    pg = p.add_mutually_exclusive_group()
    pg.add_argument(
        "--db",
        metavar="URL",
        help="also run the product on PostgreSQL: postgresql://user@host:port/db of a role\n"
        "that may CREATE DATABASE; each phase gets a new database on that server,\n"
        "dropped at the end (the URL's own database is only connected to)",
    )
    pg.add_argument(
        "--pg-cluster",
        action="store_true",
        help="as --db, on a throwaway cluster started here over TCP 127.0.0.1\n"
        f"(tests/pg_cluster.py; {bench_pg.CLUSTER_SETTINGS}), removed at the end",
    )
    p.add_argument(
        "--pg-cpus",
        metavar="LIST",
        help="with --pg-cluster (Linux): the cluster runs only on these CPUs (taskset -c,\n"
        "e.g. 1 or 2-3), the bench and every server it spawns on the others",
    )
    args = p.parse_args(argv)
    args.pg_cpu_set = args.bench_cpu_set = None
    if args.pg_cpus is not None:
        if not args.pg_cluster:
            p.error("--pg-cpus needs --pg-cluster (the cluster it starts is the one it pins)")
        if not hasattr(os, "sched_setaffinity"):
            p.error("--pg-cpus needs Linux (sched_setaffinity, taskset)")
        try:
            args.pg_cpu_set, args.bench_cpu_set = bench_pg.split_cpus(
                args.pg_cpus, os.sched_getaffinity(0)
            )
        except ValueError as exc:
            p.error(str(exc))
    if args.db and not args.db.startswith(("postgresql://", "postgres://")):
        p.error("--db takes a postgresql:// URL (the SQLite figures use files of their own)")
    for name in ("messages", "memory", "procs", "per_proc", "spawns", "rounds"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--search"]:
        import bench_search  # beside this file

        return bench_search.main(argv[1:])
    args = parse_args(argv)
    if args.bench_cpu_set:
        # Before any thread or child exists: every server process, client and psycopg
        # connection of the run inherits it (the cluster is pinned apart by taskset).
        os.sched_setaffinity(0, args.bench_cpu_set)
    systems: list[System] = []
    if args.only in (None, "floor"):
        floor_path = Path(args.floor).resolve()
        if not floor_path.is_file():
            print(f"floor server not found: {floor_path} (use --floor PATH)", file=sys.stderr)
            return 2
        systems.append(floor_system(floor_path))
    cluster: Any = None
    pg: bench_pg.PgServer | None = None
    try:
        if args.pg_cluster:
            print("[bench] starting a throwaway PostgreSQL cluster", file=sys.stderr, flush=True)
            cluster = bench_pg.start_cluster(args.pg_cpu_set)
            args.db = cluster.url()
        if args.db:
            pg = bench_pg.PgServer(args.db)
        if args.only in (None, "product"):
            systems.append(product_system(args.stdio))
            if pg is not None:
                systems.append(product_system(args.stdio, "postgres"))
        return report(args, systems, pg)
    finally:
        if pg is not None:
            pg.drop_all()
        if cluster is not None:
            cluster.stop()


def report(args: argparse.Namespace, systems: list[System], pg: bench_pg.PgServer | None) -> int:
    """Run every phase, then print the figures; 1 if a system crashed."""
    realtime: list[Realtime] = []
    rounds: Rounds | None = None
    crashed = False
    with tempfile.TemporaryDirectory(prefix="scs-bench-") as tmp:
        if systems:
            rounds, crashed = anyio.run(run_all, args, systems, Path(tmp), pg, backend="asyncio")
        if args.only in (None, "product", "realtime"):
            realtime = anyio.run(run_realtime, args, Path(tmp), pg, backend="asyncio")
            crashed = crashed or any(rt.crashed for rt in realtime)
    if args.json:
        print(json.dumps(as_json(rounds or Rounds([], {}), args, realtime), indent=2))
    else:
        if rounds is not None:
            print_table(rounds, args, pg)
        elif args.pg_cpu_set:
            print(pinning(args))
        for rt in realtime:
            print_realtime(rt)
        print_targets(pg_targets(rounds, realtime))
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
