"""What export and import cost at size (a report, not a test): time, peak RSS, and how long
another agent's post takes while an import runs.

Run from the repository root:

    .venv/bin/python tests/benchmarks/bench_transfer.py --messages 20000,200000 \
        --engines sqlite,postgres

For each count and engine, fills a blackboard with one session of that many messages
(about 200 bytes of content each, a third of them replies), then runs the real command
line in a child process: `export SID --admin -o FILE.jsonl` from it, and `import FILE.jsonl`
into an empty one. Peak RSS is the child's own (os.wait4), so a flat figure across counts
is the claim that both run in constant memory.

While the import runs, this process is another agent: it opens the import's target with
the product's store and posts (the domain's add_message) into a session of its own about
every 50 ms; its p50/p99/max in ms and its errors are reported beside the import.

PostgreSQL: a throwaway cluster (tests/pg_cluster.py, synchronous_commit=off) unless
`--pg URL` names a server where this role may CREATE DATABASE; either way each count gets
two fresh databases, dropped afterwards. The source is migrated by the product, then
filled by COPY with triggers off (session_replication_role = replica), and the one table
they keep that export reads (session_activity, its count) is summed afterwards.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import bench_pg

from shared_context_server.blackboard.identity import Agent
from shared_context_server.blackboard.messages import add_message
from shared_context_server.blackboard.sessions import create_session
from shared_context_server.storage.opener import open_store

SID = "sess_0123456789abcdef"
TIME = "2026-11-22T05:33:12.123456Z"
POST_EVERY = 0.05  # seconds between the other agent's posts
COPY_MESSAGES = (
    "COPY messages (id, session_id, sender, sender_type, content, visibility, message_type,"
    " metadata, parent_message_id, created_at) FROM STDIN"
)


def rows(count: int) -> Any:
    for i in range(1, count + 1):
        yield (
            *(i, SID, "alice" if i % 2 else "bob", "generic"),
            f"message {i}: " + "lorem ipsum dolor sit amet " * 7,
            *("public", "message", None, i - 1 if i % 3 == 0 else None, TIME),
        )


async def migrate(target: str) -> None:
    await (await open_store(target)).close()


def fill_sqlite(path: str, count: int) -> None:
    anyio.run(migrate, path)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "INSERT INTO sessions VALUES (?, 'bench', 'active', 'alice', ?, ?, NULL)",
            (SID, TIME, TIME),
        )
        conn.executemany(
            "INSERT INTO messages (id, session_id, sender, sender_type, content, visibility,"
            " message_type, metadata, parent_message_id, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows(count),
        )
    conn.close()


def fill_postgres(url: str, count: int) -> None:
    import psycopg

    anyio.run(migrate, url)
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO sessions (id, purpose, status, created_by, created_at, updated_at)"
            " VALUES (%s, 'bench', 'active', 'alice', %s, %s)",
            (SID, TIME, TIME),
        )
        # The triggers keep the activity and inbox tables a post moves; export reads none.
        conn.execute("SET session_replication_role = replica")
        with conn.cursor().copy(COPY_MESSAGES) as copy:
            for row in rows(count):
                copy.write_row(row)
        conn.execute("SELECT setval('message_ids', %s)", (count,))
        # The one trigger table export reads: its count of the session's messages.
        conn.execute(
            "INSERT INTO session_activity SELECT session_id, sender, sender_type, visibility,"
            " count(*), max(created_at) FROM messages GROUP BY 1, 2, 3, 4"
        )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE messages")


@dataclass
class Posts:
    """The other agent's posts during an import: latencies in seconds, and errors."""

    seconds: list[float] = field(default_factory=list)
    errors: int = 0
    worst: float = 0.0
    worst_at: float = 0.0  # seconds into the import when the slowest post began

    def figures(self) -> str:
        if len(self.seconds) < 2:
            return f"{'-':>8} {'-':>6} {'-':>6} {len(self.seconds):>6} {self.errors:>4}"
        ms = sorted(s * 1000 for s in self.seconds)
        p99 = statistics.quantiles(ms, n=100, method="inclusive")[98]
        return (
            f"{statistics.median(ms):>8.0f} {p99:>6.0f} {ms[-1]:>6.0f} "
            f"{len(ms):>6} {self.errors:>4}"
        )


def start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "shared_context_server", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def reap(child: subprocess.Popen[bytes], started: float) -> tuple[float, float]:
    """Seconds and peak RSS in MB of a child, once it exits; SystemExit if it failed."""
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.monotonic() - started
    if status != 0:
        assert child.stderr is not None
        raise SystemExit(f"{child.args} failed: {child.stderr.read().decode()}")
    return seconds, usage.ru_maxrss / 1024  # KiB on Linux


