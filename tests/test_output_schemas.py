"""Every tool's real result matches the output schema it publishes, field for field."""

from __future__ import annotations

import types as pytypes
import typing
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel

from shared_context_server.config import Settings
from shared_context_server.server.records_tools import RECORDS_TOOLS
from shared_context_server.server.tools import TOOLS
from shared_context_server.storage.seam import Target
from tests.support import ERAS, connect, ok

pytestmark = pytest.mark.parametrize("era", ERAS)

EVERY_TOOL = {**TOOLS, **RECORDS_TOOLS}


def undeclared(model: type[BaseModel], data: Any, where: str) -> list[str]:
    """Keys of `data` (and of the nested models it holds) that `model` does not declare,
    and declared fields without a default that are missing."""
    if not isinstance(data, dict):
        return [f"{where}: {type(data).__name__}, not an object"]
    fields = model.model_fields
    found = [f"{where}.{key}: not declared" for key in data if key not in fields]
    for name, info in fields.items():
        if name not in data:
            if info.is_required():
                found.append(f"{where}.{name}: declared but missing")
            continue
        inner = _nested_model(info.annotation)
        if inner is not None:
            value = data[name]
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                if item is not None:
                    found += undeclared(inner, item, f"{where}.{name}[{i}]")
    return found


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model inside `M`, `M | None` or `list[M]`, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (list, typing.Union, pytypes.UnionType):
        for arg in typing.get_args(annotation):
            found = _nested_model(arg)
            if found is not None:
                return found
    return None


class Checker:
    """Calls tools through a real client and checks each result against its schemas."""

    def __init__(self, session: Any, schemas: dict[str, dict[str, Any]]) -> None:
        self.session = session
        self.schemas = schemas
        self.called: set[str] = set()
        self.problems: list[str] = []

    async def call(self, tool: str, **arguments: Any) -> dict[str, Any]:
        data = await ok(self.session, tool, **arguments)
        self.called.add(tool)
        try:
            jsonschema.validate(data, self.schemas[tool])
        except jsonschema.ValidationError as error:
            self.problems.append(f"{tool}: {error.message}")
        self.problems += undeclared(EVERY_TOOL[tool].output_model, data, tool)
        return data


async def test_every_tool_result_declares_exactly_its_fields(target: Target, era: str) -> None:
    settings = Settings(
        db_path=target,
        agent_id="alice",
        agent_id_source="flag",
        admin=True,
        toolsets=frozenset({"core", "records"}),
    )
    async with connect(era, settings) as s:
        schemas = {t.name: t.output_schema for t in (await s.list_tools()).tools}
        c = Checker(s, schemas)
        sid = (await c.call("create_session", purpose="schema check"))["session_id"]
        first = await c.call("add_message", session_id=sid, content="alpha finding")
        await c.call("add_private_note", session_id=sid, content="alpha note")
        await c.call("get_message", session_id=sid, message_id=first["message_id"])
        await c.call("get_context", session_id=sid)
        await c.call("wait_for_messages", session_id=sid, after_id=0, timeout_s=1)
        assert (await c.call("search_context", session_id=sid, query="alpha"))["results"]
        await c.call("get_session", session_id=sid)
        await c.call("list_sessions")
        await c.call("update_session", session_id=sid, purpose="schema check, renamed")
        await c.call("set_memory", key="k", value={"a": 1}, session_id=sid, expires_in=60)
        await c.call("get_memory", key="k", session_id=sid)
        assert (await c.call("list_memory", session_id="all"))["entries"]
        await c.call("delete_memory", key="k", session_id=sid)
        await c.call("whoami")
        token = (await c.call("authenticate_agent", agent_id="alice/helper"))["token"]
        await c.call("whoami", agent_token=token)  # acting through alice's process: `via`
        # News for alice, from her sub-agent, so the inbox's groups and messages are checked.
        handed = await c.call(
            "add_message",
            session_id=sid,
            content="from the helper",
            metadata={"to": ["alice"]},
            agent_token=token,
        )
        assert (await c.call("check_inbox"))["sessions"]
        await c.call("acknowledge", session_id=sid, message_ids=[handed["message_id"]])
        acked = await c.call("get_message", session_id=sid, message_id=handed["message_id"])
        assert list(acked["message"]["acknowledged"]) == ["alice"]
        await c.call("claim", targets=["src/**", "task:schemas"], reason="checking")
        assert (await c.call("list_claims"))["claims"]
        assert (await c.call("release"))["released"]
        assert (await c.call("get_audit_log"))["entries"]
        await c.call("revoke_token", token=token)
        await c.call("create_table", table_name="tasks", columns={"title": "TEXT"})
        await c.call("insert_record", table_name="tasks", data={"title": "write docs"})
        await c.call("query_records", table_name="tasks")
        await c.call("update_record", table_name="tasks", filters={"id": 1}, data={"title": "x"})
        assert (await c.call("list_tables"))["tables"]
        await c.call("describe_table", table_name="tasks")
        await c.call("execute_raw_query", query="SELECT count(*) AS n FROM tasks")
        await c.call("delete_record", table_name="tasks", filters={"id": 1})
    assert c.called == set(EVERY_TOOL), set(EVERY_TOOL) - c.called
    assert c.problems == []
