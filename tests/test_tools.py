"""Every tool through a real MCP client session, in both protocol eras, in-process."""

from __future__ import annotations

import json
from importlib.metadata import version
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError

from shared_context_server.blackboard.limits import Limits
from shared_context_server.config import Settings
from shared_context_server.server.tools import TOOLS
from shared_context_server.server.toolsets import tool_list_size_for
from shared_context_server.storage.opener import is_postgres_url
from shared_context_server.storage.postgres.schema import SCHEMA_VERSION as PG_SCHEMA_VERSION
from shared_context_server.storage.seam import Target
from shared_context_server.storage.sqlite.schema import SCHEMA_VERSION
from tests.support import ERAS, connect, fails, ok

pytestmark = pytest.mark.parametrize("era", ERAS)

DEFAULT_TOOLS = {
    "create_session",
    "get_session",
    "list_sessions",
    "update_session",
    "add_message",
    "add_private_note",
    "get_message",
    "get_context",
    "check_inbox",
    "wait_for_messages",
    "search_context",
    "set_memory",
    "get_memory",
    "list_memory",
    "delete_memory",
    "whoami",
    "authenticate_agent",
    "revoke_token",
    "get_audit_log",
    "acknowledge",
    "claim",
    "release",
    "list_claims",
}


def settings(target: Target, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "db_path": target,
        "agent_id": "alice",
        "agent_id_source": "flag",
        "agent_type": "reviewer",
    }
    return Settings(**(base | overrides))


async def test_tools_list_is_complete_strict_and_small(target: Target, era: str) -> None:
    async with connect(era, settings(target)) as session:
        tools = (await session.list_tools()).tools
    assert {t.name for t in tools} == DEFAULT_TOOLS
    for tool in tools:
        # Unknown properties are refused in code (INVALID_INPUT), not spelled out per tool.
        assert "additionalProperties" not in tool.input_schema, tool.name
        assert tool.output_schema and tool.output_schema["type"] == "object", tool.name
        assert tool.annotations is not None and tool.description, tool.name
        assert "title" not in json.dumps(tool.input_schema), tool.name
    reads = {t.name for t in tools if t.annotations.read_only_hint}
    assert reads == {
        "get_session",
        "list_sessions",
        "get_message",
        "get_context",
        "wait_for_messages",
        "search_context",
        "get_memory",
        "list_memory",
        "whoami",
        "get_audit_log",
        "list_claims",
    }
    # MCP's defaults: a tool without destructiveHint may destroy, unless it only reads.
    destructive = {t.name for t in tools if not t.annotations.read_only_hint} - {
        t.name for t in tools if t.annotations.destructive_hint is False
    }
    assert destructive == {"delete_memory", "revoke_token", "release"}
    # The whole default list, as JSON, fits the context budget (under 12 KB).
    assert tool_list_size_for(frozenset({"core"})) < 12_000


async def test_a_session_round_trip_through_every_tool(target: Target, era: str) -> None:
    async with connect(era, settings(target)) as s:
        created = await ok(s, "create_session", purpose="plan the release", metadata={"pr": 42})
        sid = created["session_id"]
        assert created["created_by"] == "alice" and created["status"] == "active"
        first = await ok(s, "add_message", session_id=sid, content="hello", message_type="finding")
        await ok(s, "add_private_note", session_id=sid, content="todo: check logs")
        reply = await ok(
            s, "add_message", session_id=sid, content="re", parent_message_id=first["message_id"]
        )
        got = await ok(s, "get_message", session_id=sid, message_id=reply["message_id"])
        assert got["message"]["parent_message_id"] == first["message_id"]
        page = await ok(s, "get_context", session_id=sid, limit=2)
        assert [m["content"] for m in page["messages"]] == ["todo: check logs", "re"]
        assert page["has_more"] is True
        assert page["messages"][0]["visibility"] == "private"
        detail = await ok(s, "get_session", session_id=sid)
        assert detail["message_count"] == 3 and detail["participants"] == ["alice"]
        assert detail["session"]["metadata"] == {"pr": 42}
        updated = await ok(s, "update_session", session_id=sid, status="completed")
        assert updated["session"]["status"] == "completed"
        listed = await ok(s, "list_sessions", status="completed")
        assert [x["id"] for x in listed["sessions"]] == [sid]
        assert (await ok(s, "list_sessions"))["sessions"] == []


