"""Benchmark search_context on sessions of 1k, 10k and 100k messages (a report, not a test).

Run from the repository root:

    .venv/bin/python tests/benchmarks/bench.py --search
    .venv/bin/python tests/benchmarks/bench_search.py --sizes 1000,10000,100000 --queries 200

For each size, a fresh database gets one session of generated messages (tests/corpus.py:
common words plus one made-up word each; every tenth message private to another agent, so
the visibility rule is in play). The rows are inserted with stdlib sqlite3 in one
transaction after the server has created the schema, then indexed with the product's
own `index_pending` (what a server process does a quarter second after its writes).
Then a real server process is spawned and asked, over stdio, three kinds of query:

- typo: one distinctive word with one edit (recall@5 is reported too);
- mixed: the misspelt word plus two common words of its message, shuffled;
- common: three common words (every trigram frequent: the worst case for the index).

Printed per size and kind: p50/p99 of the server's own `search_time_ms` and of the full
tool call round trip seen by the client.

`--long 300x100000` (the default; `--long ""` skips it) adds a session of 300 messages of
100,000 characters each: common words, with each message's distinctive word somewhere
inside. The session is small enough to be scored whole, so every search scores all 300
long texts, the worst case of the cost per candidate.

    .venv/bin/python tests/benchmarks/bench_search.py --sizes 1000 --queries 30 --long 300x100000

Then typo recall@5 of `search_context` itself, with no process, at --recall-size messages
(10,000 by default; 0 skips it) on each engine: SQLite, and PostgreSQL with --db URL (a new
database is made there and dropped) or --pg-cluster (a throwaway cluster, tests/pg_cluster.py).
The rows go in 500 a statement and are indexed the way the product does it (SQLite's
`Store.index_search`, PostgreSQL's upkeep). The test suite checks recall at 1,000 messages;
this is the figure at the scale a long session reaches.

    .venv/bin/python tests/benchmarks/bench_search.py --sizes 1000 --pg-cluster
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import bench_pg  # beside this file
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from tests.corpus import COMMON, corpus, with_typo  # noqa: E402

from shared_context_server.blackboard.identity import Agent  # noqa: E402
from shared_context_server.blackboard.search import search_context  # noqa: E402
from shared_context_server.blackboard.sessions import create_session  # noqa: E402
from shared_context_server.clock import utc_now  # noqa: E402
from shared_context_server.storage.opener import open_store  # noqa: E402
from shared_context_server.storage.seam import Conn, Target  # noqa: E402
from shared_context_server.storage.sqlite.database import Database  # noqa: E402

KINDS = ("typo", "mixed", "common")


def percentile(values: list[float], q: float) -> float:
    data = sorted(values)
    pos = (len(data) - 1) * q / 100
    lo, hi = int(pos), min(int(pos) + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def fill(db: Path, session_id: str, texts: list[str]) -> list[int]:
    """Insert the messages (every tenth private to 'carol'); returns their ids in order."""
    conn = sqlite3.connect(db)
    try:
        rows = [
            (
                session_id,
                "carol" if i % 10 == 9 else f"agent-{i % 5}",
                "worker",
                text,
                "private" if i % 10 == 9 else "public",
                "message",
                f"2026-01-01T00:00:{i % 60:02d}.000000Z",
            )
            for i, text in enumerate(texts)
        ]
        with conn:
            first = conn.execute("SELECT ifnull(max(id), 0) FROM messages").fetchone()[0]
            conn.executemany(
                "INSERT INTO messages (session_id, sender, sender_type, content, visibility,"
                " message_type, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        anyio.run(_index, db)
        return list(range(first + 1, first + 1 + len(texts)))
    finally:
        conn.close()


async def _index(path: Path) -> None:
    db = await Database.open(path)
    try:
        await db.index_search()
    finally:
        await db.close()


def queries(words: list[tuple[str, str]], n: int, rng: random.Random) -> list[tuple[str, str, int]]:
    """(kind, query, index of the target message or -1) for n queries of each kind."""
    out: list[tuple[str, str, int]] = []
    visible = [i for i in range(len(words)) if i % 10 != 9]
    for i in rng.sample(visible, n):
        out.append(("typo", with_typo(rng, words[i][0]), i))
    for i in rng.sample(visible, n):
        common = [w for w in words[i][1].rstrip(".").lower().split() if w != words[i][0]]
        parts = [with_typo(rng, words[i][0]), *rng.sample(common, 2)]
        rng.shuffle(parts)
        out.append(("mixed", " ".join(parts), i))
    for _ in range(n):
        out.append(("common", " ".join(rng.sample(COMMON, 3)), -1))
    rng.shuffle(out)
    return out


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await session.call_tool(tool, arguments)
    if result.is_error or not isinstance(result.structured_content, dict):
        raise RuntimeError(f"{tool} failed: {result.content}")
    return result.structured_content


def long_corpus(count: int, chars: int, seed: int = 7) -> list[tuple[str, str]]:
    """`count` (distinctive word, text) pairs, each text `chars` characters of common words
    around its distinctive word, which sits anywhere in it."""
    rng = random.Random(seed)
    filler = " ".join(rng.choice(COMMON) for _ in range(chars // 2))
    out: list[tuple[str, str]] = []
    for word, _ in corpus(count, seed=seed):
        start = filler.index(" ", rng.randrange(len(filler) - chars)) + 1
        text = filler[start : start + chars - len(word) - 2]
        cut = text.index(" ", rng.randrange(len(text) - 20))
        # The common words next to it, so a "mixed" query has two to pick from.
        out.append((word, f"{text[:cut]} {word} {text[cut:]}"))
    return out


def near_words(text: str, word: str) -> str:
    """The dozen words around `word` in `text`: what a mixed query picks its common words from."""
    at = text.index(f" {word} ")
    return text[max(0, at - 60) : at + len(word) + 60].split(" ", 1)[1].rsplit(" ", 1)[0]


async def bench_size(size: int, per_kind: int, workdir: Path, chars: int = 0) -> dict[str, Any]:
    """One session of `size` corpus messages, or of `size` texts of `chars` characters."""
    db = workdir / f"search-{size}-{chars}.db"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "shared_context_server", "--db", str(db), "--agent-id", "bench"],
    )
    words = long_corpus(size, chars) if chars else corpus(size, seed=size)
    rng = random.Random(size)
    server_ms: dict[str, list[float]] = {k: [] for k in KINDS}
    call_ms: dict[str, list[float]] = {k: [] for k in KINDS}
    hits = 0
    started = time.perf_counter()
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        sid = (await call(session, "create_session", purpose=f"search {size}"))["session_id"]
        ids = await anyio.to_thread.run_sync(fill, db, sid, [text for _, text in words])
        filled = time.perf_counter() - started
        for _ in range(5):  # warm the page cache and the process
            await call(session, "search_context", session_id=sid, query="warm up query")
        picks = [(w, near_words(t, w)) for w, t in words] if chars else words
        for kind, query, target in queries(picks, per_kind, rng):
            t0 = time.perf_counter()
            found = await call(session, "search_context", session_id=sid, query=query, limit=5)
            call_ms[kind].append((time.perf_counter() - t0) * 1000)
            server_ms[kind].append(found["search_time_ms"])
            if kind == "typo":
                hits += ids[target] in [r["message"]["id"] for r in found["results"]]
    return {
        "size": f"{size:,} x {chars:,}-character" if chars else f"{size:,}",
        "fill_s": filled,
        "recall_at_5": hits / per_kind,
        "server_ms": server_ms,
        "call_ms": call_ms,
    }


def report(result: dict[str, Any]) -> None:
    print(
        f"\n{result['size']} messages (filled in {result['fill_s']:.1f} s); "
        f"typo recall@5 {result['recall_at_5']:.3f}"
    )
    print(f"  {'query':<8} {'server p50':>10} {'p99':>8} {'call p50':>9} {'p99':>8}  (ms)")
    every_server: list[float] = []
    every_call: list[float] = []
    for kind in KINDS:
        s, c = result["server_ms"][kind], result["call_ms"][kind]
        every_server += s
        every_call += c
        print(
            f"  {kind:<8} {percentile(s, 50):>10.1f} {percentile(s, 99):>8.1f}"
            f" {percentile(c, 50):>9.1f} {percentile(c, 99):>8.1f}"
        )
    print(
        f"  {'all':<8} {percentile(every_server, 50):>10.1f} {percentile(every_server, 99):>8.1f}"
        f" {percentile(every_call, 50):>9.1f} {percentile(every_call, 99):>8.1f}"
    )


PLANT = (
    "INSERT INTO messages (session_id, sender, sender_type, content, visibility, message_type,"
    " created_at) VALUES "
)
PLANTED_ROW = "(?, 'alice', 'reviewer', ?, 'public', 'message', ?)"
READER = Agent("bob", "reviewer")


async def domain_recall(target: Target, size: int, queries: int) -> float:
    """recall@5 of search_context on `target`'s engine: `queries` distinctive words, each
    with one typo, among `size` messages of one session."""
    store = await open_store(target)
    try:
        sid = str((await create_session(store, Agent("alice", "reviewer"), "recall"))["id"])
        words = corpus(size, seed=11)

        def plant(conn: Conn) -> list[int]:
            for start in range(0, len(words), 500):  # 500 rows a statement: one trip each
                chunk = words[start : start + 500]
                values = [v for _, text in chunk for v in (sid, text, utc_now())]
                conn.execute(PLANT + ", ".join([PLANTED_ROW] * len(chunk)), values)
            found = conn.execute("SELECT id FROM messages WHERE session_id = ? ORDER BY id", (sid,))
            return [int(row[0]) for row in found.fetchall()]

        posted = await store.transact(plant)
        await store.index_search(batch=size)  # SQLite's index
        await store.checkpoint_if_large()  # maintenance's upkeep: PostgreSQL's statistics
        rng = random.Random(10)
        hits = 0
        for i in rng.sample(range(size), queries):
            found = await search_context(store, READER, sid, with_typo(rng, words[i][0]), limit=5)
            hits += posted[i] in [r["message"]["id"] for r in found["results"]]
        return hits / queries
    finally:
        await store.close()


async def recall(size: int, queries: int, tmp: Path, pg_url: str | None) -> None:
    engines: list[tuple[str, Target]] = [("sqlite", tmp / "recall.db")]
    if pg_url is not None:
        engines.append(("postgres", pg_url))
    print(f"\ntypo recall@5 of search_context at {size:,} messages ({queries} queries)")
    for engine, target in engines:
        print(f"[bench] search: recall on {engine}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        share = await domain_recall(target, size, queries)
        print(f"  {engine:<8} {share:.3f}  ({time.perf_counter() - started:.1f} s)")


async def run(
    sizes: list[int],
    per_kind: int,
    long: tuple[int, int] | None,
    recall_size: int,
    recall_queries: int,
    pg_url: str | None,
) -> None:
    with tempfile.TemporaryDirectory(prefix="scs-bench-search-") as tmp:
        for size in sizes:
            print(f"[bench] search: {size:,} messages", file=sys.stderr, flush=True)
            report(await bench_size(size, per_kind, Path(tmp)))
        if long is not None:
            count, chars = long
            print(f"[bench] search: {count} x {chars:,} characters", file=sys.stderr, flush=True)
            report(await bench_size(count, min(per_kind, count * 9 // 10), Path(tmp), chars))
        if recall_size:
            await recall(recall_size, recall_queries, Path(tmp), pg_url)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="1000,10000,100000", help="comma-separated session sizes")
    p.add_argument("--queries", type=int, default=200, help="queries of each kind per size")
    p.add_argument(
        "--long",
        default="300x100000",
        help='a session of COUNTxCHARS long messages ("" to skip)',
    )
    p.add_argument(
        "--recall-size", type=int, default=10_000, help="messages for the recall figure (0: none)"
    )
    p.add_argument("--recall-queries", type=int, default=200, help="queries for the recall figure")
    p.add_argument("--db", metavar="URL", help="a PostgreSQL server for the recall figure too")
    p.add_argument(
        "--pg-cluster", action="store_true", help="the same on a throwaway PostgreSQL cluster"
    )
    args = p.parse_args(argv)
    long = tuple(int(n) for n in args.long.split("x")) if args.long else None
    if long is not None and (len(long) != 2 or long[0] < 10 or long[1] < 1000):
        p.error("--long is COUNTxCHARS, e.g. 300x100000 (COUNT >= 10, CHARS >= 1000)")
    sizes = [int(s) for s in args.sizes.split(",")]
    if any(s < 10 for s in sizes) or args.queries < 1:
        p.error("sizes must be >= 10 and --queries >= 1")
    if args.queries > min(sizes) * 9 // 10:
        p.error("--queries must not exceed the visible messages of the smallest size")
    if args.recall_size and not 1 <= args.recall_queries <= args.recall_size:
        p.error("--recall-queries must be between 1 and --recall-size")
    cluster: Any = None
    pg: Any = None
    try:
        if args.pg_cluster:
            print("[bench] starting a throwaway PostgreSQL cluster", file=sys.stderr, flush=True)
            cluster = bench_pg.start_cluster()
            args.db = cluster.url()
        if args.db and args.recall_size:
            pg = bench_pg.PgServer(args.db)
        pg_url = pg.fresh("search recall") if pg is not None else None
        anyio.run(run, sizes, args.queries, long, args.recall_size, args.recall_queries, pg_url)
    finally:
        if pg is not None:
            pg.drop_all()
        if cluster is not None:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
