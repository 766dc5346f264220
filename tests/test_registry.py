"""The tool registry agrees with the domain: every bound a model checks is the domain's
constant, every default is the domain function's, and no row spends bytes on what MCP
assumes anyway."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from shared_context_server.blackboard import (
    audit,
    changes,
    inbox,
    memory,
    messages,
    search,
    sessions,
    tokens,
)
from shared_context_server.blackboard.limits import (
    FUZZY_SCALE,
    MAX_MEMORY_KEY_CHARS,
    MAX_MESSAGE_TYPE_CHARS,
    MAX_SESSION_ID_CHARS,
    MAX_SESSIONS_LIMIT,
    MESSAGE_TYPE,
)
from shared_context_server.blackboard.records import rows
from shared_context_server.config import TOOLSETS
from shared_context_server.errors import InvalidInput
from shared_context_server.server import models as m
from shared_context_server.server import records_models as r
from shared_context_server.server.toolsets import tools_for
from shared_context_server.storage.sqlite.database import Database
from tests.support import ALICE

SID = "sess_0123456789abcdef"

# (model, its other required arguments, the bounded argument, the domain's bound, kind):
# "most" is a number the model accepts and one more it refuses; "chars" a text length.
BOUNDS: list[tuple[type[BaseModel], dict[str, Any], str, int, str]] = [
    (m.ListSessions, {}, "limit", MAX_SESSIONS_LIMIT, "most"),
    (m.GetContext, {"session_id": SID}, "limit", messages.MAX_CONTEXT_LIMIT, "most"),
    (m.GetContext, {}, "session_id", MAX_SESSION_ID_CHARS, "chars"),
    (
        m.WaitForMessages,
        {"session_id": SID, "after_id": 0},
        "timeout_s",
        int(changes.MAX_WAIT_S),
        "most",
    ),
    (m.SearchContext, {"session_id": SID, "query": "q"}, "limit", search.MAX_LIMIT, "most"),
    (m.SearchContext, {"session_id": SID}, "query", search.MAX_QUERY_CHARS, "chars"),
    (m.SearchContext, {"session_id": SID, "query": "q"}, "fuzzy_threshold", FUZZY_SCALE, "most"),
    (
        m.AddMessage,
        {"session_id": SID, "content": "c"},
        "message_type",
        MAX_MESSAGE_TYPE_CHARS,
        "chars",
    ),
    (m.SetMemory, {"value": 1}, "key", MAX_MEMORY_KEY_CHARS, "chars"),
    (m.SetMemory, {"key": "k", "value": 1}, "expires_in", memory.MAX_EXPIRES_IN, "most"),
    (m.ListMemory, {}, "limit", memory.MAX_LIST_LIMIT, "most"),
    (m.ListMemory, {}, "prefix", MAX_MEMORY_KEY_CHARS, "chars"),
    (m.GetAuditLog, {}, "limit", audit.MAX_LIMIT, "most"),
    (m.AuthenticateAgent, {"agent_id": "a/b"}, "expires_in", tokens.MAX_TTL_S, "most"),
    (r.QueryRecords, {"table_name": "t"}, "limit", rows.MAX_QUERY_LIMIT, "most"),
]


@pytest.mark.parametrize(
    ("model", "others", "field", "bound", "kind"),
    BOUNDS,
    ids=[f"{b[0].__name__}.{b[2]}" for b in BOUNDS],
)
def test_a_model_bound_is_the_domains_constant(
    model: type[BaseModel], others: dict[str, Any], field: str, bound: int, kind: str
) -> None:
    def value(n: int) -> Any:
        if kind == "chars":
            return "x" * n
        # A float argument is given a float: the models refuse coercion.
        return float(n) if model.model_fields[field].annotation in (float, "float") else n

    model.model_validate({**others, field: value(bound)})
    with pytest.raises(ValidationError):
        model.model_validate({**others, field: value(bound + 1)})


async def test_the_domain_refuses_just_past_the_bounds_the_models_share(db: Database) -> None:
    """The limits the models take from blackboard/limits.py are the ones the domain's own
    checks enforce (memory keys and message types are checked by patterns there)."""
    session = await sessions.create_session(db, ALICE, purpose="bounds")
    sid = session["id"]
    await memory.set_memory(db, ALICE, key="k" * MAX_MEMORY_KEY_CHARS, value=1)
    with pytest.raises(InvalidInput):
        await memory.set_memory(db, ALICE, key="k" * (MAX_MEMORY_KEY_CHARS + 1), value=1)
    typed = "t" * MAX_MESSAGE_TYPE_CHARS
    assert MESSAGE_TYPE.match(typed) and not MESSAGE_TYPE.match(typed + "t")
    await messages.add_message(db, ALICE, session_id=sid, content="c", message_type=typed)
    with pytest.raises(InvalidInput):
        await messages.add_message(db, ALICE, session_id=sid, content="c", message_type=typed + "t")


Domain = Callable[..., Awaitable[Any]]

# (model, the domain function its tool calls): each argument both have defaults for.
DEFAULTS: list[tuple[type[BaseModel], Domain]] = [
    (m.ListSessions, sessions.list_sessions),
    (m.AddMessage, messages.add_message),
    (m.GetContext, messages.get_context),
    (m.WaitForMessages, changes.wait_for_messages),
    (m.CheckInbox, inbox.check_inbox),
    (m.SearchContext, search.search_context),
    (m.SetMemory, memory.set_memory),
    (m.ListMemory, memory.list_memory),
    (m.GetAuditLog, audit.get_audit_log),
    (m.AuthenticateAgent, tokens.authenticate_agent),
    (r.QueryRecords, rows.query_records),
    (r.UpdateRecord, rows.update_record),
    (r.DeleteRecord, rows.delete_record),
]


@pytest.mark.parametrize(("model", "domain"), DEFAULTS, ids=[d[0].__name__ for d in DEFAULTS])
def test_a_model_default_is_the_domain_functions(model: type[BaseModel], domain: Domain) -> None:
    parameters = inspect.signature(domain).parameters
    shared = [
        name
        for name, field in model.model_fields.items()
        if name in parameters
        and not field.is_required()
        and parameters[name].default is not inspect.Parameter.empty
    ]
    assert shared, f"{model.__name__} shares no defaulted argument with {domain.__name__}"
    for name in shared:
        assert model.model_fields[name].default == parameters[name].default, name


@pytest.mark.parametrize("tool", sorted(tools_for(frozenset(TOOLSETS))))
def test_no_tool_spends_bytes_on_a_hint_mcp_already_assumes(tool: str) -> None:
    hints = tools_for(frozenset(TOOLSETS))[tool].annotations
    if hints is None:  # every hint is MCP's default
        return
    assert hints.read_only_hint is not False
    assert hints.destructive_hint is not True
    assert hints.idempotent_hint is not False
    assert hints.open_world_hint is None and hints.title is None