async def test_messages_leave_out_what_the_result_already_says(target: Target, era: str) -> None:
    """A page names its session once and a message carries no null fields: the same
    page of 50 is a third smaller for every client to parse."""
    async with connect(era, settings(target)) as s:
        sid = (await ok(s, "create_session", purpose="p"))["session_id"]
        first = (await ok(s, "add_message", session_id=sid, content="plain finding"))["message_id"]
        reply = await ok(
            s,
            "add_message",
            session_id=sid,
            content="a reply for bob",
            parent_message_id=first,
            metadata={"to": ["bob"]},
        )
        plain = {"id", "sender", "sender_type", "content", "visibility", "message_type"}
        page = await ok(s, "get_context", session_id=sid)
        assert set(page["messages"][0]) == plain | {"created_at"}
        assert page["messages"][1]["parent_message_id"] == first
        assert page["messages"][1]["metadata"] == {"to": ["bob"]}
        assert "session_id" not in page["messages"][1]
        waited = await ok(s, "wait_for_messages", session_id=sid, after_id=0, timeout_s=0)
        assert waited["messages"] == page["messages"]
        hits = (await ok(s, "search_context", session_id=sid, query="plain finding"))["results"]
        assert set(hits[0]["message"]) == plain | {"created_at"}
        one = (await ok(s, "get_message", session_id=sid, message_id=first))["message"]
        assert one["session_id"] == sid and "metadata" not in one and "parent_message_id" not in one
        result = await s.call_tool("get_context", {"session_id": sid})
        assert f"reply-to #{first}" in result.content[0].text
    async with connect(era, settings(target, agent_id="bob")) as bob:
        news = (await ok(bob, "check_inbox"))["sessions"]
        assert news[0]["session_id"] == sid
        (addressed,) = news[0]["messages"]
        assert addressed["id"] == reply["message_id"] and "session_id" not in addressed
        await ok(bob, "add_message", session_id=sid, content="noted")
    async with connect(era, settings(target)) as s:
        (later,) = (await ok(s, "check_inbox"))["sessions"][0]["messages"]
        assert set(later) == plain | {"created_at", "for_you"}


async def test_text_rendering_leads_with_what_matters(target: Target, era: str) -> None:
    async with connect(era, settings(target)) as s:
        sid = (await ok(s, "create_session", purpose="p"))["session_id"]
        await ok(s, "add_message", session_id=sid, content="the finding", visibility="agent_only")
        result = await s.call_tool("get_context", {"session_id": sid})
        text = result.content[0].text
        assert text.startswith("1 message (#1..#1)")
        assert "#1 alice (reviewer) agent_only" in text and text.endswith("the finding")


async def test_whoami_reports_identity_source_and_database(target: Target, era: str) -> None:
    async with connect(era, settings(target, admin=True)) as s:
        me = await ok(s, "whoami")
    assert me == {
        "agent_id": "alice",
        "agent_type": "reviewer",
        "permissions": ["admin", "read", "write"],
        "identity_source": "flag",
        "database_path": str(target),
        "settings": {  # shown to admins only, with the release beside its schema
            **Settings(target).public(),
            "package_version": version("shared-context-server"),
            "schema_version": PG_SCHEMA_VERSION if is_postgres_url(target) else SCHEMA_VERSION,
        },
    }
    async with connect(era, settings(target, agent_id="bob")) as s:
        assert "settings" not in await ok(s, "whoami")  # admins only


async def test_without_a_configured_id_the_client_name_is_the_agent(
    target: Target, era: str
) -> None:
    config = settings(target, agent_id=None, agent_id_source=None)
    async with connect(era, config) as s:
        me = await ok(s, "whoami")
    assert me["identity_source"] == "client_info" and me["agent_id"] == "mcp"


@pytest.mark.parametrize(
    ("client_name", "agent_id"),
    [
        ("Claude Code\n  (window 2)\x07", "Claude-Code-(window-2)"),
        ("x" * 300, "x" * 128),
        (" \t ", "anonymous"),
    ],
)
async def test_a_client_name_becomes_a_valid_agent_id(
    target: Target, era: str, client_name: str, agent_id: str
) -> None:
    config = settings(target, agent_id=None, agent_id_source=None)
    async with connect(era, config, client_name) as s:
        me = await ok(s, "whoami")
        sid = (await ok(s, "create_session", purpose="p"))["session_id"]
        assert (await ok(s, "get_session", session_id=sid))["session"]["created_by"] == agent_id
    assert me["agent_id"] == agent_id


