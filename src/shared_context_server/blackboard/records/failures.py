"""What an engine's error during a records call means for the agent, on either engine.

PostgreSQL's constraint errors are told in SQLite's words ("UNIQUE constraint failed:
files.path"), so an agent reads the same message whichever engine holds the tables. The
driver is never imported here: its errors are recognised by their SQLSTATE.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from typing import Any

from shared_context_server.errors import (
    BlackboardError,
    Conflict,
    DatabaseBusy,
    InvalidInput,
    NotFound,
)
from shared_context_server.storage.seam import Fetched

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
