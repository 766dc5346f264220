"""The tool registry: each tool is one row (name, models, handler, rendering, annotations).

Handlers only translate: take validated arguments, call one domain function, shape the
result. Rules live in the domain.
"""

from __future__ import annotations

import os
from typing import Any

from shared_context_server.about import package_version
from shared_context_server.blackboard import (
    acks,
    audit,
    changes,
    claim_rules,
    claims,
    inbox,
    memory,
    messages,
    search,
    sessions,
    tokens,
)
from shared_context_server.blackboard.identity import Agent
from shared_context_server.server import models as m
from shared_context_server.server import outputs as o
from shared_context_server.server import render
from shared_context_server.server.registry import APPEND, DELETE, READ, UPDATE, ToolSpec
from shared_context_server.server.state import AppState


async def create_session(state: AppState, agent: Agent, a: m.CreateSession) -> dict[str, Any]:
    s = await sessions.create_session(
        state.db, agent, purpose=a.purpose, metadata=a.metadata, limits=state.settings.limits
    )
    return {
        "session_id": s["id"],
        "purpose": s["purpose"],
        "status": s["status"],
        "created_by": s["created_by"],
        "created_at": s["created_at"],
    }


async def get_session(state: AppState, agent: Agent, a: m.GetSession) -> dict[str, Any]:
    return await sessions.get_session(state.db, agent, session_id=a.session_id)


async def list_sessions(state: AppState, agent: Agent, a: m.ListSessions) -> dict[str, Any]:
    return await sessions.list_sessions(
        state.db, agent, status=a.status, limit=a.limit, cursor=a.cursor
    )


async def update_session(state: AppState, agent: Agent, a: m.UpdateSession) -> dict[str, Any]:
    session = await sessions.update_session(
        state.db,
        agent,
        session_id=a.session_id,
        status=a.status,
        purpose=a.purpose,
        metadata=a.metadata,
        limits=state.settings.limits,
    )
    return {"session": session}


async def add_message(state: AppState, agent: Agent, a: m.AddMessage) -> dict[str, Any]:
    return await messages.add_message(
        state.db,
        agent,
        session_id=a.session_id,
        content=a.content,
        visibility=a.visibility,
        message_type=a.message_type,
        metadata=a.metadata,
        parent_message_id=a.parent_message_id,
        limits=state.settings.limits,
    )


async def add_private_note(state: AppState, agent: Agent, a: m.AddPrivateNote) -> dict[str, Any]:
    return await messages.add_message(
        state.db,
        agent,
        session_id=a.session_id,
        content=a.content,
        visibility="private",
        message_type="note",
        metadata=a.metadata,
        limits=state.settings.limits,
        action="add_private_note",
    )


async def get_message(state: AppState, agent: Agent, a: m.GetMessage) -> dict[str, Any]:
    message = await messages.get_message(
        state.db, agent, session_id=a.session_id, message_id=a.message_id
    )
    o.lean([message], in_session=False)
    return {"message": message}


async def get_context(state: AppState, agent: Agent, a: m.GetContext) -> dict[str, Any]:
    page = await messages.get_context(
        state.db,
        agent,
        session_id=a.session_id,
        limit=a.limit,
        after_id=a.after_id,
        before_id=a.before_id,
        sender=a.sender,
        visibility=a.visibility,
        limits=state.settings.limits,
    )
    o.lean(page["messages"])
    return dict(page)


async def wait_for_messages(state: AppState, agent: Agent, a: m.WaitForMessages) -> dict[str, Any]:
    page = await changes.wait_for_messages(
        state.feed,
        agent,
        session_id=a.session_id,
        after_id=a.after_id,
        timeout_s=a.timeout_s,
        limits=state.settings.limits,
    )
    o.lean(page["messages"])
    return dict(page)


async def check_inbox(state: AppState, agent: Agent, a: m.CheckInbox) -> dict[str, Any]:
    news = await inbox.check_inbox(
        state.feed,
        agent,
        limit=a.limit,
        wait_s=a.wait_s,
        limits=state.settings.limits,
        ack=a.ack,
    )
    for group in news["sessions"]:
        o.lean(group["messages"])
    return news


async def search_context(state: AppState, agent: Agent, a: m.SearchContext) -> dict[str, Any]:
    found = await search.search_context(
        state.db,
        agent,
        session_id=a.session_id,
        query=a.query,
        fuzzy_threshold=a.fuzzy_threshold,
        limit=a.limit,
        sender=a.sender,
    )
    o.lean(hit["message"] for hit in found["results"])
    return found


async def set_memory(state: AppState, agent: Agent, a: m.SetMemory) -> dict[str, Any]:
    return await memory.set_memory(
        state.db,
        agent,
        key=a.key,
        value=a.value,
        session_id=a.session_id,
        expires_in=a.expires_in,
        overwrite=a.overwrite,
        limits=state.settings.limits,
    )


