"""The records toolset on a SQLite file: the tables live in a file of their own beside the
blackboard (`records_path`), opened on connections that never attach the blackboard, so
no records call can name a blackboard table; raw queries run on a connection guarded by
SQLite's authorizer (raw.py)."""

from __future__ import annotations

from pathlib import Path

from shared_context_server.storage.seam.records import Dialect, RecordsBackend
from shared_context_server.storage.sqlite.database import Database
from shared_context_server.storage.sqlite.raw import RawQueries

SQLITE = Dialect(
    engine="sqlite",
    prefix="",
    # JSON and DATETIME carry TEXT so they get TEXT affinity: under the NUMERIC affinity a
    # bare "JSON" would have, the JSON text 12345678901234567890123 would become a float.
    # BOOLEAN keeps NUMERIC affinity and stores 0/1.
    types={
        "TEXT": "TEXT",
        "INTEGER": "INTEGER",
        "REAL": "REAL",
        "NUMERIC": "NUMERIC",
        "BOOLEAN": "BOOLEAN",
        "JSON": "JSON TEXT",
        "DATETIME": "DATETIME TEXT",
        "BLOB": "BLOB",
    },
    logical={},
    # AUTOINCREMENT never hands out a deleted row's id again, so an id an agent remembers
    # keeps meaning the same task.
    serial_key="PRIMARY KEY AUTOINCREMENT",
    hidden_row_id="",
    find_table=(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ? COLLATE NOCASE"
        " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
    ),
    list_tables=(
        "SELECT name FROM sqlite_master WHERE type = 'table'"
        " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
    ),
    table_info='SELECT name, type, "notnull", pk FROM pragma_table_info(?) ORDER BY cid',
    unique_columns=(
        "SELECT ii.name FROM pragma_index_list(?) il, pragma_index_info(il.name) ii"
        " WHERE il.\"unique\" AND il.origin = 'u'"
        " AND (SELECT count(*) FROM pragma_index_info(il.name)) = 1"
    ),
    like="LIKE ?",
    distinct="IS NOT",
    serialize_ddl="",
    native_booleans=False,
)


def records_path(main: Path) -> Path:
    """`.../shared-context.db` -> `.../shared-context-records.db`, beside the blackboard."""
    return main.with_name(f"{main.stem}-records{main.suffix or '.db'}")


async def open_file(
    path: Path, *, allow_writes: bool, seconds: float, max_rows: int
) -> RecordsBackend:
    """The records file at `path` (created if needed: the same 0600 file, WAL,
    busy_timeout and BEGIN IMMEDIATE writes as the blackboard, with no blackboard
    schema) and its guarded raw connection. Raises StorageError."""
    db = await Database.open(path, migrate=False)
    try:
        raw = await RawQueries.open(
            path, allow_writes=allow_writes, seconds=seconds, max_rows=max_rows
        )
    except BaseException:
        await db.close()
        raise
    return RecordsBackend(db, raw, SQLITE, owns_db=True)
