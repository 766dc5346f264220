"""A real `shared-context-server dashboard` process for the dashboard tests, and the file
they read."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import httpx2 as httpx

from shared_context_server.blackboard import memory
from shared_context_server.blackboard.messages import add_message
from shared_context_server.blackboard.sessions import create_session
from shared_context_server.storage.opener import open_store
from shared_context_server.storage.seam import Target
from tests.support import ADMIN, ALICE, BOB, CAROL

SECRETS = ("SECRET-private", "SECRET-agent-only", "SECRET-admin-only")
HOSTILE = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2"> hostile'


@dataclass
class Dashboard:
    url: str  # as printed, with the token
    base: str
    token: str
    port: int
    pid: int
    cookie: tuple[str, str]  # what the printed URL set: name, value
    stderr: bytearray  # what it has logged so far

    @property
    def host(self) -> str:
        return self.base.removeprefix("http://").rsplit(":", 1)[0]

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """A client holding the cookie, as a browser does after the first visit."""
        cookies = dict([self.cookie])
        return httpx.AsyncClient(base_url=self.base, cookies=cookies, timeout=10, **kwargs)


async def trade_token(url: str) -> tuple[str, str]:
    """Visit the printed URL as a browser first does; the cookie it sets."""
    async with httpx.AsyncClient(timeout=10) as browser:
        first = await browser.get(url)
    assert first.status_code == 303, first.text
    name, _, value = first.headers["set-cookie"].partition(";")[0].partition("=")
    return name, value


async def _gather(stream: anyio.abc.ByteReceiveStream, into: bytearray) -> None:
    with contextlib.suppress(anyio.EndOfStream, anyio.ClosedResourceError):
        async for chunk in stream:
            into += chunk


@asynccontextmanager
async def dashboard(db: Target, *flags: str) -> AsyncIterator[Dashboard]:
    """Run `dashboard --db db *flags` until the block ends, then stop it with Ctrl-C."""
    command = [sys.executable, "-m", "shared_context_server", "dashboard", "--db", str(db)]
    async with (
        await anyio.open_process([*command, *flags]) as process,
        anyio.create_task_group() as tg,
    ):
        assert process.stdout is not None and process.stderr is not None
        stderr = bytearray()
        tg.start_soon(_gather, process.stderr, stderr)
        with anyio.fail_after(30):
            url = (await process.stdout.receive()).decode().strip().splitlines()[0]
            cookie = await trade_token(url)
        base, _, token = url.partition("/?token=")
        port = int(base.rsplit(":", 1)[1])
        try:
            yield Dashboard(url, base, token, port, process.pid, cookie, stderr)
        finally:
            process.send_signal(signal.SIGINT)
            with anyio.fail_after(20):
                assert await process.wait() == 0


async def blackboard(path: Target) -> str:
    """A file with one session holding a public finding, a private note, an agent_only
    reply to the finding (bob, reviewer), a public reply carrying markup (carol), an
    admin_only message, and some memory; returns the session id."""
    db = await open_store(path)
    try:
        sid = (await create_session(db, ALICE, "review the parser", {"ticket": 7}))["id"]
        first = await add_message(db, ALICE, sid, "finding: overflow in parse_header")
        await add_message(db, ALICE, sid, f"{SECRETS[0]} note to self", visibility="private")
        await add_message(
            db,
            BOB,
            sid,
            f"{SECRETS[1]} reply",
            visibility="agent_only",
            parent_message_id=first["message_id"],
            metadata={"confidence": 0.9},
        )
        await add_message(db, CAROL, sid, HOSTILE, parent_message_id=first["message_id"])
        await add_message(db, ADMIN, sid, f"{SECRETS[2]} note", visibility="admin_only")
        await memory.set_memory(db, ALICE, "plan", {"step": "SECRET-memory-value"})
        return sid
    finally:
        await db.close()
