"""The MCP server: handlers, the dispatch boundary, and serving over stdio."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import mcp_types as types
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.server.models import InitializationOptions
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from shared_context_server.about import PACKAGE, package_version
from shared_context_server.blackboard.audit import record_refusal
from shared_context_server.blackboard.changes import ChangeFeed
from shared_context_server.blackboard.claims import Presence, release_process
from shared_context_server.blackboard.identity import Agent
from shared_context_server.blackboard.lease import new_holder_id, release_lease
from shared_context_server.blackboard.limits import check_depth, check_no_nul
from shared_context_server.blackboard.maintenance import LEASE, run_maintenance
from shared_context_server.blackboard.processes import Heartbeat
from shared_context_server.blackboard.search import Indexer
from shared_context_server.blackboard.tokens import resolve_token
from shared_context_server.config import Settings
from shared_context_server.errors import (
    BlackboardError,
    InvalidInput,
    PermissionDenied,
    TokenInvalid,
)
from shared_context_server.instructions import AGENT_INSTRUCTIONS
from shared_context_server.server import channels, render, resources
from shared_context_server.server.models import Input
from shared_context_server.server.state import AppState
from shared_context_server.server.stdio import stdio_streams
from shared_context_server.server.subscriptions import Subscriptions
from shared_context_server.server.toolsets import tool_list_for, tools_for
from shared_context_server.storage.opener import open_store
from shared_context_server.storage.seam import Store

if TYPE_CHECKING:  # the records toolset is imported only when it is offered
    from shared_context_server.blackboard.records.location import RecordsStore

logger = logging.getLogger(__name__)

# The initialize result's instructions; `config --instructions` prints the same for a
# CLAUDE.md or AGENTS.md (operations/client_config.py keeps the one text).
INSTRUCTIONS = AGENT_INSTRUCTIONS


def tool_result(data: dict[str, Any], text: str, *, is_error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        structured_content=data,
        is_error=is_error,
    )


def error_result(error: BlackboardError) -> types.CallToolResult:
    data = error.to_dict()
    return tool_result(data, render.error(data), is_error=True)


# What a refused call was aimed at, from the arguments that name one (audit `target`).
TARGETS = (
    ("message_id", "message"),
    ("key", "memory"),
    ("table_name", "table"),
    ("agent_id", "agent"),
)


def target(arguments: Input) -> str | None:
    for name, kind in TARGETS:
        value = getattr(arguments, name, None)
        if value is not None:
            return f"{kind}:{value}"
    return None


def invalid_arguments(tool: str, error: ValidationError) -> BlackboardError:
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in item["loc"]) or "arguments"
        # "Value error, ..." is pydantic's prefix for our validators' own messages.
        problems.append(f"{where}: {item['msg'].removeprefix('Value error, ')}")
    return InvalidInput(
        f"invalid arguments for {tool}: {'; '.join(problems)}. "
        "Check the tool's inputSchema and call again.",
        problems=problems,
    )


async def list_tools(
    ctx: ServerRequestContext[AppState], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    state = ctx.lifespan_context
    state.note_client(ctx, state.process_agent(ctx))
    return types.ListToolsResult(tools=tool_list_for(state.settings.toolsets))


async def call_tool(
    ctx: ServerRequestContext[AppState], params: types.CallToolRequestParams
) -> types.CallToolResult:
    """The dispatch boundary: every error an agent can fix becomes an is_error result."""
    state = ctx.lifespan_context
    tools = tools_for(state.settings.toolsets)
    spec = tools.get(params.name)
    if spec is None:
        raise MCPError(
            code=types.INVALID_PARAMS,
            message=f"Unknown tool: {params.name!r}. Known tools: {', '.join(tools)}.",
        )
    agent: Agent | None = None
    arguments: Input | None = None
    try:
        for name, value in (params.arguments or {}).items():
            check_depth(value, name)  # before anything walks it recursively
            check_no_nul(value, name)  # nested texts are stored as JSON, NUL escaped
        arguments = spec.input_model.model_validate(params.arguments or {})
        agent = state.process_agent(ctx)
        state.note_client(ctx, agent)
        if arguments.agent_token is not None:
            agent = await resolve_token(state.db, arguments.agent_token, agent)
        data = await spec.handler(state, agent, arguments)
    except ValidationError as error:
        return error_result(invalid_arguments(spec.name, error))
    except (PermissionDenied, TokenInvalid) as error:
        # Refusals are audited: who tried what, where, and why it was refused.
        if agent is not None and arguments is not None:
            session_id = getattr(arguments, "session_id", None)
            await record_refusal(state.db, agent, spec.name, session_id, target(arguments), error)
        return error_result(error)
    except BlackboardError as error:
        return error_result(error)
    except UnicodeEncodeError:
        # JSON can carry lone surrogates ("\\ud800") that no UTF-8 database can store.
        return error_result(
            InvalidInput(f"{spec.name}: a text argument holds invalid Unicode; send UTF-8 text.")
        )
    except Exception:
        logger.exception("tool %s failed", spec.name)
        data = {
            "code": "INTERNAL_ERROR",
            "message": f"{spec.name} failed inside the server (logged to its stderr); "
            "retry once, and report it if it happens again.",
        }
        return tool_result(data, render.error(data), is_error=True)
    return tool_result(data, spec.render(data))


def build_server(
    settings: Settings, db: Store | None = None, records: RecordsStore | None = None
) -> Server[AppState]:
    """A Server over `db` (and `records`), or over connections its lifespan opens
    (in-process tests)."""

    bus = InMemorySubscriptionBus()

    @asynccontextmanager
    async def lifespan(server: Server[AppState]) -> AsyncIterator[AppState]:
        database = db or await open_store(settings.db_path)
        store = records
        try:
            if store is None and "records" in settings.toolsets:
                store = await open_records(settings, database)
            async with _running(settings, database, bus, store) as state:
                yield state
        finally:
            if store is not None and records is None:
                await store.close()
            if db is None:
                await database.close()

    server: Server[AppState] = Server(
        PACKAGE,
        version=package_version(),
        instructions=INSTRUCTIONS + (channels.INSTRUCTIONS if settings.push != "off" else ""),
        lifespan=lifespan,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=resources.list_resources,
        on_list_resource_templates=resources.list_resource_templates,
        on_read_resource=resources.read_resource,
        on_subscribe_resource=resources.subscribe,
        on_unsubscribe_resource=resources.unsubscribe,
        on_subscriptions_listen=resources.listen_handler(ListenHandler(bus)),
    )
    server.add_notification_handler(
        "notifications/initialized", types.NotificationParams, resources.initialized
    )
    return server


@asynccontextmanager
async def _running(
    settings: Settings,
    database: Store,
    bus: InMemorySubscriptionBus,
    records: RecordsStore | None,
) -> AsyncIterator[AppState]:
    """The process's work beside its requests: the change poller, the heartbeat, the
    search indexer, and maintenance (first round a second or so later; one process at a
    time)."""
    feed = ChangeFeed(database, settings.poll_interval)
    heartbeat = Heartbeat(database, settings.agent_type, settings.agent_id)
    presence = Presence(socket.gethostname(), os.getpid(), secrets.token_hex(8))
    state = AppState(
        settings=settings,
        db=database,
        feed=feed,
        bus=bus,
        subscriptions=Subscriptions(resources.session_of),
        heartbeat=heartbeat,
        presence=presence,
        records=records,
    )
    indexer = Indexer(database)
    if records is not None:
        records.audit_into(database)
    stop_poking = database.on_commit(feed.poke)
    stop_indexing = database.on_commit(indexer.poke)
    await feed.start()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(database.listen)
            tg.start_soon(feed.run, partial(resources.notify_change, state))
            # In the background: the first beat must not delay the handshake.
            tg.start_soon(heartbeat.run)
            tg.start_soon(indexer.run)
            holder = new_holder_id()
            tg.start_soon(run_maintenance, database, holder, settings.policy())
            if settings.push != "off":
                tg.start_soon(channels.push_news, state)
            try:
                yield state
            finally:
                tg.cancel_scope.cancel()
                with anyio.move_on_after(2, shield=True):
                    try:
                        # Claims first: once the row is gone they are dead anyway.
                        await release_process(database, presence)
                        await heartbeat.remove()
                        # A clean exit hands maintenance on at once, not after the lease
                        # runs out.
                        await release_lease(database, LEASE, holder)
                    except BlackboardError as error:
                        # Busy, or the file went bad (full disk, deleted): exit cleanly
                        # all the same; the row and the lease expire on their own.
                        logger.info("at exit: %s; the row and lease expire", error)
    finally:
        stop_poking()
        stop_indexing()


def init_options(server: Server[AppState], settings: Settings) -> InitializationOptions:
    return server.create_initialization_options(
        notification_options=NotificationOptions(resources_changed=True),
        experimental_capabilities=channels.experimental_capabilities(settings.push),
    )


async def open_records(settings: Settings, db: Store) -> RecordsStore:
    """The shared tables of the blackboard `db`: the file beside it (SQLite), or the
    records schema of its database (PostgreSQL). Raises StorageError."""
    from shared_context_server.blackboard.records.location import RecordsStore
    from shared_context_server.storage.opener import open_records as open_tables

    return RecordsStore.of(await open_tables(db, allow_writes=settings.allow_raw_writes))


async def serve_stdio(settings: Settings, interactive: bool = False) -> None:
    """Serve one client over stdin/stdout until it closes the pipe; `interactive` (stdin is
    a terminal): Ctrl-C ends it at once, with exit status 0.

    The files are opened first, so a database that cannot be used stops the process with
    its own message before any protocol starts. Raises StorageError.
    """
    db = await open_store(settings.db_path)
    records: RecordsStore | None = None
    interrupted = False
    try:
        if "records" in settings.toolsets:
            records = await open_records(settings, db)
        server = build_server(settings, db, records)
        async with stdio_streams(settings.stdio == "threads") as (read_stream, write_stream):
            ctrl_c = anyio.Event()
            async with anyio.create_task_group() as tg:
                if interactive:
                    tg.start_soon(_cancel_on_ctrl_c, tg.cancel_scope, ctrl_c)
                await server.run(read_stream, write_stream, init_options(server, settings))
                tg.cancel_scope.cancel()
            interrupted = ctrl_c.is_set()
            if interrupted:
                # The server's own cleanup (heartbeat row, maintenance lease) has run. The
                # transport's reader thread is blocked reading the terminal until Enter,
                # and no thread can be cancelled: close the files, then leave without it.
                await _close(db, records)
                sys.stderr.flush()
                os._exit(0)
    finally:
        if not interrupted:
            await _close(db, records)


async def _close(db: Store, records: RecordsStore | None) -> None:
    if records is not None:
        await records.close()
    await db.close()


async def _cancel_on_ctrl_c(scope: anyio.CancelScope, pressed: anyio.Event) -> None:
    try:
        with anyio.open_signal_receiver(signal.SIGINT) as signals:
            async for _ in signals:
                pressed.set()
                scope.cancel()
                return
    except NotImplementedError:
        # Windows' event loop takes no signal handlers: Ctrl-C arrives as
        # KeyboardInterrupt instead, which the command line ends quietly on a terminal.
        return
