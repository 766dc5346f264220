"""Real processes on one PostgreSQL database: 20 writers, some killed with -9 mid-stream,
and a reader paging by id as the long poll does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import anyio
import psycopg

from shared_context_server.postgres import PgDatabase

WRITERS = 20
PER_WRITER = 40
KILLED = (3, 7, 11, 15)

WRITER = textwrap.dedent(
    """
    import sys, anyio
    from shared_context_server.postgres import PgDatabase
    async def main(url, name, count):
        db = await PgDatabase.open(url)
        for i in range(int(count)):
            async with db.write() as tx:
                (message_id,) = await tx.fetchone(
                    "INSERT INTO messages (session_id, sender, sender_type, content,"
                    " visibility, message_type, created_at)"
                    " VALUES ('s', ?, 'w', ?, 'public', 'message', 'now') RETURNING id",
                    (name, f"{name}:{i}"),
                )
            print(message_id, i, flush=True)  # acknowledged: committed
        await db.close()
    anyio.run(main, *sys.argv[1:])
    """
)


async def _session(pg_url: str) -> None:
    db = await PgDatabase.open(pg_url)
    async with db.write() as tx:
        await tx.execute(
            "INSERT INTO sessions (id, purpose, status, created_by, created_at, updated_at)"
            " VALUES ('s', 'p', 'active', 'a', 'now', 'now')"
        )
    await db.close()


def test_twenty_writers_lose_nothing_duplicate_nothing_and_commit_in_id_order(
    pg_url: str,
) -> None:
    anyio.run(_session, pg_url)
    # A reader paging forward by id, as wait_for_messages and after_id do: with ids out
    # of commit order it would step past an id that commits later and never see it.
    seen: list[int] = []
    stop = threading.Event()

    def page_forward() -> None:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            while True:
                last = seen[-1] if seen else 0
                rows = conn.execute(
                    "SELECT id FROM messages WHERE session_id = 's' AND id > %s ORDER BY id",
                    (last,),
                ).fetchall()
                seen.extend(r[0] for r in rows)
                if stop.is_set() and not rows:
                    return

    reader = threading.Thread(target=page_forward)
    reader.start()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, pg_url, f"w{n}", str(PER_WRITER)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(WRITERS)
    ]
    acked: dict[str, list[tuple[int, int]]] = {}
    for n, proc in enumerate(procs):
        assert proc.stdout is not None
        lines: list[tuple[int, int]] = []
        if n in KILLED:  # mid-stream: after some acknowledged writes
            for _ in range(PER_WRITER // 4):
                message_id, i = proc.stdout.readline().split()
                lines.append((int(message_id), int(i)))
            os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)
        lines += [(int(a), int(b)) for a, b in (line.split() for line in out.splitlines())]
        acked[f"w{n}"] = lines
    stop.set()
    reader.join(timeout=120)
    assert not reader.is_alive()

    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT id, sender, content FROM messages ORDER BY id").fetchall()
    stored = {content: message_id for message_id, _, content in rows}
    assert len(stored) == len(rows)  # no content twice
    for name, lines in acked.items():
        for message_id, i in lines:  # every acknowledged write is there, under its id
            assert stored[f"{name}:{i}"] == message_id
        ids = [message_id for message_id, _ in lines]
        assert ids == sorted(ids)
        if int(name[1:]) not in KILLED:
            assert [i for _, i in lines] == list(range(PER_WRITER))
    survivors = WRITERS - len(KILLED)
    assert len(rows) >= survivors * PER_WRITER + len(KILLED) * (PER_WRITER // 4)
    # The reader, paging past the newest id it had seen, missed nothing.
    assert seen == [message_id for message_id, _, _ in rows]
