"""The command line on a PostgreSQL URL: `doctor` checks the server and the schema.

Serving agents and the other operator commands do not run on PostgreSQL in this release
(the domain still speaks SQLite's dialect through db.py); they say so in one line, exit 2,
rather than half-work. README "When one machine is not enough" says what is ready.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import anyio

from shared_context_server.blackboard.processes import stale_cutoff
from shared_context_server.errors import StorageError
from shared_context_server.postgres import PgDatabase, check_url, redact
from shared_context_server.postgres_schema import SCHEMA_VERSION

PROG = "shared-context-server"
SERVER_FACTS = (
    "SELECT current_setting('server_version'), current_database(), current_user,"
    " coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false),"
    " (SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid())"
)
LIVE_PROCESSES = (
    "SELECT pid, host, agent_id, agent_type, client_name, started_at, last_seen"
    " FROM server_processes WHERE last_seen >= ? ORDER BY started_at, id"
)
PROCESS_KEYS = ("pid", "host", "agent_id", "agent_type", "client_name", "started_at", "last_seen")


def not_yet(command: str) -> StorageError:
    """The one line for what does not run on PostgreSQL in this release."""
    what = "serving agents" if command == "serve" else f"`{command}`"
    return StorageError(
        f"{what} on PostgreSQL is not available in this release yet; `{PROG} doctor --db URL` "
        "checks the server and prepares its schema. Use a SQLite file (--db PATH) meanwhile."
    )


async def diagnose(url: str) -> dict[str, Any]:
    """Reachable, server version, TLS, schema version (migrated if behind) and live
    processes. Connecting failures and a newer schema raise StorageError."""
    db = await PgDatabase.open(check_url(url))
    try:
        row = await db.fetchone(SERVER_FACTS)
        assert row is not None
        version = await db.schema_version()
        live = await db.fetchall(LIVE_PROCESSES, (stale_cutoff(),))
    finally:
        await db.close()
    warnings = []
    if not row[3]:
        warnings.append(
            {
                "warning": "the connection is not encrypted (no TLS).",
                "fix": "add ?sslmode=verify-full (or require) to the URL when the server is "
                "on another machine",
            }
        )
    return {
        "path": redact(url),
        "engine": "postgresql",
        "server_version": row[0],
        "database": row[1],
        "user": row[2],
        "tls": row[4] if row[3] else None,
        "schema_version": version,
        "expected_schema_version": SCHEMA_VERSION,
        "processes": [dict(zip(PROCESS_KEYS, p, strict=True)) for p in live],
        "warnings": warnings,
        "problems": [],
        "ok": True,
    }


def report(data: dict[str, Any]) -> str:
    lines = [
        f"database      {data['path']} (PostgreSQL {data['server_version']})",
        f"connected as  {data['user']} to {data['database']}",
        f"TLS           {data['tls'] or 'no'}",
        f"schema        version {data['schema_version']} "
        f"(this release: {data['expected_schema_version']})",
        f"processes     {len(data['processes'])} live server process(es) on this database",
    ]
    for item in data["warnings"]:
        lines.append(f"warning: {item['warning']}\n  what to do: {item['fix']}")
    lines.append("ok")
    return "\n".join(lines)


def run(command: str, args: argparse.Namespace, url: str) -> int:
    """`doctor` on a URL; anything else raises StorageError (one line, exit 2)."""
    if command != "doctor":
        check_url(url)  # a missing driver or a bad URL is the more useful line
        if command == "backup":
            raise StorageError(
                f"backup copies a SQLite file; back up PostgreSQL with its own tool: "
                f"pg_dump --format=custom --file=FILE '{redact(url)}'."
            )
        raise not_yet(command)
    data = anyio.run(diagnose, url)
    print(json.dumps(data, indent=2) if args.json else report(data))
    return 0
