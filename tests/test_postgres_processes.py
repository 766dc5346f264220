"""Real `shared-context-server` processes on one PostgreSQL database: 20 agents writing to
one session (some killed with -9 mid-stream) while a long poll pages by id, and a
PostgreSQL restart in the middle of a run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

import anyio
import psycopg
import pytest

from tests.pg_cluster import Cluster
from tests.support import INITIALIZE, INITIALIZED, ok, spawn, tool_call

pytestmark = pytest.mark.processes  # real server processes: never quick

WRITERS = 20
PER_WRITER = 30
KILLED = (3, 7, 11, 15)
ACKED_BEFORE_KILL = 8


class Writer:
    """One agent's server process, driven by raw JSON-RPC lines so it can be killed -9
    between two acknowledged writes."""

    def __init__(self, url: str, name: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shared_context_server", "--db", url, "--agent-id", name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.acked: list[tuple[int, str]] = []  # (message id, content), as answered
        self.errors: list[str] = []
        self._send(INITIALIZE)  # answered in `ready`, so that twenty start at once

    def ready(self) -> None:
        self._answer(1)
        self._send(INITIALIZED)

    def _send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def _answer(self, request_id: int) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = json.loads(self.proc.stdout.readline())
            if line.get("id") == request_id:
                return line

    def post(self, session_id: str, i: int) -> None:
        content = f"{self.name}:{i}"
        self._send(tool_call(i + 2, "add_message", {"session_id": session_id, "content": content}))
        result = self._answer(i + 2)["result"]
        if result.get("isError"):
            self.errors.append(result["content"][0]["text"])
        else:
            self.acked.append((result["structuredContent"]["message_id"], content))

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


async def test_twenty_agents_lose_nothing_and_a_long_poll_misses_nothing(pg_url: str) -> None:
    async with spawn(pg_url, "--agent-id", "reader") as reader:  # migrates the empty database
        session_id = (await ok(reader, "create_session", purpose="load"))["session_id"]
        seen: list[int] = []
        writing = True

        async def follow() -> None:
            # As an agent pages: wait for anything past the newest id seen. With ids out of
            # commit order it would step past one that commits later and never see it.
            while writing or len(seen) < len(expected_rows()):
                after = seen[-1] if seen else 0
                page = await ok(
                    reader, "wait_for_messages", session_id=session_id, after_id=after, timeout_s=2
                )
                seen.extend(m["id"] for m in page["messages"])

        def start_all() -> list[Writer]:
            writers = [Writer(pg_url, f"w{n:02d}") for n in range(WRITERS)]
            for writer in writers:
                writer.ready()
            return writers

        def write(n: int, writer: Writer) -> None:
            for i in range(PER_WRITER):
                if n in KILLED and i == ACKED_BEFORE_KILL:
                    writer.kill()  # mid-stream, after acknowledged writes
                    return
                writer.post(session_id, i)
            writer.close()

        def expected_rows() -> list[tuple[int, str]]:
            with psycopg.connect(pg_url) as conn:
                rows = conn.execute(
                    "SELECT id, content FROM messages WHERE session_id = %s ORDER BY id",
                    (session_id,),
                ).fetchall()
            return [(int(i), str(c)) for i, c in rows]

        with anyio.fail_after(600):
            async with anyio.create_task_group() as tg:
                tg.start_soon(follow)
                writers = await anyio.to_thread.run_sync(start_all)
                async with anyio.create_task_group() as posting:  # all twenty at once
                    for n, writer in enumerate(writers):
                        posting.start_soon(anyio.to_thread.run_sync, write, n, writer)
                writing = False

    rows = expected_rows()
    assert [w.errors for w in writers] == [[] for _ in writers]
    stored = dict((content, message_id) for message_id, content in rows)
    assert len(stored) == len(rows)  # nothing twice
    for n, writer in enumerate(writers):
        assert all(stored[content] == message_id for message_id, content in writer.acked)
        assert [m for m, _ in writer.acked] == sorted(m for m, _ in writer.acked)
        assert len(writer.acked) == (ACKED_BEFORE_KILL if n in KILLED else PER_WRITER)
    assert len(rows) == sum(len(w.acked) for w in writers)
    assert seen == [message_id for message_id, _ in rows]  # the long poll missed nothing
    with psycopg.connect(pg_url) as conn:
        versions = conn.execute("SELECT version FROM schema_history ORDER BY version").fetchall()
    assert len(versions) == len({v for (v,) in versions})  # every version applied once


async def test_a_postgresql_restart_fails_calls_briefly_then_servers_recover(
    pg_cluster: Cluster, pg_url: str
) -> None:
    async with (
        spawn(pg_url, "--agent-id", "writer") as writer,
        spawn(pg_url, "--agent-id", "listener") as listener,
    ):
        session_id = (await ok(writer, "create_session", purpose="restart"))["session_id"]
        first = await ok(writer, "add_message", session_id=session_id, content="before")
        await anyio.to_thread.run_sync(pg_cluster.pg_ctl, "restart", "-m", "immediate")
        codes: list[str] = []
        with anyio.fail_after(60):  # never hangs: each call fails or succeeds promptly
            while True:
                result = await writer.call_tool(
                    "add_message", {"session_id": session_id, "content": "after"}
                )
                if not result.is_error:
                    break
                codes.append(result.structured_content["code"])
                await anyio.sleep(0.2)
        assert set(codes) <= {"DATABASE_BUSY"}
        # The other process, idle through the restart, reads and is woken again.
        with anyio.fail_after(30):
            page = await ok(
                listener, "wait_for_messages", session_id=session_id, after_id=first["message_id"]
            )
        assert [m["content"] for m in page["messages"]] == ["after"]
        waiting = listener.call_tool(
            "wait_for_messages",
            {"session_id": session_id, "after_id": page["messages"][-1]["id"], "timeout_s": 30},
        )
        async with anyio.create_task_group() as tg:
            woken: list[Any] = []

            async def wait() -> None:
                woken.append(await waiting)

            tg.start_soon(wait)
            await anyio.sleep(0.5)
            await ok(writer, "add_message", session_id=session_id, content="heard")
        assert [m["content"] for m in woken[0].structured_content["messages"]] == ["heard"]
