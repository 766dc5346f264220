"""Transactions on one connection: BEGIN IMMEDIATE ... COMMIT, or ROLLBACK; bounded reads.

The synchronous pieces run on whichever thread owns the connection (the event loop's for
`Database.transact`'s quick path, aiosqlite's otherwise); `Transaction` is what
`Database.write()` hands its caller.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import aiosqlite

from shared_context_server.storage.seam import Conn, Fetched, Params, ResultTooLarge, Row

logger = logging.getLogger(__name__)

T = TypeVar("T")


def is_busy(error: sqlite3.OperationalError) -> bool:
    return getattr(error, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class BeginBusy(Exception):
    """BEGIN IMMEDIATE waited out busy_timeout: nothing ran, so the work may be retried."""


Guard = Callable[[sqlite3.Connection], None]


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open (SQLite ends some on its own, e.g. on a
    full disk); a failing ROLLBACK must not hide the error that caused it."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error as error:
            logger.warning("rollback failed: %s", error)


def begin(conn: sqlite3.Connection, guard: Guard, busy_ms: int | None = None) -> None:
    """BEGIN IMMEDIATE (waiting at most `busy_ms`), then `guard` under the lock."""
    if busy_ms is not None:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as error:
        if is_busy(error):
            raise BeginBusy from None
        raise
    try:
        guard(conn)
    except BaseException:
        rollback(conn)
        raise


def in_transaction(
    conn: sqlite3.Connection,
    work: Callable[[Conn], T],
    guard: Guard,
    busy_ms: int | None = None,
) -> T:
    begin(conn, guard, busy_ms)
    try:
        result = work(conn)
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    return result


async def on_connection_thread(conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Call fn(sqlite3_connection, *args) on aiosqlite's own thread, in one trip.

    aiosqlite has no public way to run a function on its thread, so this uses its private
    `_execute` and `_conn`, present since 0.17; pyproject caps the version and the tests
    exercise this path on every write.
    """
    execute: Callable[..., Awaitable[T]] = conn._execute
    return await execute(fn, conn._conn, *args)


async def fetch_at_most(
    conn: aiosqlite.Connection,
    sql: str,
    params: Params,
    max_rows: int,
    max_bytes: int | None = None,
) -> Fetched:
    """One statement's first `max_rows` rows, in one trip to aiosqlite's thread.

    Row by row, so a statement that would yield rows forever stops after `max_rows`, and
    one whose rows pass `max_bytes` of text and blobs in all raises ResultTooLarge as soon
    as they do, before the rest are made.
    """
    return await on_connection_thread(conn, _fetch_rows, sql, params, max_rows, max_bytes)


def _fetch_rows(
    conn: sqlite3.Connection, sql: str, params: Params, max_rows: int, max_bytes: int | None
) -> Fetched:
    cursor = conn.execute(sql, params)
    try:
        rows: list[Row] = []
        size = 0
        while len(rows) < max_rows:
            row = cursor.fetchone()
            if row is None:
                break
            rows.append(row)
            if max_bytes is not None:
                size += sum(len(v) for v in row if isinstance(v, str | bytes))
                if size > max_bytes:
                    raise ResultTooLarge(max_bytes)
        columns = [d[0] for d in cursor.description or ()]
        return Fetched(columns, rows, max(cursor.rowcount, 0))
    finally:
        cursor.close()


class Transaction:
    """Statements inside one `BEGIN IMMEDIATE` transaction (see `Database.write`)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        cursor = await self._conn.execute(sql, params)
        changed = cursor.rowcount
        await cursor.close()
        return changed

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        """One statement over many rows in a single call (bulk import)."""
        cursor = await self._conn.executemany(sql, rows)
        await cursor.close()

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        return list(await self._conn.execute_fetchall(sql, params))

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def fetch_at_most(
        self, sql: str, params: Params, max_rows: int, max_bytes: int | None = None
    ) -> Fetched:
        return await fetch_at_most(self._conn, sql, params, max_rows, max_bytes)
