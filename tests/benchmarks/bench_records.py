"""Every records tool's p50/p99 on both engines, and PostgreSQL's ratio to SQLite (a
report, not a test): through a real MCP client session to an in-process server, then the
same calls straight to the domain, to tell the engines' cost from the server's around them.

Run from the repository root:

    .venv/bin/python tests/benchmarks/bench_records.py [--pg URL] [--calls N] [--tables N]

Without --pg a throwaway PostgreSQL cluster is started (tests/pg_cluster.py, needs
PostgreSQL's binaries); the SQLite file is made in a temporary directory.

The workload, the same on both paths and engines, one tool after another:
- create_table: --tables small tables (20), so list_tables has that many plus the board;
- insert_record: --calls rows (500) into a 5-column board (as an agent's task board);
- query_records: the page of up to 20 rows matching a filter on unindexed columns;
- describe_table: the board;
- list_tables: every table with its row count (--calls // 5 calls: it reads them all);
- execute_raw_query: a GROUP BY over the board with a bound parameter;
- update_record: a claim, one row by id where its owner is null;
- delete_record: one row by id.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
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
TOOLS = ("create_table", "insert_record", "query_records", "describe_table", "list_tables",
         "execute_raw_query", "update_record", "delete_record")  # fmt: skip
RAW = "SELECT owner, count(*) AS n, max(priority) AS top FROM {} WHERE priority >= ? GROUP BY owner"
Call = Callable[[str, dict[str, Any]], Awaitable[None]]
Times = dict[str, list[float]]


def _p50_p99(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000


async def workload(call: Call, board: str, calls: int, tables: int) -> Times:
    """Each tool in turn on `board` (made here), timed call by call."""
    times: Times = {tool: [] for tool in TOOLS}

    async def timed(tool: str, arguments: dict[str, Any]) -> None:
        start = time.perf_counter()
        await call(tool, arguments)
        times[tool].append(time.perf_counter() - start)

    await call("create_table", {"table_name": board, "columns": COLUMNS})
    for n in range(tables):
        columns = {"path": "TEXT NOT NULL UNIQUE", "agent": "TEXT", "at": "DATETIME"}
        await timed("create_table", {"table_name": f"{board}_t{n}", "columns": columns})
    for n in range(calls):
        data = {"title": f"task {n}", "owner": None, "priority": n % 7, "done": False,
                "meta": {"n": n}}  # fmt: skip
        await timed("insert_record", {"table_name": board, "data": data})
    for n in range(calls):
        await timed("query_records", {"table_name": board, "limit": 20, "order_by": "-id",
                                      "filters": {"priority": n % 7, "owner": None}})  # fmt: skip
    for _ in range(calls):
        await timed("describe_table", {"table_name": board})
    for _ in range(max(1, calls // 5)):
        await timed("list_tables", {})
    for n in range(calls):
        await timed("execute_raw_query", {"query": RAW.format(board), "params": [n % 7]})
    for n in range(calls):
        claim = {"table_name": board, "filters": {"id": n + 1, "owner": None},
                 "data": {"owner": "bench", "done": True}}  # fmt: skip
        await timed("update_record", claim)
    for n in range(calls):
        await timed("delete_record", {"table_name": board, "filters": {"id": n + 1}})
    return times


def _settings(target: Target) -> Settings:
    return Settings(
        db_path=target,
        agent_id="bench",
        agent_id_source="flag",
        toolsets=frozenset({"core", "records"}),
    )


async def run_mcp(target: Target, calls: int, tables: int) -> Times:
    """The workload through a real MCP client session to an in-process server."""
    info = types.Implementation(name="bench", version="0")
    async with Client(build_server(_settings(target)), client_info=info) as client:

        async def call(tool: str, arguments: dict[str, Any]) -> None:
            result = await client.call_tool(tool, arguments)
            if result.is_error:
                raise SystemExit(f"{tool} failed: {result.content[0]}")

        return await workload(call, "tasks", calls, tables)


async def run_domain(target: Target, calls: int, tables: int) -> Times:
    """The same calls straight to the domain (blackboard/records), without MCP."""
    from shared_context_server.blackboard.identity import Agent
    from shared_context_server.blackboard.records import raw_query, rows
    from shared_context_server.blackboard.records.location import RecordsStore
    from shared_context_server.storage.opener import open_records, open_store

    agent = Agent("bench", "bench")
    db = await open_store(target)
    store = RecordsStore.of(await open_records(db))
    store.audit_into(db)

    async def call(tool: str, arguments: dict[str, Any]) -> None:
        domain = raw_query if tool == "execute_raw_query" else rows
        await getattr(domain, tool)(store, agent, **arguments)

    try:
        return await workload(call, "dtasks", calls, tables)
    finally:
        await store.close()
        await db.close()


def report(title: str, found: dict[str, Times]) -> None:
    print(title)
    head = f"{'sqlite p50/p99 ms':>19} {'postgres p50/p99 ms':>21} {'pg/sqlite p50':>14}"
    print(f"{'tool':18} {head}")
    for tool in TOOLS:
        s50, s99 = _p50_p99(found["sqlite"][tool])
        p50, p99 = _p50_p99(found["postgres"][tool])
        print(f"{tool:18} {s50:8.2f} / {s99:7.2f}  {p50:8.2f} / {p99:8.2f}  {p50 / s50:12.2f}x")
    print()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pg", help="a PostgreSQL URL to a database you may write to")
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--tables", type=int, default=20)
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
            file = Path(tmp) / "bench.db"
            mcp = {
                "sqlite": await run_mcp(file, args.calls, args.tables),
                "postgres": await run_mcp(url, args.calls, args.tables),
            }
            domain = {
                "sqlite": await run_domain(file, args.calls, args.tables),
                "postgres": await run_domain(url, args.calls, args.tables),
            }
    finally:
        if cluster is not None:
            cluster.stop()
    listings = max(1, args.calls // 5)
    counts = f"{args.calls} calls each ({args.tables} create_table, {listings} list_tables)"
    report(f"records tools through one MCP client session in-process, {counts}", mcp)
    report("the same calls to the domain, no MCP (audit entries included)", domain)


if __name__ == "__main__":
    anyio.run(main)
