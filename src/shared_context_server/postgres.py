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
import socket
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import anyio

from shared_context_server.about import POSTGRES_DRIVER, POSTGRES_EXTRA, UPGRADE
from shared_context_server.clock import utc_now
from shared_context_server.errors import DatabaseBusy, InvalidInput, StorageError
from shared_context_server.postgres_schema import (
    MIGRATIONS,
    MISSING_EXTENSION,
    SCHEMA_EXISTS,
    SCHEMA_VERSION,
    SELECT_VERSION,
)
from shared_context_server.store import Change, Conn, Engine, Row, redact

if TYPE_CHECKING:
    import psycopg

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5
# How often a server backend running a statement checks that its client is still there:
# without it, a statement whose caller gave up (or was killed) runs to its end holding
# its locks, e.g. a session's, and every writer to that session waits for it.
CLIENT_CHECK_MS = 1000
# One key for the whole schema: processes starting together migrate one after another.
MIGRATION_LOCK = 0x5C5_0001
# Calls that write wait at most this long for locks, as on SQLite (db.BUSY_TIMEOUT_MS x 4).
BUSY_SECONDS = 20.0
# Where the schema's triggers announce each commit (postgres_schema): `m <session> <id>`
# for a message, `s <session>` when the list of sessions changes.
CHANNEL = "shared_context_changes"
# The least word similarity (0-1) for a message to be a search candidate.
WORD_SIMILARITY = 0.3
# Upkeep (checkpoint_if_large): GIN's pending list of the trigram index into the index.
CLEAN_PENDING = "SELECT gin_clean_pending_list('messages_trigram'::regclass)"
# A deadlock between two processes' transactions is retried this many times.
DEADLOCK_RETRIES = 3
Params = Sequence[Any]
TupleRow = tuple[Any, ...]
T = TypeVar("T")


