"""`shared-context-server demo`: three agents, three real server processes, one blackboard.

Each agent is its own `shared-context-server` process spoken to over stdio by the official
MCP client, exactly as Claude Code or Cursor would run it. The demo never touches the
user's real blackboard: it uses a temporary file unless `--db` names one.
"""

from __future__ import annotations

import sys
import tempfile
import textwrap
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from shared_context_server.about import install_route
from shared_context_server.operations.client_config import render_config
from shared_context_server.storage.opener import (
    default_db_path,
    is_postgres_url,
    open_store,
    shown,
)
from shared_context_server.storage.seam import Target
from shared_context_server.terminal import colour_enabled, paint

_COLOURS = {"security": "31", "performance": "33", "docs": "36"}


@dataclass
class DemoAgent:
    name: str
    agent_type: str
    role: str
    session: ClientSession | None = None
    seen: set[int] = field(default_factory=set)

    async def call(self, tool: str, **arguments: Any) -> dict[str, Any]:
        assert self.session is not None
        result = await self.session.call_tool(tool, arguments)
        data = result.structured_content or {}
        if result.is_error:
            raise RuntimeError(f"{self.name}: {tool} failed: {data.get('message')}")
        return data


class Narrator:
    def __init__(self, pace: float) -> None:
        self.pace = pace
        self.colour = colour_enabled(sys.stdout)

    def paint(self, text: str, code: str) -> str:
        return paint(text, code, self.colour)

    def dim(self, text: str) -> str:
        return self.paint(text, "2")

    async def say(self, agent: DemoAgent, action: str, body: str = "") -> None:
        label = self.paint(f"{agent.name:>11}", "1;" + _COLOURS.get(agent.name, "37"))
        print(f"{label}  {action}")
        if body:
            print(textwrap.indent(textwrap.fill(body, 76), " " * 15))
        sys.stdout.flush()
        await anyio.sleep(self.pace)


def _server(db: Target, agent: DemoAgent) -> StdioServerParameters:
    args = ["-m", "shared_context_server", "serve", "--db", str(db)]
    args += ["--agent-id", agent.name, "--agent-type", agent.agent_type]
    return StdioServerParameters(command=sys.executable, args=args)


async def run_demo(db: Target | None, pace: float = 0.5) -> int:
    """Run the demo on `db` (an absolute path or a PostgreSQL URL), or on a temporary file
    removed afterwards."""
    if db is not None:
        return await _run(db, pace, temporary=False)
    with tempfile.TemporaryDirectory(prefix="shared-context-demo-") as tmp:
        return await _run(Path(tmp) / "demo.db", pace, temporary=True)


async def _run(db: Target, pace: float, *, temporary: bool) -> int:
    # Open the file here first: a path that cannot hold a blackboard is one clear
    # StorageError up front, not three failing server processes.
    await (await open_store(db)).close()
    n = Narrator(pace)
    security = DemoAgent("security", "reviewer", "security reviewer")
    performance = DemoAgent("performance", "reviewer", "performance reviewer")
    docs = DemoAgent("docs", "writer", "documentation writer")
    agents = [security, performance, docs]

    print(n.paint("shared-context-server demo", "1") + ": three agents, one blackboard")
    where = "a temporary file, deleted at the end" if temporary else "kept after the demo"
    print(n.dim(f"blackboard: {shown(db)} ({where})"))
    print(n.dim("each agent below is its own server process, spoken to over stdio\n"))

    async with AsyncExitStack() as stack:
        for agent in agents:
            read, write = await stack.enter_async_context(stdio_client(_server(db, agent)))
            agent.session = await stack.enter_async_context(ClientSession(read, write))
            await agent.session.initialize()
            who = await agent.call("whoami")
            await n.say(agent, f"joined as {who['agent_id']} ({agent.role}, {agent.agent_type})")
        print()
        await _collaborate(n, security, performance, docs)
    print()
    print(n.paint("What happened", "1"))
    shared = "one PostgreSQL database" if is_postgres_url(db) else "one SQLite file"
    print(
        f"  Three processes shared {shared}; nothing else connected them. Each read\n"
        "  only what its visibility allowed: the private note stayed with security, and\n"
        "  the reviewers-only sign-off never reached docs."
    )
    print(n.paint("\nNext", "1"))
    print(next_steps(db, temporary=temporary))
    return 0


