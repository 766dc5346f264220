"""What both engines share for the records toolset (shared tables): the dialect's shape,
the raw-query runner's, what opening them gives, and what an engine's error during a
records call means for the agent.

PostgreSQL's constraint errors are told in SQLite's words ("UNIQUE constraint failed:
files.path"), so an agent reads the same message whichever engine holds the tables. The
driver is never imported here: its errors are recognised by their SQLSTATE.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from shared_context_server.errors import (
    BlackboardError,
    Conflict,
    DatabaseBusy,
    InvalidInput,
    NotFound,
)
from shared_context_server.storage.seam import Conn, Engine, Fetched, Store

SCHEMA = "records"
# The column PostgreSQL tables get when their key is not one INTEGER column, standing in
# for SQLite's built-in rowid (a name no user column may take: schema.ROW_ID_NAMES).
HIDDEN_ROW_ID = "rowid"
# The logical column types an agent may declare, on either engine.
TYPES = ("TEXT", "INTEGER", "REAL", "NUMERIC", "BOOLEAN", "JSON", "DATETIME", "BLOB")
# A raw query's time limit and row cap, unless the server says otherwise.
RAW_QUERY_SECONDS = 2.0
MAX_RAW_ROWS = 500
# On PostgreSQL: the confined login raw queries run as, named by the operator.
RECORDS_URL_ENV = "SHARED_CONTEXT_RECORDS_URL"


@dataclass(frozen=True)
class Dialect:
    engine: Engine
    # Before a quoted table name: '' (the records file) or 'records.' (the schema).
    prefix: str
    # Logical type -> declared column type.
    types: dict[str, str]
    # Declared type (as the catalogue shows it) -> logical type, where they differ.
    logical: dict[str, str]
    # The added key, and a single INTEGER key, as column definitions after the type.
    serial_key: str
    # What a table whose key is not one INTEGER column gets as its row id ('' if built in).
    hidden_row_id: str
    find_table: str  # one parameter: a name, matched ignoring case
    list_tables: str
    table_info: str  # one parameter: the stored name; name, type, notnull, pk
    unique_columns: str  # one parameter: the stored name
    # A LIKE filter: SQLite's ignores ASCII case and has no escape character; so here.
    like: str
    # `!=` that treats NULL as a value (unclaimed rows are "not bob's").
    distinct: str
    # Run first in a transaction that creates a table, so two processes cannot make
    # "Tasks" and "tasks" at once ('' where writers are serialised anyway).
    serialize_ddl: str
    # Booleans are bound as 0/1 in SQLite's NUMERIC affinity, as true/false on PostgreSQL.
    native_booleans: bool
    # Run in the transaction that made a table (its qualified name): grants, if any.
    after_create: Callable[[Conn, str], None] | None = None
    # After an insert that gave a serial key itself: moves the key's sequence past it
    # (parameters: the value, the qualified table, the column, the value); '' if none.
    bump_sequence: str = ""
    # An UPDATE or DELETE may sit in a WITH (PostgreSQL): a write and its audit entry
    # then go in one statement (audit.with_counted_entry).
    writes_in_with: bool = False


class RawRunner(Protocol):
    """Where raw queries run, one statement at a time, confined by the engine itself."""

    allow_writes: bool
    max_rows: int

    async def run(self, query: str, params: Sequence[Any], *, writes: bool) -> RawOutcome: ...

    async def close(self) -> None: ...


@dataclass
class RecordsBackend:
    """An engine's shared tables, opened: their Store, the raw runner, the dialect, and
    whether closing them closes `db` too (`owns_db`)."""

    db: Store
    raw: RawRunner
    dialect: Dialect
    owns_db: bool


# PostgreSQL's SQLSTATEs, by what they mean for the agent.
PG_NOT_FOUND = frozenset({"42P01", "42703", "3F000", "42883"})  # table, column, schema, fn
PG_BUSY = frozenset({"55P03", "40P01", "40001"})
PG_UNIQUE, PG_NOT_NULL, PG_CHECK = "23505", "23502", "23514"
_KEY = re.compile(r"Key \((.*?)\)=")
NOT_REACHABLE = (
    "list_tables and describe_table show what exists; "
    "the blackboard's own tables are not reachable from records tools."
)


class WriteRefused(InvalidInput):
    """A raw statement that would change rows, run where raw writes are off (for the
    server, or for this agent: the tool tells the two apart)."""


@dataclass(frozen=True)
class RawOutcome:
    """What one raw statement gave: its rows (at most the cap + 1) and the tables it
    wrote, taken while the statement's guard was still held."""

    fetched: Fetched
    written: frozenset[str]


def is_postgres_error(error: BaseException) -> bool:
    return type(error).__module__.startswith("psycopg")


def sqlstate(error: BaseException) -> str:
    return str(getattr(error, "sqlstate", None) or "")


def sql_error(error: BaseException, action: str) -> BlackboardError:
    """What an engine error during a records call means for the agent."""
    if is_postgres_error(error):
        return _pg_error(error, action)
    text = str(error)
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(error, sqlite3.IntegrityError):
        return Conflict(
            f"{action}: {text}. Query the rows that clash, or change the values.", sqlite=text
        )
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return DatabaseBusy(f"{action}: the shared tables stayed locked; retry in a moment.")
    if text.startswith(("no such table", "no such column")):
        return NotFound(f"{action}: {text}. {NOT_REACHABLE}", sqlite=text)
    return InvalidInput(f"{action}: SQLite refused it: {text}.", sqlite=text)


def pg_text(error: BaseException) -> str:
    """PostgreSQL's message, one line."""
    diag: Any = getattr(error, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    return " ".join(str(primary or error).split())


def _pg_error(error: BaseException, action: str) -> BlackboardError:
    state = sqlstate(error)
    text = pg_text(error)
    if state.startswith("23"):
        said = _as_sqlite(error, state) or text
        return Conflict(
            f"{action}: {said}. Query the rows that clash, or change the values.",
            postgres=text,
        )
    if state in PG_BUSY:
        return DatabaseBusy(f"{action}: the shared tables stayed locked; retry in a moment.")
    if state in PG_NOT_FOUND:
        return NotFound(f"{action}: {text}. {NOT_REACHABLE}", postgres=text)
    return InvalidInput(f"{action}: PostgreSQL refused it: {text}.", postgres=text)


def _as_sqlite(error: BaseException, state: str) -> str | None:
    """A constraint error in SQLite's words, from PostgreSQL's details."""
    diag: Any = getattr(error, "diag", None)
    table = getattr(diag, "table_name", None)
    if not table:
        return None
    if state == PG_UNIQUE:
        found = _KEY.search(getattr(diag, "message_detail", None) or "")
        if found:
            columns = [c.strip().strip('"') for c in found.group(1).split(",")]
            return "UNIQUE constraint failed: " + ", ".join(f"{table}.{c}" for c in columns)
    if state == PG_NOT_NULL and getattr(diag, "column_name", None):
        return f"NOT NULL constraint failed: {table}.{diag.column_name}"
    if state == PG_CHECK:
        return f"CHECK constraint failed: {table}"
    return None
