"""PostgreSQL as the shared store: the URL, the optional driver, connecting, migrating.

A `--db` value that starts with postgresql:// or postgres:// names a PostgreSQL database;
anything else is a SQLite file. The driver (psycopg 3) is the optional extra
`shared-context-server[postgres]` and is imported only here, only for such a URL, so
serving a file never loads it (tests/test_startup.py). Statements are written with `?`
placeholders, as for SQLite; the engine turns them into psycopg's `%s`, so the dialect
difference stays inside this module.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import anyio

from shared_context_server.about import UPGRADE
from shared_context_server.clock import utc_now
from shared_context_server.errors import DatabaseBusy, StorageError
from shared_context_server.postgres_schema import (
    MIGRATIONS,
    MISSING_EXTENSION,
    SCHEMA_EXISTS,
    SCHEMA_VERSION,
    SELECT_VERSION,
)

if TYPE_CHECKING:
    import psycopg

logger = logging.getLogger(__name__)

SCHEMES = ("postgresql://", "postgres://")
EXTRA = "shared-context-server[postgres]>=2,<3"  # pinned: see README "Which package"
CONNECT_TIMEOUT_S = 5
# How often a server backend running a statement checks that its client is still there:
# without it, a statement whose caller gave up (or was killed) runs to its end holding
# its locks, e.g. a session's, and every writer to that session waits for it.
CLIENT_CHECK_MS = 1000
# One key for the whole schema: processes starting together migrate one after another.
MIGRATION_LOCK = 0x5C5_0001
Params = Sequence[Any]
Row = tuple[Any, ...]


def is_postgres_url(raw: str | os.PathLike[str] | None) -> bool:
    """Whether a --db value names a PostgreSQL database rather than a SQLite file."""
    return isinstance(raw, str) and raw.strip().lower().startswith(SCHEMES)


def redact(url: str) -> str:
    """The URL with any password replaced, for messages and logs."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # unparsable (a stray bracket): hide whatever sits before an @
        return re.sub(r"//[^/@]*@", "//***@", url, count=1)
    if password is None:
        return url
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def driver() -> Any:
    """The psycopg module, or StorageError naming the extra that provides it."""
    try:
        import psycopg
    except ImportError:
        raise StorageError(
            f"a PostgreSQL --db needs the driver: pip install '{EXTRA}' "
            "(with uvx: add --with 'psycopg[binary]>=3.2,<4')."
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


def connect_failure(url: str, error: Exception) -> StorageError:
    """One line saying why connecting failed and what to check."""
    text = " ".join(str(error).split())
    # libpq prefixes every reason with 'connection to server at ... failed:'; keep the reason.
    reason = text.rsplit("failed: ", 1)[-1] if "failed: " in text else text
    if "does not exist" in reason and "database" in reason:
        fix = "create it (createdb, or CREATE DATABASE) or fix the name in the URL"
    elif "password" in reason or "authentication" in reason or "role" in reason:
        fix = "check the user and password in the URL and the server's pg_hba.conf"
    elif "invalid response" in reason or "protocol" in reason:
        fix = "something other than PostgreSQL answers at that host and port; check the port"
    elif "refused" in reason or "timeout" in reason or "resolve" in reason or "translate" in reason:
        fix = "check the host and port, and that PostgreSQL is running and reachable"
    else:
        fix = "check the URL and the server"
    return StorageError(f"cannot connect to PostgreSQL at {redact(url)}: {reason}; {fix}.")


@functools.lru_cache(maxsize=512)
def to_pyformat(sql: str) -> str:
    """`?` placeholders as psycopg's `%s`, and literal `%` doubled, outside quoted text."""
    out: list[str] = []
    quote = ""
    for char in sql:
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "?":
            out.append("%s")
            continue
        out.append("%%" if char == "%" else char)
    return "".join(out)


def _lost(error: Exception, *, committing: bool = False) -> DatabaseBusy:
    # Lost during COMMIT, the server may have committed: repeating could write twice.
    then = (
        "it was lost during COMMIT, so the change may or may not have been saved: read "
        "before repeating it"
        if committing
        else "nothing of this call was saved; retry it in a moment"
    )
    return DatabaseBusy(
        f"the connection to PostgreSQL was lost and is being re-established; {then} "
        f"({' '.join(str(error).split())[:200]}).",
    )


class PgTransaction:
    """Statements inside one PostgreSQL transaction (see `PgDatabase.write`)."""

    def __init__(self, conn: psycopg.AsyncConnection[Row]) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        cursor = await self._conn.execute(to_pyformat(sql), params)
        return max(cursor.rowcount, 0)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        cursor = await self._conn.execute(to_pyformat(sql), params)
        return await cursor.fetchall() if cursor.description else []

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def notify(self, channel: str, payload: str) -> None:
        """Send `payload` to the channel's listeners when, and only if, this commits."""
        await self.execute("SELECT pg_notify(?, ?)", (channel, payload))


class PgDatabase:
    """One process's connection to the shared PostgreSQL database.

    Writers in this process queue on one lock, as on SQLite; across processes and machines
    PostgreSQL's row locks order them. A lost connection fails the call in flight with
    DATABASE_BUSY and is re-opened by the next call, so a server outlives a restart.
    """

    def __init__(self, url: str, conn: psycopg.AsyncConnection[Row]) -> None:
        self.url = url
        self.path = redact(url)
        self._conn: psycopg.AsyncConnection[Row] | None = conn
        self._lock = anyio.Lock()

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True) -> PgDatabase:
        """Connect, then migrate under an advisory lock; StorageError if that cannot be done
        or the schema is newer than this code."""
        db = cls(check_url(url), await connect(url))
        try:
            if migrate:
                await db._migrate()
            else:
                db._refuse_newer(await db.schema_version())
        except BaseException:
            await db.close()
            raise
        return db

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _connection(self) -> psycopg.AsyncConnection[Row]:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = await connect(self.url)
            except StorageError as error:
                raise DatabaseBusy(
                    f"PostgreSQL is unreachable; retry in a moment ({error})"
                ) from None
        return self._conn

    @asynccontextmanager
    async def _using(self) -> AsyncIterator[psycopg.AsyncConnection[Row]]:
        """The connection, to this caller alone; a broken one becomes DatabaseBusy."""
        pg = driver()
        async with self._lock:
            conn = await self._connection()
            try:
                yield conn
            except pg.OperationalError as error:
                if not (conn.closed or conn.broken):
                    raise
                await self._drop()
                raise _lost(error) from None

    @asynccontextmanager
    async def write(self) -> AsyncIterator[PgTransaction]:
        """BEGIN ... COMMIT, or ROLLBACK and re-raise; a lost connection is DatabaseBusy.

        BEGIN, COMMIT and ROLLBACK are shielded from cancellation, as on SQLite: a caller
        that gives up never leaves the connection inside a transaction. A statement cut
        off mid-flight makes psycopg close the connection; the server notices within
        CLIENT_CHECK_MS (set at connect) and rolls back, and the next call reconnects.
        """
        pg = driver()
        async with self._using() as conn:
            with anyio.CancelScope(shield=True):
                await conn.execute("BEGIN")
            try:
                yield PgTransaction(conn)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    try:
                        await conn.execute("ROLLBACK")
                    except pg.Error:
                        await self._drop()
                raise
            with anyio.CancelScope(shield=True):
                try:
                    await conn.execute("COMMIT")
                except pg.OperationalError as error:
                    if not (conn.closed or conn.broken):
                        raise
                    await self._drop()
                    raise _lost(error, committing=True) from None

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """One read statement, outside any transaction: it sees every commit before it."""
        async with self._using() as conn:
            cursor = await conn.execute(to_pyformat(sql), params)
            return await cursor.fetchall() if cursor.description else []

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def schema_version(self) -> int:
        async with self.write() as tx:
            return await _version(tx)

    async def _drop(self) -> None:
        if self._conn is not None:
            with anyio.CancelScope(shield=True):
                await self._conn.close()
            self._conn = None

    async def _migrate(self) -> None:
        """Bring the schema to SCHEMA_VERSION exactly once, however many processes start:
        each takes a transaction-scoped advisory lock, then reads the version again."""
        async with self.write() as tx:
            await tx.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
            current = await _version(tx)
            self._refuse_newer(current)
            for version in range(current + 1, SCHEMA_VERSION + 1):
                try:
                    for statement in MIGRATIONS[version]:
                        await tx.execute(statement)
                except driver().Error as error:
                    raise _setup_refused(self.path, error) from None
                await tx.execute(
                    "INSERT INTO schema_history (version, applied_at, pid, host)"
                    " VALUES (?, ?, ?, ?)",
                    (version, utc_now(), os.getpid(), socket.gethostname()),
                )
        if current < SCHEMA_VERSION:
            logger.info("migrated %s from schema %d to %d", self.path, current, SCHEMA_VERSION)

    def _refuse_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"{self.path} has schema version {version}, newer than this "
                f"shared-context-server understands ({SCHEMA_VERSION}). Upgrade it "
                f"({UPGRADE}) or point --db at another database."
            )


