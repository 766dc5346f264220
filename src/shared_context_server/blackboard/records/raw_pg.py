"""`execute_raw_query` on PostgreSQL: one statement, as a role that can reach only the rows
of the shared tables.

Each call is one transaction on a connection of its own: SET LOCAL ROLE to the confined
role (records/postgres.py: no privilege outside the schema `records`, so the blackboard's
tables, files, DDL and temporary tables are refused by PostgreSQL itself), the schema
`records` as the search path, a statement timeout, READ ONLY unless this call may write,
then the one statement through the extended protocol (which refuses a second statement).

A role taken with SET ROLE can be left by the statement itself (SET/RESET ROLE, or
set_config('role', ...), since PostgreSQL checks the *session's* user): so before it
runs, a statement is read for what it is (`check`): it must be a SELECT, VALUES, TABLE,
WITH, INSERT, UPDATE or DELETE, name none of the functions that change settings, run SQL
from text or hold anything past the transaction (DENIED), and use no quoting a reader
could misjudge (E'', U&'', $$).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from shared_context_server.blackboard.records.dialect import SCHEMA
from shared_context_server.blackboard.records.failures import (
    RawOutcome,
    WriteRefused,
    pg_text,
    sql_error,
    sqlstate,
)
from shared_context_server.blackboard.records.postgres import (
    CONFINED_ROLE,
    SETUP_LOCK,
    confine,
    how_to_enable,
)
from shared_context_server.errors import (
    BlackboardError,
    DatabaseBusy,
    InvalidInput,
    LimitExceeded,
    PermissionDenied,
)
from shared_context_server.storage.seam import Conn, Fetched

MAX_RESULT_BYTES = 4 * 1024 * 1024
FIRST_WORDS = frozenset({"select", "values", "table", "with", "insert", "update", "delete"})
WRITE_WORDS = frozenset({"insert", "update", "delete"})
# Functions a confined statement must not call: set_config and pg_settings change settings
# (the role among them); the *_to_xml family, ts_stat and ts_rewrite run SQL given as text,
# which could call set_config out of sight; the rest hold locks or objects past the
# transaction, signal other backends, or reach files and other servers.
DENIED = frozenset(
    {
        "set_config",
        "pg_settings",
        "query_to_xml",
        "query_to_xmlschema",
        "query_to_xml_and_xmlschema",
        "cursor_to_xml",
        "cursor_to_xmlschema",
        "table_to_xml",
        "table_to_xmlschema",
        "table_to_xml_and_xmlschema",
        "schema_to_xml",
        "schema_to_xmlschema",
        "schema_to_xml_and_xmlschema",
        "database_to_xml",
        "database_to_xmlschema",
        "database_to_xml_and_xmlschema",
        "ts_stat",
        "ts_rewrite",
        "pg_notify",
        "pg_cancel_backend",
        "pg_terminate_backend",
        "pg_logical_emit_message",
    }
)
DENIED_PREFIXES = ("pg_advisory", "pg_try_advisory", "lo_", "dblink", "pg_read", "pg_ls_")
_NOT_TABLES = frozenset({"", "set", "of", "nowait", "skip", "'", "$", "."})
_WORD = re.compile(r"[A-Za-z_\x80-\uffff][A-Za-z0-9_$\x80-\uffff]*")
READ_ONLY = (
    "raw queries are read-only here: change rows with insert_record, "
    "update_record or delete_record (or start the server with --allow-raw-writes)"
)


@dataclass
class Statement:
    """What `check` read: the first word, and the tables it writes."""

    first: str
    writes: bool
    tables: set[str] = field(default_factory=set)


def _words(query: str) -> list[str]:
    """The statement's words (keywords, names; quoted names unquoted), lower-cased, with
    strings and comments left out; InvalidInput for quoting this reader does not take."""
    words: list[str] = []
    i, n = 0, len(query)
    ended = False
    while i < n:
        char = query[i]
        if char.isspace():
            i += 1
        elif query.startswith("--", i):
            end = query.find("\n", i)
            i = n if end < 0 else end + 1
        elif query.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if query.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif query.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif ended:
            raise _refuse("query holds more than one statement; send one statement per call")
        elif char in "'\"":
            if char == "'" and words and words[-1] in ("e", "u") and query[i - 1] != " ":
                raise _refuse("E'' and U&'' strings are not taken; use plain '...' strings")
            end = i + 1
            while True:
                end = query.find(char, end)
                if end < 0:
                    raise _refuse("a quote is not closed")
                if query.startswith(char * 2, end):
                    end += 2
                    continue
                break
            if char == '"':
                words.append(query[i + 1 : end].replace('""', '"').lower())
            else:
                words.append("'")
            i = end + 1
        elif char == "$":
            j = i + 1
            while j < n and query[j].isdigit():
                j += 1
            if j == i + 1:
                raise _refuse("dollar quoting ($$) is not taken; use plain '...' strings")
            words.append("$")
            i = j
        elif char == "&" and words and words[-1] == "u":
            raise _refuse("U& quoting is not taken")
        elif char == ";":
            ended = True
            i += 1
        elif match := _WORD.match(query, i):
            words.append(match.group().lower())
            i = match.end()
        else:
            if char == ".":
                words.append(".")  # schema.table: the table is the word after it
            i += 1
    return words


def check(query: str) -> Statement:
    """What the statement is, or InvalidInput (forbidden statement)."""
    words = _words(query)
    if not words or words[0] not in FIRST_WORDS:
        shown = words[0].upper() if words else "nothing"
        raise _refuse(
            f"{shown} is not allowed: raw queries take one SELECT, VALUES, TABLE, WITH, "
            "INSERT, UPDATE or DELETE (make tables with create_table)"
        )
    statement = Statement(words[0], writes=bool(WRITE_WORDS & set(words)))
    for index, word in enumerate(words):
        if word in DENIED or word.startswith(DENIED_PREFIXES):
            raise _refuse(f"{word} is not allowed in raw queries")
        before = words[index - 1] if index else ""
        if word == "into" and before != "insert":
            raise _refuse("SELECT ... INTO makes a table; make tables with create_table")
        if before in ("into", "update") or (
            before == "from" and index > 1 and words[index - 2] == "delete"
        ):
            at = index + 1 if word == "only" else index
            if words[at + 1 : at + 2] == ["."]:
                at += 2
            name = words[at] if at < len(words) else ""
            if name not in _NOT_TABLES:  # FOR UPDATE OF, DO UPDATE SET
                statement.tables.add(name)
    return statement


def _refuse(reason: str) -> InvalidInput:
    return InvalidInput(f"forbidden statement: {reason}.", argument="query")


# Run inside the transaction after a writing statement: (connection, rows changed, tables).
InsideLog = Callable[[Conn, int, str], None]


class PgRawQueries:
    """The connection raw queries run on, one confined statement at a time."""

    def __init__(self, url: str, *, allow_writes: bool, seconds: float, max_rows: int) -> None:
        self.url = url
        self.allow_writes = allow_writes
        self.seconds = seconds
        self.max_rows = max_rows
        self.refusal: str | None = None  # why raw queries cannot be confined here
        self._conn: Any = None
        self._lock = threading.Lock()

    @classmethod
    async def open(
        cls, url: str, *, allow_writes: bool, seconds: float, max_rows: int
    ) -> PgRawQueries:
        """The raw-query side of the records schema; it connects at the first raw query,
        so a server whose agents never send one holds no extra connection."""
        return cls(url, allow_writes=allow_writes, seconds=seconds, max_rows=max_rows)

    def _confine(self) -> None:
        """Connect and set up the confined role; `refusal` says why not, if not. Until it
        succeeds every raw query tries again, so a DBA's grant needs no restart."""
        from shared_context_server.storage.postgres.connect import connect_sync, driver

        pg = driver()
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = connect_sync(self.url)
                conn = self._conn
                role = conn.execute("SELECT current_user").fetchone()[0]
                # Processes starting together grant one after another (a concurrent
                # GRANT of the same role fails with "tuple concurrently updated").
                conn.execute("SELECT pg_advisory_lock(%s)", (SETUP_LOCK,))
                try:
                    why = confine(conn, pg.errors)
                finally:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK,))
            except (pg.Error, BlackboardError) as error:
                self._conn = None
                raise DatabaseBusy(
                    f"raw queries could not be set up on PostgreSQL yet ({error}); retry "
                    "in a moment."
                ) from None
            self.refusal = None if why is None else f"{why}; {how_to_enable(role)}"

    async def close(self) -> None:
        if self._conn is not None:
            await anyio.to_thread.run_sync(self._conn.close)
            self._conn = None

    async def run(
        self, query: str, params: Sequence[Any], *, writes: bool, log: InsideLog | None = None
    ) -> RawOutcome:
        """Run one statement, at most max_rows + 1 rows back. Raises WriteRefused (a row
        write while writes are off), BlackboardError."""
        if self._conn is None or self.refusal is not None:
            await anyio.to_thread.run_sync(self._confine)
        if self.refusal is not None:
            raise PermissionDenied(
                f"raw queries are off on this PostgreSQL database, because they could not "
                f"be confined to the shared tables: {self.refusal}.",
            )
        statement = check(query)
        if statement.writes and not writes:
            raise WriteRefused(f"{READ_ONLY}.", argument="query")
        with anyio.CancelScope(shield=True):  # the statement runs to its timeout at most
            fetched = await anyio.to_thread.run_sync(
                self._run, query, tuple(params), writes, statement, log
            )
        return RawOutcome(fetched, frozenset(statement.tables))

    def _run(
        self,
        query: str,
        params: tuple[Any, ...],
        writes: bool,
        statement: Statement,
        log: InsideLog | None,
    ) -> Fetched:
        from shared_context_server.storage.postgres.connect import connect_sync, driver
        from shared_context_server.storage.postgres.unit import PgConn, to_pyformat

        pg = driver()
        with self._lock:
            if self._conn is None or self._conn.closed:
                try:
                    self._conn = connect_sync(self.url)
                except BlackboardError as error:
                    raise DatabaseBusy(f"PostgreSQL is unreachable; retry ({error})") from None
            conn = self._conn
            try:
                with conn.transaction():
                    mode = "READ WRITE" if writes else "READ ONLY"
                    conn.execute(f"SET TRANSACTION {mode}")
                    conn.execute(f"SET LOCAL ROLE {CONFINED_ROLE}")
                    conn.execute(f"SET LOCAL search_path = {SCHEMA}")
                    # Backslashes in '...' must mean themselves, as `check` read them.
                    conn.execute("SET LOCAL standard_conforming_strings = on")
                    conn.execute(f"SET LOCAL statement_timeout = {int(self.seconds * 1000)}")
                    cursor = pg.Cursor(conn)
                    sql = to_pyformat(query)
                    if not (writes and statement.writes):
                        # Streamed, so an endless result is cut at the row cap (the rest
                        # is cancelled, which ends the transaction: nothing to commit).
                        # A write here is refused by the READ ONLY transaction.
                        fetched = self._stream(cursor, sql, params)
                        raise pg.Rollback()
                    cursor.execute(sql, params)
                    fetched = self._fetched(cursor)
                    conn.execute("RESET ROLE")
                    conn.execute("RESET search_path")
                    if log is not None and fetched.changes:
                        log(PgConn(conn), fetched.changes, ",".join(sorted(statement.tables)))
                return fetched
            except pg.Error as error:
                if conn.closed or conn.broken:
                    self._conn = None
                    raise DatabaseBusy(
                        "the connection to PostgreSQL was lost; nothing of this call was "
                        "saved; retry it in a moment."
                    ) from None
                raise self._explain(error) from None

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
            return _refuse("query holds more than one statement; send one statement per call")
        if state in ("08P01", "42P02") or "bind message supplies" in text:
            return InvalidInput(f"execute_raw_query: {text}.", argument="params")
        if state == "54000" or state.startswith("53"):
            return LimitExceeded(f"execute_raw_query: {text}.", limit=text)
        return sql_error(error, "execute_raw_query")
