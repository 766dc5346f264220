"""The records toolset through real MCP client sessions, in both protocol eras, in-process."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from shared_context_server.config import Settings
from shared_context_server.server.records_tools import RECORDS_TOOLS
from shared_context_server.server.toolsets import tool_list_size_for
from shared_context_server.storage.seam import Target
from tests.support import ENGINES, ERAS, connect, fails, ok

pytestmark = pytest.mark.parametrize("era", ERAS)

CORE_AND_RECORDS = frozenset({"core", "records"})


@pytest.fixture(params=ENGINES)
def target(request: pytest.FixtureRequest, make_target: Callable[[str], Target]) -> Target:
    """The blackboard of one test, on each engine in turn."""
    return make_target(str(request.param))


def settings(target: Target, toolsets: frozenset[str] = CORE_AND_RECORDS, **more: Any) -> Settings:
    return Settings(
        db_path=target,
        agent_id="alice",
        agent_id_source="flag",
        toolsets=toolsets,
        **more,
    )


async def test_records_tools_are_neither_listed_nor_callable_by_default(
    tmp_path: Path, era: str
) -> None:
    async with connect(era, settings(tmp_path / "bb.db", frozenset({"core"}))) as s:
        names = {t.name for t in (await s.list_tools()).tools}
        assert names and not names & set(RECORDS_TOOLS)
        with pytest.raises(MCPError) as info:
            await s.call_tool("list_tables", {})
    assert "list_tables" in str(info.value)
    assert not (tmp_path / "bb-records.db").exists()


async def test_the_records_toolset_lists_strict_compact_tools(tmp_path: Path, era: str) -> None:
    async with connect(era, settings(tmp_path / "bb.db", frozenset({"records"}))) as s:
        tools = (await s.list_tools()).tools
    assert {t.name for t in tools} == set(RECORDS_TOOLS)
    for tool in tools:
        # Unknown properties are refused in code (INVALID_INPUT), not spelled out per tool.
        assert "additionalProperties" not in tool.input_schema, tool.name
        assert tool.output_schema and tool.output_schema["type"] == "object", tool.name
        assert "title" not in json.dumps(tool.input_schema), tool.name
    hints = {t.name: t.annotations or types.ToolAnnotations() for t in tools}
    reads = {name for name, h in hints.items() if h.read_only_hint}
    assert reads == {"query_records", "list_tables", "describe_table"}
    # MCP's defaults: a tool without destructiveHint may destroy, unless it only reads.
    destructive = {
        name
        for name, h in hints.items()
        if not h.read_only_hint and h.destructive_hint is not False
    }
    assert destructive == {"delete_record", "execute_raw_query"}
    assert tool_list_size_for(frozenset({"records"})) < 5_500


async def test_a_task_board_through_every_records_tool(target: Target, era: str) -> None:
    async with connect(era, settings(target)) as s:
        made = await ok(
            s,
            "create_table",
            table_name="tasks",
            columns={"title": "TEXT NOT NULL", "owner": "TEXT"},
        )
        assert [c["name"] for c in made["columns"]] == ["id", "title", "owner"]
        first = await ok(s, "insert_record", table_name="tasks", data={"title": "write docs"})
        assert first == {"id": 1, "record": {"id": 1, "title": "write docs", "owner": None}}
        await ok(s, "insert_record", table_name="tasks", data={"title": "fix bug"})
        claim = {"table_name": "tasks", "filters": {"id": 1, "owner": None}}
        assert (await ok(s, "update_record", **claim, data={"owner": "alice"}))["count"] == 1
        assert (await ok(s, "update_record", **claim, data={"owner": "bob"}))["count"] == 0
        page = await ok(
            s, "query_records", table_name="tasks", filters={"owner": None}, order_by="-id"
        )
        assert page == {
            "records": [{"id": 2, "title": "fix bug", "owner": None}],
            "has_more": False,
        }
        listed = await ok(s, "list_tables")
        assert listed["tables"] == [{"table_name": "tasks", "row_count": 2}]
        described = await ok(s, "describe_table", table_name="tasks")
        assert described["columns"][1]["not_null"] is True
        raw = await ok(
            s, "execute_raw_query", query="SELECT owner, count(*) FROM tasks GROUP BY owner"
        )
        assert raw["rows"] == [[None, 1], ["alice", 1]]
        result = await s.call_tool("query_records", {"table_name": "tasks", "limit": 1})
        assert "more match" in result.content[0].text
        gone = await ok(s, "delete_record", table_name="tasks", filters={"owner": "alice"})
        assert gone["count"] == 1


@pytest.mark.parametrize(
    ("tool", "arguments", "code"),
    [
        ("create_table", {"table_name": "t", "columns": {"a": "VARCHAR"}}, "INVALID_INPUT"),
        ("create_table", {"table_name": "tasks", "columns": {"a": "TEXT"}}, "CONFLICT"),
        ("insert_record", {"table_name": "nope", "data": {}}, "NOT_FOUND"),
        ("insert_record", {"table_name": "tasks", "data": {"nope": 1}}, "NOT_FOUND"),
        ("insert_record", {"table_name": "tasks", "data": {"title": 3}}, "INVALID_INPUT"),
        ("insert_record", {"table_name": "tasks", "data": {}}, "CONFLICT"),
        ("query_records", {"table_name": "tasks", "limit": 501}, "INVALID_INPUT"),
        ("query_records", {"table_name": "tasks", "filters": {"id": {"~": 1}}}, "INVALID_INPUT"),
        ("update_record", {"table_name": "tasks", "data": {"title": "x"}}, "INVALID_INPUT"),
        ("delete_record", {"table_name": "tasks", "filters": {}}, "INVALID_INPUT"),
        ("execute_raw_query", {"query": "DELETE FROM tasks"}, "INVALID_INPUT"),
        ("execute_raw_query", {"query": "SELECT * FROM messages"}, "NOT_FOUND"),
        ("execute_raw_query", {"query": "SELECT 1", "params": [{"a": 1}]}, "INVALID_INPUT"),
    ],
)
async def test_records_mistakes_come_back_as_coded_errors(
    target: Target, era: str, tool: str, arguments: dict[str, Any], code: str
) -> None:
    async with connect(era, settings(target)) as s:
        await ok(s, "create_table", table_name="tasks", columns={"title": "TEXT NOT NULL"})
        await ok(s, "insert_record", table_name="tasks", data={"title": "keep me"})
        await fails(s, tool, code, **arguments)
        page = await ok(s, "query_records", table_name="tasks")
        assert [r["title"] for r in page["records"]] == ["keep me"]


async def test_raw_writes_follow_the_process_setting(target: Target, era: str) -> None:
    async with connect(era, settings(target, allow_raw_writes=True)) as s:
        await ok(s, "create_table", table_name="notes", columns={"text": "TEXT"})
        wrote = await ok(
            s, "execute_raw_query", query="INSERT INTO notes (text) VALUES (?)", params=["hi"]
        )
        assert wrote["changes"] == 1
        await fails(s, "execute_raw_query", "INVALID_INPUT", query="DROP TABLE notes")
        # A read-only sub-agent may read raw, but its write is a permission refusal, logged.
        token = (await ok(s, "authenticate_agent", agent_id="alice/ro", permissions=["read"]))[
            "token"
        ]
        read = await ok(s, "execute_raw_query", query="SELECT text FROM notes", agent_token=token)
        assert read["rows"] == [["hi"]]
        text = await fails(
            s,
            "execute_raw_query",
            "PERMISSION_DENIED",
            query="DELETE FROM notes",
            agent_token=token,
        )
        assert "'write' permission" in text
        log = await ok(s, "get_audit_log", agent_id="alice/ro")
        assert [(e["action"], e["result"]) for e in log["entries"]] == [
            ("execute_raw_query", "PERMISSION_DENIED")
        ]


async def test_every_records_write_is_in_the_audit_trail_with_its_row_count(
    target: Target, era: str
) -> None:
    async with connect(era, settings(target)) as s:
        await ok(
            s, "create_table", table_name="tasks", columns={"title": "TEXT", "done": "INTEGER"}
        )
        await ok(s, "insert_record", table_name="tasks", data={"title": "a", "done": 0})
        await ok(s, "insert_record", table_name="tasks", data={"title": "b", "done": 0})
        await ok(s, "update_record", table_name="tasks", filters={"done": 0}, data={"done": 1})
        await ok(s, "delete_record", table_name="tasks", filters={"title": "a"})
        log = await ok(s, "get_audit_log")
    assert [(e["action"], e["target"], e.get("detail")) for e in log["entries"]] == [
        ("delete_record", "table:tasks", "1 row"),
        ("update_record", "table:tasks", "2 rows"),
        ("insert_record", "table:tasks", "1 row"),
        ("insert_record", "table:tasks", "1 row"),
        ("create_table", "table:tasks", "0 rows"),
    ]
