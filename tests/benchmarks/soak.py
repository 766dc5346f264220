"""Soak: N server processes on one file, mixed tools, random kill -9 and restarts, M minutes.

Run by hand (not by pytest):

    .venv/bin/python tests/benchmarks/soak.py --processes 40 --minutes 5

Each process serves one agent (two agent types, so `agent_only` means something) and is
driven by one client loop here that makes one call at a time, over the raw JSON-RPC wire.
A killer sends SIGKILL to a random process every `--kill-every` seconds; its loop starts
a new one. At the end it prints: calls, errors by code, p50/p99 per tool, acknowledged
`add_message` writes vs those present in the file, visibility violations (a message shown
to an agent the rules hide it from; must be 0), integrity, and the server processes' RSS
and open fds at the start and the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

SERVER = [sys.executable, "-m", "shared_context_server"]
VISIBILITIES = ("public", "public", "private", "agent_only")
SESSIONS = 4


class Killed(Exception):
    """The process died under the call (kill -9): neither acknowledged nor an error."""


class Server:
    """One server process spoken to line by line; one call at a time."""

    def __init__(self, process: Process, agent: str) -> None:
        self.process = process
        self.agent = agent
        assert process.stdout is not None
        self.stdout = BufferedByteReceiveStream(process.stdout)
        self.next_id = 1

    @classmethod
    async def start(cls, db: Path, agent: str, agent_type: str) -> Server:
        process = await anyio.open_process(
            [*SERVER, "--db", str(db), "--agent-id", agent, "--agent-type", agent_type],
            stderr=None if os.environ.get("SOAK_STDERR") else -3,  # DEVNULL
        )
        server = cls(process, agent)
        await server.request(
            "initialize",
            {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "soak", "version": "1"},
            },
        )
        await server.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return server

    async def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        try:
            await self.process.stdin.send(json.dumps(message).encode() + b"\n")
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            raise Killed from None

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        request_id, self.next_id = self.next_id, self.next_id + 1
        await self.send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        while True:
            try:
                line = await self.stdout.receive_until(b"\n", 1 << 24)
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
                raise Killed from None
            message = json.loads(line)
            if message.get("id") == request_id:
                return dict(message)

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        reply = await self.request("tools/call", {"name": tool, "arguments": arguments})
        if "error" in reply:
            return {"is_error": True, "code": f"protocol {reply['error'].get('code')}"}
        result = reply["result"]
        data: dict[str, Any] = dict(result.get("structuredContent") or {})
        data["is_error"] = bool(result.get("isError"))
        return data

    async def stop(self) -> None:
        if self.process.stdin is not None:
            await self.process.stdin.aclose()
        with anyio.move_on_after(10):
            await self.process.wait()
        if self.process.returncode is None:
            self.process.kill()


@dataclass
class Tally:
    calls: int = 0
    killed_calls: int = 0
    kills: int = 0
    restarts: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    acknowledged: dict[int, tuple[str, str]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)


def agent_type_of(agent: str) -> str:
    return "type-a" if int(agent.split("-")[1]) % 2 else "type-b"


def check_visible(tally: Tally, reader: str, messages: list[dict[str, Any]]) -> None:
    """Each message shown to `reader` must be one the rules let it see."""
    for m in messages:
        visibility, sender = m.get("visibility"), m.get("sender")
        allowed = (
            visibility == "public"
            or (visibility == "private" and sender == reader)
            or (visibility == "agent_only" and m.get("sender_type") == agent_type_of(reader))
        )
        if not allowed:
            tally.violations.append(f"{reader} saw {visibility} message {m.get('id')} of {sender}")


def process_stats(pid: int) -> tuple[float, int] | None:
    """RSS in MB and open fds of a live process."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1000
                return rss, len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    return None


def describe(samples: list[tuple[float, int]]) -> str:
    if not samples:
        return "no live process"
    rss = [s[0] for s in samples]
    fds = [s[1] for s in samples]
    return (
        f"{len(samples)} processes, RSS median {statistics.median(rss):.1f} MB "
        f"(max {max(rss):.1f}), fds median {statistics.median(fds):.0f} (max {max(fds)})"
    )


