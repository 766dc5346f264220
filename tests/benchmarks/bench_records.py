"""The records toolset's p50/p99 on both engines (a report, not a test): insert_record and
query_records through a real MCP client session to an in-process server.

Run from the repository root:

    .venv/bin/python tests/benchmarks/bench_records.py [--pg URL] [--calls N]

Without --pg a throwaway PostgreSQL cluster is started (tests/pg_cluster.py, needs
PostgreSQL's binaries); the SQLite file is made in a temporary directory. Then the same
calls straight to the domain, to tell the engines' cost from the server's around them.
--calls: calls of each tool (500). The table holds 5 columns; each query asks for the
page of up to 20 rows matching a filter on unindexed columns (like an agent's board).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp import Client

from shared_context_server.config import Settings
from shared_context_server.server.app import build_server
from shared_context_server.storage.seam import Target

COLUMNS = {"title": "TEXT NOT NULL", "owner": "TEXT", "priority": "INTEGER", "done": "BOOLEAN",
           "meta": "JSON"}  # fmt: skip


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    return f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"


async def _call(client: Client, tool: str, arguments: dict[str, Any]) -> float:
    start = time.perf_counter()
    result = await client.call_tool(tool, arguments)
    elapsed = time.perf_counter() - start
    if result.is_error:
        raise SystemExit(f"{tool} failed: {result.content[0]}")
    return elapsed


async def run(target: Target, calls: int) -> dict[str, list[float]]:
    settings = Settings(
        db_path=target,
        agent_id="bench",
        agent_id_source="flag",
        toolsets=frozenset({"core", "records"}),
    )
    info = types.Implementation(name="bench", version="0")
    times: dict[str, list[float]] = {"insert_record": [], "query_records": []}
    async with Client(build_server(settings), client_info=info) as client:
        await _call(client, "create_table", {"table_name": "tasks", "columns": COLUMNS})
        for n in range(calls):
            data = {"title": f"task {n}", "owner": None, "priority": n % 7, "done": False,
                    "meta": {"n": n}}  # fmt: skip
            times["insert_record"].append(
                await _call(client, "insert_record", {"table_name": "tasks", "data": data})
            )
        for n in range(calls):
            query = {"table_name": "tasks", "filters": {"priority": n % 7, "owner": None},
                     "limit": 20, "order_by": "-id"}  # fmt: skip
            times["query_records"].append(await _call(client, "query_records", query))
    return times


async def run_domain(target: Target, calls: int) -> dict[str, list[float]]:
    """The same calls straight to the domain (blackboard/records), without MCP."""
    from shared_context_server.blackboard.identity import Agent
    from shared_context_server.blackboard.records import rows
    from shared_context_server.blackboard.records.location import RecordsStore
    from shared_context_server.storage.opener import open_records, open_store

    agent = Agent("bench", "bench")
    times: dict[str, list[float]] = {"insert_record": [], "query_records": []}
    db = await open_store(target)
    store = RecordsStore.of(await open_records(db))
    store.audit_into(db)
    try:
        await rows.create_table(store, agent, "tasks2", COLUMNS)
        for n in range(calls):
            data = {"title": f"task {n}", "owner": None, "priority": n % 7, "done": False,
                    "meta": {"n": n}}  # fmt: skip
            start = time.perf_counter()
            await rows.insert_record(store, agent, "tasks2", data)
            times["insert_record"].append(time.perf_counter() - start)
        for n in range(calls):
            start = time.perf_counter()
            await rows.query_records(
                store, agent, "tasks2", {"priority": n % 7, "owner": None}, 20, 0, "-id"
            )
            times["query_records"].append(time.perf_counter() - start)
    finally:
        await store.close()
        await db.close()
    return times


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pg", help="a PostgreSQL URL to a database you may write to")
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    cluster = None
    url = args.pg
    if url is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
        import psycopg
        from tests.pg_cluster import Cluster

        cluster = Cluster().start()
        name = f"bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        url = cluster.url(name)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            figures = {
                "sqlite": await run(Path(tmp) / "bench.db", args.calls),
                "postgres": await run(url, args.calls),
            }
            domain = {
                "sqlite": await run_domain(Path(tmp) / "bench.db", args.calls),
                "postgres": await run_domain(url, args.calls),
            }
    finally:
        if cluster is not None:
            cluster.stop()
    for title, found in (
        (f"records tools, {args.calls} calls each, one MCP client session in-process", figures),
        ("the same calls to the domain, no MCP (audit entries included)", domain),
    ):
        print(title)
        for tool in ("insert_record", "query_records"):
            sqlite = statistics.median(found["sqlite"][tool])
            postgres = statistics.median(found["postgres"][tool])
            print(f"{tool:14} sqlite   {_ms(found['sqlite'][tool])}")
            print(f"{'':14} postgres {_ms(found['postgres'][tool])}  ({postgres / sqlite:.2f}x)")


if __name__ == "__main__":
    anyio.run(main)