def _setup_refused(path: str, error: Exception) -> Exception:
    """A migration's failure; one line saying what to do if the role lacks a privilege."""
    state, message = getattr(error, "sqlstate", None), getattr(error, "diag", None)
    primary = message.message_primary if message else str(error)
    if state == MISSING_EXTENSION:  # the schema's own message says what to do
        return StorageError(f"cannot set up {path}: {primary}.")
    if state == "42501":  # insufficient_privilege
        return StorageError(
            f"cannot set up {path}: {primary}; the role in the URL must own the database "
            "(CREATE DATABASE ... OWNER role) or be granted CREATE on it and its schema."
        )
    return error


async def _version(tx: PgTransaction) -> int:
    # Two statements: the history table does not exist before the first migration.
    exists = await tx.fetchone(SCHEMA_EXISTS)
    if not exists or not exists[0]:
        return 0
    row = await tx.fetchone(SELECT_VERSION)
    return int(row[0]) if row and row[0] is not None else 0


async def connect(url: str) -> psycopg.AsyncConnection[Row]:
    """An autocommit connection, or StorageError saying in one line why not."""
    pg = driver()
    options: dict[str, Any] = {"autocommit": True, "application_name": "shared-context-server"}
    if "connect_timeout" not in url:
        options["connect_timeout"] = CONNECT_TIMEOUT_S
    try:
        conn: psycopg.AsyncConnection[Row] = await pg.AsyncConnection.connect(url, **options)
    except pg.Error as error:
        raise connect_failure(url, error) from None
    # PostgreSQL before 14 has no such setting: there, statements run to their end.
    with contextlib.suppress(pg.errors.UndefinedObject):
        await conn.execute(f"SET client_connection_check_interval = {int(CLIENT_CHECK_MS)}")
    return conn
