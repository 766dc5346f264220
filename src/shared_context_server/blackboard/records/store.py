"""The records file: where it lives, its two connections, and the one place writes are reported."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from shared_context_server.blackboard.identity import Agent
from shared_context_server.blackboard.records.raw import RawQueries
from shared_context_server.db import Database

# (agent, action = the tool's name, table(s), rows changed), called after each commit.
WriteHook = Callable[[Agent, str, str, int], Awaitable[None]]

RAW_QUERY_SECONDS = 2.0
MAX_RAW_ROWS = 500


def records_path(main: Path) -> Path:
    """`.../shared-context.db` -> `.../shared-context-records.db`, beside the blackboard."""
    return main.with_name(f"{main.stem}-records{main.suffix or '.db'}")


@dataclass
class RecordsStore:
    """The records file's CRUD connection (`db`) and its guarded raw-query connection.

    Both are `Database`s: the same 0600 file creation, WAL, busy_timeout and
    BEGIN IMMEDIATE writes as the blackboard, with no blackboard schema.
    """

    db: Database
    raw: RawQueries
    on_write: WriteHook | None = None

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        allow_raw_writes: bool = False,
        raw_query_seconds: float = RAW_QUERY_SECONDS,
        max_raw_rows: int = MAX_RAW_ROWS,
    ) -> RecordsStore:
        """Open (creating if needed) the records file at `path`. Raises StorageError."""
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

    async def close(self) -> None:
        await self.raw.close()
        await self.db.close()

    async def record_write(self, agent: Agent, action: str, table: str, count: int) -> None:
        """Every committed records write passes here: who, which tool, which table, how many
        rows. The audit trail (issue 4) hooks in here via `on_write`; it lives in the
        blackboard file, so it is written after the records commit, not inside it."""
        if self.on_write is not None:
            await self.on_write(agent, action, table, count)