async def _collaborate(
    n: Narrator, security: DemoAgent, performance: DemoAgent, docs: DemoAgent
) -> None:
    session = await security.call(
        "create_session", purpose="Review PR #42: retry logic in the payments client"
    )
    sid = session["session_id"]
    await n.say(security, f"opened session {sid}", session["purpose"])

    finding = (
        "The retry loop logs every failed request in full, Authorization header included: "
        "card-processor tokens end up in our log pipeline. Redact headers before logging."
    )
    first = await security.call(
        "add_message", session_id=sid, content=finding, message_type="finding"
    )
    await n.say(security, f"#{first['message_id']} public finding", finding)

    note = "Later: check whether the auth module rotates these tokens at all."
    private = await security.call("add_private_note", session_id=sid, content=note)
    await n.say(
        security, f"#{private['message_id']} private note (only security can read it)", note
    )

    context = await performance.call("get_context", session_id=sid)
    ids = [m["id"] for m in context["messages"]]
    await n.say(
        performance,
        f"reads the session: {_ids(ids)}" + n.dim("  (the private note is not there)"),
    )
    reply = (
        "Agreed, and the same loop has no backoff cap: 10 retries with a 30 s timeout can "
        "hold a worker for 5 minutes. Cap total retry time at 20 s with jittered backoff."
    )
    second = await performance.call(
        "add_message",
        session_id=sid,
        content=reply,
        message_type="finding",
        parent_message_id=first["message_id"],
    )
    await n.say(performance, f"#{second['message_id']} reply to #{first['message_id']}", reply)
    signoff = "Security: shall we both sign off before docs writes the release note?"
    third = await performance.call(
        "add_message", session_id=sid, content=signoff, visibility="agent_only"
    )
    await n.say(
        performance, f"#{third['message_id']} agent_only (reviewers see it, docs does not)", signoff
    )

    new = await security.call("get_context", session_id=sid, after_id=private["message_id"])
    await n.say(
        security,
        f"reads what is new after #{private['message_id']}: "
        + _ids([m["id"] for m in new["messages"]]),
    )
    agreed = "Signed off, once headers are redacted and retries are capped."
    fourth = await security.call(
        "add_message",
        session_id=sid,
        content=agreed,
        visibility="agent_only",
        parent_message_id=third["message_id"],
    )
    await n.say(
        security, f"#{fourth['message_id']} agent_only reply to #{third['message_id']}", agreed
    )

    seen = await docs.call("get_context", session_id=sid)
    visible = [m["id"] for m in seen["messages"]]
    hidden = sorted({private["message_id"], third["message_id"], fourth["message_id"]})
    await n.say(
        docs,
        f"reads the session: {_ids(visible)}"
        + n.dim(f"  ({_ids(hidden)} hidden: a private note and the reviewers' exchange)"),
    )
    summary = "; ".join(
        f"#{m['id']} {m['sender']}: {m['content'].split(':')[0].split('.')[0]}"
        for m in seen["messages"]
    )
    release = (
        "Release note for PR #42: request headers are now redacted from retry logs, and "
        "retries stop after 20 s with jittered backoff. Based on " + summary + "."
    )
    last = await docs.call("add_message", session_id=sid, content=release, message_type="summary")
    await n.say(docs, f"#{last['message_id']} public summary", release)

    posted = len([first, private, second, third, fourth, last])
    for agent in (security, performance, docs):
        detail = await agent.call("get_session", session_id=sid)
        await n.say(
            agent,
            f"can see {detail['message_count']} of the {posted} messages, "
            f"from {', '.join(detail['participants'])}",
        )


def next_steps(db: Target, *, temporary: bool) -> str:
    """The closing hint. Agents told nothing of --db share the default file, so the
    example names the demo's --db unless that is the default (or was temporary)."""
    team = None if temporary or db == default_db_path() else db
    which = "this machine's blackboard" if team is None else "this demo's blackboard"
    lines = [
        "  Give each of your agents its own id in its client's config, for example:",
        f"    {next_command(team)}",
        f"  and they will share {which} (`config --help` for other clients).",
    ]
    if team is not None and shown(team) != str(team):
        lines.append("  Put the password (shown as ***) in ~/.pgpass, not in the config.")
    if not temporary:
        lines.append(f"  This demo's blackboard is kept in {shown(db)}.")
    return "\n".join(lines)


def next_command(db: Target | None = None) -> str:
    """The demo's closing example, fit to this copy: uvx's environment is a cache entry,
    so from uvx it names uvx; any other install (pipx, a venv, a clone) names its own
    executable, which works before 2.0.0 is on the package index, and after. With `db`,
    its --db, a URL's password hidden."""
    local = install_route() != "uvx"
    where = shown(db) if db is not None and is_postgres_url(db) else db
    return render_config("claude-code", agent_id="claude-main", db=where, local=local)


def _ids(ids: list[int]) -> str:
    if not ids:
        return "nothing"
    return "messages " + ", ".join(f"#{i}" for i in ids)
