"""Shared tables: names, column types, values in and out, and creating and describing tables.

SQL here is built from identifiers, never from raw input: every name is checked against
IDENTIFIER and then double-quoted, every type comes from TYPES, every value is bound.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from shared_context_server.db import Params, Transaction
from shared_context_server.errors import (
    BlackboardError,
    Conflict,
    DatabaseBusy,
    InvalidInput,
    LimitExceeded,
    NotFound,
)

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# Names SQLite gives the hidden row id; a column with one of them would shadow it.
ROW_ID_NAMES = frozenset({"rowid", "oid", "_rowid_"})
MAX_COLUMNS = 64

# Logical type -> declared SQLite type. The first word of a declared type is the logical
# type. JSON and DATETIME carry TEXT so they get TEXT affinity: under the NUMERIC affinity
# a bare "JSON" would have, the JSON text 12345678901234567890123 would become a float.
# BOOLEAN keeps NUMERIC affinity and stores 0/1.
TYPES: dict[str, str] = {
    "TEXT": "TEXT",
    "INTEGER": "INTEGER",
    "REAL": "REAL",
    "NUMERIC": "NUMERIC",
    "BOOLEAN": "BOOLEAN",
    "JSON": "JSON TEXT",
    "DATETIME": "DATETIME TEXT",
    "BLOB": "BLOB",
}
INT64 = (-(2**63), 2**63 - 1)

FIND_TABLE = (
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ? COLLATE NOCASE"
    " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
)
LIST_TABLES = (
    "SELECT name FROM sqlite_master WHERE type = 'table'"
    " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
)
TABLE_INFO = 'SELECT name, type, "notnull", pk FROM pragma_table_info(?) ORDER BY cid'
UNIQUE_COLUMNS = (
    "SELECT ii.name FROM pragma_index_list(?) il, pragma_index_info(il.name) ii"
    " WHERE il.\"unique\" AND il.origin = 'u'"
    " AND (SELECT count(*) FROM pragma_index_info(il.name)) = 1"
)


class Reader(Protocol):
    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]: ...


def check_identifier(name: str, what: str) -> str:
    """A table or column name: letters, digits and _, not starting with a digit, 1-63 long.

    Raises InvalidInput naming `what`.
    """
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        raise InvalidInput(
            f"{what} must be 1-63 letters, digits or _ and not start with a digit "
            f"(e.g. tasks, due_at); got {name!r}.",
            argument=what,
        )
    if name.lower().startswith("sqlite_"):
        raise InvalidInput(f"{what} may not start with sqlite_ (reserved by SQLite); got {name!r}.")
    return name


def quote(name: str) -> str:
    """A checked identifier, double-quoted: the only way a name enters records SQL."""
    return '"' + check_identifier(name, "name") + '"'


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # a key of TYPES, or the declared type of a column made otherwise
    not_null: bool
    primary_key: bool


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]

    def column(self, name: str, argument: str) -> Column:
        """The column called `name` (SQLite names ignore case). Raises NotFound."""
        if isinstance(name, str):
            for column in self.columns:
                if column.name.lower() == name.lower():
                    return column
        raise NotFound(
            f"table {self.name} has no column {name!r} (in {argument}); its columns: "
            f"{', '.join(c.name for c in self.columns)}.",
            argument=argument,
        )


async def load_table(reader: Reader, name: str) -> Table:
    """A user table's name as stored and its columns. Raises InvalidInput, NotFound."""
    check_identifier(name, "table_name")
    found = await reader.fetchall(FIND_TABLE, (name,))
    if not found:
        raise NotFound(
            f"no shared table {name!r}; list_tables shows them, create_table makes one.",
            argument="table_name",
        )
    stored = str(found[0]["name"])
    rows = await reader.fetchall(TABLE_INFO, (stored,))
    columns = tuple(
        Column(r["name"], logical_type(r["type"]), bool(r["notnull"]), bool(r["pk"])) for r in rows
    )
    return Table(stored, columns)


def logical_type(declared: str) -> str:
    words = declared.upper().split()
    return words[0] if words else "ANY"


