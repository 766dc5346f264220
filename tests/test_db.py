"""The storage layer on real files: PRAGMAs, permissions, transactions, busy, migrations.

SQLite only: the file engine itself (db.Database); the engine-neutral behaviour is
tested on both engines in the domain modules, PostgreSQL's own in tests/test_postgres*.py.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import anyio
import pytest

from shared_context_server.errors import DatabaseBusy, StorageError, StorageReplaced
from shared_context_server.storage.sqlite.database import BUSY_TIMEOUT_MS, Database
from shared_context_server.storage.sqlite.schema import SCHEMA_VERSION


@pytest.fixture
def db(sqlite_db: Database) -> Database:
    """This module is about the file engine: `db` is SQLite's here, never parametrized."""
    return sqlite_db


async def test_open_sets_wal_and_the_pragmas_every_writer_relies_on(db: Database) -> None:
    assert (await db.fetchone("PRAGMA journal_mode"))[0] == "wal"  # type: ignore[index]
    assert (await db.fetchone("PRAGMA synchronous"))[0] == 1  # type: ignore[index]  # NORMAL
    assert (await db.fetchone("PRAGMA busy_timeout"))[0] == BUSY_TIMEOUT_MS  # type: ignore[index]
    assert (await db.fetchone("PRAGMA foreign_keys"))[0] == 1  # type: ignore[index]


