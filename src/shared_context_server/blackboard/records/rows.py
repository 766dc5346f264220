"""Tables and rows of the records file: create, list, describe, insert, query, update, delete.

Each write is one short BEGIN IMMEDIATE transaction on the records connection, so a
conditional update (`claimed_by IS NULL`) claims a row for exactly one of many processes.
A table's columns are read before its rows are touched; tables cannot be altered once
made (raw queries cannot run DDL), so that read cannot go stale.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from shared_context_server.blackboard.identity import Agent
from shared_context_server.blackboard.limits import DEFAULT_LIMITS, Limits, check_depth
from shared_context_server.blackboard.records.schema import (
    IDENTIFIER,
    INT64,
    LIST_TABLES,
    Column,
    Table,
    decode,
    describe,
    encode,
    load_table,
    make_table,
    quote,
    sql_error,
)
from shared_context_server.blackboard.records.store import RecordsStore
from shared_context_server.errors import BlackboardError, InvalidInput

OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "like", "in", "is_null")
# SQLite matches a LIKE pattern in one step, in time that grows with the pattern's length
# times the value's: a long pattern over long values would hold the connection for minutes.
MAX_LIKE_PATTERN = 100
# IS and IS NOT instead of = and !=: null-safe, so {"claimed_by": null} finds unclaimed
# rows and {"owner": {"!=": "bob"}} includes rows with no owner.
_COMPARE = {"=": "IS", "!=": "IS NOT", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
MAX_QUERY_LIMIT = 500
MAX_IN_VALUES = 500


async def create_table(
    store: RecordsStore,
    agent: Agent,
    table_name: str,
    columns: dict[str, str],
    primary_key: str | list[str] | None = None,
) -> dict[str, Any]:
    """A new shared table. Raises InvalidInput, Conflict (exists), PermissionDenied."""
    agent.require("write", "create_table")
    try:
        async with store.db.write() as tx:
            table = await make_table(tx, table_name, columns, primary_key)
            described = await describe(tx, table)
    except sqlite3.Error as error:
        raise sql_error(error, "create_table") from None
    await store.record_write(agent, "create_table", table.name, 0)
    return described


async def list_tables(store: RecordsStore, agent: Agent) -> dict[str, Any]:
    agent.require("read", "list_tables")
    tables = []
    for row in await store.db.fetchall(LIST_TABLES):
        name = str(row["name"])
        if IDENTIFIER.match(name):  # a table made by another tool with an odd name is skipped
            count = await store.db.fetchone(f"SELECT count(*) FROM {quote(name)}")  # noqa: S608
            tables.append({"table_name": name, "row_count": int(count[0]) if count else 0})
    return {"tables": tables}


async def describe_table(store: RecordsStore, agent: Agent, table_name: str) -> dict[str, Any]:
    """Columns of a table. Raises InvalidInput, NotFound."""
    agent.require("read", "describe_table")
    return await describe(store.db, await load_table(store.db, table_name))


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
    table = await load_table(store.db, table_name)
    columns, values = _assignments(table, data, "data", limits)
    if columns:
        names = ", ".join(quote(c.name) for c in columns)
        marks = ", ".join(["?"] * len(columns))
        sql = f"INSERT INTO {quote(table.name)} ({names}) VALUES ({marks}) RETURNING rowid, *"  # noqa: S608
    else:
        sql = f"INSERT INTO {quote(table.name)} DEFAULT VALUES RETURNING rowid, *"  # noqa: S608
    try:
        async with store.db.write() as tx:
            row = await tx.fetchone(sql, values)
    except sqlite3.Error as error:
        raise sql_error(error, "insert_record") from None
    assert row is not None  # RETURNING of a successful insert
    await store.record_write(agent, "insert_record", table.name, 1)
    return {"id": row[0], "record": _record(table, tuple(row)[1:])}


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
    table = await load_table(store.db, table_name)
    where, params = _where(table, filters, limits)
    order = " ORDER BY rowid"  # a stable order, so offset pages neither skip nor repeat
    if order_by:
        descending = order_by.startswith("-")
        column = table.column(order_by.removeprefix("-"), "order_by")
        order = f" ORDER BY {quote(column.name)}{' DESC' if descending else ''}, rowid"
    sql = f"SELECT * FROM {quote(table.name)}{where}{order} LIMIT ? OFFSET ?"  # noqa: S608
    try:
        rows = await store.db.fetchall(sql, (*params, limit + 1, offset))
    except sqlite3.Error as error:
        raise sql_error(error, "query_records") from None
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
    table = await load_table(store.db, table_name)
    where, params = _where(table, _require_filters(filters, all_rows, "update_record"), limits)
    columns, values = _assignments(table, data, "data", limits)
    if not columns:
        raise InvalidInput("data is empty; give {column: new value}.", argument="data")
    sets = ", ".join(f"{quote(c.name)} = ?" for c in columns)
    sql = f"UPDATE {quote(table.name)} SET {sets}{where}"  # noqa: S608
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
    table = await load_table(store.db, table_name)
    where, params = _where(table, _require_filters(filters, all_rows, "delete_record"), limits)
    sql = f"DELETE FROM {quote(table.name)}{where}"  # noqa: S608
    return await _change_rows(store, agent, "delete_record", table.name, sql, params)


async def _change_rows(
    store: RecordsStore, agent: Agent, action: str, table: str, sql: str, params: Sequence[Any]
) -> dict[str, Any]:
    """One UPDATE or DELETE in its own write transaction; `count` is the rows it changed."""
    try:
        async with store.db.write() as tx:
            count = await tx.execute(sql, params)
    except sqlite3.Error as error:
        raise sql_error(error, action) from None
    await store.record_write(agent, action, table, count)
    return {"count": count}


def _record(table: Table, values: tuple[Any, ...]) -> dict[str, Any]:
    return {c.name: decode(c.type, v) for c, v in zip(table.columns, values, strict=True)}


def _assignments(
    table: Table, data: dict[str, Any], argument: str, limits: Limits
) -> tuple[list[Column], list[Any]]:
    if not isinstance(data, dict):
        raise InvalidInput(f"{argument} must be an object {{column: value}}.", argument=argument)
    check_depth(data, argument)
    columns, values = [], []
    for name, value in data.items():
        column = table.column(name, argument)
        if column in columns:
            raise InvalidInput(f"{argument} sets column {column.name} twice.", argument=argument)
        columns.append(column)
        values.append(encode(column, value, argument, limits.max_content_chars))
    return columns, values


def _require_filters(
    filters: dict[str, Any] | None, all_rows: bool, action: str
) -> dict[str, Any] | None:
    if filters and all_rows:
        raise InvalidInput(
            f"{action}: give filters or all_rows=true, not both.", argument="all_rows"
        )
    if not filters and not all_rows:
        raise InvalidInput(
            f'{action} needs filters (e.g. {{"id": 3}}); to change every row, pass all_rows=true.',
            argument="filters",
        )
    return filters


def _where(table: Table, filters: dict[str, Any] | None, limits: Limits) -> tuple[str, list[Any]]:
    """` WHERE ...` from {column: value} or {column: {op: value}}, AND-ed; values bound."""
    if not filters:
        return "", []
    if not isinstance(filters, dict):
        raise InvalidInput("filters must be an object {column: value}.", argument="filters")
    check_depth(filters, "filters")
    clauses: list[str] = []
    params: list[Any] = []
    for name, condition in filters.items():
        column = table.column(name, "filters")
        conditions = condition if isinstance(condition, dict) else {"=": condition}
        if not conditions:
            raise _bad_filter(column, "is an empty object; give {op: value}")
        for op, value in conditions.items():
            clause, values = _condition(column, op, value, limits)
            clauses.append(clause)
            params.extend(values)
    return " WHERE " + " AND ".join(clauses), params


def _condition(column: Column, op: str, value: Any, limits: Limits) -> tuple[str, list[Any]]:
    name = quote(column.name)
    if op == "is_null":
        if not isinstance(value, bool):
            raise _bad_filter(column, "is_null takes true or false")
        return f"{name} IS {'' if value else 'NOT '}NULL", []
    if op == "in":
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_IN_VALUES:
            raise _bad_filter(column, f"in takes a list of 1-{MAX_IN_VALUES} values")
        encoded = [encode(column, v, "filters", limits.max_content_chars) for v in value]
        return f"{name} IN ({', '.join(['?'] * len(value))})", encoded
    if op == "like":
        if not isinstance(value, str):
            raise _bad_filter(column, "like takes a text pattern (% any run, _ one character)")
        if len(value) > MAX_LIKE_PATTERN:
            raise _bad_filter(
                column, f"like takes a pattern of at most {MAX_LIKE_PATTERN} characters"
            )
        return f"{name} LIKE ?", [value]
    if op not in _COMPARE:
        raise _bad_filter(column, f"has unknown operator {op!r}; use one of {', '.join(OPERATORS)}")
    if value is None and op not in ("=", "!="):
        raise _bad_filter(column, f"{op} cannot compare with null; use is_null")
    return f"{name} {_COMPARE[op]} ?", [encode(column, value, "filters", limits.max_content_chars)]


def _bad_filter(column: Column, problem: str) -> BlackboardError:
    return InvalidInput(f"filters.{column.name} {problem}.", argument="filters")
