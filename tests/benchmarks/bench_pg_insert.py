"""What one message INSERT costs on PostgreSQL with the schema's triggers and indexes (a
report, not a test): add_message's own statement, one per transaction, in one process.

    .venv/bin/python tests/benchmarks/bench_pg_insert.py [URL] [--writes 1000] [--rounds 3]

Without a URL it starts a throwaway cluster (tests/pg_cluster.py). With one, the database
must be migrated or empty and only for this: it drops and re-creates the trigram index
and adds bench sessions. In each of --rounds rounds, each variant writes --writes messages
(~200 characters, one in five addressed to an agent in metadata `to`) into a session of
its own, after a warm-up:

- schema: as migrated (id trigger, activity/inbox/NOTIFY trigger, GIN trigram index over
  content, sender and metadata joined, the text search ranks);
- no trigram index: the same without it;
- content only: a trigram index over content alone;
- three-column: one GIN index over content, sender and metadata as three columns;
- no triggers but the id: the activity, inbox and NOTIFY trigger disabled (what it costs);
- fastupdate off: the schema's index without GIN's pending list (each insert updates the
  index itself; with the list, an insert now and then pays for flushing it).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import psycopg

from shared_context_server.blackboard.identity import Agent
from shared_context_server.blackboard.messages import INSERT_MESSAGE
from shared_context_server.blackboard.visibility import visible_to
from shared_context_server.storage.postgres.database import PgDatabase
from shared_context_server.storage.postgres.schema import MIGRATIONS
from shared_context_server.storage.postgres.unit import to_pyformat

WORDS = ("the", "message", "id", "session", "agent", "review", "patch", "build", "test", "green")
SENDER = Agent("bench", "b")
CONTENT_INDEX = "CREATE INDEX messages_trigram ON messages USING gin (content gin_trgm_ops)"
SCHEMA_INDEX = next(s for s in MIGRATIONS[1] if s.startswith("CREATE INDEX messages_trigram"))
WIDE_INDEX = (
    "CREATE INDEX messages_trigram ON messages USING gin"
    " (content gin_trgm_ops, sender gin_trgm_ops, coalesce(metadata, '') gin_trgm_ops)"
)


def _params(session: str, i: int) -> tuple[Any, ...]:
    content = " ".join(random.choice(WORDS) + str(random.randrange(100)) for _ in range(30))
    metadata = f'{{"to": "agent{i % 7}"}}' if i % 5 == 0 else None
    return (
        session, SENDER.agent_id, SENDER.agent_type, content[:200], "public", "message",
        metadata, None, "2026-01-01T00:00:00.000000Z", session, None, None, *visible_to(SENDER),
    )  # fmt: skip


def _run(conn: psycopg.Connection[Any], writes: int) -> list[float]:
    session = f"bench_{uuid.uuid4().hex[:8]}"
    conn.execute(
        "INSERT INTO sessions (id, purpose, status, created_by, created_at, updated_at)"
        " VALUES (%s, 'bench', 'active', 'bench', 'now', 'now')",
        (session,),
    )
    sql = to_pyformat(INSERT_MESSAGE)
    samples = []
    for i in range(writes + 100):
        start = time.perf_counter()
        with conn.transaction():
            conn.execute(sql, _params(session, i)).fetchone()
        if i >= 100:  # the first hundred warm the caches and the plan
            samples.append(time.perf_counter() - start)
    return samples


def _report(name: str, samples: list[float]) -> None:
    cuts = statistics.quantiles(samples, n=100)
    print(
        f"{name:<30} p50 {statistics.median(samples) * 1000:.3f} ms"
        f"  p90 {cuts[89] * 1000:.3f} ms  p99 {cuts[98] * 1000:.3f} ms"
    )


def main(url: str, writes: int, rounds: int) -> None:
    anyio.run(lambda: _migrate(url))
    with psycopg.connect(url, autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
        variants = (
            ("schema", SCHEMA_INDEX, ""),
            ("no trigram index", "", ""),
            ("trigram index on content only", CONTENT_INDEX, ""),
            ("three-column trigram index", WIDE_INDEX, ""),
            ("no triggers but the id", SCHEMA_INDEX, "message_inserted"),
            ("trigram index, fastupdate off", SCHEMA_INDEX + " WITH (fastupdate = off)", ""),
        )
        print(f"{writes} inserts x {rounds} rounds (variants interleaved), one transaction each:")
        samples: dict[str, list[float]] = {name: [] for name, _, _ in variants}
        try:
            for _ in range(rounds):
                for name, index, disabled in variants:
                    conn.execute("DROP INDEX IF EXISTS messages_trigram")
                    if index:
                        conn.execute(index)
                    if disabled:
                        conn.execute(f"ALTER TABLE messages DISABLE TRIGGER {disabled}")
                    try:
                        samples[name] += _run(conn, writes)
                    finally:
                        if disabled:
                            conn.execute(f"ALTER TABLE messages ENABLE TRIGGER {disabled}")
            for name, taken in samples.items():
                _report(name, taken)
        finally:
            conn.execute("DROP INDEX IF EXISTS messages_trigram")
            conn.execute(SCHEMA_INDEX)


async def _migrate(url: str) -> None:
    await (await PgDatabase.open(url)).close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?")
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    random.seed(1)
    if args.url:
        main(args.url, args.writes, args.rounds)
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
        from tests.pg_cluster import Cluster

        cluster = Cluster().start()
        try:
            with psycopg.connect(cluster.url(), autocommit=True) as admin:
                admin.execute("CREATE DATABASE bench")
            main(cluster.url("bench"), args.writes, args.rounds)
        finally:
            cluster.stop()
