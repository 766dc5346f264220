"""The records schema on PostgreSQL: its DDL, and the login that confines raw queries.

Shared tables live in the schema `records` of the blackboard's database, made on first
use. `execute_raw_query` runs in a session of its own whose *session user* is the LOGIN
role CONFINED_ROLE (raw.py), or a login the operator names by URL that belongs
to no role but CONFINED_ROLE: it may read and change rows of tables in `records` and
nothing else, and no SET ROLE or set_config can give it more, because PostgreSQL checks
role changes against the session user. The blackboard's tables in `public` are out of
its reach because it holds no privilege on them.

Where the server's own login may create roles, it makes CONFINED_ROLE and sets a random
password, kept in `public.records_login`, which only the server's login can read.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from shared_context_server.storage.locks import Lock
from shared_context_server.storage.seam import Conn, Store
from shared_context_server.storage.seam.records import (
    HIDDEN_ROW_ID,
    RECORDS_URL_ENV,
    SCHEMA,
    Dialect,
)

logger = logging.getLogger(__name__)

CONFINED_ROLE = "shared_context_records"
# One key for making the schema: processes starting together make it once.
SETUP_LOCK = int(Lock.RECORDS_SETUP)
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
    refuses them anyway. One statement that looks at nothing, so it goes with COMMIT.
    `qualified`: a checked, quoted name (schema.quote)."""
    conn.execute(
        f"DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{CONFINED_ROLE}')"
        f" THEN GRANT {ROW_PRIVILEGES} ON {qualified} TO {CONFINED_ROLE}; END IF; END $$"
    )


@dataclass
class Login:
    """How raw queries log in: a URL (with its password) for the confined role."""

    url: str
    role: str


def confine(conn: Any, errors: Any, url: str, *, given: str | None, rotate: bool) -> Login | str:
    """Set up the confined login on an autocommit connection (psycopg) of the blackboard's
    own login `url`: the login to use, or why raw queries cannot be confined, in words for
    the agent and the DBA. `given`: the operator's URL for the login
    (SHARED_CONTEXT_RECORDS_URL); `rotate`: the stored password failed, make a new one."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    me = conn.execute("SELECT current_user").fetchone()[0]
    # Without CREATEROLE it may exist already, made by a DBA: checked below.
    with contextlib.suppress(errors.InsufficientPrivilege):
        conn.execute(
            "DO $$ BEGIN CREATE ROLE " + CONFINED_ROLE + " LOGIN; "
            "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        )
    role = CONFINED_ROLE
    if given is not None:
        role = str(conninfo_to_dict(given).get("user") or "")
    if not role or role == me:
        return f"the confined login must be a role of its own, not the server's {me}"
    row = conn.execute(
        "SELECT rolsuper OR rolbypassrls OR rolcreaterole OR rolcreatedb OR rolreplication,"
        " rolcanlogin FROM pg_roles WHERE rolname = %s",
        (role,),
    ).fetchone()
    if row is None:
        return f"the role {me} may not create roles, and the role {role} is missing"
    if row[0]:
        return f"the role {role} holds powers beyond reading rows (superuser, ...)"
    if not row[1] and given is None:
        try:
            conn.execute(f"ALTER ROLE {role} LOGIN")  # made NOLOGIN by an older version
        except errors.InsufficientPrivilege:
            return f"the role {role} may not log in (NOLOGIN)"
    for grant in (
        f"GRANT USAGE ON SCHEMA {SCHEMA} TO {CONFINED_ROLE}",
        f"GRANT {ROW_PRIVILEGES} ON ALL TABLES IN SCHEMA {SCHEMA} TO {CONFINED_ROLE}",
    ):
        try:
            conn.execute(grant)
        except errors.InsufficientPrivilege as error:
            # Tables another role made carry that role's grants (grant_table).
            logger.info("records: %s: %s", grant, error)
    ok = conn.execute("SELECT has_schema_privilege(%s, %s, 'USAGE')", (role, SCHEMA)).fetchone()
    if not ok[0]:
        return f"the role {role} may not use the schema {SCHEMA}"
    why = _reaches_beyond(conn, role)
    if why is not None:
        return why
    if given is not None:
        return Login(given, role)
    password = _password(conn, errors, me, rotate=rotate)
    if password is None:
        return f"the role {me} may not set the password of {role}"
    return Login(make_conninfo(url, user=role, password=password), role)


# The generated password of the confined login, readable by the blackboard's login only.
_MAKE_LOGINS = (
    "CREATE TABLE IF NOT EXISTS records_login (role text PRIMARY KEY, password text NOT NULL)"
)
_STORED = "SELECT password FROM records_login WHERE role = %s"
_STORE = (
    "INSERT INTO records_login (role, password) VALUES (%s, %s)"
    " ON CONFLICT (role) DO UPDATE SET password = excluded.password"
)


def _password(conn: Any, errors: Any, me: str, *, rotate: bool) -> str | None:
    """The confined login's password: the stored one, else a new one set on the role (as
    its SCRAM verifier, so the text never reaches the server's log); None if not allowed."""
    conn.execute(_MAKE_LOGINS)
    conn.execute("REVOKE ALL ON records_login FROM PUBLIC")
    stored = conn.execute(_STORED, (CONFINED_ROLE,)).fetchone()
    if stored is not None and not rotate:
        return str(stored[0])
    password = secrets.token_urlsafe(32)
    verifier = conn.pgconn.encrypt_password(
        password.encode(), CONFINED_ROLE.encode(), b"scram-sha-256"
    ).decode()
    try:
        conn.execute(f"ALTER ROLE {CONFINED_ROLE} PASSWORD '{verifier}'")
    except errors.InsufficientPrivilege:
        return None
    conn.execute(_STORE, (CONFINED_ROLE, password))
    return password


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


