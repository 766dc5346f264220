"""Input and output models of the records toolset (see models.py for the conventions)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from shared_context_server.blackboard.limits import DEFAULT_PAGE_LIMIT
from shared_context_server.blackboard.records.rows import MAX_QUERY_LIMIT
from shared_context_server.server.models import Input, Json
from shared_context_server.server.outputs import Output

Filters = Field(None, description="{col: value} or {col: {op: value}}")


class CreateTable(Input):
    table_name: str
    columns: dict[str, str] = Field(description="{name: type}")
    primary_key: str | list[str] | None = None


class TableName(Input):
    table_name: str


class InsertRecord(Input):
    table_name: str
    data: Json


class QueryRecords(Input):
    table_name: str
    filters: Json | None = Filters
    limit: int = Field(DEFAULT_PAGE_LIMIT, ge=1, le=MAX_QUERY_LIMIT)
    offset: int = Field(0, ge=0)
    order_by: str | None = Field(None, description="col or -col")


class UpdateRecord(Input):
    table_name: str
    filters: Json | None = Filters
    data: Json
    all_rows: bool = False


class DeleteRecord(Input):
    table_name: str
    filters: Json | None = Filters
    all_rows: bool = False


class RawQuery(Input):
    query: str
    params: list[Any] | None = None


class Column(Output):
    name: str
    type: str
    not_null: bool
    primary_key: bool
    unique: bool


class TableDescription(Output):
    table_name: str
    columns: list[Column]


class InsertedRecord(Output):
    id: int
    record: Json


class RecordPage(Output):
    records: list[Json]
    has_more: bool


class RowCount(Output):
    count: int


class TableSummary(Output):
    table_name: str
    row_count: int


class TableList(Output):
    tables: list[TableSummary]


class RawResult(Output):
    columns: list[str]
    rows: list[list[Any]]
    row_count: int
    changes: int
    truncated: bool
