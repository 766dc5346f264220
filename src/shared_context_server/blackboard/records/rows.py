"""Tables and rows of the shared tables: create, list, describe, insert, query, update, delete.

One implementation for both engines (each engine's `records.py` holds its dialect); the
filters and assignments these tools turn into SQL are in filters.py, raw queries in
raw_query.py. Each write is one short transaction through the Store, so a conditional
update (`claimed_by IS NULL`) claims a row for exactly one of many processes. A table's
columns are read before its rows are touched; tables cannot be altered once made (raw
queries cannot run DDL), so that read cannot go stale.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from shared_context_server.blackboard.identity import Agent
from shared_context_server.blackboard.limits import DEFAULT_LIMITS, Limits
from shared_context_server.blackboard.records.filters import (
    assignments,
    require_filters,
    where_clause,
)
from shared_context_server.blackboard.records.location import RecordsStore
from shared_context_server.blackboard.records.schema import (
    IDENTIFIER,
    INT64,
    Column,
    Table,
    check_identifier,
    decode,
    describe_rows,
    load_table,
    make_table,
    quote,
)
from shared_context_server.errors import BlackboardError, InvalidInput
from shared_context_server.storage.seam import Conn
from shared_context_server.storage.seam.records import is_postgres_error, sql_error

MAX_QUERY_LIMIT = 500
# list_tables counts this many tables per statement (SQLite's compound SELECT holds 500).
COUNTED_PER_READ = 200
T = TypeVar("T")


async def _transact(store: RecordsStore, action: str, unit: Callable[[Conn], Callable[[], T]]) -> T:
    """`unit` in one transaction, what it returns read after COMMIT: on PostgreSQL a unit
    that looks at no result before it ends goes in one round trip (PgUnit), and holds the
    rows it locks over no trip to this process. An engine error is the agent's error."""
    with _agent_errors(store, action):
        return await store.db.transact_then_read(unit)


async def _write(
    store: RecordsStore,
    agent: Agent,
    action: str,
    table: str,
    work: Callable[[Conn], Callable[[], T]],
    count: int,
) -> T:
    """Run `work` (which returns how to read its result) in one transaction that changes
    `count` rows, with its audit entry inside it where the engine allows (PostgreSQL) or
    after its commit (SQLite)."""
    hook = store.log_inside

    def unit(conn: Conn) -> Callable[[], T]:
        read = work(conn)
        if hook is not None:
            hook(conn, agent, action, table, count)
        return read

    result = await _transact(store, action, unit)
    await store.record_write(agent, action, table, count)
    return result


async def _load(store: RecordsStore, name: str) -> Table:
    """A table's columns, read once per process: tables cannot be altered once made (no
    tool drops or alters one, raw queries cannot run DDL), so they cannot go stale; an
    engine error forgets them all, in case someone outside the tools did."""
    check_identifier(name, "table_name")
    table = store.tables.get(name.lower())
    if table is None:
        table = await load_table(store.db, store.dialect, name)
        store.tables[name.lower()] = table
    return table


async def _read(store: RecordsStore, action: str, sql: str, params: Sequence[Any]) -> list[Any]:
    with _agent_errors(store, action):
        return await store.db.read(sql, params)


@contextmanager
def _agent_errors(store: RecordsStore, action: str) -> Iterator[None]:
    """An engine's error inside is the agent's (sql_error); the columns kept per process
    are forgotten, in case someone outside the tools changed a table."""
    try:
        yield
    except BlackboardError:
        raise
    except Exception as error:
        if isinstance(error, sqlite3.Error) or is_postgres_error(error):
            store.tables.clear()
            raise sql_error(error, action) from None
        raise


async def create_table(
    store: RecordsStore,
    agent: Agent,
    table_name: str,
    columns: dict[str, str],
    primary_key: str | list[str] | None = None,
) -> dict[str, Any]:
    """A new shared table. Raises InvalidInput, Conflict (exists), PermissionDenied."""
    agent.require("write", "create_table")
    dialect = store.dialect

    def work(conn: Conn) -> Callable[[], dict[str, Any]]:
        if dialect.serialize_ddl:
            conn.execute(dialect.serialize_ddl)  # "Tasks" and "tasks" are one name
        read_table = make_table(conn, dialect, table_name, columns, primary_key)
        if dialect.after_create is not None:
            dialect.after_create(conn, dialect.prefix + quote(table_name))
        unique = conn.execute(dialect.unique_columns, (table_name,))
        return lambda: describe_rows(read_table(), unique.fetchall())

    return await _write(store, agent, "create_table", table_name, work, 0)


