"""Where shared tables live, their connections, and the one place writes are reported.

On SQLite: a file of their own beside the blackboard (`records_path`), opened on separate
connections that never attach the blackboard, so no records call can name a blackboard
table. On PostgreSQL: the schema `records` of the blackboard's own database, reached
through the blackboard's Store; raw queries run as a confined login (records/raw_pg.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from shared_context_server.blackboard import audit
from shared_context_server.blackboard.identity import Agent
from shared_context_server.blackboard.records.dialect import DIALECTS, SQLITE, Dialect
from shared_context_server.blackboard.records.raw import RawQueries
from shared_context_server.blackboard.records.raw_pg import PgRawQueries
from shared_context_server.blackboard.records.schema import Table
from shared_context_server.storage.opener import is_postgres_url
from shared_context_server.storage.seam import Conn, Store, Target

# (agent, action = the tool's name, table(s), rows changed), called after each commit.
WriteHook = Callable[[Agent, str, str, int], Awaitable[None]]
# The same, called inside the write's own transaction, on its connection.
InsideHook = Callable[[Conn, Agent, str, str, int], None]

RAW_QUERY_SECONDS = 2.0
MAX_RAW_ROWS = 500


def records_path(main: Path) -> Path:
    """`.../shared-context.db` -> `.../shared-context-records.db`, beside the blackboard."""
    return main.with_name(f"{main.stem}-records{main.suffix or '.db'}")


@dataclass
class RecordsStore:
    """The shared tables' Store (`db`) and the connection raw queries run on (`raw`).

    On SQLite `db` is a `Database` of the records file: the same 0600 file creation, WAL,
    busy_timeout and BEGIN IMMEDIATE writes as the blackboard, with no blackboard schema.
    """

    db: Store
    raw: RawQueries | PgRawQueries
    dialect: Dialect = SQLITE
    on_write: WriteHook | None = None
    log_inside: InsideHook | None = None
    owns_db: bool = True
    # Tables by lower-cased name, as read (rows._load).
    tables: dict[str, Table] = field(default_factory=dict)

    @classmethod
    async def open(
        cls,
        target: Target,
        *,
        allow_raw_writes: bool = False,
        raw_query_seconds: float = RAW_QUERY_SECONDS,
        max_raw_rows: int = MAX_RAW_ROWS,
    ) -> RecordsStore:
        """The records file at `target` (created if needed), or the records schema of the
        PostgreSQL database at a URL (its blackboard migrated). Raises StorageError."""
        if is_postgres_url(target):
            from shared_context_server.storage.opener import open_store

            return await cls._on_postgres(
                await open_store(target),
                owns_db=True,
                allow_writes=allow_raw_writes,
                seconds=raw_query_seconds,
                max_rows=max_raw_rows,
            )
        from shared_context_server.storage.sqlite.database import Database

        path = Path(target)
        db = await Database.open(path, migrate=False)
        try:
            raw = await RawQueries.open(
                path,
                allow_writes=allow_raw_writes,
                seconds=raw_query_seconds,
                max_rows=max_raw_rows,
            )
        except BaseException:
            await db.close()
            raise
        return cls(db, raw)

    @classmethod
    async def beside(
        cls,
        blackboard: Store,
        *,
        allow_raw_writes: bool = False,
        raw_query_seconds: float = RAW_QUERY_SECONDS,
    ) -> RecordsStore:
        """The shared tables of the blackboard `blackboard`: the file beside it, or its
        database's records schema. Raises StorageError."""
        if blackboard.engine == "sqlite":
            return await cls.open(
                records_path(Path(blackboard.where)),
                allow_raw_writes=allow_raw_writes,
                raw_query_seconds=raw_query_seconds,
            )
        return await cls._on_postgres(
            blackboard,
            owns_db=False,
            allow_writes=allow_raw_writes,
            seconds=raw_query_seconds,
            max_rows=MAX_RAW_ROWS,
        )

    @classmethod
    async def _on_postgres(
        cls, db: Store, *, owns_db: bool, allow_writes: bool, seconds: float, max_rows: int
    ) -> RecordsStore:
        from shared_context_server.blackboard.records.postgres import prepare_schema

        try:
            await prepare_schema(db)
            url = getattr(db, "url")  # noqa: B009 (PgDatabase's full URL, password and all)
            raw = await PgRawQueries.open(
                url, allow_writes=allow_writes, seconds=seconds, max_rows=max_rows
            )
        except BaseException:
            if owns_db:
                await db.close()
            raise
        return cls(db, raw, DIALECTS["postgres"], owns_db=owns_db)

    async def close(self) -> None:
        await self.raw.close()
        if self.owns_db:
            await self.db.close()

    def audit_into(self, blackboard: Store) -> None:
        """Log every records write in `blackboard`'s audit trail: inside the write's own
        transaction where both share a database (PostgreSQL), else after its commit."""
        if self.dialect.engine == "postgres":
            self.log_inside = audit.log_table_write
        else:
            self.on_write = partial(audit.record_table_write, blackboard)

    async def record_raw_write(self, agent: Agent, table: str, count: int) -> None:
        """A raw write's audit entry, after its commit on either engine: on PostgreSQL it
        ran as the confined login, which cannot write the audit trail (README: DESIGN)."""
        if self.log_inside is not None:
            await audit.record_table_write(self.db, agent, "execute_raw_query", table, count)
        else:
            await self.record_write(agent, "execute_raw_query", table, count)

    async def record_write(self, agent: Agent, action: str, table: str, count: int) -> None:
        """Every committed records write passes here (or through `log_inside`, inside its
        transaction): who, which tool, which table, how many rows. On SQLite the audit
        trail lives in the blackboard file, so its entry is written after the records
        commit, not inside it (README: DESIGN)."""
        if self.on_write is not None:
            await self.on_write(agent, action, table, count)