async def one_call(server: Server, tally: Tally, sessions: list[str], rng: random.Random) -> None:
    agent = server.agent
    sid = rng.choice(sessions)
    roll = rng.random()
    if roll < 0.35:
        visibility = rng.choice(VISIBILITIES)
        content = f"{agent} {visibility} {rng.getrandbits(32):08x} soak words"
        tool, args = (
            "add_message",
            {"session_id": sid, "content": content, "visibility": visibility},
        )
    elif roll < 0.55:
        tool, args = "get_context", {"session_id": sid, "limit": 50}
    elif roll < 0.65:
        tool, args = "search_context", {"session_id": sid, "query": rng.choice(["soak", "wrds"])}
    elif roll < 0.72:
        tool, args = "get_session", {"session_id": sid}
    elif roll < 0.78:
        tool, args = "list_sessions", {}
    elif roll < 0.88:
        key = f"k{rng.randrange(5)}"
        tool, args = "set_memory", {"key": key, "value": {"n": rng.randrange(1000)}}
    elif roll < 0.96:
        tool, args = "get_memory", {"key": f"k{rng.randrange(5)}"}
    else:
        tool, args = "whoami", {}
    started = time.perf_counter()
    try:
        data = await server.call(tool, args)
    except Killed:
        tally.killed_calls += 1
        raise
    tally.latency[tool].append((time.perf_counter() - started) * 1000)
    tally.calls += 1
    if data["is_error"]:
        if not (tool == "get_memory" and data.get("code") == "NOT_FOUND"):
            tally.errors[str(data.get("code"))] += 1
        return
    if tool == "add_message":
        tally.acknowledged[int(data["message_id"])] = (agent, args["content"])
    elif tool == "get_context":
        check_visible(tally, agent, data.get("messages", []))
    elif tool == "search_context":
        check_visible(tally, agent, [r["message"] for r in data.get("results", [])])


async def lane(
    n: int, db: Path, sessions: list[str], tally: Tally, stop: anyio.Event, live: dict[int, Server]
) -> None:
    agent = f"agent-{n:02d}"
    rng = random.Random(n)
    while not stop.is_set():
        try:
            server = await Server.start(db, agent, agent_type_of(agent))
        except Killed:
            continue
        live[n] = server
        try:
            while not stop.is_set():
                await one_call(server, tally, sessions, rng)
        except Killed:
            tally.restarts += 1
            continue
        finally:
            live.pop(n, None)
        await server.stop()


async def killer(tally: Tally, live: dict[int, Server], every: float, stop: anyio.Event) -> None:
    rng = random.Random(0)
    while not stop.is_set():
        await anyio.sleep(every * (0.5 + rng.random()))
        if live:
            victim = live[rng.choice(list(live))]
            try:
                os.kill(victim.process.pid, signal.SIGKILL)
                tally.kills += 1
            except ProcessLookupError:
                pass


def present(db: Path, acknowledged: dict[int, tuple[str, str]]) -> tuple[int, str]:
    conn = sqlite3.connect(db)
    try:
        rows = dict(conn.execute("SELECT id, content FROM messages").fetchall())
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()
    same = sum(1 for i, (_, content) in acknowledged.items() if rows.get(i) == content)
    return same, str(integrity)


async def soak(args: argparse.Namespace, db: Path) -> None:
    setup = await Server.start(db, "agent-00", "type-b")
    sessions = [
        (await setup.call("create_session", {"purpose": f"soak {i}"}))["session_id"]
        for i in range(SESSIONS)
    ]
    await setup.stop()
    tally = Tally()
    live: dict[int, Server] = {}
    started = anyio.current_time()
    end = started + args.minutes * 60
    start_stats: list[tuple[float, int]] = []
    end_stats: list[tuple[float, int]] = []

    stop = anyio.Event()

    def sample(into: list[tuple[float, int]]) -> None:
        for server in list(live.values()):
            stats = process_stats(server.process.pid)
            if stats is not None:
                into.append(stats)

    async def controller() -> None:
        """Samples once every process is up (starting 40 takes a while), and at the end
        before any lane stops; then stops them."""
        with anyio.move_on_after(120):
            while len(live) < args.processes:  # noqa: ASYNC110 (a plain poll of a dict)
                await anyio.sleep(0.5)
        sample(start_stats)
        await anyio.sleep(max(end - anyio.current_time(), 0))
        sample(end_stats)
        stop.set()

    async with anyio.create_task_group() as tg:
        for n in range(args.processes):
            tg.start_soon(lane, n, db, sessions, tally, stop, live)
        tg.start_soon(killer, tally, live, args.kill_every, stop)
        tg.start_soon(controller)
    elapsed = anyio.current_time() - started
    same, integrity = present(db, tally.acknowledged)
    print(f"soak: {args.processes} processes, {elapsed / 60:.1f} min, database {db}")
    print(f"calls answered       {tally.calls} ({tally.calls / elapsed:.0f}/s)")
    print(f"kill -9 / restarts   {tally.kills} / {tally.restarts} ({tally.killed_calls} calls cut)")
    print(f"errors by code       {dict(tally.errors) or 'none'}")
    print("latency per tool     p50 / p99 ms (calls)")
    for tool, values in sorted(tally.latency.items()):
        values.sort()
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
        print(f"  {tool:<16} {statistics.median(values):7.1f} / {p99:7.1f}  ({len(values)})")
    print(f"acknowledged writes  {len(tally.acknowledged)}, present {same}")
    print(f"visibility breaches  {len(tally.violations)}")
    for v in tally.violations[:5]:
        print(f"  {v}")
    print(f"integrity            {integrity}")
    print(f"at start             {describe(start_stats)}")
    print(f"at end               {describe(end_stats)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=40)
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--kill-every", type=float, default=3.0, help="seconds between kills")
    parser.add_argument("--db", type=Path, help="database file (default: a new temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        anyio.run(soak, args, args.db or Path(tmp) / "soak.db")


if __name__ == "__main__":
    main()
