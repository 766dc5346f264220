"""A team larger than PostgreSQL's default connection limit: 150 real server processes
over stdio on one cluster with max_connections = 100, each answering a call while all
of them write their heartbeats, a fifth of them woken from a long poll by another's
post (docs/POSTGRES.md, Connections and poolers). About 90 s on two idle cores; the
agents' processes run at a lower priority (nice 10), so that the tests running beside it
on other xdist workers keep their share of the CPU. `pytest -m crowd` runs it alone."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from tests.pg_cluster import TEST_SETTINGS, Cluster, started
from tests.support import INITIALIZE, INITIALIZED, tool_call

pytestmark = [pytest.mark.crowd, pytest.mark.processes]

AGENTS = 150
BATCH = 30
WAITER_EVERY = 5  # every fifth agent long-polls
CALL_BOUND_S = 20.0  # a call waits for locks at most BUSY_SECONDS
COUNT = (
    "SELECT count(*) FILTER (WHERE application_name = 'shared-context-server'),"
    " count(*) FILTER (WHERE application_name = 'shared-context-server'"
    "   AND left(query, 6) = 'LISTEN'),"
    " count(*) FILTER (WHERE backend_type = 'client backend')"
    " FROM pg_stat_activity"
)


class Agent:
    """One agent's server process, driven by raw JSON-RPC lines."""

    def __init__(self, proc: Process) -> None:
        self.proc = proc
        assert proc.stdout is not None
        self.out = BufferedByteReceiveStream(proc.stdout)
        self.next_id = 2

    @classmethod
    async def start(cls, url: str, name: str, log: Path) -> Agent:
        command = [sys.executable, "-m", "shared_context_server", "--db", url]
        if shutil.which("nice"):  # not on Windows
            command = ["nice", "-n", "10", *command]
        with log.open("wb") as stderr:
            proc = await anyio.open_process(
                [*command, "--agent-id", name], stderr=stderr, env=dict(os.environ)
            )
        agent = cls(proc)
        await agent.send(INITIALIZE)
        await agent.answer(1)
        await agent.send(INITIALIZED)
        return agent

    async def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.send((json.dumps(message) + "\n").encode())

    async def answer(self, request_id: int) -> dict[str, Any]:
        while True:
            line = json.loads(await self.out.receive_until(b"\n", 1 << 24))
            if line.get("id") == request_id:
                return dict(line["result"])

    async def ask(self, tool: str, **arguments: Any) -> int:
        self.next_id += 1
        await self.send(tool_call(self.next_id, tool, arguments))
        return self.next_id

    async def call(self, tool: str, **arguments: Any) -> dict[str, Any]:
        result = await self.answer(await self.ask(tool, **arguments))
        assert not result.get("isError"), result["content"][0]["text"]
        return dict(result["structuredContent"])

    async def close(self) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.aclose()
        with anyio.move_on_after(30):
            await self.proc.wait()
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@pytest.fixture
def default_cluster() -> Any:
    """A cluster at PostgreSQL's default max_connections (100, 3 kept for superusers),
    and a database owned by an ordinary role, as a team's would be."""
    cluster = Cluster(TEST_SETTINGS, max_connections=100)
    started(cluster)
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute("CREATE ROLE team LOGIN")
        conn.execute("CREATE DATABASE scs OWNER team")
    yield cluster
    cluster.stop()


async def test_150_agents_fit_a_default_postgresql_and_waiters_are_woken_by_news(
    default_cluster: Cluster, tmp_path: Path
) -> None:
    url = default_cluster.url("scs").replace("postgres@", "team@")
    peak = [0, 0, 0]  # this product's connections, of them LISTEN, everyone's

    async def sample(admin: psycopg.AsyncConnection[Any]) -> None:
        while True:
            row = await (await admin.execute(COUNT)).fetchone()
            assert row is not None
            peak[:] = [max(p, int(v)) for p, v in zip(peak, row, strict=True)]
            await anyio.sleep(0.25)

    agents: list[Agent] = []
    slowest = 0.0
    admin = await psycopg.AsyncConnection.connect(default_cluster.url(), autocommit=True)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(sample, admin)
            first = await Agent.start(url, "agent-0", tmp_path / "agent-0.log")
            agents.append(first)
            hello = (await first.call("create_session", purpose="hello"))["session_id"]
            news = (await first.call("create_session", purpose="news"))["session_id"]

            async def join(i: int) -> None:
                nonlocal slowest
                agent = await Agent.start(url, f"agent-{i}", tmp_path / f"agent-{i}.log")
                agents.append(agent)
                began = anyio.current_time()
                # A read: 150 writers to one session would measure the session lock's
                # queue, not connections (every process writes its heartbeat anyway).
                await agent.call("get_context", session_id=hello)
                slowest = max(slowest, anyio.current_time() - began)

            # Starting a process costs about a second of CPU: on two idle cores the whole
            # crowd is up in under two minutes; the bound allows for a busy machine.
            began = anyio.current_time()
            with anyio.fail_after(900):
                for start in range(1, AGENTS, BATCH):
                    async with anyio.create_task_group() as batch:
                        for i in range(start, min(start + BATCH, AGENTS)):
                            batch.start_soon(join, i)
                    print(
                        f"{len(agents)} agents up after {anyio.current_time() - began:.0f} s;"
                        f" peak connections {peak}",
                        file=sys.stderr,
                    )
            assert len(agents) == AGENTS
            assert slowest < CALL_BOUND_S, f"a call took {slowest:.1f} s"

            waiters = agents[1::WAITER_EVERY]
            woken: list[str] = []

            async def wait(agent: Agent) -> None:
                asked = await agent.ask("wait_for_messages", session_id=news, after_id=0,
                                        timeout_s=120)  # fmt: skip
                result = await agent.answer(asked)
                assert not result.get("isError"), result["content"][0]["text"]
                woken.extend(m["content"] for m in result["structuredContent"]["messages"])

            async with anyio.create_task_group() as waiting:
                for agent in waiters:
                    waiting.start_soon(wait, agent)
                with anyio.fail_after(120):  # every waiter's process is listening
                    while peak[1] < len(waiters):  # noqa: ASYNC110 (a server's state)
                        await anyio.sleep(0.25)
                posted = anyio.current_time()
                await agents[-1].call("add_message", session_id=news, content="news")
                with anyio.fail_after(30):
                    while len(woken) < len(waiters):  # noqa: ASYNC110
                        await anyio.sleep(0.05)
                wake_s = anyio.current_time() - posted
            assert woken == ["news"] * len(waiters)
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as closing:
                for agent in agents:
                    closing.start_soon(agent.close)
            await admin.close()
    print(
        f"\n{AGENTS} agents on max_connections=100: at most {peak[0]} connections of "
        f"shared-context-server ({peak[1]} LISTEN), {peak[2]} in all; slowest first call "
        f"{slowest:.2f} s; {len(waiters)} waiters woken within {wake_s:.2f} s"
    )
    assert peak[2] <= 100