async def get_memory(state: AppState, agent: Agent, a: m.GetMemory) -> dict[str, Any]:
    return await memory.get_memory(state.db, agent, key=a.key, session_id=a.session_id)


async def list_memory(state: AppState, agent: Agent, a: m.ListMemory) -> dict[str, Any]:
    return await memory.list_memory(
        state.db,
        agent,
        session_id=a.session_id,
        prefix=a.prefix,
        limit=a.limit,
        cursor=a.cursor,
    )


async def delete_memory(state: AppState, agent: Agent, a: m.DeleteMemory) -> dict[str, Any]:
    return await memory.delete_memory(state.db, agent, key=a.key, session_id=a.session_id)


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
            "schema_version": state.db.release_schema,
        }
    return data


async def authenticate_agent(
    state: AppState, agent: Agent, a: m.AuthenticateAgent
) -> dict[str, Any]:
    return await tokens.authenticate_agent(
        state.db,
        agent,
        agent_id=a.agent_id,
        agent_type=a.agent_type,
        permissions=a.permissions,
        expires_in=a.expires_in,
        default_ttl_s=state.settings.token_ttl_s,
    )


async def revoke_token(state: AppState, agent: Agent, a: m.RevokeToken) -> dict[str, Any]:
    return await tokens.revoke_token(state.db, agent, token=a.token)


async def get_audit_log(state: AppState, agent: Agent, a: m.GetAuditLog) -> dict[str, Any]:
    return await audit.get_audit_log(
        state.db,
        agent,
        session_id=a.session_id,
        agent_id=a.agent_id,
        action=a.action,
        limit=a.limit,
        cursor=a.cursor,
    )


async def claim(state: AppState, agent: Agent, a: m.Claim) -> dict[str, Any]:
    return await claims.claim(
        state.db,
        agent,
        a.targets,
        cwd=os.getcwd(),
        presence=state.presence,
        reason=a.reason,
        ttl_s=claim_rules.DEFAULT_TTL_S if a.ttl_s is None else a.ttl_s,
        shared=bool(a.shared),
        session_id=a.session_id,
        partial=bool(a.partial),
        token_hash=tokens.token_hash(a.agent_token) if a.agent_token else None,
    )


async def release(state: AppState, agent: Agent, a: m.Release) -> dict[str, Any]:
    return await claims.release(state.db, agent, cwd=os.getcwd(), targets=a.targets, ids=a.ids)


async def list_claims(state: AppState, agent: Agent, a: m.ListClaims) -> dict[str, Any]:
    return await claims.list_claims(
        state.db, agent, cwd=os.getcwd(), prefix=a.prefix, holder=a.holder
    )


async def acknowledge(state: AppState, agent: Agent, a: m.Acknowledge) -> dict[str, Any]:
    return await acks.acknowledge(state.db, agent, a.session_id, a.message_ids)


