"""Delay from a commit in one process to its channel event in another (a report, not a test).

Run from the repository root:

    .venv/bin/python tests/benchmarks/bench_push.py

Options: --messages N (200), --db PATH|URL (default: a temporary file), --poll-interval
SECONDS (the server's, default its own 0.1), --pace SECONDS (0.05, the mean
random pause between posts).

A server process runs as agent `bob` with `--push channels`, under a client that binds
`notifications/claude/channel` as Claude Code does. This script, another process on the
same database, posts N messages addressed to bob one at a time through the domain
functions; the clock starts when `add_message` returns (the commit is durable) and stops
when the client's handler receives the event. Prints p50, p90, p99 and max in ms, and how
many events arrived (each message must arrive once).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import ClientSession
from mcp.client.extension import NotificationBinding
from mcp.client.stdio import stdio_client

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from tests.support import server_params  # noqa: E402

from shared_context_server.blackboard import messages, sessions  # noqa: E402
from shared_context_server.blackboard.identity import Agent  # noqa: E402
from shared_context_server.server.channels import METHOD, ChannelParams  # noqa: E402
from shared_context_server.storage.opener import open_store  # noqa: E402

ALICE = Agent("alice", "reviewer")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(db: str, count: int, pace: float, poll: float | None) -> None:
    arrived: dict[int, float] = {}
    got = anyio.Event()

    async def on_event(params: ChannelParams) -> None:
        nonlocal got
        arrived[int(params.meta["message_id"])] = time.perf_counter()
        got.set()
        got = anyio.Event()

    store = await open_store(db)
    sid = (await sessions.create_session(store, ALICE, "push bench"))["id"]
    args = ["--agent-id", "bob", "--push", "channels"]
    if poll is not None:
        args += ["--poll-interval", str(poll)]
    binding = NotificationBinding(method=METHOD, params_type=ChannelParams, handler=on_event)
    committed: dict[int, float] = {}
    async with (
        stdio_client(server_params(db, *args)) as (read, write),
        ClientSession(read, write, notification_bindings=[binding]) as bob,
    ):
        await bob.initialize()
        await bob.call_tool("add_message", {"session_id": sid, "content": "bob is here"})
        for i in range(count):
            sent = await messages.add_message(store, ALICE, sid, f"#{i}", metadata={"to": "bob"})
            committed[sent["message_id"]] = time.perf_counter()
            with anyio.fail_after(10):
                while sent["message_id"] not in arrived:
                    await got.wait()
            # at random: a commit lands at any point of the server's poll interval
            await anyio.sleep(random.uniform(0, 2 * pace))
    await store.close()
    delays = [(arrived[i] - committed[i]) * 1000 for i in committed]
    print(f"{len(arrived)} events for {count} messages (each once: {len(arrived) == count})")
    print(
        f"commit -> channel event, ms: p50 {statistics.median(delays):.1f}"
        f"  p90 {percentile(delays, 0.9):.1f}  p99 {percentile(delays, 0.99):.1f}"
        f"  max {max(delays):.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--db", help="a file or postgresql:// URL (default: a temporary file)")
    parser.add_argument("--poll-interval", type=float)
    parser.add_argument("--pace", type=float, default=0.05)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or str(Path(tmp) / "bench.db")
        anyio.run(measure, db, args.messages, args.pace, args.poll_interval)


if __name__ == "__main__":
    main()