def parse_column_spec(name: str, spec: str) -> tuple[str, bool, bool]:
    """`"TEXT NOT NULL UNIQUE"` -> ("TEXT", not_null, unique). Raises InvalidInput."""
    words = spec.upper().split() if isinstance(spec, str) else []
    if not words or words[0] not in TYPES:
        raise InvalidInput(
            f"column {name}: type must be one of {', '.join(TYPES)}, optionally followed by "
            f"NOT NULL and/or UNIQUE; got {spec!r}.",
            argument="columns",
        )
    rest, not_null, unique = words[1:], False, False
    while rest:
        if rest[:2] == ["NOT", "NULL"] and not not_null:
            not_null, rest = True, rest[2:]
        elif rest[0] == "UNIQUE" and not unique:
            unique, rest = True, rest[1:]
        else:
            raise InvalidInput(
                f"column {name}: after the type only NOT NULL and UNIQUE are allowed; "
                f"got {spec!r}.",
                argument="columns",
            )
    return words[0], not_null, unique


def create_table_sql(
    table_name: str, columns: dict[str, str], primary_key: str | list[str] | None
) -> str:
    """CREATE TABLE text from checked names and whitelisted types. Raises InvalidInput."""
    check_identifier(table_name, "table_name")
    if not columns:
        raise InvalidInput("columns is empty; give at least one {name: type}.", argument="columns")
    if len(columns) > MAX_COLUMNS:
        raise InvalidInput(f"at most {MAX_COLUMNS} columns; got {len(columns)}.")
    specs: dict[str, tuple[str, bool, bool]] = {}
    seen: set[str] = set()
    for name, spec in columns.items():
        check_identifier(name, "columns")
        if name.lower() in ROW_ID_NAMES:
            raise InvalidInput(f"column name {name!r} is reserved by SQLite; pick another.")
        if name.lower() in seen:
            raise InvalidInput(f"column {name!r} is given twice (names ignore case).")
        seen.add(name.lower())
        specs[name] = parse_column_spec(name, spec)

    by_lower = {name.lower(): name for name in specs}
    if primary_key is None:
        keys = [by_lower["id"]] if "id" in by_lower else []
    else:
        wanted = [primary_key] if isinstance(primary_key, str) else list(primary_key)
        if not wanted:
            raise InvalidInput("primary_key is empty; name a column or leave it out.")
        keys = []
        for key in wanted:
            if not isinstance(key, str) or key.lower() not in by_lower:
                raise InvalidInput(
                    f"primary_key {key!r} is not one of the columns {', '.join(specs)}.",
                    argument="primary_key",
                )
            keys.append(by_lower[key.lower()])
        if len({k.lower() for k in keys}) != len(keys):
            raise InvalidInput("primary_key names a column twice.", argument="primary_key")

    # A single INTEGER key is the row id; AUTOINCREMENT never hands out a deleted row's id
    # again, so an id an agent remembers keeps meaning the same task.
    rowid_key = len(keys) == 1 and specs[keys[0]][0] == "INTEGER"
    parts = [] if keys else ['"id" INTEGER PRIMARY KEY AUTOINCREMENT']
    for name, (type_, not_null, unique) in specs.items():
        part = f"{quote(name)} {TYPES[type_]}"
        if rowid_key and name == keys[0]:
            part += " PRIMARY KEY AUTOINCREMENT"
        elif not_null or name in keys:
            part += " NOT NULL"  # SQLite would let a non-integer key be NULL
        if unique:
            part += " UNIQUE"
        parts.append(part)
    if keys and not rowid_key:
        parts.append(f"PRIMARY KEY ({', '.join(quote(k) for k in keys)})")
    return f"CREATE TABLE {quote(table_name)} ({', '.join(parts)})"