def _reaches_beyond(conn: Any, role: str) -> str | None:
    """Why the role is not confined to the shared tables, if it is not: a table beyond
    them, or a role it belongs to other than CONFINED_ROLE (which holds the row grants)."""
    tables = [r[0] for r in conn.execute(_BEYOND, (SCHEMA, role)).fetchall()]
    if tables:
        return (
            f"the role {role} can reach tables outside the schema {SCHEMA} "
            f"({', '.join(tables)}); revoke those grants"
        )
    groups = [r[0] for r in conn.execute(_MEMBER_OF, (role,)).fetchall() if r[0] != CONFINED_ROLE]
    if groups:
        return f"the role {role} is a member of {', '.join(groups)}; revoke that"
    return None


def how_to_enable(server_role: str) -> str:
    """What a DBA runs so this server can confine raw queries."""
    return (
        f"a DBA can run: CREATE ROLE {CONFINED_ROLE} LOGIN PASSWORD '...'; GRANT USAGE ON "
        f"SCHEMA {SCHEMA} TO {CONFINED_ROLE}; GRANT {ROW_PRIVILEGES} ON ALL TABLES IN "
        f"SCHEMA {SCHEMA} TO {CONFINED_ROLE}; and start the servers (role {server_role}) "
        f"with {RECORDS_URL_ENV}=postgresql://{CONFINED_ROLE}:...@host/db, or let "
        f"{server_role} make the login itself: ALTER ROLE {server_role} CREATEROLE "
        "(README: 'Shared tables on PostgreSQL')"
    )


_RELATION = f"quote_ident('{SCHEMA}') || '.' || quote_ident(?)"

POSTGRES = Dialect(
    engine="postgres",
    prefix=f"{SCHEMA}.",
    # Each logical type keeps its values exactly: JSON and DATETIME stay the text agents
    # gave (as on SQLite), in domains so describe_table can tell them from TEXT.
    types={
        "TEXT": "text",
        "INTEGER": "bigint",
        "REAL": "double precision",
        "NUMERIC": "numeric",
        "BOOLEAN": "boolean",
        "JSON": f"{SCHEMA}.json_text",
        "DATETIME": f"{SCHEMA}.datetime_text",
        "BLOB": "bytea",
    },
    logical={
        "text": "TEXT",
        "bigint": "INTEGER",
        "double precision": "REAL",
        "numeric": "NUMERIC",
        "boolean": "BOOLEAN",
        "json_text": "JSON",
        f"{SCHEMA}.json_text": "JSON",
        "datetime_text": "DATETIME",
        f"{SCHEMA}.datetime_text": "DATETIME",
        "bytea": "BLOB",
    },
    # BY DEFAULT, not ALWAYS: an agent may give the id itself, as on SQLite.
    serial_key="GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    hidden_row_id=f'"{HIDDEN_ROW_ID}" bigint GENERATED ALWAYS AS IDENTITY',
    # Names ignore case, as in SQLite: "Tasks" and "tasks" are one table.
    find_table=(
        "SELECT relname AS name FROM pg_class WHERE relnamespace = "  # noqa: S608 (constants)
        f"'{SCHEMA}'::regnamespace AND relkind = 'r' AND lower(relname) = lower(?)"
    ),
    list_tables=(
        "SELECT relname AS name FROM pg_class WHERE relnamespace = "  # noqa: S608 (constants)
        f"'{SCHEMA}'::regnamespace AND relkind = 'r' ORDER BY relname"
    ),
    table_info=(
        "SELECT a.attname AS name, format_type(a.atttypid, NULL) AS type,"  # noqa: S608 (constants)
        " a.attnotnull AS notnull, coalesce(a.attnum = ANY(i.indkey), false) AS pk"
        " FROM pg_attribute a LEFT JOIN pg_index i"
        " ON i.indrelid = a.attrelid AND i.indisprimary"
        f" WHERE a.attrelid = ({_RELATION})::regclass AND a.attnum > 0"
        f" AND NOT a.attisdropped AND a.attname <> '{HIDDEN_ROW_ID}' ORDER BY a.attnum"
    ),
    unique_columns=(
        "SELECT a.attname AS name FROM pg_index i JOIN pg_attribute a"  # noqa: S608 (constants)
        " ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
        f" WHERE i.indrelid = ({_RELATION})::regclass AND i.indisunique"
        " AND NOT i.indisprimary AND i.indnatts = 1"
    ),
    like="ILIKE ? ESCAPE ''",
    distinct="IS DISTINCT FROM",
    serialize_ddl=f"SELECT pg_advisory_xact_lock({SETUP_LOCK})",
    native_booleans=True,
    after_create=grant_table,
    bump_sequence=BUMP_SEQUENCE,
    writes_in_with=True,
)
