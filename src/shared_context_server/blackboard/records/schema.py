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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from shared_context_server.errors import Conflict, InvalidInput, LimitExceeded, NotFound
from shared_context_server.storage.seam import Conn, Row, Store
from shared_context_server.storage.seam.records import HIDDEN_ROW_ID, TYPES, Dialect

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# Names SQLite gives the hidden row id; a column with one of them would shadow it (and on
# PostgreSQL, `rowid` is the row id of a table keyed otherwise: dialect.HIDDEN_ROW_ID).
ROW_ID_NAMES = frozenset({"rowid", "oid", "_rowid_"})
MAX_COLUMNS = 64
# The logical types: the first word of a column's spec (dialect.types declares each).
INT64 = (-(2**63), 2**63 - 1)


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
    dialect: Dialect

    @property
    def qualified(self) -> str:
        """The table's name in SQL: quoted, and in the records schema on PostgreSQL."""
        return self.dialect.prefix + quote(self.name)

    @property
    def row_id(self) -> str:
        """The row id in SQL: SQLite's rowid; on PostgreSQL a single INTEGER key, or the
        column that stands in for rowid."""
        if not self.dialect.hidden_row_id:  # every row has one built in
            return "rowid"
        keys = [c for c in self.columns if c.primary_key]
        if len(keys) == 1 and keys[0].type == "INTEGER":
            return quote(keys[0].name)
        return quote(HIDDEN_ROW_ID)

    @property
    def select_list(self) -> str:
        return ", ".join(quote(c.name) for c in self.columns)

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


async def load_table(db: Store, dialect: Dialect, name: str) -> Table:
    """A user table's name as stored and its columns. Raises InvalidInput, NotFound."""
    check_identifier(name, "table_name")
    stored = _stored_name(await db.read(dialect.find_table, (name,)), name)
    return _table(dialect, stored, await db.read(dialect.table_info, (stored,)))


def _stored_name(found: list[Row], name: str) -> str:
    if not found:
        raise NotFound(
            f"no shared table {name!r}; list_tables shows them, create_table makes one.",
            argument="table_name",
        )
    return str(found[0]["name"])


def _table(dialect: Dialect, name: str, rows: list[Row]) -> Table:
    columns = tuple(
        Column(r["name"], logical_type(dialect, r["type"]), bool(r["notnull"]), bool(r["pk"]))
        for r in rows
    )
    return Table(name, columns, dialect)


def logical_type(dialect: Dialect, declared: str) -> str:
    if declared in dialect.logical:
        return dialect.logical[declared]
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
    table_name: str,
    columns: dict[str, str],
    primary_key: str | list[str] | None,
    dialect: Dialect,
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

    # A single INTEGER key is the row id (dialect.serial_key).
    rowid_key = len(keys) == 1 and specs[keys[0]][0] == "INTEGER"
    types = dialect.types
    parts = [] if keys else [f'"id" {types["INTEGER"]} {dialect.serial_key}']
    for name, (type_, not_null, unique) in specs.items():
        part = f"{quote(name)} {types[type_]}"
        if rowid_key and name == keys[0]:
            part += f" {dialect.serial_key}"
        elif not_null or name in keys:
            part += " NOT NULL"  # SQLite would let a non-integer key be NULL
        if unique:
            part += " UNIQUE"
        parts.append(part)
    if keys and not rowid_key:
        parts.append(f"PRIMARY KEY ({', '.join(quote(k) for k in keys)})")
        if dialect.hidden_row_id:
            parts.append(dialect.hidden_row_id)
    return f"CREATE TABLE {dialect.prefix}{quote(table_name)} ({', '.join(parts)})"


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


def bind(dialect: Dialect, column: Column, value: Any) -> Any:
    """An encoded value as the engine takes it: PostgreSQL's booleans are not 0/1."""
    if dialect.native_booleans and column.type == "BOOLEAN" and value is not None:
        return bool(value)
    return value


def decode(column_type: str | None, value: Any) -> Any:
    """A stored value as JSON for the agent: the inverse of `encode`, lenient with
    values another path stored (JSON that does not parse comes back as text)."""
    if isinstance(value, Decimal):
        # PostgreSQL's numeric: a whole number within 64 bits as an integer, as SQLite's
        # NUMERIC affinity stores it, anything else as a float.
        if value == value.to_integral_value() and INT64[0] <= value <= INT64[1]:
            return int(value)
        return float(value)
    if isinstance(value, memoryview):
        value = bytes(value)
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


def make_table(
    conn: Conn,
    dialect: Dialect,
    table_name: str,
    columns: dict[str, str],
    primary_key: str | list[str] | None,
) -> Callable[[], Table]:
    """Create a user table inside a unit of work; what it returns reads the new table's
    columns, which on PostgreSQL go with COMMIT (PgUnit: one trip for the rest of the
    unit). Raises InvalidInput, Conflict."""
    sql = create_table_sql(table_name, columns, primary_key, dialect)
    if conn.execute(dialect.find_table, (table_name,)).fetchall():
        raise Conflict(
            f"table {table_name} already exists; describe_table shows its columns, "
            "or pick another name.",
            argument="table_name",
        )
    conn.execute(sql)
    # Stored as given: the name is quoted, and no name differing only in case exists.
    info = conn.execute(dialect.table_info, (table_name,))
    return lambda: _table(dialect, table_name, info.fetchall())


def describe_rows(table: Table, unique_rows: list[Row]) -> dict[str, Any]:
    """describe_table's answer from the table and its single-column UNIQUE constraints."""
    unique = {str(r["name"]) for r in unique_rows}
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
