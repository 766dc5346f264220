"""The records toolset on PostgreSQL, opened: the schema `records` of the blackboard's own
database (records.py makes it) and the confined session raw queries run in (raw.py)."""

from __future__ import annotations

from shared_context_server.storage.postgres.database import PgDatabase
from shared_context_server.storage.postgres.raw import PgRawQueries
from shared_context_server.storage.postgres.records import POSTGRES, prepare_schema
from shared_context_server.storage.seam.records import RecordsBackend


async def open_schema(
    db: PgDatabase, *, owns_db: bool, allow_writes: bool, seconds: float, max_rows: int
) -> RecordsBackend:
    """The records schema of `db`'s database, made if missing; `owns_db`: closing the
    records closes `db` (also when this fails). Raises StorageError."""
    try:
        await prepare_schema(db)
        raw = await PgRawQueries.open(
            db.url, allow_writes=allow_writes, seconds=seconds, max_rows=max_rows
        )
    except BaseException:
        if owns_db:
            await db.close()
        raise
    return RecordsBackend(db, raw, POSTGRES, owns_db=owns_db)
