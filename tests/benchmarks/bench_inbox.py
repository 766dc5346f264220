"""How check_inbox's read grows with the blackboard, on both engines (a report, not a test).

Run from the repository root:

    .venv/bin/python tests/benchmarks/bench_inbox.py --pg-cluster   # 20k and 100k messages
    .venv/bin/python tests/benchmarks/bench_inbox.py --db postgresql://... --sizes 20000

At N messages the blackboard holds N/100 sessions of 100 messages by 20 senders, written
in turn as agents would; the reader (`reader`) took part in 50 of them and has seen all
but the last 3 messages of 5. Timed, --calls times each, p50 and p99: the peek check_inbox
makes first (is anything new? LIMIT 1), and the read of a page of news (LIMIT 51), through
the engine's own `read`. The rows of both engines are compared: the same ids at each size.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from shared_context_server.blackboard import news
from shared_context_server.blackboard.identity import Agent
from shared_context_server.storage.opener import open_store
from shared_context_server.storage.seam import Store, Target

READER = Agent("reader", "reviewer")
SESSIONS_TAKEN_PART = 50
BEHIND = 5  # sessions where the reader has not seen the last 3 messages
NOW = "2026-01-01T00:00:00.000000Z"


def fill_statements(size: int) -> list[tuple[str, tuple[Any, ...]]]:
    """The rows, as plain statements both engines take (triggers make the marks)."""
    sessions = max(size // 100, SESSIONS_TAKEN_PART)
    out: list[tuple[str, tuple[Any, ...]]] = []
    for s in range(sessions):
        out.append(
            (
                "INSERT INTO sessions (id, purpose, status, created_by, created_at, updated_at)"
                " VALUES (?, 'p', 'active', ?, ?, ?)",
                (f"s{s:06d}", f"agent-{s % 20:02d}", NOW, NOW),
            )
        )
    return out


async def fill(db: Store, size: int) -> None:
    sessions = max(size // 100, SESSIONS_TAKEN_PART)

    def work(conn: Any) -> None:
        for sql, params in fill_statements(size):
            conn.execute(sql, params)
        # Interleaved: message k goes to session k % sessions, by sender k % 20.
        for k in range(size):
            conn.execute(
                "INSERT INTO messages (session_id, sender, sender_type, content, visibility,"
                " message_type, metadata, parent_message_id, created_at)"
                " VALUES (?, ?, 'bot', ?, ?, 'message', NULL, NULL, ?)",
                (
                    f"s{k % sessions:06d}",
                    f"agent-{k % 20:02d}",
                    f"message {k} about the parser",
                    "private" if k % 10 == 0 else "public",
                    NOW,
                ),
            )
        # The reader's marks: caught up in SESSIONS_TAKEN_PART sessions, BEHIND of them not.
        for s in range(SESSIONS_TAKEN_PART):
            conn.execute(
                "INSERT INTO inbox_marks (agent_id, session_id, seen_id) VALUES ('reader', ?,"
                " coalesce((SELECT id FROM messages WHERE session_id = ?"
                " ORDER BY id DESC LIMIT 1 OFFSET ?), 0))",
                (f"s{s:06d}", f"s{s:06d}", 3 if s < BEHIND else 0),
            )

    await db.transact(work)


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered) * 1000:7.2f} ms  p99 {p99 * 1000:7.2f} ms"


async def measure(target: Target, size: int, calls: int, fill_it: bool) -> list[int]:
    db = await open_store(target)
    try:
        if fill_it:
            started = time.perf_counter()
            await fill(db, size)
            print(f"  filled {size} messages in {time.perf_counter() - started:.1f} s", flush=True)
            if db.engine == "postgres":
                await db.read("ANALYZE")
        params = news.news_params(READER)
        peek, page = [], []
        for _ in range(calls):
            t = time.perf_counter()
            await db.read(news.NEWS["seen_id"], (*params, 1))
            peek.append(time.perf_counter() - t)
            t = time.perf_counter()
            rows = await db.read(news.NEWS["seen_id"], (*params, 51))
            page.append(time.perf_counter() - t)
        print(f"  {db.engine:8} {size:>7}: peek {_ms(peek)}; page of news {_ms(page)}")
        return [int(row["id"]) for row in rows]
    finally:
        await db.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,100000")
    parser.add_argument("--calls", type=int, default=100)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--db", help="postgresql://... of a role that may CREATE DATABASE")
    where.add_argument("--pg-cluster", action="store_true")
    args = parser.parse_args()
    cluster = None
    url = args.db
    if args.pg_cluster:
        from tests.pg_cluster import Cluster

        cluster = Cluster().start()
        url = cluster.url()
    import psycopg

    print(f"load average {os.getloadavg()}", flush=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for size in (int(s) for s in args.sizes.split(",")):
                name = f"inbox_{uuid.uuid4().hex[:8]}"
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute(f"CREATE DATABASE {name}")
                pg = url.rsplit("/", 1)[0] + "/" + name
                try:
                    file_ids = await measure(Path(tmp) / f"{size}.db", size, args.calls, True)
                    pg_ids = await measure(pg, size, args.calls, True)
                    same = "same" if file_ids == pg_ids else f"DIFFERENT: {file_ids} {pg_ids}"
                    print(f"  news ids on both engines: {same} ({len(pg_ids)} rows)")
                finally:
                    with psycopg.connect(url, autocommit=True) as conn:
                        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        if cluster is not None:
            cluster.stop()
    print(f"load average {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    anyio.run(main)
