"""Bringing a file to this release's schema: the connection's PRAGMAs (WAL verified),
refusing another program's file or a newer schema, and applying the numbered migrations."""

from __future__ import annotations

import os
from pathlib import Path

import aiosqlite

from shared_context_server.clock import utc_now
from shared_context_server.errors import StorageError
from shared_context_server.storage.sqlite.faults import (
    APPLICATION_ID,
    foreign_file,
    upgrade_message,
)
from shared_context_server.storage.sqlite.schema import MIGRATIONS, SCHEMA_VERSION
from shared_context_server.storage.sqlite.transactions import Transaction

TABLE_NAMES = "SELECT name FROM sqlite_master WHERE type = 'table'"
# The WAL is cut back to this size after a checkpoint, and maintenance checkpoints past it.
WAL_SIZE_LIMIT = 64 * 1024 * 1024


async def configure(
    conn: aiosqlite.Connection, path: Path, busy_timeout_ms: int, *, refuse_foreign: bool
) -> None:
    """busy_timeout, WAL (verified), synchronous, foreign keys and the WAL's size limit;
    with `refuse_foreign`, StorageError for another program's file, left untouched."""
    # busy_timeout first: switching a new file to WAL takes a lock other processes
    # may hold while they do the same.
    await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    if refuse_foreign:  # before WAL: another program's file is left exactly as it was
        # Untranslated: a file that is no database at all is `unusable`, not damaged.
        app_id = list(await conn.execute_fetchall("PRAGMA application_id"))
        tables = {str(r[0]) for r in await conn.execute_fetchall(TABLE_NAMES)}
        refusal = foreign_file(path, int(app_id[0][0]) if app_id else 0, tables)
        if refusal is not None:
            raise StorageError(refusal)
    mode = list(await conn.execute_fetchall("PRAGMA journal_mode = WAL"))
    if not mode or str(mode[0][0]).lower() != "wal":
        raise StorageError(
            f"{path}: SQLite refused WAL mode (journal_mode={mode[0][0] if mode else '?'}); "
            "put the database on a local disk (--db or SHARED_CONTEXT_DB)."
        )
    await conn.execute("PRAGMA synchronous = NORMAL")
    await conn.execute("PRAGMA foreign_keys = ON")
    # After a checkpoint resets the WAL, cut the file back to this size.
    await conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")


def refuse_newer(path: Path, version: int) -> None:
    """StorageError if the file's schema is newer than this release's."""
    if version > SCHEMA_VERSION:
        raise StorageError(upgrade_message(path, version, SCHEMA_VERSION))


async def apply_migrations(tx: Transaction, path: Path) -> int:
    """Inside a write transaction: the migrations the file lacks, each recorded in
    schema_history; returns the version the file had."""
    row = await tx.fetchone("PRAGMA user_version")
    current = int(row[0]) if row else 0
    refuse_newer(path, current)
    # Marks the file as a blackboard, so another program's file is never taken for one
    # (older blackboards are known by their tables).
    await tx.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    for version in range(current + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[version]:
            await tx.execute(statement)
        await tx.execute(
            "INSERT INTO schema_history (version, applied_at, pid) VALUES (?, ?, ?)",
            (version, utc_now(), os.getpid()),
        )
    # PRAGMA takes no parameters; SCHEMA_VERSION is a constant.
    await tx.execute(f"PRAGMA user_version = {int(SCHEMA_VERSION)}")
    return current