BAD_CALLS = [
    ("add_message", {"session_id": "S", "content": 5}, "INVALID_INPUT", "content"),
    ("add_message", {"session_id": "S"}, "INVALID_INPUT", "content: Field required"),
    ("add_message", {"session_id": "S", "content": "x", "extra": 1}, "INVALID_INPUT", "extra"),
    (
        "add_message",
        {"session_id": "S", "content": "x", "visibility": "loud"},
        "INVALID_INPUT",
        "visibility",
    ),
    ("add_message", {"session_id": "nope", "content": "x"}, "SESSION_NOT_FOUND", "nope"),
    ("add_message", {"session_id": "S", "content": "x" * 201}, "LIMIT_EXCEEDED", "201"),
    (
        "add_message",
        {"session_id": "S", "content": "x", "parent_message_id": "1"},
        "INVALID_INPUT",
        "parent_message_id",
    ),
    (
        "add_message",
        {"session_id": "S", "content": "x", "visibility": "admin_only"},
        "PERMISSION_DENIED",
        "admin",
    ),
    ("get_context", {"session_id": "S", "limit": 501}, "INVALID_INPUT", "limit"),
    ("get_context", {"session_id": "S", "limit": "10"}, "INVALID_INPUT", "limit"),
    ("get_message", {"session_id": "S", "message_id": 99}, "NOT_FOUND", "99"),
    ("create_session", {"purpose": "p" * 1001}, "LIMIT_EXCEEDED", "purpose"),
    ("create_session", {}, "INVALID_INPUT", "purpose"),
    ("update_session", {"session_id": "S", "status": "archived"}, "CONFLICT", "active"),
    ("list_sessions", {"cursor": "xyz"}, "INVALID_INPUT", "cursor"),
    ("add_message", {"session_id": "S", "content": "bad \ud800 half"}, "INVALID_INPUT", "Unicode"),
    ("get_context", {"session_id": "S", "after_id": 2**63}, "INVALID_INPUT", "after_id"),
    ("get_context", {"session_id": "S", "before_id": 0}, "INVALID_INPUT", "before_id"),
    ("get_message", {"session_id": "S", "message_id": 2**70}, "INVALID_INPUT", "message_id"),
    (
        "add_message",
        {"session_id": "S", "content": "x", "parent_message_id": 2**64},
        "INVALID_INPUT",
        "parent_message_id",
    ),
    ("get_session", {"session_id": "s" * 65}, "INVALID_INPUT", "session_id"),
    # PostgreSQL cannot store a NUL in text: refused alike on both engines, naming where.
    ("add_message", {"session_id": "S", "content": "a\x00b"}, "INVALID_INPUT", "content"),
    ("get_memory", {"key": "k\x00"}, "INVALID_INPUT", "key holds a NUL"),
    ("set_memory", {"key": "k", "value": {"a": "\x00"}}, "INVALID_INPUT", "value holds a NUL"),
    ("search_context", {"session_id": "S", "query": "q\x00"}, "INVALID_INPUT", "query"),
    ("list_sessions", {"cursor": "cjk5OTk5OTk5OTk5OTk5OTk5OTk5OTk"}, "INVALID_INPUT", "cursor"),
    # Found by the fuzz suite: an id past 64 bits reached SQLite as INTERNAL_ERROR.
    ("release", {"ids": [2**63]}, "INVALID_INPUT", "ids"),
    ("release", {"ids": [0]}, "INVALID_INPUT", "ids"),
]


@pytest.mark.parametrize(("tool", "arguments", "code", "says"), BAD_CALLS)
async def test_bad_input_gets_a_clear_error_and_the_server_answers_the_next_call(
    target: Target, era: str, tool: str, arguments: dict[str, Any], code: str, says: str
) -> None:
    config = settings(target, limits=Limits(max_content_chars=200))
    async with connect(era, config) as s:
        sid = (await ok(s, "create_session", purpose="p"))["session_id"]
        args = {k: sid if v == "S" else v for k, v in arguments.items()}
        text = await fails(s, tool, code, **args)
        assert says in text and "Traceback" not in text
        assert (await ok(s, "get_context", session_id=sid))["messages"] == []
        assert (await ok(s, "whoami"))["agent_id"] == "alice"


async def test_a_parent_from_another_session_is_refused(target: Target, era: str) -> None:
    async with connect(era, settings(target)) as s:
        one = (await ok(s, "create_session", purpose="one"))["session_id"]
        two = (await ok(s, "create_session", purpose="two"))["session_id"]
        other = await ok(s, "add_message", session_id=two, content="there")
        text = await fails(
            s,
            "add_message",
            "NOT_FOUND",
            session_id=one,
            content="x",
            parent_message_id=other["message_id"],
        )
        assert "parent_message_id" in text


async def test_null_arguments_are_validated_like_empty_ones(target: Target, era: str) -> None:
    async with connect(era, settings(target)) as s:
        result = await s.call_tool("get_session", None)
        assert result.is_error and result.structured_content["code"] == "INVALID_INPUT"


async def test_an_unknown_tool_is_a_protocol_error_naming_it(target: Target, era: str) -> None:
    async with connect(era, settings(target)) as s:
        with pytest.raises(MCPError) as info:
            await s.call_tool("drop_everything", {})
    assert "drop_everything" in str(info.value)
    assert len(TOOLS) == len(DEFAULT_TOOLS)
