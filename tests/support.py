"""What the tests share besides fixtures: the agents they act as, the two engines and
protocol eras, in-process and subprocess MCP clients, tool-call assertions, raw JSON-RPC
lines, bounded polling, and reading or writing a blackboard directly.

conftest.py holds the fixtures; a test module imports these by name."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
from mcp import Client, ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.memory import create_client_server_memory_streams

from shared_context_server.blackboard.identity import Agent
from shared_context_server.config import Settings
from shared_context_server.server.app import build_server, init_options
from shared_context_server.storage.opener import open_store
from shared_context_server.storage.seam import Target
from tests.pg_cluster import Cluster

ALICE = Agent("alice", "reviewer")
BOB = Agent("bob", "reviewer")
CAROL = Agent("carol", "writer")
ADMIN = Agent("root", "operator", frozenset({"read", "write", "admin"}))


ENGINES = ["sqlite", "postgres"]


async def rows(target: Target, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """What `sql` reads on the blackboard at `target`, through the store: how a test
    checks the stored data on either engine."""
    store = await open_store(target, migrate=False)
    try:
        return [tuple(row) for row in await store.read(sql, params)]
    finally:
        await store.close()


async def execute(target: Target, sql: str, params: tuple[Any, ...] = ()) -> None:
    """Run one statement in its own transaction on the blackboard at `target`."""
    store = await open_store(target, migrate=False)
    try:
        await store.transact(lambda conn: conn.execute(sql, params))
    finally:
        await store.close()


@asynccontextmanager
async def handshake_client(
    settings: Settings, client_name: str = "mcp"
) -> AsyncIterator[ClientSession]:
    """An in-process server and a ClientSession that does the `initialize` handshake."""
    client_info = types.Implementation(name=client_name, version="0")
    server = build_server(settings)
    async with create_client_server_memory_streams() as (client_streams, server_streams):
        done = anyio.Event()

        async def run_server() -> None:
            try:
                await server.run(*server_streams, init_options(server, settings))
            finally:
                done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(run_server)
            try:
                async with ClientSession(*client_streams, client_info=client_info) as session:
                    await session.initialize()
                    yield session
            finally:
                await client_streams[1].aclose()
                with anyio.move_on_after(5):
                    await done.wait()
                tg.cancel_scope.cancel()


class ModernSession:
    """mcp.Client (discover era: no handshake) behind the ClientSession methods the tests use."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def call_tool(self, name: str, arguments: dict[str, Any] | None = None) -> Any:
        return await self.client.call_tool(name, arguments or {})

    async def list_tools(self) -> Any:
        return await self.client.list_tools()


@asynccontextmanager
async def modern_client(
    settings: Settings, client_name: str = "mcp"
) -> AsyncIterator[ModernSession]:
    client_info = types.Implementation(name=client_name, version="0")
    async with Client(build_server(settings), client_info=client_info) as client:
        assert client.protocol_version == "2026-07-28"
        yield ModernSession(client)


ERAS = ["handshake", "discover"]


@asynccontextmanager
async def connect(era: str, settings: Settings, client_name: str = "mcp") -> AsyncIterator[Any]:
    """A client session of the given protocol era to an in-process server."""
    opener = handshake_client if era == "handshake" else modern_client
    async with opener(settings, client_name) as session:
        yield session


# The raw wire of the handshake era, for tests that write JSON-RPC lines themselves.
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"},
    },
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def run_cli(
    *args: str, env: dict[str, str] | None = None, stdin: str = "", clean_env: bool = False
) -> subprocess.CompletedProcess[str]:
    """The command line in a real process: `python -m shared_context_server ARGS`.

    stdin is empty by default, so a server started this way reads the end of its input and
    exits; `clean_env` drops the caller's SHARED_CONTEXT_* variables first."""
    base = {
        k: v for k, v in os.environ.items() if not (clean_env and k.startswith("SHARED_CONTEXT_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "shared_context_server", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        input=stdin,
        env={**base, **(env or {})},
    )


def tool_call(request_id: int, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    params = {"name": tool, "arguments": arguments}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def server_params(
    db: Target, *args: str, env: dict[str, str] | None = None
) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "shared_context_server", *args, "--db", str(db)],
        env=env or {},
    )


@asynccontextmanager
async def spawn(
    db: Target, *args: str, env: dict[str, str] | None = None, message_handler: Any = None
) -> AsyncIterator[ClientSession]:
    """A real `shared-context-server` subprocess over stdio, handshake done.

    `message_handler` receives the server's notifications (see `Inbox`)."""
    async with (
        stdio_client(server_params(db, *args, env=env)) as (read, write),
        ClientSession(read, write, message_handler=message_handler) as session,
    ):
        with anyio.fail_after(30):
            await session.initialize()
        yield session


class Inbox:
    """Collects the notifications a client session receives; `wait_for` one that matches."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = anyio.Event()

    async def __call__(self, message: Any) -> None:
        self.items.append(message)
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, match: Callable[[Any], bool]) -> Any:
        with anyio.fail_after(10):
            while True:
                for item in self.items:
                    if match(item):
                        return item
                await self._changed.wait()


async def ok(session: Any, tool: str, **arguments: Any) -> dict[str, Any]:
    """Call a tool that must succeed; returns its structured content."""
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, result.content[0].text
    data: dict[str, Any] = result.structured_content
    return data


async def fails(session: Any, tool: str, code: str, **arguments: Any) -> str:
    """Call a tool that must fail with `code`; returns the error text a model would read."""
    result = await session.call_tool(tool, arguments)
    assert result.is_error, f"{tool} succeeded: {result.structured_content}"
    assert result.structured_content["code"] == code, result.structured_content
    text: str = result.content[0].text
    assert text.startswith(code)
    return text


async def poll_until(condition: Callable[[], bool]) -> None:
    """Check `condition` every 20 ms until it holds (the caller bounds the wait)."""
    while True:
        if condition():
            return
        await anyio.sleep(0.02)


async def poll_until_true(condition: Callable[[], Awaitable[bool]]) -> None:
    """Ask `condition` (a read) every 20 ms until it holds (the caller bounds the wait)."""
    while True:
        if await condition():
            return
        await anyio.sleep(0.02)


def create_database(cluster: Cluster, template: str = "template1") -> str:
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    return name


def drop_database(cluster: Cluster, name: str) -> None:
    """Remove a test's database, and any connection a server of the test left behind."""
    import psycopg

    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