# A tuple, not a list[ToolSpec[Any]]: each row keeps its own type, so mypy checks that its
# handler takes its input model.
_ROWS = (
    ToolSpec(
        name="create_session",
        description="Start a shared session; returns its session_id.",
        input_model=m.CreateSession,
        output_model=o.CreatedSession,
        handler=create_session,
        render=render.created_session,
        annotations=APPEND,
    ),
    ToolSpec(
        name="get_session",
        description="A session with the count, senders and last time of messages you can see.",
        input_model=m.GetSession,
        output_model=o.SessionDetail,
        handler=get_session,
        render=render.session_detail,
        annotations=READ,
    ),
    ToolSpec(
        name="list_sessions",
        description="Sessions, newest first; pass next_cursor as cursor for more.",
        input_model=m.ListSessions,
        output_model=o.SessionPage,
        handler=list_sessions,
        render=render.session_page,
        annotations=READ,
    ),
    ToolSpec(
        name="update_session",
        description=(
            "Change status, purpose or metadata (creator or admin). "
            "active->completed->archived; back to active reopens."
        ),
        input_model=m.UpdateSession,
        output_model=o.UpdatedSession,
        handler=update_session,
        render=render.updated_session,
        annotations=UPDATE,
    ),
    ToolSpec(
        name="add_message",
        description=(
            "Post to a session. visibility: public, private (you), agent_only (your "
            "agent_type), admin_only."
        ),
        input_model=m.AddMessage,
        output_model=o.PostedMessage,
        handler=add_message,
        render=render.posted_message,
        annotations=APPEND,
    ),
    ToolSpec(
        name="add_private_note",
        description="Post a note only you can read.",
        input_model=m.AddPrivateNote,
        output_model=o.PostedMessage,
        handler=add_private_note,
        render=render.posted_message,
        annotations=APPEND,
    ),
    ToolSpec(
        name="get_message",
        description="One message by id.",
        input_model=m.GetMessage,
        output_model=o.OneMessage,
        handler=get_message,
        render=render.one_message,
        annotations=READ,
    ),
    ToolSpec(
        name="get_context",
        description=(
            "Messages you can see, oldest first: the latest `limit`, or those after "
            "after_id / before before_id."
        ),
        input_model=m.GetContext,
        output_model=o.MessagePage,
        handler=get_context,
        render=render.message_page,
        annotations=READ,
    ),
    ToolSpec(
        name="wait_for_messages",
        description=(
            "Long poll: messages after after_id you can see, as soon as any exist, "
            "or [] after timeout_s."
        ),
        input_model=m.WaitForMessages,
        output_model=o.MessagePage,
        handler=wait_for_messages,
        render=render.waited_messages,
        annotations=READ,
    ),
    ToolSpec(
        name="check_inbox",
        description=(
            "News in your sessions since your last check, each once; replies to you and "
            "messages with you in metadata.to first. wait_s: long poll."
        ),
        input_model=m.CheckInbox,
        output_model=o.InboxPage,
        handler=check_inbox,
        render=render.inbox,
        annotations=APPEND,
    ),
    ToolSpec(
        name="acknowledge",
        description="Acknowledge messages addressed to you (metadata.to).",
        input_model=m.Acknowledge,
        output_model=o.Acknowledged,
        handler=acknowledge,
        render=render.acknowledged,
        annotations=UPDATE,
    ),
    ToolSpec(
        name="claim",
        description="Claim paths, globs (src/**), task:keys; others' edits get refused. "
        "All or nothing unless partial.",
        input_model=m.Claim,
        output_model=o.Claimed,
        handler=claim,
        render=render.claimed,
        annotations=UPDATE,
    ),
    ToolSpec(
        name="release",
        description="Release your claims: targets, ids, else all.",
        input_model=m.Release,
        output_model=o.Released,
        handler=release,
        render=render.released,
        annotations=DELETE,
    ),
    ToolSpec(
        name="list_claims",
        description="Claims held now: who, what, why, until.",
        input_model=m.ListClaims,
        output_model=o.ClaimList,
        handler=list_claims,
        render=render.claim_list,
        annotations=READ,
    ),
    ToolSpec(
        name="search_context",
        description="Fuzzy search of messages you can see; best first, score 0-100.",
        input_model=m.SearchContext,
        output_model=o.SearchResults,
        handler=search_context,
        render=render.search_results,
        annotations=READ,
    ),
    ToolSpec(
        name="set_memory",
        description=(
            "Store a private JSON value, global or per session_id; expires_in seconds; "
            "overwrite=false keeps a live one."
        ),
        input_model=m.SetMemory,
        output_model=o.StoredMemory,
        handler=set_memory,
        render=render.stored_memory,
        annotations=UPDATE,
    ),
    ToolSpec(
        name="get_memory",
        description="A value you remembered.",
        input_model=m.GetMemory,
        output_model=o.MemoryEntry,
        handler=get_memory,
        render=render.memory_entry,
        annotations=READ,
    ),
    ToolSpec(
        name="list_memory",
        description="Your memory keys: global, a session_id's, or session_id='all'.",
        input_model=m.ListMemory,
        output_model=o.MemoryPage,
        handler=list_memory,
        render=render.memory_page,
        annotations=READ,
    ),
    ToolSpec(
        name="delete_memory",
        description="Forget a memory key.",
        input_model=m.DeleteMemory,
        output_model=o.Deleted,
        handler=delete_memory,
        render=render.deleted,
        annotations=DELETE,
    ),
    ToolSpec(
        name="whoami",
        description="Your agent id, type, permissions, identity source, database path.",
        input_model=m.NoArguments,
        output_model=o.Identity,
        handler=whoami,
        render=render.identity,
        annotations=READ,
    ),
    ToolSpec(
        name="authenticate_agent",
        description=(
            "A sub-agent's agent_token: agent_id 'you/name', permissions within yours, "
            "expires_in seconds (24 h)."
        ),
        input_model=m.AuthenticateAgent,
        output_model=o.Token,
        handler=authenticate_agent,
        render=render.token,
        annotations=APPEND,
    ),
    ToolSpec(
        name="revoke_token",
        description="Revoke a token (its minter, its agent, or an admin).",
        input_model=m.RevokeToken,
        output_model=o.Revoked,
        handler=revoke_token,
        render=render.revoked,
        annotations=DELETE,
    ),
    ToolSpec(
        name="get_audit_log",
        description="Who did what, newest first: your entries (admins: all).",
        input_model=m.GetAuditLog,
        output_model=o.AuditPage,
        handler=get_audit_log,
        render=render.audit_page,
        annotations=READ,
    ),
)
TOOLS: dict[str, ToolSpec[Any]] = {spec.name: spec for spec in _ROWS}
