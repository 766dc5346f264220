"""Reads while another process sits on the write lock: per-tool latency, printed.

Two server processes share a file: one has a write queued behind the lock, the other only
its heartbeat. An outside sqlite3 process holds BEGIN IMMEDIATE for --hold seconds while
both servers answer reads in turn, and the same reads are timed again with the lock free.

    .venv/bin/python tests/benchmarks/bench_locked_reads.py [--hold 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT))

from tests.support import ok, spawn  # noqa: E402
from tests.test_storage_locks import write_lock_held  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def time_reads(
    servers: list[Any], reads: list[tuple[str, dict[str, Any]]], seconds: float
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name, _ in reads}
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for server in servers:
            for name, arguments in reads:
                start = time.perf_counter()
                await ok(server, name, **arguments)
                times[name].append((time.perf_counter() - start) * 1000)
    return times


def report(title: str, times: dict[str, list[float]]) -> None:
    print(f"\n{title}")
    print(f"{'read':<16}{'calls':>7}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for name, values in times.items():
        print(
            f"{name:<16}{len(values):>7}{statistics.median(values):>9.1f}"
            f"{percentile(values, 0.99):>9.1f}{max(values):>9.1f}"
        )


async def main(hold: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bb.db"
        async with (
            spawn(db, "--agent-id", "writer") as writer,
            spawn(db, "--agent-id", "idle") as idle,
        ):
            sid = (await ok(writer, "create_session", purpose="locked reads"))["session_id"]
            for i in range(200):
                await ok(writer, "add_message", session_id=sid, content=f"finding {i} on locks")
            await ok(writer, "set_memory", key="k", value=1)
            await ok(idle, "set_memory", key="k", value=2)
            reads = [
                ("get_session", {"session_id": sid}),
                ("get_context", {"session_id": sid}),
                ("search_context", {"session_id": sid, "query": "findng"}),
                ("list_sessions", {}),
                ("get_memory", {"key": "k"}),
                ("list_memory", {}),
            ]
            report("lock free", await time_reads([writer, idle], reads, min(hold, 10)))
            with write_lock_held(db, hold + 5):
                async with anyio.create_task_group() as tg:
                    # A write queued behind the lock in one server, as a busy agent would.
                    tg.start_soon(
                        lambda: writer.call_tool(
                            "add_message", {"session_id": sid, "content": "queued"}
                        )
                    )
                    await anyio.sleep(0.2)
                    times = await time_reads([writer, idle], reads, hold)
                    report(f"another process holding the write lock for {hold:g} s", times)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hold", type=float, default=30.0, help="seconds the lock is held")
    anyio.run(main, parser.parse_args().hold)
