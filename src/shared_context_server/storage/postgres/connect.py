"""Connecting to PostgreSQL: the optional driver, the URL, and connections shaped for the
engine (rows by name or position, as sqlite3.Row; client-side parameters).

The driver (psycopg 3) is the optional extra `shared-context-server[postgres]` and is
imported only for a postgresql:// target (storage/opener.py), so serving a file never
loads it (tests/test_startup.py).
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from shared_context_server.about import driver_install_hint
from shared_context_server.errors import StorageError
from shared_context_server.storage.seam import redact

if TYPE_CHECKING:
    import psycopg

CONNECT_TIMEOUT_S = 5
# How often a server backend running a statement checks that its client is still there:
# without it, a statement whose caller gave up (or was killed) runs to its end holding
# its locks, e.g. a session's, and every writer to that session waits for it.
CLIENT_CHECK_MS = 1000
# The least word similarity (0-1) for a message to be a search candidate.
WORD_SIMILARITY = 0.3
TupleRow = tuple[Any, ...]
APPLICATION_NAME = "shared-context-server"
# What PostgreSQL (53300 too_many_connections, including the slots kept for superusers)
# and PgBouncer (max_client_conn) say when every connection slot is taken.
NO_SLOT = (
    "too many clients",
    "remaining connection slots are reserved",
    "no more connections allowed",
    "too many connections for role",
    "too many connections for database",
)
NO_SLOT_FIX = (
    "every connection slot is taken: raise the server's max_connections (or the role's "
    "or database's CONNECTION LIMIT), or put a pooler (PgBouncer in session mode) in "
    "front; docs/POSTGRES.md, Connections and poolers"
)


def driver() -> Any:
    """The psycopg module, or StorageError naming the extra that provides it."""
    try:
        import psycopg
    except ImportError:
        raise StorageError(
            f"a PostgreSQL --db needs the driver: {driver_install_hint()}."
        ) from None
    return psycopg


def check_url(url: str) -> str:
    """The URL if psycopg can parse it and it names a database; else StorageError."""
    pg = driver()
    try:
        urlsplit(url).port  # noqa: B018 (psycopg accepts some URLs urllib rejects)
        info = pg.conninfo.conninfo_to_dict(url)
    except (pg.ProgrammingError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else "unparsable"
        raise StorageError(
            f"{redact(url)} is not a valid PostgreSQL URL ({first}); the form is "
            "postgresql://user:password@host:5432/dbname?sslmode=require."
        ) from None
    if not info.get("dbname"):
        raise StorageError(
            f"{redact(url)} names no database; add it after the host: "
            "postgresql://user@host:5432/dbname."
        )
    return url


class NoConnectionSlot(StorageError):
    """The server (or the pooler in front of it) refused a connection: no slot is free."""


def connect_failure(url: str, error: Exception) -> StorageError:
    """One line saying why connecting failed and what to check."""
    # libpq's lines (a reason, then a hint on its own line) as one: "reason; hint".
    text = "; ".join(" ".join(line.split()) for line in str(error).splitlines() if line.strip())
    # libpq prefixes every reason with 'connection to server at ... failed:'; keep the reason.
    reason = text.rsplit("failed: ", 1)[-1] if "failed: " in text else text
    if getattr(error, "sqlstate", None) == "53300" or any(s in reason for s in NO_SLOT):
        return NoConnectionSlot(
            f"PostgreSQL at {redact(url)} refused a connection ({reason}); {NO_SLOT_FIX}."
        )
    if "does not exist" in reason and "database" in reason:
        fix = "create it (createdb, or CREATE DATABASE) or fix the name in the URL"
    elif "password" in reason or "authentication" in reason or "role" in reason:
        fix = (
            "check the user and password in the URL (or ~/.pgpass) and the server's "
            "pg_hba.conf, or a pooler's own (PgBouncer's auth_file)"
        )
    elif "invalid response" in reason or "protocol" in reason:
        fix = "something other than PostgreSQL answers at that host and port; check the port"
    elif "refused" in reason or "timeout" in reason or "resolve" in reason or "translate" in reason:
        fix = "check the host and port, and that PostgreSQL is running and reachable"
    else:
        fix = "check the URL and the server"
    return StorageError(f"cannot connect to PostgreSQL at {redact(url)}: {reason}; {fix}.")


@functools.lru_cache(maxsize=256)
def _row_class(names: tuple[str, ...]) -> type[PgRow]:
    index = {name: i for i, name in enumerate(names)}
    return type("Row", (PgRow,), {"_names": names, "_index": index, "__slots__": ()})


class PgRow(tuple[Any, ...]):
    """A row by position or by column name, like sqlite3.Row."""

    __slots__ = ()
    _names: tuple[str, ...] = ()
    _index: dict[str, int] = {}  # noqa: RUF012 (set per result shape by _row_class)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


def _rows(cursor: Any) -> Any:
    """psycopg row factory: PgRow per result shape."""
    names = tuple(column.name for column in cursor.description or ())
    row_class = _row_class(names)
    return lambda values: row_class(values)


def connect_sync(url: str) -> psycopg.Connection[Any]:
    """An autocommit connection with client-side parameters, or StorageError saying in
    one line why not.

    Client-side binding (ClientCursor) sends each value as a literal, so a statement
    shared with SQLite, such as `? IS NULL OR x = ?`, needs no casts for PostgreSQL to
    infer its parameters' types."""
    pg = driver()
    options: dict[str, Any] = {
        "autocommit": True,
        "application_name": APPLICATION_NAME,
        "cursor_factory": pg.ClientCursor,
        "row_factory": _rows,
    }
    if "connect_timeout" not in url:
        options["connect_timeout"] = CONNECT_TIMEOUT_S
    try:
        conn: psycopg.Connection[Any] = pg.Connection.connect(url, **options)
    except pg.Error as error:
        raise connect_failure(url, error) from None
    # PostgreSQL before 14 has no such setting: there, statements run to their end.
    with contextlib.suppress(pg.errors.UndefinedObject):
        conn.execute(f"SET client_connection_check_interval = {int(CLIENT_CHECK_MS)}")
    # Search's candidates (`<%`): a typo leaves about half a word's trigrams matching.
    conn.execute(f"SET pg_trgm.word_similarity_threshold = {WORD_SIMILARITY}")
    return conn


async def connect(url: str) -> psycopg.AsyncConnection[TupleRow]:
    """An autocommit connection, or StorageError saying in one line why not."""
    pg = driver()
    options: dict[str, Any] = {"autocommit": True, "application_name": APPLICATION_NAME}
    if "connect_timeout" not in url:
        options["connect_timeout"] = CONNECT_TIMEOUT_S
    try:
        conn: psycopg.AsyncConnection[TupleRow] = await pg.AsyncConnection.connect(url, **options)
    except pg.Error as error:
        raise connect_failure(url, error) from None
    # PostgreSQL before 14 has no such setting: there, statements run to their end.
    with contextlib.suppress(pg.errors.UndefinedObject):
        await conn.execute(f"SET client_connection_check_interval = {int(CLIENT_CHECK_MS)}")
    return conn