def encode(column: Column, value: Any, argument: str, max_chars: int) -> Any:
    """An agent's JSON value as stored in `column`. Raises InvalidInput, LimitExceeded.

    BOOLEAN is stored as 0/1, JSON as compact JSON text, BLOB arrives as base64 text,
    DATETIME as ISO 8601 text (kept as given). null is NULL in every type.
    """
    if value is None:
        return None
    kind = column.type
    if kind == "JSON":
        try:
            text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (ValueError, RecursionError):
            raise _mismatch(column, value, argument, "plain JSON") from None
        return _sized(text, column, argument, max_chars)
    if kind == "BOOLEAN":
        if isinstance(value, bool):
            return int(value)
        raise _mismatch(column, value, argument, "true or false")
    if kind == "INTEGER":
        if isinstance(value, int) and not isinstance(value, bool) and INT64[0] <= value <= INT64[1]:
            return value
        raise _mismatch(column, value, argument, "a whole number within 64 bits")
    if kind in ("REAL", "NUMERIC"):
        if _finite_number(value):
            return float(value) if kind == "REAL" else value
        raise _mismatch(column, value, argument, "a finite number")
    if kind in ("TEXT", "DATETIME", "BLOB"):
        if not isinstance(value, str):
            hint = {"TEXT": "text", "DATETIME": "ISO 8601 text", "BLOB": "base64 text"}[kind]
            raise _mismatch(column, value, argument, hint)
        _sized(value, column, argument, max_chars)
        if kind == "DATETIME":
            try:
                datetime.fromisoformat(value)
            except ValueError:
                hint = "ISO 8601 text (2026-05-01T12:00:00Z)"
                raise _mismatch(column, value, argument, hint) from None
        if kind == "BLOB":
            try:
                return base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise _mismatch(column, value, argument, "base64 text") from None
        return value
    if isinstance(value, dict | list):  # a column of a type outside TYPES: one value
        raise _mismatch(column, value, argument, "a single value")
    return value


def decode(column_type: str | None, value: Any) -> Any:
    """A stored value as JSON for the agent: the inverse of `encode`, lenient with
    values another path stored (JSON that does not parse comes back as text)."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if column_type == "BOOLEAN" and value in (0, 1):
        return bool(value)
    if column_type == "JSON" and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _finite_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return INT64[0] <= value <= INT64[1]
    return isinstance(value, float) and math.isfinite(value)


def _sized(text: str, column: Column, argument: str, max_chars: int) -> str:
    if max_chars and len(text) > max_chars:
        raise LimitExceeded(
            f"{argument}.{column.name} is {len(text):,} characters; the limit is "
            f"{max_chars:,}. Store large content in a message and keep its id here.",
            argument=argument,
            limit=max_chars,
        )
    return text


def _mismatch(column: Column, value: Any, argument: str, expected: str) -> InvalidInput:
    shown = json.dumps(value, default=str)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return InvalidInput(
        f"{argument}.{column.name} is a {column.type} column and needs {expected}; got {shown}.",
        argument=argument,
        column=column.name,
    )


def sql_error(error: sqlite3.Error, action: str) -> BlackboardError:
    """What an SQLite error during a records call means for the agent."""
    text = str(error)
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(error, sqlite3.IntegrityError):
        return Conflict(
            f"{action}: {text}. Query the rows that clash, or change the values.", sqlite=text
        )
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return DatabaseBusy(f"{action}: the shared tables stayed locked; retry in a moment.")
    if text.startswith(("no such table", "no such column")):
        return NotFound(
            f"{action}: {text}. list_tables and describe_table show what exists; "
            "the blackboard's own tables are not reachable from records tools.",
            sqlite=text,
        )
    return InvalidInput(f"{action}: SQLite refused it: {text}.", sqlite=text)


async def make_table(
    tx: Transaction, table_name: str, columns: dict[str, str], primary_key: str | list[str] | None
) -> Table:
    """Create a user table inside `tx`. Raises InvalidInput, Conflict."""
    sql = create_table_sql(table_name, columns, primary_key)
    if await tx.fetchall(FIND_TABLE, (table_name,)):
        raise Conflict(
            f"table {table_name} already exists; describe_table shows its columns, "
            "or pick another name.",
            argument="table_name",
        )
    try:
        await tx.execute(sql)
    except sqlite3.Error as error:
        raise sql_error(error, "create_table") from None
    return await load_table(tx, table_name)


async def describe(reader: Reader, table: Table) -> dict[str, Any]:
    unique = {str(r["name"]) for r in await reader.fetchall(UNIQUE_COLUMNS, (table.name,))}
    return {
        "table_name": table.name,
        "columns": [
            {
                "name": c.name,
                "type": c.type,
                "not_null": c.not_null,
                "primary_key": c.primary_key,
                "unique": c.name in unique,
            }
            for c in table.columns
        ],
    }
