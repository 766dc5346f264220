"""How read costs grow with the blackboard: 1k, 100k and 1M messages (a report, not a test).

Run from the repository root:

    .venv/bin/python tests/benchmarks/bench_scale.py               # 1k, 100k, 1M
    .venv/bin/python tests/benchmarks/bench_scale.py --max 100000  # a quicker run

One file grows step by step. At N messages it holds N/100 sessions (10,000 at 1M), one of
them big (N/10 messages: 100,000 at 1M) and the rest about 100 each, interleaved as agents
would write them; N/10 memory entries of 100 agents; an audit entry for every message,
memory entry and session. The file is made by the product's own migrations, the rows are
bulk-inserted with stdlib sqlite3 in the product's columns and formats (20 senders of four
agent types, every tenth message private, some agent_only and admin_only, metadata,
replies), and the search index is filled with the product's own statements, as the
indexer would. Each step's timestamps end at the moment it is filled, so the maintenance
round of a starting server finds nothing to archive or trim.

Then, at each size, real server processes over stdio (agent-03, a reviewer) are timed,
--calls calls per figure, p50 and p99 of the whole tool call seen by the client:
get_context (latest, after_id, before_id, sender filter) in a typical session and the big
one, get_message, search_context (one common word in a typical session; a misspelt
distinctive word, --searches queries, in the big session, with recall@5), get_session,
list_sessions, list_memory, get_memory, get_audit_log; wait_for_messages woken by a post
from a second process; start-up (spawn to tools/list); the `sessions` and `doctor
--quick` subcommands; the file's bytes per message.

Every size is filled first (a copy of the file is kept at each smaller size), then all of
them are measured in turn, --rounds times, the order alternating, and the samples pooled:
on a shared machine the load drifts, and this way it lands on every size alike. The load
average at each measurement is printed: read the figures with it.

Pages hold as many rows at 1k as at 1M, so a figure compares the walk to the page, not a
page of 5 rows with one of 50 (each returned row costs the call 10-20 us): by sender, 5
messages (about what a sender has in a session of 100); list_sessions, 10 sessions (1k
has 10); list_memory, 50 entries (the reader owns the first 50 memory entries).

`--db PATH` keeps the files (PATH and PATH-SIZE.db copies): a later run with the same path
and sizes measures them again without filling.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from tests.corpus import COMMON, distinctive_word, with_typo  # noqa: E402

from shared_context_server.storage.sqlite.database import Database  # noqa: E402
from shared_context_server.storage.sqlite.search import (  # noqa: E402
    INDEX_ROWS,
    SET_WATERMARK,
    WATERMARK,
)

SIZES = (1_000, 100_000, 1_000_000)
AGENTS = [f"agent-{i:02d}" for i in range(20)]
TYPES = ("reviewer", "writer", "worker", "tester")
MEMORY_OWNERS = [f"agent-{i:02d}" for i in range(100)]
READER = "agent-03"
BIG = "sess_0000000000000big"
FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
CALL_TIMEOUT_S = 60.0
# Pages by sender hold this many: a sender has about 5 messages in a session of 100 (the
# big one at 1k), so every size returns a full page and the figures compare the walk, not
# a page of 5 at 1k with one of 50 at 1M.
SENDER_PAGE = 5
# The same for the lists: at 1k there are 10 sessions (list_sessions takes pages of 10),
# and the reader owns the first MEMORY_PAGE memory entries (a full list_memory page).
SESSIONS_PAGE = 10
MEMORY_PAGE = 50


def agent_type(agent: str) -> str:
    return TYPES[int(agent.rsplit("-", 1)[1]) % len(TYPES)]


def percentile(values: list[float], q: float) -> float:
    data = sorted(values)
    pos = (len(data) - 1) * q / 100
    lo, hi = int(pos), min(int(pos) + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


# --------------------------------------------------------------------------- filling


INSERT_SESSION = (
    "INSERT INTO sessions (id, purpose, status, created_by, created_at, updated_at, metadata)"
    " VALUES (?, ?, 'active', ?, ?, ?, NULL)"
)
INSERT_MESSAGE = (
    "INSERT INTO messages (session_id, sender, sender_type, content, visibility, message_type,"
    " metadata, parent_message_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_MEMORY = (
    "INSERT INTO memory (agent_id, session_id, key, value, created_at, updated_at, expires_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
INSERT_AUDIT = (
    "INSERT INTO audit_log (ts, agent_id, via, action, session_id, target, result, detail)"
    " VALUES (?, ?, NULL, ?, ?, ?, 'ok', NULL)"
)


def counts(conn: sqlite3.Connection) -> tuple[int, int, int]:
    one = conn.execute(
        "SELECT (SELECT count(*) FROM sessions), (SELECT count(*) FROM messages),"
        " (SELECT count(*) FROM memory)"
    ).fetchone()
    return int(one[0]), int(one[1]), int(one[2])


def text(rng: random.Random) -> str:
    words = rng.choices(COMMON, k=rng.randint(12, 40))
    words.insert(rng.randrange(len(words) + 1), distinctive_word(rng))
    return " ".join(words).capitalize() + "."


def stamps(n: int) -> list[str]:
    """n increasing timestamps, a millisecond apart, the last one now."""
    end = datetime.now(UTC)
    return [(end - timedelta(milliseconds=n - i)).strftime(FORMAT) for i in range(n)]


def fill(path: Path, target: int, seed: int) -> dict[str, float]:
    """Grow the file to `target` messages (and the sessions, memory and audit entries
    that go with them); returns seconds spent inserting and indexing."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")  # a bulk load: durability is not measured
    rng = random.Random(seed + target)
    have_sessions, have_messages, have_memory = counts(conn)
    if have_messages > target * 1.01:  # measuring adds a few (the wake-up posts)
        raise SystemExit(f"{path} already holds {have_messages:,} messages, over {target:,}")
    if have_messages >= target:
        conn.close()
        return {}
    started = time.perf_counter()
    want_sessions = max(10, target // 100)
    conn.execute("BEGIN IMMEDIATE")
    # Sessions first; the big one is the first session of the file.
    new = want_sessions - have_sessions
    ts = stamps(max(new, 1))
    ids = [
        BIG if have_sessions == 0 and i == 0 else "sess_" + rng.randbytes(8).hex()
        for i in range(max(new, 0))
    ]
    for i, sid in enumerate(ids):
        creator = rng.choice(AGENTS)
        conn.execute(INSERT_SESSION, (sid, f"task {have_sessions + i}", creator, ts[i], ts[i]))
        conn.execute(INSERT_AUDIT, (ts[i], creator, "create_session", sid, f"session:{sid}"))
    small = [r[0] for r in conn.execute("SELECT id FROM sessions WHERE id != ?", (BIG,))]
    # Messages: the big session keeps a tenth of them, the others share the rest evenly.
    big_have = conn.execute("SELECT count(*) FROM messages WHERE session_id = ?", (BIG,))
    big_new = max(0, target // 10 - int(big_have.fetchone()[0]))
    n_new = max(0, target - have_messages)
    plan = [BIG] * min(big_new, n_new)
    plan += [small[i % len(small)] for i in range(n_new - len(plan))]
    rng.shuffle(plan)
    ts = stamps(max(n_new, 1))
    last_in: dict[str, int] = {}
    next_id = int(conn.execute("SELECT ifnull(max(id), 0) FROM messages").fetchone()[0]) + 1
    for i, sid in enumerate(plan):
        k = have_messages + i
        sender = AGENTS[rng.randrange(len(AGENTS))]
        if k % 10 == 9:
            visibility = "private"
            if sender == READER:
                sender = AGENTS[0]
        else:
            visibility = "admin_only" if k % 50 == 7 else "agent_only" if k % 20 == 4 else "public"
        meta = json.dumps({"file": f"src/m{k % 97}.py", "line": k % 400}) if k % 7 == 0 else None
        parent = last_in.get(sid) if k % 11 == 0 else None
        kind = "finding" if k % 5 == 0 else "message"
        row = (sid, sender, agent_type(sender), text(rng), visibility, kind, meta, parent, ts[i])
        conn.execute(INSERT_MESSAGE, row)
        conn.execute(INSERT_AUDIT, (ts[i], sender, "add_message", sid, f"message:{next_id}"))
        if visibility == "public":
            last_in[sid] = next_id
        next_id += 1
    # Memory: a tenth as many entries as messages, half global, half in a session; a
    # tenth expire in a year.
    m_new = max(0, target // 10 - have_memory)
    ts = stamps(max(m_new, 1))
    year = (datetime.now(UTC) + timedelta(days=365)).strftime(FORMAT)
    for i in range(m_new):
        k = have_memory + i
        owner = READER if k < MEMORY_PAGE else MEMORY_OWNERS[k % len(MEMORY_OWNERS)]
        sid = small[k % len(small)] if (k // len(MEMORY_OWNERS)) % 2 else None
        value = json.dumps({"step": k, "note": " ".join(rng.choices(COMMON, k=8))})
        expires = year if k % 10 == 3 else None
        conn.execute(INSERT_MEMORY, (owner, sid, f"note-{k}", value, ts[i], ts[i], expires))
        conn.execute(INSERT_AUDIT, (ts[i], owner, "set_memory", sid, f"memory:note-{k}"))
    conn.execute("COMMIT")
    inserted = time.perf_counter() - started
    # The search index, with the indexer's own statements.
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    mark = int(conn.execute(WATERMARK).fetchone()[0])
    end = int(conn.execute("SELECT ifnull(max(id), 0) FROM messages").fetchone()[0])
    if end > mark:
        conn.execute(INDEX_ROWS, (mark, end))
        conn.execute(SET_WATERMARK, (end,))
    conn.execute("COMMIT")
    indexed = time.perf_counter() - started
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return {"insert_s": inserted, "index_s": indexed}


async def migrate(path: Path) -> None:
    db = await Database.open(path)
    await db.close()


# --------------------------------------------------------------------------- measuring


@dataclass
class Step:
    size: int
    load: str
    fill: dict[str, float]
    ms: dict[str, list[float]] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.ms.setdefault(name, []).append(seconds * 1000)


def params(db: Path, agent: str) -> StdioServerParameters:
    args = ["-m", "shared_context_server", "serve", "--db", str(db), "--agent-id", agent]
    return StdioServerParameters(
        command=sys.executable, args=[*args, "--agent-type", agent_type(agent)], env={}
    )


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    with anyio.fail_after(CALL_TIMEOUT_S):
        result = await session.call_tool(tool, arguments)
    if result.is_error or not isinstance(result.structured_content, dict):
        raise RuntimeError(f"{tool} failed: {result.content}")
    return result.structured_content


async def timed(
    step: Step, name: str, calls: int, make: Callable[[int], Awaitable[dict[str, Any]]]
) -> None:
    await make(-1)  # warm: the first call of a kind loads pages and code
    for i in range(calls):
        t0 = time.perf_counter()
        await make(i)
        step.add(name, time.perf_counter() - t0)


def sample_ids(db: Path, session_id: str, n: int, seed: int) -> list[int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM messages WHERE session_id = ? AND visibility = 'public'",
                (session_id,),
            )
        ]
    finally:
        conn.close()
    return random.Random(seed).choices(ids, k=n)


def search_queries(db: Path, n: int, seed: int) -> list[tuple[str, int]]:
    """(a misspelt distinctive word, the id of its message) for public big-session rows."""
    rng = random.Random(seed)
    ids = sample_ids(db, BIG, n, seed)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        out = []
        for mid in ids:
            content = conn.execute("SELECT content FROM messages WHERE id = ?", (mid,)).fetchone()
            word = max(
                content[0].rstrip(".").lower().split(), key=lambda w: (w not in COMMON, len(w))
            )
            out.append((with_typo(rng, word), mid))
        return out
    finally:
        conn.close()


async def measure_tools(step: Step, db: Path, calls: int, searches: int) -> None:
    rng = random.Random(step.size)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    typical = conn.execute(
        "SELECT id FROM sessions WHERE id != ? ORDER BY rowid DESC LIMIT 1", (BIG,)
    ).fetchone()[0]
    conn.close()
    big_ids = sample_ids(db, BIG, calls + 1, step.size)
    small_ids = sample_ids(db, typical, calls + 1, step.size)
    queries = search_queries(db, searches, step.size)
    async with stdio_client(params(db, READER)) as (r, w), ClientSession(r, w) as s:
        with anyio.fail_after(CALL_TIMEOUT_S):
            await s.initialize()

        def run(tool: str, **fixed: Any) -> Callable[[int], Awaitable[dict[str, Any]]]:
            return lambda i: call(s, tool, **fixed)

        for where, sid, ids in (("typical", typical, small_ids), ("big", BIG, big_ids)):
            await timed(
                step, f"get_context latest ({where})", calls, run("get_context", session_id=sid)
            )
            await timed(
                step,
                f"get_context after_id ({where})",
                calls,
                lambda i, sid=sid, ids=ids: call(s, "get_context", session_id=sid, after_id=ids[i]),
            )
            await timed(
                step,
                f"get_context before_id ({where})",
                calls,
                lambda i, sid=sid, ids=ids: call(
                    s, "get_context", session_id=sid, before_id=ids[i]
                ),
            )
            await timed(
                step,
                f"get_context sender, {SENDER_PAGE} ({where})",
                calls,
                lambda i, sid=sid: call(
                    s,
                    "get_context",
                    session_id=sid,
                    sender=AGENTS[i % len(AGENTS)],
                    limit=SENDER_PAGE,
                ),
            )
            await timed(step, f"get_session ({where})", calls, run("get_session", session_id=sid))
        await timed(
            step,
            "get_message (big)",
            calls,
            lambda i: call(s, "get_message", session_id=BIG, message_id=big_ids[i]),
        )
        await timed(
            step,
            "search_context (typical)",
            calls,
            lambda i: call(s, "search_context", session_id=typical, query=rng.choice(COMMON)),
        )
        hits = 0
        await call(s, "search_context", session_id=BIG, query="warm up")
        for query, target in queries:
            t0 = time.perf_counter()
            found = await call(s, "search_context", session_id=BIG, query=query, limit=5)
            step.add("search_context (big, typo)", time.perf_counter() - t0)
            hits += target in [x["message"]["id"] for x in found["results"]]
        step.extra["search recall@5"] = hits / max(1, len(queries))
        await timed(
            step,
            f"list_sessions, {SESSIONS_PAGE}",
            calls,
            run("list_sessions", limit=SESSIONS_PAGE),
        )
        await timed(
            step,
            f"list_memory, {MEMORY_PAGE}",
            calls,
            run("list_memory", session_id="all", limit=MEMORY_PAGE),
        )
        page = await call(s, "list_memory", session_id="all", limit=200)
        keys = [(e["key"], e["session_id"]) for e in page["entries"]]
        await timed(
            step,
            "get_memory",
            calls,
            lambda i: call(
                s, "get_memory", key=keys[i % len(keys)][0], session_id=keys[i % len(keys)][1]
            ),
        )
        await timed(step, "get_audit_log", calls, run("get_audit_log"))
        await measure_wake(step, db, s, min(calls, 20))


async def measure_wake(step: Step, db: Path, reader: ClientSession, n: int) -> None:
    """A long poll in the reader, released by a post from a second process."""
    async with stdio_client(params(db, "agent-05")) as (r, w), ClientSession(r, w) as poster:
        with anyio.fail_after(CALL_TIMEOUT_S):
            await poster.initialize()
        sid = (await call(poster, "create_session", purpose="wake-up"))["session_id"]
        last = (await call(poster, "add_message", session_id=sid, content="first"))["message_id"]
        for i in range(n):
            released: list[float] = []

            async def wait(after: int, released: list[float] = released) -> None:
                await call(
                    reader, "wait_for_messages", session_id=sid, after_id=after, timeout_s=30
                )
                released.append(time.perf_counter())

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait, last)
                await anyio.sleep(random.uniform(0.05, 0.2))
                t0 = time.perf_counter()
                posted = await call(poster, "add_message", session_id=sid, content=f"wake {i}")
                last = posted["message_id"]
            step.add("wait_for_messages wake-up", released[0] - t0)


async def measure_startup(step: Step, db: Path, spawns: int) -> None:
    for _ in range(spawns + 1):
        t0 = time.perf_counter()
        async with stdio_client(params(db, READER)) as (r, w), ClientSession(r, w) as s:
            with anyio.fail_after(CALL_TIMEOUT_S):
                await s.initialize()
                await s.list_tools()
            took = time.perf_counter() - t0
        if _:  # the first spawn warms the page cache
            step.add("start-up (spawn to tools/list)", took)


def measure_cli(step: Step, db: Path, runs: int) -> None:
    base = [sys.executable, "-m", "shared_context_server"]
    for name, argv in (
        ("`sessions` (counts per session)", [*base, "sessions", "--db", str(db), "--json"]),
        ("`doctor --quick`", [*base, "doctor", "--quick", "--db", str(db)]),
    ):
        for _ in range(runs):
            t0 = time.perf_counter()
            done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
            if done.returncode:
                raise RuntimeError(f"{argv[3]} failed: {done.stdout}{done.stderr}")
            step.add(name, time.perf_counter() - t0)


def file_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())


def snapshot(db: Path, size: int) -> Path:
    """A copy of the file as it stands (closed and checkpointed), measured later."""
    copy = db.with_name(f"{db.stem}-{size}.db")
    shutil.copyfile(db, copy)
    copy.chmod(0o600)  # as the product makes it: doctor flags a file others may read
    return copy


async def bench(
    db: Path, sizes: list[int], rounds: int, calls: int, searches: int, spawns: int
) -> list[Step]:
    """Fill to each size (keeping a copy of each smaller one), then measure every size in
    turn, round by round, alternating the order: drift in the machine's load lands on
    every size alike."""
    await migrate(db)
    files: dict[int, Path] = {}
    steps: dict[int, Step] = {}
    for size in sizes:
        copy = db.with_name(f"{db.stem}-{size}.db")
        if size != sizes[-1] and copy.exists():  # kept by an earlier run with --db
            files[size], steps[size] = copy, Step(size, "", {})
        else:
            print(f"[scale] filling to {size:,} messages", file=sys.stderr, flush=True)
            took = await anyio.to_thread.run_sync(fill, db, size, 7)
            files[size] = db if size == sizes[-1] else snapshot(db, size)
            steps[size] = Step(size, "", took)
        steps[size].extra["bytes per message"] = file_bytes(files[size]) / size
    for rnd in range(rounds):
        for size in sizes if rnd % 2 == 0 else sizes[::-1]:
            step, path = steps[size], files[size]
            load = " ".join(f"{x:.1f}" for x in os.getloadavg())
            step.load = f"{step.load} | {load}" if step.load else load
            print(
                f"[scale] round {rnd + 1}/{rounds}: {size:,} (load {load})",
                file=sys.stderr,
                flush=True,
            )
            await measure_startup(step, path, spawns)
            await measure_tools(step, path, calls, searches)
            measure_cli(step, path, 1)
    return [steps[size] for size in sizes]


# --------------------------------------------------------------------------- report


def report(steps: list[Step]) -> None:
    first, last = steps[0], steps[-1]
    print(
        f"shared-context-server scale bench: python={sys.version.split()[0]} cpus={os.cpu_count()}"
    )
    for step in steps:
        fill = ", ".join(f"{k} {v:.1f}" for k, v in step.fill.items())
        print(f"  {step.size:>9,} messages: fill {fill}; load average per round {step.load}")
    head = f"{'p50 / p99 (ms)':<38}" + "".join(f"{s.size:>18,}" for s in steps)
    head += f"{'p50 ratio':>11}  target"
    print(head)
    print("-" * len(head))
    for name in first.ms:
        line = f"{name:<38}"
        for step in steps:
            v = step.ms.get(name, [])
            line += f"{percentile(v, 50):>10.1f} / {percentile(v, 99):>5.1f}" if v else f"{'-':>18}"
        a, b = first.ms.get(name), last.ms.get(name)
        growth = statistics.median(b) / statistics.median(a) if a and b else float("nan")
        verdict = "ok" if growth <= 2.0 else "GROWS"
        print(f"{line}{growth:>10.2f}x  {verdict if len(steps) > 1 else ''}")
    for name in first.extra:
        line = f"{name:<38}" + "".join(f"{s.extra.get(name, float('nan')):>18.2f}" for s in steps)
        print(line)
    search = last.ms.get("search_context (big, typo)")
    if search:
        p99 = percentile(search, 99)
        verdict = "PASS" if p99 < 100 else "FAIL"
        print(
            f"\nsearch p99 in the big session ({last.size // 10:,} messages) at "
            f"{last.size:,}: {p99:.1f} ms (target < 100 ms): {verdict}"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--max", type=int, default=SIZES[-1], help="largest size (default 1,000,000)")
    p.add_argument("--sizes", default=None, help="comma-separated sizes instead of 1k,100k,1M")
    p.add_argument("--calls", type=int, default=30, help="calls per figure per round")
    p.add_argument("--rounds", type=int, default=2, help="measuring rounds, pooled")
    p.add_argument("--searches", type=int, default=100, help="typo searches per round")
    p.add_argument("--spawns", type=int, default=3, help="timed start-ups per size")
    p.add_argument("--db", default=None, help="keep (and reuse) the file at this path")
    args = p.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else list(SIZES)
    sizes = sorted(s for s in sizes if s <= args.max)
    if not sizes or sizes[0] < 1000 or min(args.calls, args.searches, args.rounds) < 1:
        p.error("sizes must be >= 1000 (and --max at least the smallest); counts >= 1")
    with tempfile.TemporaryDirectory(prefix="scs-scale-") as tmp:
        db = Path(args.db).absolute() if args.db else Path(tmp) / "scale.db"
        steps = anyio.run(bench, db, sizes, args.rounds, args.calls, args.searches, args.spawns)
    report(steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
