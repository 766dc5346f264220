"""Resources and change notifications: the resource registry (a kind of resource is one
row), its MCP handlers, subscriptions in both protocol eras, and turning what the change
poller sees into notifications.

Handshake era: `resources/subscribe` / `unsubscribe`, and notifications sent through the
connection captured at `notifications/initialized`. Discover era (no handshake: a client
starts with `server/discover`): `subscriptions/listen` streams served by the SDK's
ListenHandler, fed through a bus. Every change goes both ways. A subscription acts as
the agent that made it: it hears of a message only if that agent may read it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from mcp.server import ServerRequestContext
from mcp.server.subscriptions import ListenHandler, ResourcesListChanged, ResourceUpdated
from mcp.shared.exceptions import MCPError
from mcp.shared.uri_template import UriTemplate

from shared_context_server.blackboard import memory, messages, sessions
from shared_context_server.blackboard.audit import record_refusal
from shared_context_server.blackboard.changes import sessions_with_news
from shared_context_server.blackboard.identity import Agent
from shared_context_server.errors import BlackboardError, LimitExceeded, PermissionDenied
from shared_context_server.server.outputs import lean
from shared_context_server.server.state import AppState
from shared_context_server.storage.seam import Change

Reader = Callable[[AppState, Agent, dict[str, str]], Awaitable[dict[str, Any]]]

_SURROGATES = re.compile("[\ud800-\udfff]")

LIST_PAGE = 100
SESSION_MESSAGES = 50


@dataclass(frozen=True)
class ResourceSpec:
    name: str
    template: UriTemplate
    description: str
    read: Reader
    # The session id whose new messages change this resource (None: messages never do).
    session_of: Callable[[dict[str, str]], str | None]

    def match(self, uri: str) -> dict[str, str] | None:
        found = self.template.match(uri)
        if found is None or not all(isinstance(v, str) and v for v in found.values()):
            return None
        return {key: str(value) for key, value in found.items()}

    def to_template(self) -> types.ResourceTemplate:
        return types.ResourceTemplate(
            uri_template=self.template.template,
            name=self.name,
            description=self.description,
            mime_type="application/json",
        )


async def read_session(state: AppState, agent: Agent, args: dict[str, str]) -> dict[str, Any]:
    """The session, counts over what the caller may see, and its latest visible messages."""
    session_id = args["session_id"]
    detail = await sessions.get_session(state.db, agent, session_id)
    page = await messages.get_context(
        state.db,
        agent,
        session_id=session_id,
        limit=SESSION_MESSAGES,
        limits=state.settings.limits,
    )
    lean(page["messages"])
    return {**detail, "messages": page["messages"], "has_more": page["has_more"]}


async def read_memory(state: AppState, agent: Agent, args: dict[str, str]) -> dict[str, Any]:
    """The caller's own memory; memory is private, so another agent's id is refused."""
    if args["agent_id"] != agent.agent_id:
        raise PermissionDenied(
            f"memory is private to its agent; you are {agent.agent_id!r}, so read "
            f"agent://{agent.agent_id}/memory."
        )
    return await memory.memory_snapshot(state.db, agent)


RESOURCES: list[ResourceSpec] = [
    ResourceSpec(
        "session",
        UriTemplate.parse("session://{session_id}"),
        f"A session and its latest {SESSION_MESSAGES} messages you can see.",
        read_session,
        lambda args: args["session_id"],
    ),
    ResourceSpec(
        "memory",
        UriTemplate.parse("agent://{agent_id}/memory"),
        "Your own live memory entries with their values (another agent's: refused).",
        read_memory,
        lambda args: None,
    ),
]


def session_uri(session_id: str) -> str:
    return f"session://{session_id}"


def session_of(uri: str) -> str | None:
    """The session whose new messages change `uri`; None for any other URI."""
    for spec in RESOURCES:
        args = spec.match(uri)
        if args is not None:
            return spec.session_of(args)
    return None


def resolve(uri: str) -> tuple[ResourceSpec, dict[str, str]]:
    """The registry row that `uri` names. Raises MCPError (INVALID_PARAMS)."""
    if _SURROGATES.search(uri):
        # Not UTF-8, so no id holds it; the database could not even be asked.
        raise MCPError(
            code=types.INVALID_PARAMS,
            message=f"Invalid resource URI {uri!a}: it holds a lone surrogate "
            "(\\ud800-\\udfff), which no session id or agent id contains.",
            data={"uri": uri.encode("utf-8", "replace").decode()},
        )
    for spec in RESOURCES:
        args = spec.match(uri)
        if args is not None:
            return spec, args
    templates = ", ".join(spec.template.template for spec in RESOURCES)
    raise MCPError(
        code=types.INVALID_PARAMS,
        message=f"Resource not found: {uri!r} is not a resource of this server ({templates}).",
        data={"uri": uri},
    )


def resource_error(uri: str, error: BlackboardError) -> MCPError:
    """A domain error as the JSON-RPC error resources use (SEP-2164: not found is -32602)."""
    return MCPError(
        code=types.INVALID_PARAMS,
        message=f"{error.code}: {error.message}",
        data={"uri": uri, "code": error.code},
    )


async def read(state: AppState, agent: Agent, uri: str) -> dict[str, Any]:
    """Read `uri` as `agent`. Raises MCPError."""
    spec, args = resolve(uri)
    try:
        return await spec.read(state, agent, args)
    except PermissionDenied as error:
        await record_refusal(state.db, agent, "resources/read", None, uri, error)
        raise resource_error(uri, error) from None
    except BlackboardError as error:
        raise resource_error(uri, error) from None


async def list_resources(
    ctx: ServerRequestContext[AppState], params: types.PaginatedRequestParams | None
) -> types.ListResourcesResult:
    """Active sessions, newest first, a page at a time.

    A handshake-era client that lists resources hears resources/list_changed from then on,
    so the poller keeps looking for the rest of the connection. Clients that never list
    (most tool-only agents) cost no polling at all."""
    state = ctx.lifespan_context
    if state.peer is not None and not state.list_watched:
        state.list_watched = True
        await state.feed.watch_from_now()
    agent = state.process_agent(ctx)
    cursor = params.cursor if params is not None else None
    try:
        page = await sessions.list_sessions(
            state.db, agent, status="active", limit=LIST_PAGE, cursor=cursor
        )
    except BlackboardError as error:
        raise MCPError(code=types.INVALID_PARAMS, message=error.message) from None
    return types.ListResourcesResult(
        resources=[
            types.Resource(
                uri=session_uri(s["id"]),
                name=s["id"],
                title=s["purpose"][:100],
                description=f"session by {s['created_by']}, created {s['created_at']}",
                mime_type="application/json",
            )
            for s in page["sessions"]
        ],
        next_cursor=page["next_cursor"],
    )


async def list_resource_templates(
    ctx: ServerRequestContext[AppState], params: types.PaginatedRequestParams | None
) -> types.ListResourceTemplatesResult:
    return types.ListResourceTemplatesResult(
        resource_templates=[spec.to_template() for spec in RESOURCES]
    )


async def read_resource(
    ctx: ServerRequestContext[AppState], params: types.ReadResourceRequestParams
) -> types.ReadResourceResult:
    state = ctx.lifespan_context
    data = await read(state, state.process_agent(ctx), params.uri)
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return types.ReadResourceResult(
        contents=[
            types.TextResourceContents(uri=params.uri, mime_type="application/json", text=text)
        ]
    )


async def check_subscribable(state: AppState, agent: Agent, uri: str) -> None:
    """A subscription must name a resource that exists now. Raises MCPError."""
    await read(state, agent, uri)


async def subscribe(
    ctx: ServerRequestContext[AppState], params: types.SubscribeRequestParams
) -> types.EmptyResult:
    """Follow a resource (handshake era); past MAX_SUBSCRIPTIONS, LIMIT_EXCEEDED before
    anything is read."""
    state = ctx.lifespan_context
    agent = state.process_agent(ctx)
    if params.uri not in state.subscriptions.subscribed:
        refuse_past_cap(state, params.uri, 1)
    await check_subscribable(state, agent, params.uri)
    state.peer = state.peer or ctx.session
    if params.uri not in state.subscriptions.subscribed:
        await state.feed.watch_from_now()
    try:
        state.subscriptions.subscribe(params.uri, agent)
    except LimitExceeded as error:  # others subscribed while this one was checked
        state.feed.unwatch()
        raise resource_error(params.uri, error) from None
    return types.EmptyResult()


def refuse_past_cap(state: AppState, uri: str, adding: int) -> None:
    """Raises MCPError (LIMIT_EXCEEDED) unless `adding` more subscriptions fit."""
    try:
        state.subscriptions.check_room(adding)
    except LimitExceeded as error:
        raise resource_error(uri, error) from None


async def unsubscribe(
    ctx: ServerRequestContext[AppState], params: types.UnsubscribeRequestParams
) -> types.EmptyResult:
    state = ctx.lifespan_context
    resolve(params.uri)  # a URI of no resource is refused as subscribe refuses it
    if state.subscriptions.unsubscribe(params.uri):
        state.feed.unwatch()
    return types.EmptyResult()


async def initialized(
    ctx: ServerRequestContext[AppState], params: types.NotificationParams
) -> None:
    """Keep the handshake-era connection, to notify through it outside any request."""
    state = ctx.lifespan_context
    if state.peer is None:
        state.peer = ctx.session


def listen_handler(stream: ListenHandler) -> Callable[..., Awaitable[Any]]:
    """`subscriptions/listen` (discover era): check the URIs and the cap, then let the SDK
    serve the stream while the poller watches on its behalf."""

    async def listen(
        ctx: ServerRequestContext[AppState], params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        state = ctx.lifespan_context
        agent = state.process_agent(ctx)
        uris = frozenset(params.notifications.resource_subscriptions or ())
        if uris:
            refuse_past_cap(state, min(uris), len(uris))
        for uri in sorted(uris):
            await check_subscribable(state, agent, uri)
        key = object()
        try:
            state.subscriptions.open_listen(key, agent, uris)
        except LimitExceeded as error:  # others subscribed while these were checked
            raise resource_error(min(uris), error) from None
        try:
            await state.feed.watch_from_now()
            try:
                return await stream(ctx, params)
            finally:
                state.feed.unwatch()
        finally:
            state.subscriptions.close_listen(key)

    return listen


async def notify_change(state: AppState, change: Change) -> None:
    """Tell every subscriber, in both eras, what `change` means for it.

    One read per subscribing agent (the sessions with news it may see), then a look-up per
    session found: the cost follows the commit, not how many subscriptions are held."""
    if change.sessions_changed:
        if state.peer is not None:
            await state.peer.send_resource_list_changed()
        await state.bus.publish(ResourcesListChanged())
    if not change.new_messages:
        return
    published: set[str] = set()
    for agent, followed in list(state.subscriptions.agents()):
        news = await sessions_with_news(state.db, agent, change)
        for session_id in sorted(news):
            for uri, watch in sorted(followed.get(session_id, {}).items()):
                if watch.subscribed and state.peer is not None:
                    await state.peer.send_resource_updated(uri)
                if watch.listens and uri not in published:
                    published.add(uri)
                    await state.bus.publish(ResourceUpdated(uri=uri))
