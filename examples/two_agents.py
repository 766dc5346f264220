"""Two agents, two server processes, one blackboard: the smallest script that uses it.

    .venv/bin/python examples/two_agents.py [DB]    (from a clone, after the quick start)

A planner posts a task and a private note; a coder, in its own process, reads what it is
allowed to see and answers in a thread. Both talk to `shared-context-server` over stdio
through the official MCP client, as any host would.

DB is a file (default: a temporary one) or a PostgreSQL URL, postgresql://user@host:5432/db
(the password in ~/.pgpass; needs the driver: uv sync --extra postgres).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

try:
    import anyio
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    from shared_context_server.config import resolve_db_path
    from shared_context_server.errors import InvalidInput
    from shared_context_server.storage.seam import Target
except ImportError:  # a python without the project installed: say which one to use
    raise SystemExit(
        "this example needs the project's virtualenv: from the clone, after the README's "
        "quick start, run `.venv/bin/python examples/two_agents.py`"
    ) from None


def target(arg: str) -> Target:
    """DB as the server reads --db: a postgresql:// URL stays a URL, anything else is a
    file; a mistyped scheme is refused rather than made a file named after the URL."""
    try:
        db = resolve_db_path(arg)
    except InvalidInput as error:
        raise SystemExit(error.message) from None
    return db.absolute() if isinstance(db, Path) else db


def server(db: Target, agent_id: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "shared_context_server", "--db", str(db), "--agent-id", agent_id],
    )


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await session.call_tool(tool, arguments)
    if result.is_error:
        raise SystemExit(f"{tool}: {result.content[0].text}")  # type: ignore[union-attr]
    return result.structured_content or {}


async def main(db: Target) -> None:
    async with (
        stdio_client(server(db, "planner")) as (pr, pw),
        ClientSession(pr, pw) as planner,
        stdio_client(server(db, "coder")) as (cr, cw),
        ClientSession(cr, cw) as coder,
    ):
        await planner.initialize()
        await coder.initialize()

        sid = (await call(planner, "create_session", purpose="Add rate limiting"))["session_id"]
        task = await call(planner, "add_message", session_id=sid, content="Limit /login to 5/min")
        await call(planner, "add_private_note", session_id=sid, content="Ask about Redis later")

        seen = await call(coder, "get_context", session_id=sid)
        count = len(seen["messages"])
        print(f"coder sees {count} message{'' if count == 1 else 's'}:")
        for message in seen["messages"]:
            print(f"  #{message['id']} {message['sender']}: {message['content']}")
        await call(
            coder,
            "add_message",
            session_id=sid,
            content="Done: token bucket per IP, 5 per minute",
            parent_message_id=task["message_id"],
        )
        new = await call(planner, "get_context", session_id=sid, after_id=task["message_id"])
        print("planner reads the reply:", new["messages"][-1]["content"])


if __name__ == "__main__":
    if len(sys.argv) > 1:
        anyio.run(main, target(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            anyio.run(main, Path(tmp) / "example.db")
