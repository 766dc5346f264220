"""The records toolset's rows of the tool registry: shared tables for agents (opt-in)."""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types

from shared_context_server.blackboard.identity import Agent
from shared_context_server.blackboard.records import raw, rows
from shared_context_server.blackboard.records.store import RecordsStore
from shared_context_server.server import records_models as r
from shared_context_server.server.models import NoArguments
from shared_context_server.server.state import AppState
from shared_context_server.server.tools import APPEND, READ, UPDATE, ToolSpec

DELETE = types.ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True)
RAW = types.ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False)


def _store(state: AppState) -> RecordsStore:
    if state.records is None:  # the registry offers these tools only when it is open
        raise RuntimeError("the records toolset is listed but its file is not open")
    return state.records


async def create_table(state: AppState, agent: Agent, a: r.CreateTable) -> dict[str, Any]:
    return await rows.create_table(_store(state), agent, a.table_name, a.columns, a.primary_key)


async def insert_record(state: AppState, agent: Agent, a: r.InsertRecord) -> dict[str, Any]:
    return await rows.insert_record(
        _store(state), agent, a.table_name, a.data, state.settings.limits
    )


async def query_records(state: AppState, agent: Agent, a: r.QueryRecords) -> dict[str, Any]:
    return await rows.query_records(
        _store(state),
        agent,
        a.table_name,
        a.filters,
        a.limit,
        a.offset,
        a.order_by,
        state.settings.limits,
    )


async def update_record(state: AppState, agent: Agent, a: r.UpdateRecord) -> dict[str, Any]:
    return await rows.update_record(
        _store(state), agent, a.table_name, a.filters, a.data, a.all_rows, state.settings.limits
    )


async def delete_record(state: AppState, agent: Agent, a: r.DeleteRecord) -> dict[str, Any]:
    return await rows.delete_record(
        _store(state), agent, a.table_name, a.filters, a.all_rows, state.settings.limits
    )


async def list_tables(state: AppState, agent: Agent, a: NoArguments) -> dict[str, Any]:
    return await rows.list_tables(_store(state), agent)


async def describe_table(state: AppState, agent: Agent, a: r.TableName) -> dict[str, Any]:
    return await rows.describe_table(_store(state), agent, a.table_name)


async def execute_raw_query(state: AppState, agent: Agent, a: r.RawQuery) -> dict[str, Any]:
    return await raw.execute_raw_query(
        _store(state), agent, a.query, a.params, state.settings.limits
    )


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def render_table(data: dict[str, Any]) -> str:
    columns = []
    for c in data["columns"]:
        flags = [k.replace("_", " ") for k in ("primary_key", "not_null", "unique") if c.get(k)]
        columns.append(f"{c['name']} {c['type']}" + (f" ({', '.join(flags)})" if flags else ""))
    return f"{data['table_name']}: " + ", ".join(columns)


def render_inserted(data: dict[str, Any]) -> str:
    return f"Inserted row {data['id']}: {_json(data['record'])}"


def render_page(data: dict[str, Any]) -> str:
    records = data["records"]
    head = f"{len(records)} record{'s' if len(records) != 1 else ''}"
    if data["has_more"]:
        head += "; more match (raise offset by this count for the next page)"
    return "\n".join([head, *(_json(record) for record in records)])


def render_updated(data: dict[str, Any]) -> str:
    return f"Updated {data['count']} row{'s' if data['count'] != 1 else ''}."


def render_deleted(data: dict[str, Any]) -> str:
    return f"Deleted {data['count']} row{'s' if data['count'] != 1 else ''}."


def render_tables(data: dict[str, Any]) -> str:
    if not data["tables"]:
        return "No shared tables yet; create_table makes one."
    return "\n".join(
        f"{t['table_name']} ({t['row_count']} row{'' if t['row_count'] == 1 else 's'})"
        for t in data["tables"]
    )


def render_raw(data: dict[str, Any]) -> str:
    head = f"{data['row_count']} row{'s' if data['row_count'] != 1 else ''}"
    if data["truncated"]:
        head += " (truncated: add a LIMIT or narrow the query)"
    if data["changes"]:
        head += f"; {data['changes']} changed"
    lines = [head]
    if data["columns"]:
        lines.append("columns: " + ", ".join(data["columns"]))
    lines += [_json(row) for row in data["rows"]]
    return "\n".join(lines)


RECORDS_TOOLS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in [
        ToolSpec(
            "create_table",
            "Create a shared table. Types: TEXT INTEGER REAL NUMERIC BOOLEAN JSON DATETIME "
            "BLOB(base64), optionally + NOT NULL, UNIQUE. Adds an INTEGER id key unless "
            "primary_key is given.",
            r.CreateTable,
            r.TableDescription,
            create_table,
            render_table,
            APPEND,
        ),
        ToolSpec(
            "insert_record",
            "Add a row {column: value}; returns its id and the row.",
            r.InsertRecord,
            r.InsertedRecord,
            insert_record,
            render_inserted,
            APPEND,
        ),
        ToolSpec(
            "query_records",
            "Rows matching all filters; ops = != < <= > >= like in is_null; null matches "
            "NULL. Page with offset while has_more.",
            r.QueryRecords,
            r.RecordPage,
            query_records,
            render_page,
            READ,
        ),
        ToolSpec(
            "update_record",
            "Set data on rows matching filters; returns count. Claim safely with a filter "
            "on the old value ({id: 3, owner: null}). No filters needs all_rows=true.",
            r.UpdateRecord,
            r.RowCount,
            update_record,
            render_updated,
            UPDATE,
        ),
        ToolSpec(
            "delete_record",
            "Delete rows matching filters; returns count. No filters needs all_rows=true.",
            r.DeleteRecord,
            r.RowCount,
            delete_record,
            render_deleted,
            DELETE,
        ),
        ToolSpec(
            "list_tables",
            "Shared tables with their row counts.",
            NoArguments,
            r.TableList,
            list_tables,
            render_tables,
            READ,
        ),
        ToolSpec(
            "describe_table",
            "A shared table's columns and types.",
            r.TableName,
            r.TableDescription,
            describe_table,
            render_table,
            READ,
        ),
        ToolSpec(
            "execute_raw_query",
            "One SQL statement (the engine's: SQLite or PostgreSQL) over the shared tables, "
            "? params. Read-only unless the server allows raw writes; time and row limits.",
            r.RawQuery,
            r.RawResult,
            execute_raw_query,
            render_raw,
            RAW,
        ),
    ]
}