def driver() -> Any:
    """The psycopg module, or StorageError naming the extra that provides it."""
    try:
        import psycopg
    except ImportError:
        raise StorageError(
            f"a PostgreSQL --db needs the driver: pip install '{POSTGRES_EXTRA}' "
            f"(with uvx: add --with '{POSTGRES_DRIVER}')."
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


def _interrupted(error: Exception) -> DatabaseBusy:
    """A statement PostgreSQL stopped with the connection still up (cancelled, a timeout
    set by the DBA, too many connections...): the server's state, not this call's fault."""
    return DatabaseBusy(
        "PostgreSQL stopped the statement; nothing of this call was saved; retry it in a "
        f"moment ({' '.join(str(error).split())[:200]})."
    )


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

    add_message (BEGIN, INSERT ... RETURNING, the audit INSERT, COMMIT) takes two trips
    instead of four, set_memory two instead of five; a writer holds its session's row
    lock, which every writer to that session waits for, over one trip instead of three."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self._held: list[_HeldCursor] = []
        self._binder: Any = None  # a ClientCursor (connect_sync), to bind parameters
        self.trips = 0  # queries sent so far
        self.committing = False  # COMMIT is on its way: a lost connection may have saved it

    def execute(self, sql: str, parameters: Params = (), /) -> _HeldCursor:
        # Parameters bound here, client-side, as ClientCursor would when sending.
        if self._binder is None:
            self._binder = self._conn.cursor()
        literal: str = self._binder.mogrify(translate(sql), tuple(parameters))
        held = _HeldCursor(self, literal)
        self._held.append(held)
        return held

    def send_held(self, tail: str = "") -> None:
        """Send the statements held back, if any, after BEGIN if they open the unit and
        before `tail` (COMMIT)."""
        held, self._held = self._held, []
        if not held and not self.trips:
            return  # nothing ran: no transaction to open or end
        begin = [] if self.trips else ["BEGIN"]
        cursor = self._conn.cursor()
        self.trips += 1
        cursor.execute("; ".join([*begin, *(h.sql for h in held), *([tail] if tail else [])]))
        if begin:
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


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """A statement written for both engines, in PostgreSQL's form: psycopg's placeholders,
    and `JOIN ... ON` where SQLite's planner hint `CROSS JOIN ... ON` is used."""
    return to_pyformat(sql).replace(" CROSS JOIN ", " JOIN ")


class PgDatabase:
    """One process's connections to the shared PostgreSQL database: a writer and a reader.

    psycopg's synchronous connections run on worker threads, one trip per unit of work, so
    a transaction's statements follow each other without returning to the event loop, as
    on SQLite. Writers of this process queue for the writer; across processes and machines
    PostgreSQL's row locks order them. Reads never wait for writes (MVCC). A lost
    connection fails the call in flight with DATABASE_BUSY and is opened again by the next
    call, so a server outlives a restart of PostgreSQL.
    """

    engine: Engine = "postgres"
    push = True  # every commit is heard on the LISTEN connection while listen() runs
    release_schema = SCHEMA_VERSION

    def __init__(self, url: str, *, busy_seconds: float = BUSY_SECONDS) -> None:
        self.url = url
        self.busy_seconds = busy_seconds
        self._writer: psycopg.Connection[Any] | None = None
        self._reader: psycopg.Connection[Any] | None = None
        self._write_lock = anyio.Lock()
        self._read_lock = threading.Lock()
        self._commit_listeners: list[Callable[[], None]] = []
        # What listen() heard since the change feed last looked (changes()).
        self._heard = 0
        self._first_id: int | None = None  # the lowest and highest message ids heard
        self._max_id = 0
        self._last_id = 0  # the highest ever reported
        self._sessions_changed = False
        self._resync = False
        self._baseline = False

    @property
    def where(self) -> str:
        return redact(self.url)

    @classmethod
    async def open(
        cls, url: str, *, migrate: bool = True, busy_seconds: float = BUSY_SECONDS
    ) -> PgDatabase:
        """Connect, then migrate under an advisory lock; StorageError if that cannot be done
        or the schema is newer than this code."""
        db = cls(check_url(url), busy_seconds=busy_seconds)
        try:
            db._writer = await anyio.to_thread.run_sync(db._connect)
            if migrate:
                await db._migrate()
            else:
                db._refuse_newer(await db.schema_version())
        except BaseException:
            await db.close()
            raise
        return db

    def _connect(self) -> psycopg.Connection[Any]:
        conn = connect_sync(self.url)
        # A writer waits for another's row lock no longer than a call may wait in all.
        conn.execute(f"SET lock_timeout = {int(self.busy_seconds * 1000)}")
        return conn

    async def close(self) -> None:
        for conn in (self._writer, self._reader):
            if conn is not None:
                await anyio.to_thread.run_sync(conn.close)
        self._writer = self._reader = None

    async def checkpoint_if_large(self) -> int:
        """PostgreSQL checkpoints on its own; what upkeep does here is flush the trigram
        index's pending list (GIN queues new rows there) and, if it held any, refresh the
        planner's statistics of messages: until then a search of a large session takes
        the session's index and scores every row (0.6 s at 10,000 messages, 0.7 ms after;
        tests/benchmarks/bench_search.py --pg-cluster measures recall there). Autovacuum
        does the same, later. Returns the pages moved."""
        pg = driver()
        try:
            row = await self.read_one(CLEAN_PENDING)
        except pg.errors.InsufficientPrivilege:  # only the index's owner may; autovacuum will
            return 0
        moved = int(row[0]) if row and row[0] else 0
        if moved:
            await self.read("ANALYZE messages")
        return moved

    def on_commit(self, listener: Callable[[], None]) -> Callable[[], None]:
        self._commit_listeners.append(listener)
        return lambda: self._commit_listeners.remove(listener)

    async def listen(self) -> None:
        """Hear every commit's notification until cancelled, reconnecting when the server
        goes away (then everything since may be news: RESYNC)."""
        from shared_context_server.postgres_listen import RESYNC, PgListener

        listener = PgListener(self.url, [CHANNEL])
        try:
            async for note in listener.notes():
                if note == RESYNC:
                    self._resync = True
                else:
                    self._hear(note[1])
                self._heard += 1
                for wake in list(self._commit_listeners):
                    wake()
        finally:
            await listener.close()

    def _hear(self, payload: str) -> None:
        kind, _, rest = payload.partition(" ")
        if kind == "s":
            self._sessions_changed = True
        elif kind == "m":
            _, _, raw_id = rest.rpartition(" ")
            if raw_id.isdigit():
                message_id = int(raw_id)
                self._first_id = min(self._first_id or message_id, message_id)
                self._max_id = max(self._max_id, message_id)

    async def data_version(self) -> int:
        """How many notifications listen() has heard: it moves with every commit."""
        return self._heard

    async def changes(self) -> Change | None:
        """What listen() heard since the last call. Message ids are in commit order only
        within a session, so the range spans every id heard (readers re-check what they
        may see); after a reconnection it reaches the newest message, from past the last
        one heard."""
        first, top, sessions = self._first_id, self._max_id, self._sessions_changed
        resync, self._resync = self._resync, False
        self._first_id, self._max_id, self._sessions_changed = None, 0, False
        if not self._baseline:
            self._baseline = True
            self._last_id = top
            return None
        if resync:
            row = await self.read_one("SELECT coalesce(max(id), 0) FROM messages")
            newest = int(row[0]) if row else 0
            start = min(first or self._last_id + 1, self._last_id + 1)
            change = Change(start, max(newest, top), True)
        elif first is None and not sessions:
            return None
        else:
            change = Change(first or top + 1, top, sessions)
        self._last_id = max(self._last_id, change.last_id)
        return change

    async def read(self, sql: str, params: Params = (), *, small: bool = False) -> list[Row]:
        """One statement in autocommit on the reader: it sees every commit before it."""
        del small  # every read takes a worker thread here
        return await anyio.to_thread.run_sync(self._read, translate(sql), tuple(params))

    async def read_one(self, sql: str, params: Params = (), *, small: bool = False) -> Row | None:
        rows = await self.read(sql, params)
        return rows[0] if rows else None

    def _read(self, sql: str, params: tuple[Any, ...]) -> list[Row]:
        pg = driver()
        with self._read_lock:
            # A read changes nothing, so a connection found dead (PostgreSQL restarted
            # since the last call) is replaced and the read asked again, once.
            for retry in (True, False):
                if self._reader is None or self._reader.closed:
                    self._reader = self._reconnect()
                conn = self._reader
                try:
                    cursor = conn.execute(sql, params)
                    return list(cursor.fetchall()) if cursor.description else []
                except pg.DataError as error:
                    raise _bad_value(error) from None
                except pg.OperationalError as error:
                    if not (conn.closed or conn.broken):
                        raise _interrupted(error) from None
                    self._reader = None
                    conn.close()
                    if not retry:
                        raise _lost(error) from None
        raise AssertionError("unreachable")

    def _reconnect(self) -> psycopg.Connection[Any]:
        try:
            return self._connect()
        except StorageError as error:
            raise DatabaseBusy(f"PostgreSQL is unreachable; retry in a moment ({error})") from None

    async def transact(self, work: Callable[[Conn], T]) -> T:
        """Run `work` in one transaction on a worker thread; DatabaseBusy past the deadline
        (this process's queue and other processes' locks together)."""
        deadline = anyio.current_time() + self.busy_seconds
        with anyio.move_on_after(self.busy_seconds):
            await self._write_lock.acquire()
        if not self._write_lock.locked() or anyio.current_time() > deadline:
            raise self._busy()
        try:
            # Not cancellable: the unit of work runs to COMMIT or ROLLBACK once started.
            result = await anyio.to_thread.run_sync(self._transact, work)
        finally:
            self._write_lock.release()
        for listener in list(self._commit_listeners):
            listener()
        return result

    async def try_transact(self, work: Callable[[Conn], object]) -> bool:
        """Run `work` unless this process is already writing (the heartbeat)."""
        if self._write_lock.locked():
            return False
        await self.transact(work)
        return True

    def _transact(self, work: Callable[[Conn], T]) -> T:
        pg = driver()
        deadlocks = 0
        stale_ok = True  # one connection found dead at BEGIN is replaced, not reported
        while True:
            if self._writer is None or self._writer.closed:
                self._writer = self._reconnect()
            conn = self._writer
            unit = PgUnit(conn)
            try:
                try:
                    result = work(unit)
                    unit.commit()
                except BaseException:
                    unit.rollback()
                    raise
                return result
            except (pg.errors.DeadlockDetected, pg.errors.SerializationFailure):
                deadlocks += 1
                if deadlocks > DEADLOCK_RETRIES:
                    raise self._busy() from None
            except pg.errors.LockNotAvailable:
                raise self._busy() from None
            except pg.DataError as error:
                raise _bad_value(error) from None
            except pg.OperationalError as error:
                if not (conn.closed or conn.broken):
                    raise _interrupted(error) from None
                self._writer = None
                conn.close()
                if unit.trips > 1 or unit.committing or not stale_ok:
                    raise _lost(error, committing=unit.committing) from None
                # Nothing was saved (no COMMIT was sent): most likely the first query met a
                # connection PostgreSQL had closed since the last call.
                stale_ok = False

    def _busy(self) -> DatabaseBusy:
        return DatabaseBusy(
            f"another process held a lock this call needs for over {self.busy_seconds:g} s; "
            "retry the call in a moment. If it keeps happening, look for a stuck session "
            "in pg_stat_activity.",
            database_path=self.where,
        )

    async def schema_version(self) -> int:
        return await self.transact(_version)

    async def _migrate(self) -> None:
        """Bring the schema to SCHEMA_VERSION exactly once, however many processes start:
        each takes a transaction-scoped advisory lock, then reads the version again."""

        def migrate(conn: Conn) -> int:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
            current = _version(conn)
            self._refuse_newer(current)
            for version in range(current + 1, SCHEMA_VERSION + 1):
                try:
                    for statement in MIGRATIONS[version]:
                        # Its outcome now, inside this try (a unit sends statements late).
                        conn.execute(statement).rowcount  # noqa: B018
                except driver().Error as error:
                    raise _setup_refused(self.where, error) from None
                conn.execute(
                    "INSERT INTO schema_history (version, applied_at, pid, host)"
                    " VALUES (?, ?, ?, ?)",
                    (version, utc_now(), os.getpid(), socket.gethostname()),
                )
            return current

        current = await self.transact(migrate)
        if current < SCHEMA_VERSION:
            logger.info("migrated %s from schema %d to %d", self.where, current, SCHEMA_VERSION)

    def _refuse_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"{self.where} has schema version {version}, newer than this "
                f"shared-context-server understands ({SCHEMA_VERSION}). Upgrade it "
                f"({UPGRADE}) or point --db at another database."
            )


