"""The records schema on PostgreSQL: its DDL, and the role that confines raw queries.

Shared tables live in the schema `records` of the blackboard's database, made on first
use. `execute_raw_query` runs as the NOLOGIN role CONFINED_ROLE (records/raw_pg.py): it
may read and change rows of tables in `records` and nothing else; the blackboard's
tables in `public` are out of its reach because it holds no privilege on them.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from shared_context_server.blackboard.records.dialect import SCHEMA
from shared_context_server.storage.seam import Conn, Store

logger = logging.getLogger(__name__)

CONFINED_ROLE = "shared_context_records"
# One key for making the schema: processes starting together make it once.
SETUP_LOCK = 0x5C5_0002
ROW_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"

_DOMAIN_EXISTS = (
    f"SELECT 1 FROM pg_type WHERE typname = ? AND typnamespace = '{SCHEMA}'::regnamespace"  # noqa: S608
)
# JSON and DATETIME keep the text an agent gave, as on SQLite; JSON must parse.
DOMAINS = {
    "json_text": f"CREATE DOMAIN {SCHEMA}.json_text AS text CHECK (VALUE::jsonb IS NOT NULL)",
    "datetime_text": f"CREATE DOMAIN {SCHEMA}.datetime_text AS text",
}
# After an insert that gave the key itself, the key's sequence moves past it, so the
# next row's id is new (SQLite's AUTOINCREMENT does the same).
BUMP_SEQUENCE = (
    "SELECT setval(s, ?) FROM (SELECT pg_get_serial_sequence(?, ?) AS s) q"
    " WHERE s IS NOT NULL AND coalesce(pg_sequence_last_value(s::regclass), 0) < ?"
)


def prepare(conn: Conn) -> None:
    """Make the records schema if it is missing, once however many processes start."""
    conn.execute("SELECT pg_advisory_xact_lock(?)", (SETUP_LOCK,))
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    for name, ddl in DOMAINS.items():
        if not conn.execute(_DOMAIN_EXISTS, (name,)).fetchall():
            conn.execute(ddl)


async def prepare_schema(db: Store) -> None:
    await db.transact(prepare)


def grant_table(conn: Conn, qualified: str) -> None:
    """Let the confined role reach a new table's rows, if the role exists (identity
    columns need no grant on their sequence); a server that cannot confine raw queries
    refuses them anyway."""
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = ?", (CONFINED_ROLE,))
    if exists.fetchall():
        conn.execute(f"GRANT {ROW_PRIVILEGES} ON {qualified} TO {CONFINED_ROLE}")


def confine(conn: Any, errors: Any) -> str | None:
    """Set up CONFINED_ROLE on an autocommit connection (psycopg); None if raw queries can
    run as it, else why not, in words for the agent and the DBA."""
    me = conn.execute("SELECT current_user").fetchone()[0]
    # Without CREATEROLE it may exist already, made by a DBA: checked below.
    with contextlib.suppress(errors.InsufficientPrivilege):
        conn.execute(
            "DO $$ BEGIN CREATE ROLE " + CONFINED_ROLE + " NOLOGIN; "
            "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        )
    row = conn.execute(
        "SELECT rolsuper OR rolbypassrls OR rolcreaterole OR rolcreatedb, "
        "pg_has_role(current_user, oid, 'MEMBER') FROM pg_roles WHERE rolname = %s",
        (CONFINED_ROLE,),
    ).fetchone()
    if row is None:
        return f"the role {me} may not create roles, and the role {CONFINED_ROLE} is missing"
    if row[0]:
        return f"the role {CONFINED_ROLE} holds powers beyond reading rows (superuser, ...)"
    if not row[1]:
        try:
            conn.execute(f'GRANT {CONFINED_ROLE} TO "{me}"')
        except errors.InsufficientPrivilege:
            return f"the role {me} is not a member of {CONFINED_ROLE} and may not make itself one"
    for grant in (
        f"GRANT USAGE ON SCHEMA {SCHEMA} TO {CONFINED_ROLE}",
        f"GRANT {ROW_PRIVILEGES} ON ALL TABLES IN SCHEMA {SCHEMA} TO {CONFINED_ROLE}",
    ):
        try:
            conn.execute(grant)
        except errors.InsufficientPrivilege as error:
            # Tables another role made carry that role's grants (grant_table).
            logger.info("records: %s: %s", grant, error)
    ok = conn.execute(
        "SELECT has_schema_privilege(%s, %s, 'USAGE')", (CONFINED_ROLE, SCHEMA)
    ).fetchone()
    if not ok[0]:
        return f"the role {CONFINED_ROLE} may not use the schema {SCHEMA}"
    return _reaches_beyond(conn)


# Tables and views outside `records` that the role could read or change (a grant to it or
# to PUBLIC), and roles it is a member of (whose privileges it would have).
_BEYOND = (
    "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', %s)"
    " AND c.relkind IN ('r', 'v', 'm', 'p', 'f')"
    " AND has_table_privilege(%s, c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')"
    " ORDER BY 1 LIMIT 3"
)
_MEMBER_OF = (
    "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
    " JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = %s ORDER BY 1 LIMIT 3"
)


def _reaches_beyond(conn: Any) -> str | None:
    """Why the role is not confined to the shared tables, if it is not."""
    tables = [r[0] for r in conn.execute(_BEYOND, (SCHEMA, CONFINED_ROLE)).fetchall()]
    if tables:
        return (
            f"the role {CONFINED_ROLE} can reach tables outside the schema {SCHEMA} "
            f"({', '.join(tables)}); revoke those grants"
        )
    groups = [r[0] for r in conn.execute(_MEMBER_OF, (CONFINED_ROLE,)).fetchall()]
    if groups:
        return f"the role {CONFINED_ROLE} is a member of {', '.join(groups)}; revoke that"
    return None


def how_to_enable(server_role: str) -> str:
    """What a DBA runs so this server can confine raw queries."""
    return (
        f"a DBA can run: CREATE ROLE {CONFINED_ROLE} NOLOGIN; GRANT {CONFINED_ROLE} TO "
        f"{server_role}; GRANT USAGE ON SCHEMA {SCHEMA} TO {CONFINED_ROLE} (README: "
        "'Shared tables on PostgreSQL'), then retry"
    )