async def list_tables(store: RecordsStore, agent: Agent) -> dict[str, Any]:
    """Every shared table with its row count: the names in one read, the counts in one
    more (a UNION ALL of counts, COUNTED_PER_READ tables at a time), not a read per table:
    on PostgreSQL each read is a round trip."""
    agent.require("read", "list_tables")
    found = await _read(store, "list_tables", store.dialect.list_tables, ())
    # A table made by another tool with an odd name is skipped.
    names = [str(row["name"]) for row in found if IDENTIFIER.match(str(row["name"]))]
    counts: dict[int, int] = {}
    for start in range(0, len(names), COUNTED_PER_READ):
        counts.update(await _count_rows(store, names[start : start + COUNTED_PER_READ], start))
    return {
        "tables": [
            {"table_name": name, "row_count": counts.get(i, 0)} for i, name in enumerate(names)
        ]
    }


async def _count_rows(store: RecordsStore, names: list[str], first: int) -> dict[int, int]:
    """Row counts of `names`, by position (from `first`), in one statement."""
    parts = [
        f"SELECT {first + i} AS i, count(*) AS n FROM {store.dialect.prefix}{quote(name)}"  # noqa: S608
        for i, name in enumerate(names)
    ]
    rows = await _read(store, "list_tables", " UNION ALL ".join(parts), ())
    return {int(row["i"]): int(row["n"]) for row in rows}


async def describe_table(store: RecordsStore, agent: Agent, table_name: str) -> dict[str, Any]:
    """Columns of a table. Raises InvalidInput, NotFound."""
    agent.require("read", "describe_table")
    table = await _load(store, table_name)
    unique = await store.db.read(store.dialect.unique_columns, (table.name,))
    return describe_rows(table, unique)


async def insert_record(
    store: RecordsStore,
    agent: Agent,
    table_name: str,
    data: dict[str, Any],
    limits: Limits = DEFAULT_LIMITS,
) -> dict[str, Any]:
    """Add one row; returns its row id and the row as stored.

    Raises NotFound (table, column), InvalidInput (type), Conflict (constraint).
    """
    agent.require("write", "insert_record")
    table = await _load(store, table_name)
    columns, values = assignments(table, data, "data", limits)
    returning = f" RETURNING {table.row_id}, {table.select_list}"
    if columns:
        names = ", ".join(quote(c.name) for c in columns)
        marks = ", ".join(["?"] * len(columns))
        sql = f"INSERT INTO {table.qualified} ({names}) VALUES ({marks}){returning}"  # noqa: S608
    else:
        sql = f"INSERT INTO {table.qualified} DEFAULT VALUES{returning}"
    given_key = _given_serial_key(table, columns, values)

    def work(conn: Conn) -> Callable[[], Any]:
        inserted = conn.execute(sql, values)
        if given_key is not None and store.dialect.bump_sequence:
            name, value = given_key
            conn.execute(store.dialect.bump_sequence, (value, table.qualified, name, value))
        return inserted.fetchone

    row = await _write(store, agent, "insert_record", table.name, work, 1)
    assert row is not None  # RETURNING of a successful insert
    return {"id": row[0], "record": _record(table, tuple(row)[1:])}


def _given_serial_key(
    table: Table, columns: list[Column], values: list[Any]
) -> tuple[str, int] | None:
    """The INTEGER key an insert gives itself, where its sequence must pass it."""
    if not table.dialect.bump_sequence:
        return None
    for column, value in zip(columns, values, strict=True):
        if quote(column.name) == table.row_id and isinstance(value, int):
            return column.name, value
    return None


