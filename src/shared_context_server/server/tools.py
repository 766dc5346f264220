"""The tool registry: each tool is one row (name, models, handler, rendering, annotations).

Handlers only translate: take validated arguments, call one domain function, shape the
result. Rules live in the domain.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from pydantic import BaseModel

from shared_context_server.about import package_version
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
from shared_context_server.blackboard.identity import Agent
from shared_context_server.migrations import SCHEMA_VERSION
from shared_context_server.server import models as m
from shared_context_server.server import render
from shared_context_server.server.state import AppState

Handler = Callable[[AppState, Agent, Any], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    input_model: type[m.Input]
    output_model: type[BaseModel]
    handler: Handler
    render: Callable[[dict[str, Any]], str]
    annotations: types.ToolAnnotations

    def to_tool(self) -> types.Tool:
        return types.Tool(
            name=self.name,
            description=self.description,
            input_schema=m.compact_schema(self.input_model),
            output_schema=m.output_schema(self.output_model),
            annotations=self.annotations,
        )


# Only hints that differ from MCP's defaults (readOnly false, destructive true, idempotent
# false) are written: every agent pays for each byte on every turn. openWorldHint is left
# out too: no tool reaches beyond the local file, and 18 copies of it cost 380 bytes.
READ = types.ToolAnnotations(read_only_hint=True)
APPEND = types.ToolAnnotations(destructive_hint=False)
UPDATE = types.ToolAnnotations(destructive_hint=False, idempotent_hint=True)
DELETE = types.ToolAnnotations(destructive_hint=True, idempotent_hint=True)


async def create_session(state: AppState, agent: Agent, a: m.CreateSession) -> dict[str, Any]:
    s = await sessions.create_session(state.db, agent, a.purpose, a.metadata, state.settings.limits)
    return {
        "session_id": s["id"],
        "purpose": s["purpose"],
        "status": s["status"],
        "created_by": s["created_by"],
        "created_at": s["created_at"],
    }


async def get_session(state: AppState, agent: Agent, a: m.GetSession) -> dict[str, Any]:
    return await sessions.get_session(state.db, agent, a.session_id)


async def list_sessions(state: AppState, agent: Agent, a: m.ListSessions) -> dict[str, Any]:
    return await sessions.list_sessions(state.db, agent, a.status, a.limit, a.cursor)


async def update_session(state: AppState, agent: Agent, a: m.UpdateSession) -> dict[str, Any]:
    session = await sessions.update_session(
        state.db, agent, a.session_id, a.status, a.purpose, a.metadata, state.settings.limits
    )
    return {"session": session}


async def add_message(state: AppState, agent: Agent, a: m.AddMessage) -> dict[str, Any]:
    return await messages.add_message(
        state.db,
        agent,
        a.session_id,
        a.content,
        a.visibility,
        a.message_type,
        a.metadata,
        a.parent_message_id,
        state.settings.limits,
    )


async def add_private_note(state: AppState, agent: Agent, a: m.AddPrivateNote) -> dict[str, Any]:
    return await messages.add_message(
        state.db,
        agent,
        a.session_id,
        a.content,
        "private",
        "note",
        a.metadata,
        limits=state.settings.limits,
        action="add_private_note",
    )


async def get_message(state: AppState, agent: Agent, a: m.GetMessage) -> dict[str, Any]:
    message = await messages.get_message(state.db, agent, a.session_id, a.message_id)
    return {"message": message}


async def get_context(state: AppState, agent: Agent, a: m.GetContext) -> dict[str, Any]:
    return dict(
        await messages.get_context(
            state.db,
            agent,
            a.session_id,
            a.limit,
            a.after_id,
            a.before_id,
            a.sender,
            a.visibility,
            state.settings.limits,
        )
    )


async def wait_for_messages(state: AppState, agent: Agent, a: m.WaitForMessages) -> dict[str, Any]:
    page = await changes.wait_for_messages(
        state.feed, agent, a.session_id, a.after_id, a.timeout_s, state.settings.limits
    )
    return dict(page)


async def check_inbox(state: AppState, agent: Agent, a: m.CheckInbox) -> dict[str, Any]:
    return await inbox.check_inbox(state.feed, agent, a.limit, a.wait_s, state.settings.limits)


async def search_context(state: AppState, agent: Agent, a: m.SearchContext) -> dict[str, Any]:
    return await search.search_context(
        state.db, agent, a.session_id, a.query, a.fuzzy_threshold, a.limit, a.sender
    )


async def set_memory(state: AppState, agent: Agent, a: m.SetMemory) -> dict[str, Any]:
    return await memory.set_memory(
        state.db,
        agent,
        a.key,
        a.value,
        a.session_id,
        a.expires_in,
        a.overwrite,
        state.settings.limits,
    )


async def get_memory(state: AppState, agent: Agent, a: m.GetMemory) -> dict[str, Any]:
    return await memory.get_memory(state.db, agent, a.key, a.session_id)


async def list_memory(state: AppState, agent: Agent, a: m.ListMemory) -> dict[str, Any]:
    return await memory.list_memory(state.db, agent, a.session_id, a.prefix, a.limit, a.cursor)


async def delete_memory(state: AppState, agent: Agent, a: m.DeleteMemory) -> dict[str, Any]:
    return await memory.delete_memory(state.db, agent, a.key, a.session_id)


async def whoami(state: AppState, agent: Agent, a: m.NoArguments) -> dict[str, Any]:
    data: dict[str, Any] = {
        "agent_id": agent.agent_id,
        "agent_type": agent.agent_type,
        "permissions": sorted(agent.permissions),
        "identity_source": agent.source,
        "database_path": str(state.db.where),
    }
    if agent.via is not None:
        data["via"] = agent.via
    if agent.is_admin:
        # Which release serves this file, beside the schema it writes: what an admin
        # needs when two tools on one machine disagree about the file.
        data["settings"] = {
            **state.settings.public(),
            "package_version": package_version(),
            "schema_version": SCHEMA_VERSION,
        }
    return data


async def authenticate_agent(
    state: AppState, agent: Agent, a: m.AuthenticateAgent
) -> dict[str, Any]:
    return await tokens.authenticate_agent(
        state.db,
        agent,
        a.agent_id,
        a.agent_type,
        a.permissions,
        a.expires_in,
        default_ttl_s=state.settings.token_ttl_s,
    )


async def revoke_token(state: AppState, agent: Agent, a: m.RevokeToken) -> dict[str, Any]:
    return await tokens.revoke_token(state.db, agent, a.token)


async def get_audit_log(state: AppState, agent: Agent, a: m.GetAuditLog) -> dict[str, Any]:
    return await audit.get_audit_log(
        state.db, agent, a.session_id, a.agent_id, a.action, a.limit, a.cursor
    )


TOOLS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in [
        ToolSpec(
            "create_session",
            "Start a shared session; returns its session_id.",
            m.CreateSession,
            m.CreatedSession,
            create_session,
            render.created_session,
            APPEND,
        ),
        ToolSpec(
            "get_session",
            "A session with the count, senders and last time of messages you can see.",
            m.GetSession,
            m.SessionDetail,
            get_session,
            render.session_detail,
            READ,
        ),
        ToolSpec(
            "list_sessions",
            "Sessions, newest first; pass next_cursor as cursor for more.",
            m.ListSessions,
            m.SessionPage,
            list_sessions,
            render.session_page,
            READ,
        ),
        ToolSpec(
            "update_session",
            "Change status, purpose or metadata (creator or admin). "
            "active->completed->archived; back to active reopens.",
            m.UpdateSession,
            m.UpdatedSession,
            update_session,
            render.updated_session,
            UPDATE,
        ),
        ToolSpec(
            "add_message",
            "Post to a session. visibility: public, private (you), agent_only (your "
            "agent_type), admin_only.",
            m.AddMessage,
            m.PostedMessage,
            add_message,
            render.posted_message,
            APPEND,
        ),
        ToolSpec(
            "add_private_note",
            "Post a note only you can read.",
            m.AddPrivateNote,
            m.PostedMessage,
            add_private_note,
            render.posted_message,
            APPEND,
        ),
        ToolSpec(
            "get_message",
            "One message by id.",
            m.GetMessage,
            m.OneMessage,
            get_message,
            render.one_message,
            READ,
        ),
        ToolSpec(
            "get_context",
            "Messages you can see, oldest first: the latest `limit`, or those after "
            "after_id / before before_id.",
            m.GetContext,
            m.MessagePage,
            get_context,
            render.message_page,
            READ,
        ),
        ToolSpec(
            "wait_for_messages",
            "Long poll: messages after after_id you can see, as soon as any exist, "
            "or [] after timeout_s.",
            m.WaitForMessages,
            m.MessagePage,
            wait_for_messages,
            render.waited_messages,
            READ,
        ),
        ToolSpec(
            "check_inbox",
            "News in your sessions since your last check, each once; replies to you and "
            "messages with you in metadata.to first. wait_s: long poll.",
            m.CheckInbox,
            m.InboxPage,
            check_inbox,
            render.inbox,
            APPEND,
        ),
        ToolSpec(
            "search_context",
            "Fuzzy search of messages you can see; best first, score 0-100.",
            m.SearchContext,
            m.SearchResults,
            search_context,
            render.search_results,
            READ,
        ),
        ToolSpec(
            "set_memory",
            "Store a private JSON value, global or per session_id; expires_in seconds; "
            "overwrite=false keeps a live one.",
            m.SetMemory,
            m.StoredMemory,
            set_memory,
            render.stored_memory,
            UPDATE,
        ),
        ToolSpec(
            "get_memory",
            "A value you remembered.",
            m.GetMemory,
            m.MemoryEntry,
            get_memory,
            render.memory_entry,
            READ,
        ),
        ToolSpec(
            "list_memory",
            "Your memory keys: global, a session_id's, or session_id='all'.",
            m.ListMemory,
            m.MemoryPage,
            list_memory,
            render.memory_page,
            READ,
        ),
        ToolSpec(
            "delete_memory",
            "Forget a memory key.",
            m.DeleteMemory,
            m.Deleted,
            delete_memory,
            render.deleted,
            DELETE,
        ),
        ToolSpec(
            "whoami",
            "Your agent id, type, permissions, identity source, database path.",
            m.NoArguments,
            m.Identity,
            whoami,
            render.identity,
            READ,
        ),
        ToolSpec(
            "authenticate_agent",
            "A sub-agent's agent_token: agent_id 'you/name', permissions within yours, "
            "expires_in seconds (24 h).",
            m.AuthenticateAgent,
            m.Token,
            authenticate_agent,
            render.token,
            APPEND,
        ),
        ToolSpec(
            "revoke_token",
            "Revoke a token (its minter, its agent, or an admin).",
            m.RevokeToken,
            m.Revoked,
            revoke_token,
            render.revoked,
            DELETE,
        ),
        ToolSpec(
            "get_audit_log",
            "Who did what, newest first: your entries (admins: all).",
            m.GetAuditLog,
            m.AuditPage,
            get_audit_log,
            render.audit_page,
            READ,
        ),
    ]
}