def run(*args: str) -> tuple[float, float]:
    """Seconds and peak RSS in MB of the command line in a child process."""
    started = time.monotonic()
    return reap(start(*args), started)


async def import_while_posting(file: str, target: str) -> tuple[float, float, Posts]:
    """The import's seconds and peak RSS, and another agent's posts into `target` meanwhile."""
    db = await open_store(target)
    agent = Agent("poster")
    posts = Posts()
    try:
        session = (await create_session(db, agent, "posts during an import"))["id"]
        started = time.monotonic()
        child = start("import", file, "--db", target)
        async with anyio.create_task_group() as tasks:

            async def post() -> None:
                n = 0
                while True:
                    began = time.monotonic()
                    try:
                        await add_message(db, agent, session, f"post {n} during the import")
                        took = time.monotonic() - began
                        if took > posts.worst:
                            posts.worst, posts.worst_at = took, began - started
                        posts.seconds.append(took)
                    except Exception as error:  # counted, and the first one shown
                        posts.errors += 1
                        if posts.errors == 1:
                            print(f"# a post failed: {error!r}", file=sys.stderr, flush=True)
                    n += 1
                    await anyio.sleep(max(0.0, POST_EVERY - (time.monotonic() - began)))

            tasks.start_soon(post)
            seconds, mb = await anyio.to_thread.run_sync(reap, child, started)
            tasks.cancel_scope.cancel()
    finally:
        await db.close()
    return seconds, mb, posts


def measure(engine: str, count: int, source: str, target: str, tmp: str) -> None:
    (fill_sqlite if engine == "sqlite" else fill_postgres)(source, count)
    file = str(Path(tmp, f"{engine}-{count}.jsonl"))
    export_s, export_mb = run("export", SID, "--admin", "--db", source, "-o", file)
    size = Path(file).stat().st_size / 2**20
    import_s, import_mb, posts = anyio.run(import_while_posting, file, target)
    Path(file).unlink()
    if posts.seconds:
        print(
            f"# {engine} {count:,}: the slowest post began {posts.worst_at:.1f} s into the import",
            file=sys.stderr,
            flush=True,
        )
    print(
        f"{engine:>8} {count:>10,} {size:>8.0f} {export_s:>9.1f} {export_mb:>10.0f} "
        f"{import_s:>9.1f} {import_mb:>10.0f} {posts.figures()}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", default="20000,200000", help="counts, comma-separated")
    parser.add_argument(
        "--engines", default="sqlite", help="sqlite, postgres or both, comma-separated"
    )
    parser.add_argument(
        "--pg", metavar="URL", help="a PostgreSQL server (default: a throwaway cluster)"
    )
    options = parser.parse_args()
    engines = options.engines.split(",")
    if not set(engines) <= {"sqlite", "postgres"}:
        parser.error(f"--engines: sqlite or postgres, not {options.engines!r}")
    print(f"# load average {load()} (1, 5, 15 min), {os.cpu_count()} CPUs", flush=True)
    cluster: Any = None
    pg: bench_pg.PgServer | None = None
    try:
        if "postgres" in engines:
            if options.pg is None:
                cluster = bench_pg.start_cluster()
            pg = bench_pg.PgServer(options.pg or cluster.url())
            print(f"# {pg.describe()}", flush=True)
        print(
            f"{'engine':>8} {'messages':>10} {'file MB':>8} {'export s':>9} {'export MB':>10} "
            f"{'import s':>9} {'import MB':>10} "
            f"{'post p50':>8} {'p99':>6} {'max ms':>6} {'posts':>6} {'errs':>4}"
        )
        for count in (int(n) for n in options.messages.split(",")):
            for engine in engines:
                with tempfile.TemporaryDirectory() as tmp:
                    if pg is not None and engine == "postgres":
                        source, target = pg.fresh(f"a{count}"), pg.fresh(f"b{count}")
                    else:
                        source, target = str(Path(tmp, "a.db")), str(Path(tmp, "b.db"))
                    try:
                        measure(engine, count, source, target, tmp)
                    finally:
                        if pg is not None and engine == "postgres":
                            pg.drop_all()
    finally:
        if cluster is not None:
            cluster.stop()
        print(f"# load average {load()} at the end", flush=True)


def load() -> str:
    return ", ".join(f"{n:.1f}" for n in os.getloadavg())


if __name__ == "__main__":
    main()
