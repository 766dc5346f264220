"""What the audit trail costs (a report, not a test).

Run from the repository root:

    .venv/bin/python tests/benchmarks/bench_audit.py --entries 1000000

Prints the domain cost of add_message (which writes its audit entry in its own
transaction) on a fresh file, and how long get_audit_log takes on a log of `--entries`
rows: for an agent with many entries (a page is found near the newest end), an admin
filtering one session, and an agent with a single old entry (the walk covers every row:
the worst case, since the log has no secondary index; retention keeps it bounded).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import anyio

from shared_context_server.blackboard import audit, messages, sessions
from shared_context_server.blackboard.identity import Agent
from shared_context_server.storage.sqlite.database import Database

WRITER = Agent("writer", "bench")
ADMIN = Agent("root", "bench", frozenset({"read", "admin"}))
INSERT = (
    "INSERT INTO audit_log (ts, agent_id, action, session_id, target, result)"
    " VALUES ('2026-01-01T00:00:00.000000Z', ?, 'add_message', ?, 'message:1', 'ok')"
)


async def add_message_cost(folder: Path, calls: int) -> float:
    """Best of five runs of `calls` add_message, in ms per call."""
    db = await Database.open(folder / "writes.db")
    try:
        sid = (await sessions.create_session(db, WRITER, "bench"))["id"]
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for n in range(calls):
                await messages.add_message(db, WRITER, sid, f"message {n}")
            best = min(best, time.perf_counter() - start)
        return 1000 * best / calls
    finally:
        await db.close()


async def audit_reads(folder: Path, entries: int) -> list[tuple[str, float, int]]:
    path = folder / "audit.db"
    db = await Database.open(path)
    try:
        conn = sqlite3.connect(path)
        conn.execute(
            "INSERT INTO audit_log (ts, agent_id, action, result)"
            " VALUES ('2025-01-01T00:00:00.000000Z', 'rare', 'set_memory', 'ok')"
        )
        conn.executemany(INSERT, ((f"agent{n % 20}", f"sess_{n % 50}") for n in range(entries)))
        conn.commit()
        conn.close()
        cases = [
            ("an agent's latest 50", Agent("agent3"), None),
            ("admin, one session's latest 50", ADMIN, "sess_7"),
            ("an agent with one old entry (walks all)", Agent("rare"), None),
        ]
        out = []
        for label, agent, session_id in cases:
            start = time.perf_counter()
            page = await audit.get_audit_log(db, agent, session_id=session_id)
            out.append((label, 1000 * (time.perf_counter() - start), len(page["entries"])))
        return out
    finally:
        await db.close()


async def run(entries: int, calls: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-audit-"))
    cost = await add_message_cost(folder, calls)
    print(f"add_message (domain, with its audit entry): {cost:.3f} ms")
    print(f"get_audit_log on {entries:,} entries:")
    for label, ms, found in await audit_reads(folder, entries):
        print(f"  {label}: {ms:.1f} ms ({found} entries)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args(argv)
    anyio.run(run, args.entries, args.calls)
    return 0


if __name__ == "__main__":
    sys.exit(main())
