"""Three agents, three server processes, one hand-off chain: security -> performance -> docs.

    .venv/bin/python examples/multi_agent_pipeline.py [DB]    (from a clone, after the quick start)

All three start at once, each as its own `shared-context-server` process spoken to over
stdio by the official MCP client. Each waits for the agent before it, reads what the others
found, and adds its own part: performance builds on the security finding, docs summarises
both, and security reads the summary back. Watch it live from another terminal with
`shared-context-server tail SESSION --follow --db DB`.

DB is a file (default: a temporary one) or a PostgreSQL URL, postgresql://user@host:5432/db
(the password in ~/.pgpass; needs the driver: uv sync --extra postgres).
"""

from __future__ import annotations

import shlex
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
    from shared_context_server.storage.opener import shown
    from shared_context_server.storage.seam import Target
except ImportError:  # a python without the project installed: say which one to use
    raise SystemExit(
        "this example needs the project's virtualenv: from the clone, after the README's "
        "quick start, run `.venv/bin/python examples/multi_agent_pipeline.py`"
    ) from None

WAIT_SECONDS = 60


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


async def wait_for_message(
    session: ClientSession, session_id: str, sender: str, after_id: int = 0
) -> dict[str, Any]:
    """The first message from `sender` after `after_id`, however long it takes to arrive.

    `wait_for_messages` returns as soon as any message newer than `after_id` exists (from
    any process), so the wait costs one blocking call per batch of news, not a poll loop.
    """
    with anyio.fail_after(WAIT_SECONDS):
        while True:
            page = await call(
                session, "wait_for_messages", session_id=session_id, after_id=after_id
            )
            for message in page["messages"]:
                if message["sender"] == sender:
                    return message
                after_id = message["id"]


async def security(s: ClientSession, sid: str) -> None:
    finding = await call(
        s,
        "add_message",
        session_id=sid,
        message_type="finding",
        content="SQL built with f-strings in search(): injectable through ?q=. "
        "Use bound parameters.",
    )
    print(f"security     posted finding #{finding['message_id']}")
    summary = await wait_for_message(s, sid, "docs", finding["message_id"])
    print(f"security     read the docs summary #{summary['id']} and signs off")
    await call(
        s, "add_message", session_id=sid, content="Signed off.", parent_message_id=summary["id"]
    )


async def performance(s: ClientSession, sid: str) -> None:
    finding = await wait_for_message(s, sid, "security")
    print(f"performance  read security's #{finding['id']}: {finding['content'][:40]}...")
    reply = await call(
        s,
        "add_message",
        session_id=sid,
        message_type="finding",
        parent_message_id=finding["id"],
        content="While fixing that: search() runs one query per result row (N+1). "
        "Fetch the rows in one query with the bound parameters.",
    )
    print(f"performance  posted finding #{reply['message_id']} in reply")


async def docs(s: ClientSession, sid: str) -> None:
    await wait_for_message(s, sid, "performance")
    history = await call(s, "get_context", session_id=sid)
    findings = [m for m in history["messages"] if m["message_type"] == "finding"]
    print(
        f"docs         read {len(findings)} findings from {sorted({m['sender'] for m in findings})}"
    )
    summary = "Release note: search() now uses bound parameters and one query. " + " ".join(
        f"[#{m['id']} {m['sender']}]" for m in findings
    )
    posted = await call(s, "add_message", session_id=sid, message_type="summary", content=summary)
    print(f"docs         posted summary #{posted['message_id']}")


async def main(db: Target, keep: bool = False) -> None:
    async with (
        stdio_client(server(db, "security")) as (sr, sw),
        ClientSession(sr, sw) as sec,
        stdio_client(server(db, "performance")) as (pr, pw),
        ClientSession(pr, pw) as perf,
        stdio_client(server(db, "docs")) as (dr, dw),
        ClientSession(dr, dw) as doc,
    ):
        for session in (sec, perf, doc):
            await session.initialize()
        sid = (await call(sec, "create_session", purpose="Review PR #7: search endpoint"))[
            "session_id"
        ]
        print(f"session {sid} on {shown(db)}")
        async with anyio.create_task_group() as tg:  # all three work at the same time
            tg.start_soon(docs, doc, sid)
            tg.start_soon(performance, perf, sid)
            tg.start_soon(security, sec, sid)
        final = await call(doc, "get_session", session_id=sid)
        print(f"done: {final['message_count']} messages from {', '.join(final['participants'])}")
    if keep:
        here = Path(sys.executable).parent / "shared-context-server"
        print(f"the transcript: {shlex.join([str(here), 'tail', sid, '--db', shown(db)])}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        anyio.run(main, target(sys.argv[1]), True)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            anyio.run(main, Path(tmp) / "pipeline.db")