async def test_new_file_is_0600_in_a_new_0700_directory(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "nested" / "bb.db"
    database = await Database.open(path)
    await database.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700


async def test_existing_directory_permissions_are_left_alone(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    database = await Database.open(tmp_path / "bb.db")
    await database.close()
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755


async def test_schema_is_migrated_once_and_recorded(db: Database) -> None:
    assert await db.schema_version() == SCHEMA_VERSION
    rows = await db.fetchall("SELECT version FROM schema_history")
    assert [r["version"] for r in rows] == list(range(1, SCHEMA_VERSION + 1))


async def test_reopening_does_not_migrate_again(tmp_path: Path) -> None:
    for _ in range(3):
        database = await Database.open(tmp_path / "bb.db")
        await database.close()
    conn = sqlite3.connect(tmp_path / "bb.db")
    assert conn.execute("SELECT count(*) FROM schema_history").fetchone()[0] == SCHEMA_VERSION


async def test_a_database_from_a_newer_release_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "bb.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StorageError, match="newer than this shared-context-server") as info:
        await Database.open(path)
    assert "Upgrade" in str(info.value) and "--db" in str(info.value)


async def test_a_failed_transaction_rolls_back_everything(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.write() as tx:
            await tx.execute(
                "INSERT INTO sessions VALUES ('s1', 'p', 'active', 'a', 't', 't', NULL)"
            )
            raise RuntimeError("boom")
    assert await db.fetchall("SELECT * FROM sessions") == []
    async with db.write() as tx:  # and the connection is usable afterwards
        await tx.execute("INSERT INTO sessions VALUES ('s2', 'p', 'active', 'a', 't', 't', NULL)")
    assert len(await db.fetchall("SELECT * FROM sessions")) == 1


async def test_a_writer_locked_out_past_the_timeout_gets_database_busy(tmp_path: Path) -> None:
    path = tmp_path / "bb.db"
    database = await Database.open(path, busy_timeout_ms=50, busy_retries=2)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    try:
        with pytest.raises(DatabaseBusy, match="retry the call"):
            async with database.write():
                pass
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    async with database.write() as tx:  # the lock released, writes go through again
        await tx.execute("INSERT INTO sessions VALUES ('s', 'p', 'active', 'a', 't', 't', NULL)")
    await database.close()


async def test_reads_see_another_connections_commit_at_once(db: Database) -> None:
    other = sqlite3.connect(db.path, isolation_level=None)
    other.execute("INSERT INTO sessions VALUES ('s9', 'p', 'active', 'a', 't', 't', NULL)")
    other.close()
    assert (await db.fetchone("SELECT id FROM sessions"))["id"] == "s9"  # type: ignore[index]


async def test_a_writer_cancelled_while_waiting_never_leaves_the_lock_held(tmp_path: Path) -> None:
    path = tmp_path / "bb.db"
    database = await Database.open(path, busy_timeout_ms=2000, busy_retries=0)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")

    async def release_soon() -> None:
        await anyio.sleep(0.3)
        holder.execute("ROLLBACK")  # BEGIN on the server's thread now gets the lock

    async with anyio.create_task_group() as tg:
        tg.start_soon(release_soon)
        with anyio.move_on_after(0.1):  # the client cancels the request mid-wait
            async with database.write() as tx:
                await tx.execute(
                    "INSERT INTO sessions VALUES ('s', 'p', 'active', 'a', 't', 't', NULL)"
                )
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    other.execute("BEGIN IMMEDIATE")  # would raise "database is locked" if the lock leaked
    assert other.execute("SELECT count(*) FROM sessions").fetchone() == (0,)
    other.execute("ROLLBACK")
    await database.close()


INSERT_S = "INSERT INTO sessions VALUES (?, 'p', 'active', 'a', 't', 't', NULL)"


async def test_one_trip_transactions_roll_back_on_error_and_commit_otherwise(db: Database) -> None:
    def fail(conn: sqlite3.Connection) -> None:
        conn.execute(INSERT_S, ("s1",))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await db.transact(fail)
    assert await db.fetchall("SELECT * FROM sessions") == []
    assert await db.transact(lambda conn: conn.execute(INSERT_S, ("s2",)).rowcount) == 1
    assert [r["id"] for r in await db.fetchall("SELECT id FROM sessions")] == ["s2"]


async def test_a_one_trip_writer_locked_out_gets_database_busy_then_recovers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bb.db"
    database = await Database.open(path, busy_timeout_ms=50, busy_retries=2)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DatabaseBusy, match="retry the call"):
            await database.transact(lambda conn: conn.execute(INSERT_S, ("s1",)))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    await database.transact(lambda conn: conn.execute(INSERT_S, ("s2",)))
    assert [r["id"] for r in await database.fetchall("SELECT id FROM sessions")] == ["s2"]
    await database.close()


async def test_a_cancelled_one_trip_writer_finishes_its_transaction_and_frees_the_lock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bb.db"
    database = await Database.open(path, busy_timeout_ms=2000, busy_retries=0)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")

    async def release_soon() -> None:
        await anyio.sleep(0.3)
        holder.execute("ROLLBACK")

    async with anyio.create_task_group() as tg:
        tg.start_soon(release_soon)
        with anyio.move_on_after(0.1):
            await database.transact(lambda conn: conn.execute(INSERT_S, ("s",)))
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    other.execute("BEGIN IMMEDIATE")  # would raise "database is locked" if the lock leaked
    # Once queued the transaction is whole: committed, never half done.
    assert other.execute("SELECT count(*) FROM sessions").fetchone() == (1,)
    other.execute("ROLLBACK")
    await database.close()


async def test_a_writer_locked_out_past_the_short_wait_waits_once_off_the_loop(
    tmp_path: Path,
) -> None:
    """Past QUICK_WRITE_BUSY_MS the transaction waits in one trip to aiosqlite's thread:
    short waits on the loop, each restarting SQLite's busy handler at 1 ms, made fifty
    waiting processes poll the lock so often that they slowed the writer holding it."""
    path = tmp_path / "bb.db"
    database = await Database.open(path, busy_timeout_ms=2000, busy_retries=0)
    await database.transact(lambda conn: conn.execute(INSERT_S, ("s0",)))  # opens the writer
    begins: list[str] = []
    quick = database._quick_writer()
    quick.set_trace_callback(lambda sql: begins.append(sql) if sql.startswith("BEGIN") else None)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def release_later() -> None:
        nonlocal ticks
        for _ in range(30):  # the loop stays free while the writer waits
            await anyio.sleep(0.01)
            ticks += 1
        holder.execute("ROLLBACK")

    async with anyio.create_task_group() as tg:
        tg.start_soon(release_later)
        await database.transact(lambda conn: conn.execute(INSERT_S, ("s1",)))
    quick.set_trace_callback(None)
    holder.close()
    assert ticks == 30
    assert len(begins) == 1, begins  # one short try here, then the long wait elsewhere
    assert len(await database.fetchall("SELECT id FROM sessions")) == 2
    await database.close()


async def test_a_read_never_sees_another_requests_uncommitted_write(db: Database) -> None:
    seen: list[int] = []
    inserted = anyio.Event()

    async def writer() -> None:
        with pytest.raises(RuntimeError):
            async with db.write() as tx:
                await tx.execute(INSERT_S, ("ghost",))
                inserted.set()
                await anyio.sleep(0.05)  # a concurrent request reads meanwhile
                raise RuntimeError("rolled back")

    async def reader() -> None:
        await inserted.wait()
        seen.append(len(await db.fetchall("SELECT id FROM sessions")))

    async with anyio.create_task_group() as tg:
        tg.start_soon(writer)
        tg.start_soon(reader)
    assert seen == [0]


async def test_a_quick_read_sees_commits_at_once_but_never_an_open_write(db: Database) -> None:
    other = sqlite3.connect(db.path, isolation_level=None)
    other.execute(INSERT_S, ("committed",))
    other.close()
    async with db.write() as tx:
        await tx.execute(INSERT_S, ("in-flight",))
        assert [r["id"] for r in db.read_now("SELECT id FROM sessions")] == ["committed"]
    assert len(db.read_now("SELECT id FROM sessions")) == 2


async def test_a_new_file_locked_briefly_while_opening_is_waited_for(tmp_path: Path) -> None:
    path = tmp_path / "bb.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process mid-way through creating the file

    async def release_soon() -> None:
        await anyio.sleep(0.3)
        holder.execute("ROLLBACK")

    async with anyio.create_task_group() as tg:
        tg.start_soon(release_soon)
        database = await Database.open(path, busy_timeout_ms=50, busy_retries=3)
    assert await database.schema_version() == SCHEMA_VERSION
    await database.close()
    holder.close()


async def test_a_replaced_file_is_never_opened_again_nor_given_the_old_wal(
    tmp_path: Path,
) -> None:
    path, other = tmp_path / "bb.db", tmp_path / "other.db"
    await (await Database.open(other)).close()
    db = await Database.open(path)
    try:
        await db.transact(lambda conn: conn.execute("CREATE TABLE t (x)"))
        os.replace(other, path)
        with pytest.raises(StorageReplaced):  # a connection not yet open stays unopened
            db.read_now("SELECT 1")
        with pytest.raises(StorageReplaced):
            await db.transact(lambda conn: conn.execute("INSERT INTO t VALUES (1)"))
        # Let go: this process's -wal and -shm are gone from beside the new file.
        assert sorted(p.name for p in tmp_path.iterdir()) == ["bb.db"]
    finally:
        await db.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bb.db"]
