"""A unit of work on PostgreSQL: statements written once for both engines (SQLite's `?`
placeholders), run in PostgreSQL's form and in as few round trips as their results allow.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import re
import select
import weakref
from typing import TYPE_CHECKING, Any

from shared_context_server.errors import Conflict
from shared_context_server.storage.postgres.connect import driver
from shared_context_server.storage.postgres.schema import SESSION_CLOSED
from shared_context_server.storage.seam import Params

if TYPE_CHECKING:
    import psycopg


@functools.lru_cache(maxsize=512)
def to_pyformat(sql: str) -> str:
    """`?` placeholders as psycopg's `%s`, and literal `%` doubled, outside quoted text."""
    return _placeholders(sql, numbered=False)


def _placeholders(sql: str, *, numbered: bool) -> str:
    out: list[str] = []
    quote = ""
    count = 0
    for char in sql:
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "?":
            count += 1
            out.append(f"${count}" if numbered else "%s")
            continue
        out.append("%%" if char == "%" and not numbered else char)
    return "".join(out)


# SQLite's `CROSS JOIN t a ON cond`: `t` is walked once per row of the tables before it.
_CROSS_JOIN = re.compile(r" CROSS JOIN (\w+) (\w+) ON (.+?)(?= JOIN | WHERE )")


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """A statement written for both engines, in PostgreSQL's form: psycopg's placeholders,
    and SQLite's planner hint `CROSS JOIN t a ON cond` (walk `t` inside, once per outer
    row: the inbox's marks, each a short range of messages) as the LATERAL subquery that
    means the same to PostgreSQL's planner. A plain join let it walk every message in id
    order, or hash them all, for the inbox's news: 120 ms at 20,000 messages."""
    return _lateral(to_pyformat(sql))


def _lateral(sql: str) -> str:
    return _CROSS_JOIN.sub(r" JOIN LATERAL (SELECT * FROM \1 \2 WHERE \3 OFFSET 0) \2 ON TRUE", sql)


# Statements a unit sends again and again are PREPAREd once per connection, then sent as
# `EXECUTE name(literals)`: PostgreSQL parses and plans them once (a post: 0.5 -> 0.38 ms
# in PostgreSQL). A statement becomes worth it the HOT-th time this process sends it. One
# PostgreSQL cannot type (`? IS NULL` says nothing of `?`) stays as it is, everywhere.
HOT = 3
MAX_PREPARED = 200  # a connection's at most (each holds a plan in its backend)
MAX_COUNTED = 10_000  # statements counted before the count starts again
PREPARE_LOCK_MS = 50
_sent: collections.Counter[str] = collections.Counter()
_untypable: set[str] = set()


class Prepared:
    """One connection's prepared statements (they live as long as its session)."""

    def __init__(self, *, off: bool = False) -> None:
        self.names: dict[str, str] = {}  # the statement (SQLite's form) -> its name
        self.wanted: dict[str, None] = {}  # hot, to PREPARE before the next unit
        self.off = off  # this connection lost prepared statements once: none again

    def note(self, sql: str) -> None:
        if len(_sent) >= MAX_COUNTED:  # statements built per table or filter: forget them
            _sent.clear()
        _sent[sql] += 1
        if (
            not self.off
            and _sent[sql] >= HOT
            and sql not in _untypable
            and sql not in self.names
            and len(self.names) < MAX_PREPARED
        ):
            self.wanted[sql] = None

    def prepare_wanted(self, conn: psycopg.Connection[Any]) -> None:
        """PREPARE what became hot, before a unit (an autocommit connection), each in a
        transaction of its own that waits for a table's lock (a migration's) at most
        PREPARE_LOCK_MS: then it is tried again before the next unit. PREPARE is not
        transactional: a statement made is kept, one refused is not made."""
        pg = driver()
        while self.wanted:
            sql = next(iter(self.wanted))
            name = f"scs_{next(_names)}"
            text = _lateral(_placeholders(sql, numbered=True))
            try:
                conn.execute(
                    f"BEGIN; SET LOCAL lock_timeout = {PREPARE_LOCK_MS};"
                    f" PREPARE {name} AS {text}; COMMIT"
                )
            except pg.errors.LockNotAvailable:
                _end(conn)
                return
            except (pg.ProgrammingError, pg.DataError, pg.NotSupportedError):
                _end(conn)
                _untypable.add(sql)  # e.g. IndeterminateDatatype: left as it is
            else:
                self.names[sql] = name
            del self.wanted[sql]


