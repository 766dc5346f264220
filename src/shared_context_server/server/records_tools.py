"""The records toolset's rows of the tool registry: shared tables for agents (opt-in)."""

from __future__ import annotations

from typing import Any

from shared_context_server.blackboard.identity import Agent
from shared_context_server.blackboard.records import raw_query, rows
from shared_context_server.blackboard.records.location import RecordsStore
from shared_context_server.server import records_models as r
from shared_context_server.server import render
from shared_context_server.server.models import NoArguments
from shared_context_server.server.registry import APPEND, DELETE, READ, UPDATE, ToolSpec
from shared_context_server.server.state import AppState

# Every hint of a raw statement is MCP's default (it may write, destroy, and repeat
# differently), so like the core registry's rows it writes none.
RAW = None


def _store(state: AppState) -> RecordsStore:
    if state.records is None:  # the registry offers these tools only when it is open
        raise RuntimeError("the records toolset is listed but its file is not open")
    return state.records


async def create_table(state: AppState, agent: Agent, a: r.CreateTable) -> dict[str, Any]:
    return await rows.create_table(
        _store(state),
        agent,
        table_name=a.table_name,
        columns=a.columns,
        primary_key=a.primary_key,
    )


async def insert_record(state: AppState, agent: Agent, a: r.InsertRecord) -> dict[str, Any]:
    return await rows.insert_record(
        _store(state), agent, table_name=a.table_name, data=a.data, limits=state.settings.limits
    )


async def query_records(state: AppState, agent: Agent, a: r.QueryRecords) -> dict[str, Any]:
    return await rows.query_records(
        _store(state),
        agent,
        table_name=a.table_name,
        filters=a.filters,
        limit=a.limit,
        offset=a.offset,
        order_by=a.order_by,
        limits=state.settings.limits,
    )


async def update_record(state: AppState, agent: Agent, a: r.UpdateRecord) -> dict[str, Any]:
    return await rows.update_record(
        _store(state),
        agent,
        table_name=a.table_name,
        filters=a.filters,
        data=a.data,
        all_rows=a.all_rows,
        limits=state.settings.limits,
    )


async def delete_record(state: AppState, agent: Agent, a: r.DeleteRecord) -> dict[str, Any]:
    return await rows.delete_record(
        _store(state),
        agent,
        table_name=a.table_name,
        filters=a.filters,
        all_rows=a.all_rows,
        limits=state.settings.limits,
    )


async def list_tables(state: AppState, agent: Agent, a: NoArguments) -> dict[str, Any]:
    return await rows.list_tables(_store(state), agent)


async def describe_table(state: AppState, agent: Agent, a: r.TableName) -> dict[str, Any]:
    return await rows.describe_table(_store(state), agent, table_name=a.table_name)


async def execute_raw_query(state: AppState, agent: Agent, a: r.RawQuery) -> dict[str, Any]:
    return await raw_query.execute_raw_query(
        _store(state), agent, query=a.query, params=a.params, limits=state.settings.limits
    )


# A tuple, not a list[ToolSpec[Any]]: each row keeps its own type, so mypy checks that its
# handler takes its input model.
_ROWS = (
    ToolSpec(
        name="create_table",
        description=(
            "Create a shared table. Types: TEXT INTEGER REAL NUMERIC BOOLEAN JSON DATETIME "
            "BLOB(base64), optionally + NOT NULL, UNIQUE. Adds an INTEGER id key unless "
            "primary_key is given."
        ),
        input_model=r.CreateTable,
        output_model=r.TableDescription,
        handler=create_table,
        render=render.records_table,
        annotations=APPEND,
    ),
    ToolSpec(
        name="insert_record",
        description="Add a row {column: value}; returns its id and the row.",
        input_model=r.InsertRecord,
        output_model=r.InsertedRecord,
        handler=insert_record,
        render=render.records_inserted,
        annotations=APPEND,
    ),
    ToolSpec(
        name="query_records",
        description=(
            "Rows matching all filters; ops = != < <= > >= like in is_null; null matches "
            "NULL. Page with offset while has_more."
        ),
        input_model=r.QueryRecords,
        output_model=r.RecordPage,
        handler=query_records,
        render=render.records_page,
        annotations=READ,
    ),
    ToolSpec(
        name="update_record",
        description=(
            "Set data on rows matching filters; returns count. Claim safely with a filter "
            "on the old value ({id: 3, owner: null}). No filters needs all_rows=true."
        ),
        input_model=r.UpdateRecord,
        output_model=r.RowCount,
        handler=update_record,
        render=render.records_updated,
        annotations=UPDATE,
    ),
    ToolSpec(
        name="delete_record",
        description="Delete rows matching filters; returns count. No filters needs all_rows=true.",
        input_model=r.DeleteRecord,
        output_model=r.RowCount,
        handler=delete_record,
        render=render.records_deleted,
        annotations=DELETE,
    ),
    ToolSpec(
        name="list_tables",
        description="Shared tables with their row counts.",
        input_model=NoArguments,
        output_model=r.TableList,
        handler=list_tables,
        render=render.records_tables,
        annotations=READ,
    ),
    ToolSpec(
        name="describe_table",
        description="A shared table's columns and types.",
        input_model=r.TableName,
        output_model=r.TableDescription,
        handler=describe_table,
        render=render.records_table,
        annotations=READ,
    ),
    ToolSpec(
        name="execute_raw_query",
        description=(
            "One SQL statement (the engine's: SQLite or PostgreSQL) over the shared tables, "
            "? params. Read-only unless the server allows raw writes; time and row limits."
        ),
        input_model=r.RawQuery,
        output_model=r.RawResult,
        handler=execute_raw_query,
        render=render.records_raw,
        annotations=RAW,
    ),
)
RECORDS_TOOLS: dict[str, ToolSpec[Any]] = {spec.name: spec for spec in _ROWS}
