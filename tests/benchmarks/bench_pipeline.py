"""Pipelining and backpressure on the raw wire (a report, not a test).

Run from the repository root:

    .venv/bin/python tests/benchmarks/bench_pipeline.py

Options: --calls N (20000), --reads N (2000), --content CHARS (200, each message's),
--floor PATH (default
../shared/bench/floor_server.py), --only floor|product, --stdio auto|threads (the product's
transport).

For this server and the floor server (each on a fresh temporary database), over plain pipes
with JSON-RPC lines written by this script:

1. flood: --calls small calls (`whoami`; the floor's `get_messages` of an empty session)
   written as fast as the server takes them by a client that reads no reply, until the
   client is done writing (all written, or the server has taken none for 3 s: it stopped
   reading) and the server's RSS has not grown for 3 s; then the client reads every reply.
   Prints the server's RSS before, its peak while nobody reads, its peak while the replies
   drain, how many calls the client had written when it stopped (the rest wait in its own
   pipe), and the replies counted (all must come back).
2. pipelined reads: 50 messages of --content characters posted, then --reads
   `get_context(limit=50)` (the floor's `get_messages(last=50)`) written at once while
   another thread reads the replies: replies per second.

RSS is VmRSS from /proc/PID/status, sampled every 20 ms, so a peak between samples can be
missed by a little.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_FLOOR = REPO_ROOT.parent / "shared" / "bench" / "floor_server.py"
STALL_S = 3.0
SAMPLE_S = 0.02
DRAIN_TIMEOUT_S = 600.0

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "bench", "version": "1"},
    },
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def call(request_id: int, tool: str, arguments: dict[str, Any]) -> bytes:
    params = {"name": tool, "arguments": arguments}
    message = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
    return json.dumps(message).encode() + b"\n"


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Server:
    """A server process over pipes, with a line reader that can be started late."""

    def __init__(self, system: str, db: Path, floor: Path, stdio: str) -> None:
        if system == "floor":
            argv = [sys.executable, str(floor)]
            env = {**os.environ, "FLOOR_DB": str(db), "AGENT_ID": "bench"}
        else:
            argv = [sys.executable, "-m", "shared_context_server", "--db", str(db)]
            argv += ["--agent-id", "bench", "--stdio", stdio]
            env = dict(os.environ)
        self.system = system
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.replies: dict[Any, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.send(json.dumps(INITIALIZE).encode() + b"\n")
        self.read_until(lambda: 0 in self.replies)
        self.send(json.dumps(INITIALIZED).encode() + b"\n")

    def send(self, data: bytes) -> None:
        self.stdin.write(data)
        self.stdin.flush()

    def read_one(self) -> None:
        line = self.stdout.readline()
        if not line:
            raise EOFError(f"{self.system} closed its stdout")
        message = json.loads(line)
        if "id" in message:
            with self.lock:
                self.replies[message["id"]] = message

    def read_until(self, done: Any) -> None:
        while not done():
            self.read_one()

    def reader(self, count: int) -> threading.Thread:
        """A thread that reads replies until `count` have come back in all."""

        def run() -> None:
            try:
                while len(self.replies) < count:
                    self.read_one()
            except (EOFError, ValueError):
                pass

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def call(self, request_id: int, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        self.send(call(request_id, tool, arguments))
        self.read_until(lambda: request_id in self.replies)
        return self.replies[request_id]

    def close(self) -> None:
        self.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def small_call(system: str, request_id: int) -> bytes:
    if system == "floor":
        return call(request_id, "get_messages", {"session_id": "none", "last": 1})
    return call(request_id, "whoami", {})


def flood(server: Server, calls: int) -> dict[str, Any]:
    pid = server.proc.pid
    start_rss = rss_mb(pid)
    first = 1000
    lines = [small_call(server.system, first + i) for i in range(calls)]
    sent = [0]

    def write() -> None:
        try:
            for line in lines:
                server.stdin.write(line)
                server.stdin.flush()
                sent[0] += 1
        except (BrokenPipeError, ValueError):
            pass

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    peak_unread = start_rss
    # Nobody reads until the client has stopped writing (all written, or the server took
    # nothing for STALL_S) and the server's memory has not grown for STALL_S.
    last, last_change = (-1, peak_unread), time.monotonic()
    while time.monotonic() - last_change < STALL_S:
        peak_unread = max(peak_unread, rss_mb(pid))
        if (sent[0], peak_unread) != last:
            last, last_change = (sent[0], peak_unread), time.monotonic()
        time.sleep(SAMPLE_S)
    taken = sent[0]
    began = time.monotonic()
    before = len(server.replies)
    reader = server.reader(before + calls)
    peak_drain = peak_unread
    while reader.is_alive() and time.monotonic() - began < DRAIN_TIMEOUT_S:
        peak_drain = max(peak_drain, rss_mb(pid))
        time.sleep(SAMPLE_S)
    writer.join(timeout=5)
    answered = sum(1 for key in server.replies if isinstance(key, int) and key >= first)
    return {
        "rss_start_mb": start_rss,
        "rss_peak_unread_mb": peak_unread,
        "rss_peak_draining_mb": peak_drain,
        "taken_before_stop": taken,
        "flood_answered": answered,
        "drain_s": time.monotonic() - began,
    }


def text(i: int, chars: int) -> str:
    return f"message {i} " + "x" * max(chars - 12, 0)


def pipelined_reads(server: Server, reads: int, content: int) -> dict[str, Any]:
    if server.system == "floor":
        session = json.loads(
            server.call(1, "create_session", {"purpose": "bench"})["result"]["content"][0]["text"]
        )["session_id"]
        for i in range(50):
            server.call(2 + i, "add_message", {"session_id": session, "content": text(i, content)})
        tool, arguments = "get_messages", {"session_id": session, "last": 50}
    else:
        result = server.call(1, "create_session", {"purpose": "bench"})["result"]
        session = result["structuredContent"]["session_id"]
        for i in range(50):
            server.call(2 + i, "add_message", {"session_id": session, "content": text(i, content)})
        tool, arguments = "get_context", {"session_id": session, "limit": 50}
    first = 100_000
    data = b"".join(call(first + i, tool, arguments) for i in range(reads))
    before = len(server.replies)
    began = time.monotonic()
    reader = server.reader(before + reads)
    server.send(data)
    reader.join(timeout=DRAIN_TIMEOUT_S)
    elapsed = time.monotonic() - began
    answered = sum(1 for key in server.replies if isinstance(key, int) and key >= first)
    return {"reads": reads, "reads_answered": answered, "replies_per_s": answered / elapsed}


def run(system: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(system, Path(tmp) / "flood.db", args.floor, args.stdio)
        try:
            figures = flood(server, args.calls)
        finally:
            server.close()
        server = Server(system, Path(tmp) / "reads.db", args.floor, args.stdio)
        try:
            figures.update(pipelined_reads(server, args.reads, args.content))
        finally:
            server.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--reads", type=int, default=2_000)
    parser.add_argument("--content", type=int, default=200)
    parser.add_argument("--floor", type=Path, default=DEFAULT_FLOOR)
    parser.add_argument("--only", choices=["floor", "product"])
    parser.add_argument("--stdio", choices=["auto", "threads"], default="auto")
    args = parser.parse_args()
    systems = [args.only] if args.only else ["floor", "product"]
    results = {system: run(system, args) for system in systems}
    print(f"{'figure':<40}" + "".join(f"{s:>14}" for s in systems))
    for key in next(iter(results.values())):
        cells = "".join(f"{_cell(results[s][key]):>14}" for s in systems)
        print(f"{key:<40}{cells}")


def _cell(value: Any) -> str:
    return f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"


if __name__ == "__main__":
    main()