def _end(conn: psycopg.Connection[Any]) -> None:
    """ROLLBACK the transaction a failed query left open."""
    pg = driver()
    if conn.info.transaction_status == pg.pq.TransactionStatus.INERROR:
        conn.execute("ROLLBACK")


_prepared: weakref.WeakKeyDictionary[Any, Prepared] = weakref.WeakKeyDictionary()
_names = itertools.count(1)  # never reused in a process: a forgotten one may still exist


def prepared(conn: psycopg.Connection[Any]) -> Prepared:
    found = _prepared.get(conn)
    if found is None:
        found = _prepared[conn] = Prepared()
    return found


class StalePrepared(Exception):
    """A prepared statement PostgreSQL no longer has (something ran DISCARD ALL on the
    session) or can no longer run (a table it returns changed shape): the connection's
    are forgotten and it prepares no more, nothing of the unit was saved, and it runs
    again."""


# invalid_sql_statement_name; feature_not_supported ("cached plan must not change result
# type")
STALE_PREPARED = ("26000", "0A000")


@functools.lru_cache(maxsize=512)
def _execute_text(name: str, count: int) -> str:
    return f"EXECUTE {name}({', '.join(['%s'] * count)})" if count else f"EXECUTE {name}"


class _Cursor:
    """One statement's result inside a unit of work, shaped like sqlite3's cursor."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    @property
    def rowcount(self) -> int:
        return max(int(self._cursor.rowcount), 0)

    def fetchone(self) -> Any:
        return self._cursor.fetchone() if self._cursor.description else None

    def fetchall(self) -> list[Any]:
        return list(self._cursor.fetchall()) if self._cursor.description else []


class PgConn:
    """What a unit of work gets on PostgreSQL: `execute` with SQLite's placeholders."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, parameters: Params = (), /) -> _Cursor:
        cursor = self._conn.cursor()
        cursor.execute(translate(sql), tuple(parameters))
        return _Cursor(cursor)


def cursor_text(held: list[_HeldCursor]) -> str:
    return " ".join(h.sql for h in held)


class _Result:
    """One statement's outcome, kept after its query moved on to the next statement's."""

    def __init__(self, cursor: Any) -> None:
        self.rowcount = max(int(cursor.rowcount), 0)
        self.rows: list[Any] | None = list(cursor.fetchall()) if cursor.description else None
        self._next = 0

    def fetchone(self) -> Any:
        if not self.rows or self._next >= len(self.rows):
            return None
        self._next += 1
        return self.rows[self._next - 1]

    def fetchall(self) -> list[Any]:
        rest = self.rows[self._next :] if self.rows else []
        self._next += len(rest)
        return rest


class _HeldCursor:
    """A statement of a unit of work, sent when any held result is first looked at, or
    with COMMIT (`PgUnit`)."""

    def __init__(self, unit: PgUnit, sql: str) -> None:
        self.sql = sql
        self._unit = unit
        self.result: _Result | None = None

    def _sent(self) -> _Result:
        if self.result is None:
            self._unit.send_held()
        assert self.result is not None
        return self.result

    @property
    def rowcount(self) -> int:
        return self._sent().rowcount

    def fetchone(self) -> Any:
        return self._sent().fetchone()

    def fetchall(self) -> list[Any]:
        return self._sent().fetchall()


