"""`execute_raw_query` on PostgreSQL: one statement, in a session that can reach only the
rows of the shared tables.

The session logs in as the confined login (records.py), never as the
blackboard's own login: its *session user* holds no privilege outside the schema
`records`, so no SET ROLE, RESET ROLE or set_config in the text can reach more. What
PUBLIC may call anyway (advisory locks, pg_notify, lo_*, signals, SQL from text) is kept
out by an allowlist over PostgreSQL's own parse of the statement (allow.py).

Each call is one transaction: READ ONLY unless this call may write, the schema `records`
as the search path, a statement timeout, then the one statement exactly as parsed; after
it, DISCARD ALL, so no lock, setting or object outlives the call. Four queries: BEGIN with
its SET LOCALs, the statement, COMMIT or ROLLBACK, DISCARD ALL (which PostgreSQL runs
only as a query of its own).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from typing import Any

import anyio

from shared_context_server.errors import (
    BlackboardError,
    DatabaseBusy,
    InvalidInput,
    LimitExceeded,
    PermissionDenied,
    StorageError,
)
from shared_context_server.storage.postgres.allow import Statement, read_statement, refuse
from shared_context_server.storage.postgres.records import (
    SETUP_LOCK,
    Login,
    confine,
    how_to_enable,
)
from shared_context_server.storage.seam import Fetched
from shared_context_server.storage.seam.records import RECORDS_URL_ENV as ENV_RECORDS_URL
from shared_context_server.storage.seam.records import (
    SCHEMA,
    RawOutcome,
    WriteRefused,
    pg_text,
    sql_error,
    sqlstate,
)

MAX_RESULT_BYTES = 4 * 1024 * 1024
READ_ONLY = (
    "raw queries are read-only here: change rows with insert_record, "
    "update_record or delete_record (or start the server with --allow-raw-writes)"
)
# What the session must be before a statement runs: the confined login itself, with no
# power beyond rows (checked again at every connect, whatever the setup found).
_WHO = (
    "SELECT session_user, rolsuper OR rolbypassrls OR rolcreaterole OR rolcreatedb"
    " OR rolreplication FROM pg_roles WHERE rolname = session_user"
)


class _AuthFailed(Exception):
    """The confined login's password was refused."""