async def query_records(
    store: RecordsStore,
    agent: Agent,
    table_name: str,
    filters: dict[str, Any] | None = None,
    limit: int = 50,
    offset: int = 0,
    order_by: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> dict[str, Any]:
    """A page of rows matching every filter, in row order unless `order_by`.

    A page also ends early once it holds `limits.max_page_chars` of JSON. Raises
    InvalidInput, NotFound.
    """
    agent.require("read", "query_records")
    if not 1 <= limit <= MAX_QUERY_LIMIT:
        raise InvalidInput(f"limit must be 1-{MAX_QUERY_LIMIT}; got {limit}.", argument="limit")
    if not 0 <= offset <= INT64[1]:
        raise InvalidInput(
            f"offset must be 0 to {INT64[1]:,} (a 64-bit integer); got {offset}.",
            argument="offset",
        )
    table = await _load(store, table_name)
    where, params = where_clause(table, filters, limits)
    order = f" ORDER BY {table.row_id}"  # a stable order: offset pages neither skip nor repeat
    if order_by:
        descending = order_by.startswith("-")
        column = table.column(order_by.removeprefix("-"), "order_by")
        order = f" ORDER BY {quote(column.name)}{' DESC' if descending else ''}, {table.row_id}"
    sql = f"SELECT {table.select_list} FROM {table.qualified}{where}{order} LIMIT ? OFFSET ?"  # noqa: S608
    rows = await _read(store, "query_records", sql, (*params, limit + 1, offset))
    has_more = len(rows) > limit
    records: list[dict[str, Any]] = []
    chars = 0
    for row in rows[:limit]:
        record = _record(table, tuple(row))
        chars += len(json.dumps(record, ensure_ascii=False, default=str))
        if records and chars > limits.max_page_chars:
            has_more = True
            break
        records.append(record)
    return {"records": records, "has_more": has_more}


async def update_record(
    store: RecordsStore,
    agent: Agent,
    table_name: str,
    filters: dict[str, Any] | None,
    data: dict[str, Any],
    all_rows: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> dict[str, Any]:
    """Set `data` on every row matching `filters`; returns how many changed.

    Raises InvalidInput (empty filters without all_rows), NotFound, Conflict.
    """
    agent.require("write", "update_record")
    table = await _load(store, table_name)
    where, params = where_clause(table, require_filters(filters, all_rows, "update_record"), limits)
    columns, values = assignments(table, data, "data", limits)
    if not columns:
        raise InvalidInput("data is empty; give {column: new value}.", argument="data")
    sets = ", ".join(f"{quote(c.name)} = ?" for c in columns)
    sql = f"UPDATE {table.qualified} SET {sets}{where}"  # noqa: S608
    return await _change_rows(store, agent, "update_record", table.name, sql, (*values, *params))


async def delete_record(
    store: RecordsStore,
    agent: Agent,
    table_name: str,
    filters: dict[str, Any] | None,
    all_rows: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> dict[str, Any]:
    """Delete every row matching `filters`; returns how many went.

    Raises InvalidInput (empty filters without all_rows), NotFound, Conflict.
    """
    agent.require("write", "delete_record")
    table = await _load(store, table_name)
    where, params = where_clause(table, require_filters(filters, all_rows, "delete_record"), limits)
    sql = f"DELETE FROM {table.qualified}{where}"  # noqa: S608
    return await _change_rows(store, agent, "delete_record", table.name, sql, params)


async def _change_rows(
    store: RecordsStore, agent: Agent, action: str, table: str, sql: str, params: Sequence[Any]
) -> dict[str, Any]:
    """One UPDATE or DELETE in its own write transaction; `count` is the rows it changed.
    Where the audit entry can ride in the same statement (`log_counted`, PostgreSQL), the
    transaction is one round trip; else the count is looked at before COMMIT."""
    counted = store.log_counted
    if counted is not None:

        def logged(conn: Conn) -> Callable[[], int]:
            # Made inside the transaction: the entry's time, as every entry's (audit.entry).
            with_entry, all_params = counted(sql, params, agent, action, table)
            cursor = conn.execute(with_entry, all_params)
            return lambda: int(cursor.fetchone()[0])

        return {"count": await _transact(store, action, logged)}
    hook = store.log_inside

    def work(conn: Conn) -> Callable[[], int]:
        count = conn.execute(sql, params).rowcount
        if hook is not None:
            hook(conn, agent, action, table, count)
        return lambda: count

    count = await _transact(store, action, work)
    await store.record_write(agent, action, table, count)
    return {"count": count}


def _record(table: Table, values: tuple[Any, ...]) -> dict[str, Any]:
    return {c.name: decode(c.type, v) for c, v in zip(table.columns, values, strict=True)}