class PgUnit:
    """What a unit of work gets in `PgDatabase.transact`: `execute` as PgConn's, in fewer
    round trips. Statements are held back until a result is looked at, then sent in one
    query (several statements in PostgreSQL's simple protocol, the first error stopping
    the rest); BEGIN goes with the first, COMMIT with the last.

    A unit that looks at nothing before it ends (add_message: BEGIN, INSERT ... RETURNING,
    the audit INSERT, COMMIT, through `transact_then_read`) is one trip, and holds its
    session's row lock, which every writer to that session waits for, over no round trip
    to this process; set_memory takes two trips instead of five."""

    def __init__(
        self, conn: psycopg.Connection[Any], opening: tuple[str, ...] = ("BEGIN",)
    ) -> None:
        self._conn = conn
        self._prepared = prepared(conn)
        self._opening = opening  # sent before the first statement: BEGIN, maybe a SET LOCAL
        self._held: list[_HeldCursor] = []
        self._binder: Any = None  # a ClientCursor (connect_sync), to bind parameters
        self.trips = 0  # queries sent so far
        self.committing = False  # COMMIT is on its way: a lost connection may have saved it

    def execute(self, sql: str, parameters: Params = (), /) -> _HeldCursor:
        # Parameters bound here, client-side, as ClientCursor would when sending.
        if self._binder is None:
            self._binder = self._conn.cursor()
        values = tuple(parameters)
        name = self._prepared.names.get(sql)
        if name is None:
            self._prepared.note(sql)
            literal: str = self._binder.mogrify(translate(sql), values)
        else:
            literal = self._binder.mogrify(_execute_text(name, len(values)), values)
        held = _HeldCursor(self, literal)
        self._held.append(held)
        return held

    def send_held(self, tail: str = "") -> None:
        """Send the statements held back, if any, after BEGIN if they open the unit and
        before `tail` (COMMIT)."""
        held, self._held = self._held, []
        if not held and not self.trips:
            return  # nothing ran: no transaction to open or end
        begin = [] if self.trips else list(self._opening)
        cursor = self._conn.cursor()
        self.trips += 1
        try:
            cursor.execute("; ".join([*begin, *(h.sql for h in held), *([tail] if tail else [])]))
        except driver().Error as error:
            if error.sqlstate in STALE_PREPARED and "EXECUTE scs_" in cursor_text(held):
                # Lost once (DISCARD ALL, or a pooler in transaction mode, which hands the
                # next transaction another server connection): this connection prepares
                # nothing more; the next one the process opens starts afresh.
                _prepared[self._conn] = Prepared(off=True)
                raise StalePrepared(str(error)) from error
            if error.sqlstate == SESSION_CLOSED:  # a post met a session closed under it
                raise Conflict(
                    error.diag.message_primary or str(error), status=error.diag.message_detail
                ) from None
            raise
        for _ in begin:
            cursor.nextset()
        for statement in held:
            statement.result = _Result(cursor)
            cursor.nextset()

    def commit(self) -> None:
        self.committing = True
        self.send_held("COMMIT")

    def rollback(self) -> None:
        """End a unit that failed: ROLLBACK if the server holds its transaction open."""
        self._held = []
        pg = driver()
        status = self._conn.info.transaction_status
        if status in (pg.pq.TransactionStatus.INTRANS, pg.pq.TransactionStatus.INERROR):
            with contextlib.suppress(pg.OperationalError):  # the connection is gone: so is it
                self._conn.execute("ROLLBACK")


def closed_by_server(conn: psycopg.Connection[Any]) -> bool:
    """Whether PostgreSQL has closed this idle connection (a restart, a terminated backend):
    then something waits on its socket, and reading it finds the end. Found before a unit
    is sent, so a unit that goes whole with its COMMIT is not reported as maybe saved."""
    pg = driver()
    # Its last words (FATAL), then the end of the stream, which fails a read: at most two.
    for _ in range(2):
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
        if not readable:
            return False
        with contextlib.suppress(pg.OperationalError):  # the status says what it found
            conn.pgconn.consume_input()
        if conn.pgconn.status != pg.pq.ConnStatus.OK:
            break
    else:
        return False
    conn.close()
    return True