class PgRawQueries:
    """The confined session raw queries run on, one statement at a time."""

    def __init__(
        self,
        url: str,
        *,
        allow_writes: bool,
        seconds: float,
        max_rows: int,
        login_url: str | None = None,
    ) -> None:
        self.url = url  # the blackboard's own login: used to set up, never to run a query
        self.login_url = login_url  # the operator's confined login, if named
        self.allow_writes = allow_writes
        self.seconds = seconds
        self.max_rows = max_rows
        self.refusal: str | None = None  # why raw queries cannot be confined here
        self._login: Login | None = None
        self._server_role = ""
        self._conn: Any = None
        self._lock = threading.Lock()

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        allow_writes: bool,
        seconds: float,
        max_rows: int,
        login_url: str | None = None,
    ) -> PgRawQueries:
        """The raw-query side of the records schema; it connects at the first raw query,
        so a server whose agents never send one holds no extra connection. `login_url`:
        the confined login, else SHARED_CONTEXT_RECORDS_URL, else one the server makes."""
        login_url = login_url or os.environ.get(ENV_RECORDS_URL) or None
        return cls(
            url,
            allow_writes=allow_writes,
            seconds=seconds,
            max_rows=max_rows,
            login_url=login_url,
        )

    def _confine(self, *, rotate: bool = False) -> None:
        """Set up the confined login with the blackboard's login; `refusal` says why not,
        if not. Until it succeeds every raw query tries again, so a DBA's grant needs no
        restart."""
        from shared_context_server.storage.postgres.connect import connect_sync, driver

        pg = driver()
        try:
            setup: Any = connect_sync(self.url)
            with setup as conn:
                self._server_role = conn.execute("SELECT current_user").fetchone()[0]
                # Processes starting together set up one after another (a concurrent
                # GRANT of the same role fails with "tuple concurrently updated").
                conn.execute("SELECT pg_advisory_lock(%s)", (SETUP_LOCK,))
                try:
                    found = confine(conn, pg.errors, self.url, given=self.login_url, rotate=rotate)
                finally:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK,))
        except (pg.Error, BlackboardError) as error:
            raise DatabaseBusy(
                f"raw queries could not be set up on PostgreSQL yet ({error}); retry in a moment."
            ) from None
        if isinstance(found, Login):
            self._login, self.refusal = found, None
        else:
            self._login, self.refusal = None, f"{found}; {how_to_enable(self._server_role)}"

    def _ensure(self) -> None:
        with self._lock:
            if self._login is None:
                self._confine()

    def _connect(self) -> Any:
        """A session as the confined login, checked to be it; PermissionDenied if it is
        the blackboard's own login or holds more than rows."""
        from shared_context_server.storage.postgres.connect import driver

        pg = driver()
        if self._login is None:  # found wanting by another call meanwhile
            raise self._denied()
        conn: Any = None
        try:
            conn = self._log_in(self._login)
        except _AuthFailed:
            if self.login_url is not None:
                raise self._unreachable("the password in " + ENV_RECORDS_URL) from None
        # Refused: another server of this database stored a new password (read it), or a
        # server of another database on this cluster set one (set ours again).
        for rotate in (False, True) if conn is None else ():
            self._confine(rotate=rotate)
            if self._login is None:
                raise self._denied()
            with contextlib.suppress(_AuthFailed):
                conn = self._log_in(self._login)
                break
        if conn is None:
            raise self._unreachable("the password just set")
        conn.prepare_threshold = None  # DISCARD ALL drops prepared statements after each call
        try:
            who, powerful = conn.execute(_WHO).fetchone()
        except pg.Error:
            conn.close()
            raise
        if who != self._login.role or who == self._server_role or powerful:
            conn.close()
            self._login = None
            self.refusal = (
                f"the confined login logs in as {who}, which is the server's own role or holds "
                f"more than rows; {how_to_enable(self._server_role)}"
            )
            raise self._denied()
        return conn

    def _log_in(self, login: Login) -> Any:
        """connect_sync as the confined login; messages never hold its password."""
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        from shared_context_server.storage.postgres.connect import connect_sync

        try:
            # UTF-8, as pglast read the text: in some encodings (SJIS...) a backslash
            # byte can end a character, and the server would read the quoting otherwise.
            return connect_sync(make_conninfo(login.url, client_encoding="UTF8"))
        except StorageError as error:
            password = str(conninfo_to_dict(login.url).get("password") or "")
            text = str(error).replace(password, "***") if password else str(error)
            if "password authentication failed" in text:
                raise _AuthFailed(text) from None
            raise DatabaseBusy(f"PostgreSQL is unreachable; retry ({text})") from None

    def _unreachable(self, what: str) -> DatabaseBusy:
        return DatabaseBusy(
            f"raw queries could not log in as {self._login.role if self._login else '?'}: "
            f"{what} was refused; check it and pg_hba.conf."
        )

    def _denied(self) -> PermissionDenied:
        return PermissionDenied(
            "raw queries are off on this PostgreSQL database, because they could not be "
            f"confined to the shared tables: {self.refusal}.",
        )

    async def close(self) -> None:
        if self._conn is not None:
            await anyio.to_thread.run_sync(self._conn.close)
            self._conn = None

    async def run(self, query: str, params: Sequence[Any], *, writes: bool) -> RawOutcome:
        """Run one statement, at most max_rows + 1 rows back. Raises WriteRefused (a row
        write while writes are off), PermissionDenied (no confined login), BlackboardError."""
        if self._login is None:
            await anyio.to_thread.run_sync(self._ensure)
        if self._login is None:
            raise self._denied()
        statement = read_statement(query)
        if statement.writes and not writes:
            raise WriteRefused(f"{READ_ONLY}.", argument="query")
        with anyio.CancelScope(shield=True):  # the statement runs to its timeout at most
            fetched = await anyio.to_thread.run_sync(self._run, statement, tuple(params), writes)
        return RawOutcome(fetched, frozenset(statement.tables))

    def _run(self, statement: Statement, params: tuple[Any, ...], writes: bool) -> Fetched:
        from shared_context_server.storage.postgres.connect import driver

        pg = driver()
        with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            conn = self._conn
            try:
                try:
                    return self._transaction(conn, statement, params, writes, pg)
                finally:
                    if not conn.closed and not conn.broken:
                        conn.execute("DISCARD ALL")  # nothing of the call outlives it
            except pg.Error as error:
                if conn.closed or conn.broken:
                    self._conn = None
                    raise DatabaseBusy(
                        "the connection to PostgreSQL was lost; nothing of this call was "
                        "saved; retry it in a moment."
                    ) from None
                raise self._explain(error) from None

    def _transaction(
        self, conn: Any, statement: Statement, params: tuple[Any, ...], writes: bool, pg: Any
    ) -> Fetched:
        """BEGIN and the settings in one trip, the statement, then COMMIT or ROLLBACK."""
        mode = "READ WRITE" if writes else "READ ONLY"
        commit = False
        try:  # whatever fails, from BEGIN on, the transaction is ended below
            conn.execute(
                f"BEGIN {mode}; SET LOCAL search_path = {SCHEMA};"
                # Backslashes in '...' must mean themselves, as pglast read them.
                " SET LOCAL standard_conforming_strings = on;"
                f" SET LOCAL statement_timeout = {int(self.seconds * 1000)}"
            )
            # The text as pglast read it, sent as it is: no client-side rewriting.
            cursor = pg.RawCursor(conn)
            if not (writes and statement.writes):
                # Streamed, so an endless result is cut at the row cap (the rest is
                # cancelled, which ends the transaction: nothing to commit). A write
                # here is refused by the READ ONLY transaction.
                return self._stream(cursor, statement.sql, params)
            cursor.execute(statement.sql, params)
            fetched = self._fetched(cursor)
            commit = True
            return fetched
        finally:
            idle = pg.pq.TransactionStatus.IDLE
            if not (conn.closed or conn.broken) and conn.info.transaction_status != idle:
                conn.execute("COMMIT" if commit else "ROLLBACK")

    def _stream(self, cursor: Any, sql: str, params: tuple[Any, ...]) -> Fetched:
        rows: list[Any] = []
        size = 0
        columns: list[str] = []
        for row in cursor.stream(sql, params):
            if not columns:
                columns = [c.name for c in cursor.description or ()]
            size = self._add(rows, row, size)
            if len(rows) > self.max_rows:
                break
        return Fetched(columns or [c.name for c in cursor.description or ()], rows, 0)

    def _fetched(self, cursor: Any) -> Fetched:
        """A writing statement's rows (RETURNING), capped, and the rows it changed."""
        changes = max(int(cursor.rowcount), 0)
        if cursor.description is None:
            return Fetched([], [], changes)
        rows: list[Any] = []
        size = 0
        while len(rows) <= self.max_rows and (row := cursor.fetchone()) is not None:
            size = self._add(rows, row, size)
        return Fetched([c.name for c in cursor.description], rows, changes)

    def _add(self, rows: list[Any], row: Any, size: int) -> int:
        size += sum(len(v) for v in row if isinstance(v, str | bytes))
        if size > MAX_RESULT_BYTES:
            raise LimitExceeded(
                f"the query's rows hold over {MAX_RESULT_BYTES:,} bytes of text and "
                "blobs; select fewer columns or rows (LIMIT), or length()/substr() "
                "of big values.",
                limit_bytes=MAX_RESULT_BYTES,
            )
        rows.append(tuple(row))
        return size

    def _explain(self, error: BaseException) -> BlackboardError:
        state = sqlstate(error)
        text = pg_text(error)
        if state == "57014":  # query_canceled: the statement timeout
            return LimitExceeded(
                f"the query ran over {self.seconds:g} s and was stopped; add a LIMIT, "
                "narrow the WHERE, or check a recursive query ends.",
                limit_seconds=self.seconds,
            )
        if state == "25006":  # read_only_sql_transaction
            return WriteRefused(f"{READ_ONLY}.", argument="query")
        if state == "42501":  # insufficient_privilege
            return InvalidInput(
                f"forbidden statement: {text} (raw queries reach only the shared tables).",
                argument="query",
            )
        if "multiple commands" in text:
            return refuse("send exactly one statement per call")
        if state in ("08P01", "42P02") or "bind message supplies" in text:
            return InvalidInput(f"execute_raw_query: {text}.", argument="params")
        if state == "54000" or state.startswith("53"):
            return LimitExceeded(f"execute_raw_query: {text}.", limit=text)
        return sql_error(error, "execute_raw_query")
