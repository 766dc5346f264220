"""`doctor` on a PostgreSQL URL: reachable, server version, TLS, schema, live processes.

Every other command runs on either engine through the Store (storage/seam.py); this is the one
whose checks differ: a file has pages and a WAL to check, a server has a connection.
"""

from __future__ import annotations

from typing import Any

from shared_context_server.about import package_version
from shared_context_server.blackboard.processes import live_processes
from shared_context_server.storage.postgres.connect import APPLICATION_NAME, driver
from shared_context_server.storage.postgres.database import PgDatabase
from shared_context_server.storage.postgres.schema import SCHEMA_VERSION
from shared_context_server.storage.seam import redact
from shared_context_server.terminal import process_lines

PROG = "shared-context-server"
SERVER_FACTS = (
    "SELECT current_setting('server_version'), current_database(), current_user,"
    " coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false),"
    " (SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid())"
)
# Connections of this product's servers (every database on the server; not doctor's own)
# and of anyone, against the server's limit. application_name and backend_type are
# visible to every role.
CONNECTIONS = (
    "SELECT count(*) FILTER (WHERE application_name = ? AND pid <> pg_backend_pid()),"
    " count(*) FILTER (WHERE backend_type = 'client backend'),"
    " current_setting('max_connections')::int,"
    " current_setting('superuser_reserved_connections')::int"
    " FROM pg_stat_activity"
)
# Past this share of the slots others can use, doctor warns.
CROWDED = 0.8


async def diagnose(url: str) -> dict[str, Any]:
    """Reachable, server version, TLS, schema version (migrated if behind) and live
    processes. Connecting failures and a newer schema raise StorageError."""
    db = await PgDatabase.open(url)
    try:
        row = await db.read_one(SERVER_FACTS)
        assert row is not None
        version = await db.schema_version()
        # As on a file: rows past the stale cutoff, or of a dead pid on this host, are not
        # live (and are deleted).
        live = await live_processes(db)
        slots = await db.read_one(CONNECTIONS, (APPLICATION_NAME,))
        assert slots is not None
    finally:
        await db.close()
    ours, in_use, limit, reserved = (int(v) for v in slots)
    warnings = []
    if in_use > CROWDED * (limit - reserved):
        warnings.append(
            {
                "warning": f"{in_use} of PostgreSQL's {limit} connections are in use "
                f"({reserved} kept for superusers).",
                "fix": "raise max_connections, or put PgBouncer (session mode) in front "
                "(docs/POSTGRES.md, Connections and poolers)",
            }
        )
    if not row[3] and not _over_a_socket(url):
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
        "package_version": package_version(),
        "server_version": row[0],
        "database": row[1],
        "user": row[2],
        "tls": row[4] if row[3] else None,
        "schema_version": version,
        "expected_schema_version": SCHEMA_VERSION,
        "processes": live,
        "connections": {
            "ours": ours,
            "in_use": in_use,
            "max_connections": limit,
            "superuser_reserved": reserved,
        },
        "warnings": warnings,
        "problems": [],
        "ok": True,
    }


def _over_a_socket(url: str) -> bool:
    """Whether libpq reaches the server over a Unix socket (no host, or a directory): no
    network to encrypt, so no TLS warning."""
    host = driver().conninfo.conninfo_to_dict(url).get("host")
    return not host or str(host).startswith("/")


def report(data: dict[str, Any]) -> str:
    slots = data["connections"]
    lines = [
        f"database      {data['path']} (PostgreSQL {data['server_version']})",
        f"release       {APPLICATION_NAME} {data['package_version']} "
        f"(schema version {data['expected_schema_version']})",
        f"connected as  {data['user']} to {data['database']}",
        f"TLS           {data['tls'] or 'no'}",
        f"schema        version {data['schema_version']}",
        *process_lines(data["processes"], "on this database", hosts=True),
        f"connections   {slots['ours']} by {APPLICATION_NAME} servers, "
        f"{slots['in_use']} in all, of max_connections {slots['max_connections']}",
    ]
    for item in data["warnings"]:
        lines.append(f"warning: {item['warning']}\n  what to do: {item['fix']}")
    lines.append("ok")
    return "\n".join(lines)
