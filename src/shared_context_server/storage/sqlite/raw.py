"""`execute_raw_query`: one SQL statement over the shared tables, judged by SQLite itself.

Safety does not come from reading the SQL text. The raw connection has an authorizer that
SQLite consults for every table, column, function and pragma a statement touches while it
is prepared (the statement cache is off, so every call is judged), `PRAGMA query_only`
unless the process allows raw writes, a progress handler that stops a statement past its
time limit, and a row cap. The connection never attaches the blackboard file.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio

from shared_context_server.errors import BlackboardError, InvalidInput, LimitExceeded
from shared_context_server.storage.seam import ResultTooLarge
from shared_context_server.storage.seam.records import RawOutcome, WriteRefused, sql_error
from shared_context_server.storage.sqlite.database import Database

# Introspection pragmas that only read; every other pragma (query_only, writable_schema,
# journal_mode...) is refused, so a raw query cannot lift its own limits.
READ_PRAGMAS = frozenset(
    {"table_info", "table_xinfo", "index_list", "index_info", "index_xinfo", "foreign_key_list"}
)
_ROW_WRITES = (sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE)
# Authorizer action codes overlap SQLite's error codes, so the names are listed, not scanned.
_ACTION_NAMES = {
    getattr(sqlite3, "SQLITE_" + name): name.replace("_", " ")
    for name in [
        "CREATE_INDEX",
        "CREATE_TABLE",
        "CREATE_TEMP_INDEX",
        "CREATE_TEMP_TABLE",
        "CREATE_TEMP_TRIGGER",
        "CREATE_TEMP_VIEW",
        "CREATE_TRIGGER",
        "CREATE_VIEW",
        "DROP_INDEX",
        "DROP_TABLE",
        "DROP_TEMP_INDEX",
        "DROP_TEMP_TABLE",
        "DROP_TEMP_TRIGGER",
        "DROP_TEMP_VIEW",
        "DROP_TRIGGER",
        "DROP_VIEW",
        "ALTER_TABLE",
        "REINDEX",
        "ANALYZE",
        "CREATE_VTABLE",
        "DROP_VTABLE",
    ]
}
PROGRESS_STEPS = 1000
# The longest text or blob a raw query may make or read: far past any value a tool stores
# (100,000 characters), far short of what randomblob(), zeroblob() or a printf() width
# would allocate.
MAX_VALUE_BYTES = 1024 * 1024
# All the text and blobs of one raw query's rows: a reply a model can still read. Checked
# row by row as they are made, so with at most MAX_RESULT_COLUMNS values a row, no query
# holds more than this plus one row.
MAX_RESULT_BYTES = 4 * 1024 * 1024
MAX_RESULT_COLUMNS = 128
# LIKE and GLOB match inside one step, out of the time limit's reach, in time that grows
# with the pattern's length times the value's: this keeps a match well under a second.
MAX_PATTERN_CHARS = 100
# Functions refused by the authorizer: fts3_tokenizer() hands out raw pointers (a known
# memory-corruption route); printf() and format() fill a width inside one step, where the
# time limit cannot stop them (2,000,000,000 took 26 s); the rest would reach outside the
# shared tables if ever present.
DENIED_FUNCTIONS = frozenset(
    {"fts3_tokenizer", "printf", "format", "load_extension", "readfile", "writefile", "edit"}
)
_NO_SCHEMA_CHANGES = "schema changes are not allowed in raw queries (make tables with create_table)"


class RawGuard:
    """The authorizer and progress handler of the raw connection, armed per statement.

    Disarmed, it allows everything: only this module's own BEGIN/COMMIT run then.
    """

    def __init__(self) -> None:
        self.armed = False
        self.writes = False
        self.deadline = math.inf
        self.refusal: str | None = None
        self.written: set[str] = set()
        self.wanted_write = False  # a row write was refused because writes were off

    @contextmanager
    def statement(self, *, writes: bool, seconds: float) -> Iterator[None]:
        self.armed, self.writes, self.refusal, self.written = True, writes, None, set()
        self.wanted_write = False
        self.deadline = time.monotonic() + seconds
        try:
            yield
        finally:
            self.armed, self.deadline = False, math.inf

    def authorize(
        self, action: int, arg1: str | None, arg2: str | None, db_name: str | None, _: str | None
    ) -> int:
        if not self.armed:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION:
            reason = (
                f"{arg2}() is not allowed" if (arg2 or "").lower() in DENIED_FUNCTIONS else None
            )
        else:
            reason = self._refusal(action, arg1 or "", db_name)
        if reason is None:
            return sqlite3.SQLITE_OK
        self.refusal = self.refusal or reason
        return sqlite3.SQLITE_DENY

    def _refusal(self, action: int, arg1: str, db_name: str | None) -> str | None:
        if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_RECURSIVE):
            return None
        if action == sqlite3.SQLITE_READ:
            if db_name in ("main", None):
                return None
            return f"{db_name}.{arg1} is outside the shared tables"
        if action == sqlite3.SQLITE_PRAGMA:
            if arg1.lower() in READ_PRAGMAS and db_name in ("main", None):
                return None
            return f"PRAGMA {arg1} is not allowed (only {', '.join(sorted(READ_PRAGMAS))})"
        if action in _ROW_WRITES:
            if action == sqlite3.SQLITE_UPDATE and arg1 in ("sqlite_master", "sqlite_schema"):
                # Reported while json_each() or pragma_table_info() is prepared. A statement
                # that really writes the schema table is refused by SQLite itself, since
                # PRAGMA writable_schema can never be set here.
                return None
            if arg1 in ("sqlite_master", "sqlite_temp_master"):
                return _NO_SCHEMA_CHANGES
            if db_name != "main" or arg1.lower().startswith("sqlite_"):
                return f"{arg1} is not a shared table and cannot be changed"
            if not self.writes:
                self.wanted_write = True
                return (
                    "raw queries are read-only here: change rows with insert_record, "
                    "update_record or delete_record (or start the server with --allow-raw-writes)"
                )
            self.written.add(arg1)
            return None
        if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
            # VACUUM attaches a scratch database, so it lands here too.
            return "ATTACH, DETACH and VACUUM are never allowed: raw queries see only shared tables"
        if action in (sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT):
            return "each raw query is its own transaction; BEGIN, COMMIT and SAVEPOINT are refused"
        name = _ACTION_NAMES.get(action, f"action {action}")
        return f"{name}: {_NO_SCHEMA_CHANGES}"

    def progress(self) -> int:
        return 1 if time.monotonic() > self.deadline else 0


class RawQueries:
    """The guarded connection raw queries run on, one statement at a time."""

    def __init__(
        self, db: Database, guard: RawGuard, *, allow_writes: bool, seconds: float, max_rows: int
    ) -> None:
        self.db = db
        self.guard = guard
        self.allow_writes = allow_writes
        self.seconds = seconds
        self.max_rows = max_rows
        self._lock = anyio.Lock()  # the guard holds one statement's state

    @classmethod
    async def open(
        cls, path: Path, *, allow_writes: bool, seconds: float, max_rows: int
    ) -> RawQueries:
        db = await Database.open(path, migrate=False, statement_cache=False)
        try:
            if not allow_writes:
                await db.fetchall("PRAGMA query_only = ON")
            guard = RawGuard()
            await db.set_authorizer(guard.authorize)
            await db.set_progress_handler(guard.progress, PROGRESS_STEPS)
            await db.set_limit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
            await db.set_limit(sqlite3.SQLITE_LIMIT_COLUMN, MAX_RESULT_COLUMNS)
            await db.set_limit(sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, MAX_PATTERN_CHARS)
        except BaseException:
            await db.close()
            raise
        return cls(db, guard, allow_writes=allow_writes, seconds=seconds, max_rows=max_rows)

    async def close(self) -> None:
        await self.db.close()

    async def run(self, query: str, params: Sequence[Any], *, writes: bool) -> RawOutcome:
        """Run one statement, at most max_rows + 1 rows back. Raises WriteRefused (a row
        write while writes are off), BlackboardError."""
        # Shielded: a cancelled await does not stop the statement on aiosqlite's thread,
        # and the guard must stay armed (and the deadline set) until that statement ends.
        # The time limit bounds how long the shield can hold.
        async with self._lock:
            with anyio.CancelScope(shield=True):
                try:
                    if writes:
                        # A statement that may write is one BEGIN IMMEDIATE transaction,
                        # bounded like any other by the time limit.
                        async with self.db.write() as tx:
                            with self.guard.statement(writes=True, seconds=self.seconds):
                                fetched = await tx.fetch_at_most(
                                    query, params, self.max_rows + 1, MAX_RESULT_BYTES
                                )
                    else:
                        with self.guard.statement(writes=False, seconds=self.seconds):
                            fetched = await self.db.fetch_at_most(
                                query, params, self.max_rows + 1, MAX_RESULT_BYTES
                            )
                except sqlite3.Error as error:
                    explained = self._explain(error)
                    if self.guard.wanted_write and isinstance(explained, InvalidInput):
                        raise WriteRefused(explained.message, **explained.details) from None
                    raise explained from None
                except ResultTooLarge:
                    raise LimitExceeded(
                        f"the query's rows hold over {MAX_RESULT_BYTES:,} bytes of text and "
                        "blobs; select fewer columns or rows (LIMIT), or length()/substr() "
                        "of big values.",
                        limit_bytes=MAX_RESULT_BYTES,
                    ) from None
            # Read under the lock: the next statement resets the guard.
            return RawOutcome(fetched, frozenset(self.guard.written))

    def _explain(self, error: sqlite3.Error) -> BlackboardError:
        code = getattr(error, "sqlite_errorcode", None)
        text = str(error)
        if isinstance(error, sqlite3.ProgrammingError):
            if "one statement" in text:
                return InvalidInput(
                    "query holds more than one statement; send one statement per call.",
                    argument="query",
                )
            return InvalidInput(f"execute_raw_query: {text}.", argument="params")
        if code == sqlite3.SQLITE_TOOBIG:
            return LimitExceeded(
                f"the query made or read a value over {MAX_VALUE_BYTES:,} bytes; raw queries "
                "keep each value under that (use length() or substr() to look at a big one).",
                limit_bytes=MAX_VALUE_BYTES,
            )
        if "pattern too complex" in text:
            return LimitExceeded(
                f"a LIKE or GLOB pattern in the query is over {MAX_PATTERN_CHARS} characters; "
                "use a shorter pattern (or instr() for a long literal).",
                limit_chars=MAX_PATTERN_CHARS,
            )
        if "too many columns" in text:
            return LimitExceeded(
                f"the query makes over {MAX_RESULT_COLUMNS} columns; select fewer.",
                limit_columns=MAX_RESULT_COLUMNS,
            )
        if code == sqlite3.SQLITE_MISMATCH:
            return InvalidInput(
                f"execute_raw_query: {text} (LIMIT and OFFSET take 64-bit integers).",
                argument="query",
            )
        if code == sqlite3.SQLITE_INTERRUPT:
            return LimitExceeded(
                f"the query ran over {self.seconds:g} s and was stopped; add a LIMIT, "
                "narrow the WHERE, or check a recursive query ends.",
                limit_seconds=self.seconds,
            )
        if code == sqlite3.SQLITE_AUTH or (self.guard.refusal and "not authorized" in text):
            return InvalidInput(
                f"forbidden statement: {self.guard.refusal or text}.", argument="query"
            )
        if code == sqlite3.SQLITE_READONLY:
            return InvalidInput(
                "raw queries are read-only here: change rows with insert_record, "
                "update_record or delete_record (or start the server with --allow-raw-writes).",
                argument="query",
            )
        return sql_error(error, "execute_raw_query")
