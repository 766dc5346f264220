"""The PostgreSQL engine's own figures (a report, not a test): a message write with its
commit-ordered id, and NOTIFY from another process to a LISTEN connection.

Run from the repository root, against a database you may write to (it makes its tables):

    .venv/bin/python tests/benchmarks/bench_postgres.py postgresql://user@host:5432/dbname

Options: --writes N (1000), --notes N (200), --procs N (20), --per-proc N (100).

1. write: p50/p99 of one transaction inserting a message (its id taken by the trigger), in one
   process, one after another;
2. throughput: --procs processes, each connected first, then writing --per-proc messages
   each into one session, all at once: messages/s (each id is taken under the session's
   row lock, so writers to one session take turns, each for one COMMIT);
3. push: --notes notifications, each committed by a writer process after a random pause,
   timed from just before the writer's COMMIT to the listener's wake-up (p50/p99).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import textwrap
import time
import uuid

import anyio

from shared_context_server.postgres import PgDatabase, PgTransaction
from shared_context_server.postgres_listen import PgListener

# No id: the schema's trigger takes it under the session's row lock (postgres_schema.py).
INSERT = (
    "INSERT INTO messages (session_id, sender, sender_type, content, visibility,"
    " message_type, created_at) VALUES (?, 'bench', 'b', ?, 'public', 'message', 'now')"
)
WRITER = textwrap.dedent(
    """
    import sys, anyio, time, random
    from shared_context_server.postgres import PgDatabase
    INSERT = sys.argv[4]
    async def main(url, session, count):
        db = await PgDatabase.open(url)
        print("ready", flush=True)
        sys.stdin.readline()  # all start together, once every process is connected
        for i in range(int(count)):
            async with db.write() as tx:
                await tx.execute(INSERT, (session, str(i)))
        await db.close()
    anyio.run(main, *sys.argv[1:4])
    """
)
NOTIFIER = textwrap.dedent(
    """
    import sys, anyio, time, random
    from shared_context_server.postgres import PgDatabase
    async def main(url, count):
        db = await PgDatabase.open(url)
        for i in range(int(count)):
            await anyio.sleep(random.uniform(0.01, 0.05))
            async with db.write() as tx:
                await tx.notify("bench", repr(time.time()))
        await db.close()
    anyio.run(main, *sys.argv[1:3])
    """
)


def q(samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100)
    return f"p50 {statistics.median(samples) * 1000:.2f} ms, p99 {cuts[98] * 1000:.2f} ms"


async def new_session(tx: PgTransaction) -> str:
    session = f"bench_{uuid.uuid4().hex[:8]}"
    await tx.execute(
        "INSERT INTO sessions (id, purpose, status, created_by, created_at, updated_at)"
        " VALUES (?, 'bench', 'active', 'bench', 'now', 'now')",
        (session,),
    )
    return session


async def main(args: argparse.Namespace) -> None:
    db = await PgDatabase.open(args.url)
    async with db.write() as tx:
        session = await new_session(tx)
    samples = []
    for i in range(args.writes):
        start = time.perf_counter()
        async with db.write() as tx:
            await tx.execute(INSERT, (session, str(i)))
        samples.append(time.perf_counter() - start)
    print(f"write (id + insert, one transaction), {args.writes} in a row: {q(samples)}")

    async with db.write() as tx:
        session = await new_session(tx)
    procs = [
        await anyio.open_process(
            [sys.executable, "-c", WRITER, args.url, session, str(args.per_proc), INSERT],
            stderr=None,
        )
        for _ in range(args.procs)
    ]
    for p in procs:
        assert p.stdout is not None
        await p.stdout.receive(6)  # "ready\n"
    start = time.perf_counter()
    for p in procs:
        assert p.stdin is not None
        await p.stdin.send(b"go\n")
    codes = [await p.wait() for p in procs]
    elapsed = time.perf_counter() - start
    row = await db.fetchone("SELECT count(*) FROM messages WHERE session_id = ?", (session,))
    stored = int(row[0]) if row else 0
    print(
        f"throughput: {args.procs} processes x {args.per_proc}: {stored / elapsed:.0f} msgs/s "
        f"(connected first), {stored} stored of {args.procs * args.per_proc}, "
        f"{sum(1 for c in codes if c)} failed processes"
    )
    await db.close()

    listener = PgListener(args.url, ["bench"])
    await listener.start()
    lags: list[float] = []
    notifier = await anyio.open_process([sys.executable, "-c", NOTIFIER, args.url, str(args.notes)])
    async for _, payload in listener.notes():
        lags.append(time.time() - float(payload))
        if len(lags) == args.notes:
            break
    await notifier.wait()
    await listener.close()
    print(f"push: NOTIFY at commit in another process -> LISTEN wake-up: {q(lags)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--notes", type=int, default=200)
    parser.add_argument("--procs", type=int, default=20)
    parser.add_argument("--per-proc", type=int, default=100)
    random.seed(1)
    anyio.run(main, parser.parse_args())
