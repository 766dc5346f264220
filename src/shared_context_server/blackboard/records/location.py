"""Where shared tables live, their connections, and the one place writes are reported.

The opener opens them (storage/opener.py `open_records`), each engine its own way: on
SQLite a file of their own beside the blackboard, on connections that never attach it,
so no records call can name a blackboard table; on PostgreSQL the schema `records` of
the blackboard's own database, with raw queries run as a confined login. Both:
docs/RECORDS.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from shared_context_server.blackboard import audit
from shared_context_server.blackboard.identity import Agent
from shared_context_server.blackboard.records.schema import Table
from shared_context_server.storage.seam import Conn, Store
from shared_context_server.storage.seam.records import Dialect, RawRunner, RecordsBackend

# (agent, action = the tool's name, table(s), rows changed), called after each commit.
WriteHook = Callable[[Agent, str, str, int], Awaitable[None]]
# The same, called inside the write's own transaction, on its connection.
InsideHook = Callable[[Conn, Agent, str, str, int], None]
# An UPDATE or DELETE (sql, params) as one statement that also writes its audit entry
# (agent, action, table) with the rows it changed, and returns that count.
CountedHook = Callable[[str, Sequence[Any], Agent, str, str], tuple[str, tuple[Any, ...]]]


@dataclass
class RecordsStore:
    """The shared tables' Store (`db`), the runner raw queries go to (`raw`) and the
    engine's dialect, with where their writes are audited."""

    db: Store
    raw: RawRunner
    dialect: Dialect
    owns_db: bool = True
    on_write: WriteHook | None = None
    log_inside: InsideHook | None = None
    log_counted: CountedHook | None = None
    # Tables by lower-cased name, as read (rows._load).
    tables: dict[str, Table] = field(default_factory=dict)

    @classmethod
    def of(cls, backend: RecordsBackend) -> RecordsStore:
        return cls(backend.db, backend.raw, backend.dialect, owns_db=backend.owns_db)

    async def close(self) -> None:
        await self.raw.close()
        if self.owns_db:
            await self.db.close()

    def audit_into(self, blackboard: Store) -> None:
        """Log every records write in `blackboard`'s audit trail: inside the write's own
        transaction where both share a database (PostgreSQL), else after its commit."""
        if self.db is blackboard:
            self.log_inside = audit.log_table_write
            if self.dialect.writes_in_with:
                self.log_counted = audit.with_counted_entry
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