def _bad_value(error: Exception) -> Exception:
    """A value PostgreSQL cannot take where SQLite would: the same coded error the domain
    gives when it checks first (limits.check_no_nul), never a driver's traceback."""
    text = " ".join(str(error).split())
    if "NUL" in text:
        return InvalidInput(
            "a text holds a NUL character (\\x00), which text may not contain; remove it, "
            "or encode binary data (e.g. as base64) first."
        )
    if isinstance(error, driver().errors.NumericValueOutOfRange):
        return InvalidInput(f"a number is out of range ({text[:200]}); send a smaller one.")
    return error


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


def _version(conn: Conn) -> int:
    # Two statements: the history table does not exist before the first migration.
    exists = conn.execute(SCHEMA_EXISTS).fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute(SELECT_VERSION).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def connect_sync(url: str) -> psycopg.Connection[Any]:
    """An autocommit connection with client-side parameters, or StorageError saying in
    one line why not.

    Client-side binding (ClientCursor) sends each value as a literal, so a statement
    shared with SQLite, such as `? IS NULL OR x = ?`, needs no casts for PostgreSQL to
    infer its parameters' types."""
    pg = driver()
    options: dict[str, Any] = {
        "autocommit": True,
        "application_name": "shared-context-server",
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
    options: dict[str, Any] = {"autocommit": True, "application_name": "shared-context-server"}
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
