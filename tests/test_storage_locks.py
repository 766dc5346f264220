"""Another process holding the write lock: reads never wait, writes wait at most the bound.

SQLite only: the file's write lock; PostgreSQL's row locks are in tests/test_postgres.py.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

from shared_context_server.errors import DatabaseBusy
from shared_context_server.storage.sqlite.database import Database
from tests.support import ok, spawn

pytestmark = pytest.mark.processes  # real server processes: never quick

# A plain sqlite3 process that takes the write lock and sits on it.
HOLD_LOCK = (
    "import sqlite3, sys, time\n"
    "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
    "c.execute('BEGIN IMMEDIATE')\n"
    "print('locked', flush=True)\n"
    "time.sleep(float(sys.argv[2]))\n"
)


@contextmanager
def write_lock_held(path: Path, seconds: float = 30) -> Iterator[None]:
    """Another process holds `path`'s write lock (BEGIN IMMEDIATE) inside the block."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.kill()
        holder.wait()


async def test_reads_in_other_processes_never_wait_while_an_outside_process_holds_the_lock(
    tmp_path: Path,
) -> None:
    db = tmp_path / "bb.db"
    async with spawn(db, "--agent-id", "writer") as writer, spawn(db, "--agent-id", "idle") as idle:
        sid = (await ok(writer, "create_session", purpose="locks"))["session_id"]
        await ok(writer, "add_message", session_id=sid, content="before the lock")
        await ok(writer, "set_memory", key="k", value=1)
        await ok(idle, "set_memory", key="k", value=2)
        reads = [
            ("get_session", {"session_id": sid}),
            ("search_context", {"session_id": sid, "query": "lock"}),
            ("list_sessions", {}),
            ("get_memory", {"key": "k"}),
            ("get_context", {"session_id": sid}),
            ("list_memory", {}),
        ]
        posted: list[dict[str, object]] = []

        async def post_while_locked() -> None:  # queues for the lock inside `writer`
            posted.append(await ok(writer, "add_message", session_id=sid, content="waited"))

        with write_lock_held(db):
            async with anyio.create_task_group() as tg:
                tg.start_soon(post_while_locked)
                await anyio.sleep(0.2)  # the write is now waiting for the lock
                # Six seconds of reads span a heartbeat of the idle process (every 5 s),
                # which used to shut its reads out for as long as the lock was held.
                end = anyio.current_time() + 6
                while anyio.current_time() < end:
                    for session in (writer, idle):
                        for tool, arguments in reads:
                            with anyio.fail_after(3):  # the stall was 20 s and more
                                await ok(session, tool, **arguments)
                assert posted == []  # the write was still waiting all along
                tg.cancel_scope.cancel()
        # The lock is gone: writes go through again at once.
        await ok(writer, "add_message", session_id=sid, content="after the lock")
        await ok(idle, "set_memory", key="k", value=3)


async def test_every_queued_write_gives_up_within_the_bound_however_many_wait(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bb.db"
    database = await Database.open(path, busy_timeout_ms=200, busy_retries=1)
    outcomes: list[str] = []

    async def one_call(n: int) -> None:
        with anyio.fail_after(2):  # one bound (0.4 s) and some slack, not eight bounds
            try:
                if n % 2:
                    await database.transact(lambda conn: conn.execute("SELECT 1"))
                else:
                    async with database.write() as tx:
                        await tx.execute("SELECT 1")
            except DatabaseBusy as error:
                outcomes.append(error.message)

    try:
        with write_lock_held(path):
            async with anyio.create_task_group() as tg:
                for n in range(8):
                    tg.start_soon(one_call, n)
        assert len(outcomes) == 8
        assert all("write lock for over" in m for m in outcomes), outcomes[0]
        await database.transact(lambda conn: conn.execute("SELECT 1"))  # free again
    finally:
        await database.close()
