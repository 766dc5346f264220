"""PostgreSQL as the shared store: one process's connections, units of work, reads,
change detection and migrations.

Statements are written with `?` placeholders, as for SQLite; the unit (unit.py) turns them
into psycopg's `%s`, so the dialect difference stays inside this engine.
"""

from __future__ import annotations

import logging
import math
import os
import random
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from shared_context_server.about import UPGRADE
from shared_context_server.clock import utc_now
from shared_context_server.errors import DatabaseBusy, InvalidInput, StorageError
from shared_context_server.storage.locks import Lock
from shared_context_server.storage.postgres import search
from shared_context_server.storage.postgres.connect import (
    NoConnectionSlot,
    check_url,
    connect_sync,
    driver,
)
from shared_context_server.storage.postgres.connections import IDLE_S, SharedConnection
from shared_context_server.storage.postgres.schema import (
    MIGRATIONS,
    MISSING_EXTENSION,
    SCHEMA_EXISTS,
    SCHEMA_VERSION,
    SELECT_VERSION,
)
from shared_context_server.storage.postgres.unit import PgUnit, StalePrepared, prepared, translate
from shared_context_server.storage.seam import (
    CandidateQuery,
    Change,
    Conn,
    Engine,
    Params,
    Row,
    in_background,
    redact,
)

if TYPE_CHECKING:
    import psycopg

logger = logging.getLogger(__name__)

# Calls that write wait at most this long for locks, as on SQLite (BUSY_TIMEOUT_MS x 4).
BUSY_SECONDS = 20.0
# Where the schema's triggers announce each commit (schema.py): `m <session> <id>`
# for a message, `s <session>` when the list of sessions changes.
CHANNEL = "shared_context_changes"
# Upkeep (checkpoint_if_large): GIN's pending list of the trigram index into the index.
CLEAN_PENDING = "SELECT gin_clean_pending_list('messages_trigram'::regclass)"
# A deadlock between two processes' transactions is retried this many times.
DEADLOCK_RETRIES = 3
# At start-up, a server refused for want of a connection slot tries again this long
# (others' idle connections close within connections.IDLE_S) before it gives up.
STARTUP_WAIT_S = 10.0
# A call refused for want of a slot tries again this long (a crowd's heartbeats and
# start-ups hold slots for moments) before it answers DATABASE_BUSY; background work
# (the heartbeat, upkeep) does not wait: it tries again at its next turn.
SLOT_WAIT_S = 5.0
SLOT_PAUSES_S = (0.05, 0.4)  # a random pause in this range between tries
# A unit of work runs on the event loop's thread when the connection is open and free,
# waiting for another process's row lock at most this long; past it (or on a deadlock, or
# with a connection to open) it runs again on a worker thread, which waits up to
# busy_seconds. The hand-off to a worker thread and back is two thread wake-ups (0.1 ms of
# a post's 0.65 on an idle machine; a wait for a core each when every core is busy), as
# SQLite's quick path finds.
QUICK_LOCK_MS = 50
QUICK_OPENING = ("BEGIN", f"SET LOCAL lock_timeout = {QUICK_LOCK_MS}")
# How long news_ready() waits for LISTEN to be in place before the caller goes on.
READY_WAIT_S = 5.0
T = TypeVar("T")


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


class PgDatabase:
    """One process's connections to the shared PostgreSQL database: one for reads and
    writes, closed when idle, and one for LISTEN while someone waits (connections.py).

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
    row_key = "ctid"

    def __init__(
        self,
        url: str,
        *,
        busy_seconds: float = BUSY_SECONDS,
        idle_s: float = IDLE_S,
        slot_wait_s: float = SLOT_WAIT_S,
    ) -> None:
        self.url = url
        self.busy_seconds = busy_seconds
        self.idle_s = idle_s
        self.slot_wait_s = slot_wait_s
        self.inline = True  # units may run on the event loop's thread (_transact_here)
        self.errors: tuple[type[Exception], ...] = (driver().Error,)
        self._shared = SharedConnection(self._reconnect, idle_s=idle_s)
        self._write_lock = anyio.Lock()
        # LISTEN while news is wanted (want_news), until IDLE_S after it no longer is.
        self._news_wanted = False
        self._unwanted_at = -math.inf
        self._wanted = anyio.Event()
        self._ready = anyio.Event()
        self._hearing = anyio.CancelScope()
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
        cls,
        url: str,
        *,
        migrate: bool = True,
        busy_seconds: float = BUSY_SECONDS,
        idle_s: float = IDLE_S,
        slot_wait_s: float = SLOT_WAIT_S,
    ) -> PgDatabase:
        """Connect, then migrate under an advisory lock; StorageError if that cannot be done
        or the schema is newer than this code. `idle_s`: connections unused this long close;
        `slot_wait_s`: how long a call waits for a connection slot."""
        db = cls(check_url(url), busy_seconds=busy_seconds, idle_s=idle_s, slot_wait_s=slot_wait_s)
        try:
            db._shared.adopt(await db._first_connection())
            if migrate:
                await db._migrate()
            else:
                db._refuse_newer(await db.schema_version())
        except BaseException:
            await db.close()
            raise
        return db

    async def _first_connection(self) -> psycopg.Connection[Any]:
        """Connect for start-up; refused for want of a slot, try again for STARTUP_WAIT_S
        (others' idle connections close meanwhile), then StorageError saying so."""
        deadline = anyio.current_time() + STARTUP_WAIT_S
        while True:
            try:
                return await anyio.to_thread.run_sync(self._connect)
            except NoConnectionSlot:
                if anyio.current_time() >= deadline:
                    raise
                await anyio.sleep(0.5)

    def _connect(self) -> psycopg.Connection[Any]:
        conn = connect_sync(self.url)
        # A writer waits for another's row lock no longer than a call may wait in all.
        conn.execute(f"SET lock_timeout = {int(self.busy_seconds * 1000)}")
        return conn

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self._shared.close)

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

    def want_news(self, wanted: bool) -> None:
        self._news_wanted = wanted
        if wanted:
            self._wanted.set()
        else:
            self._unwanted_at = anyio.current_time()

    async def news_ready(self) -> None:
        with anyio.move_on_after(READY_WAIT_S):
            await self._ready.wait()

    async def listen(self) -> None:
        """Until cancelled: LISTEN while news is wanted (want_news) and for IDLE_S after,
        and close the shared connection once no call used it for IDLE_S."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._close_when_idle)
            while True:
                await self._wanted.wait()
                with anyio.CancelScope() as self._hearing:
                    await self._hear_notes()
                self._ready = anyio.Event()
                self._wanted = anyio.Event()
                if self._news_wanted:  # wanted again while it stopped
                    self._wanted.set()

    async def _close_when_idle(self) -> None:
        while True:
            await anyio.sleep(min(1.0, self.idle_s))
            if self._shared.is_open:
                await anyio.to_thread.run_sync(self._shared.close_if_idle)
            unwanted_for = anyio.current_time() - self._unwanted_at
            if not self._news_wanted and unwanted_for > self.idle_s:
                self._hearing.cancel()

    async def _hear_notes(self) -> None:
        """Hear every commit's notification, reconnecting when the server goes away (then
        everything since may be news: RESYNC, as after LISTEN starts)."""
        from shared_context_server.storage.postgres.listen import RESYNC, PgListener

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
                self._ready.set()
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
        with self._shared.held():
            # A read changes nothing, so a connection found dead (PostgreSQL restarted
            # since the last call) is replaced and the read asked again, once.
            for retry in (True, False):
                conn = self._shared.conn()
                try:
                    cursor = conn.execute(sql, params)
                    return list(cursor.fetchall()) if cursor.description else []
                except pg.DataError as error:
                    raise _bad_value(error) from None
                except pg.OperationalError as error:
                    _close_if_closed(conn, error)
                    if not retry:
                        raise _lost(error) from None
        raise AssertionError("unreachable")

    def _reconnect(self) -> psycopg.Connection[Any]:
        """Connect for a call (on its worker thread): refused a slot, try again for
        `slot_wait_s` (background work does not wait), then DATABASE_BUSY saying why."""
        deadline = time.monotonic() + (0.0 if in_background() else self.slot_wait_s)
        while True:
            try:
                return self._connect()
            except NoConnectionSlot as error:
                if time.monotonic() >= deadline:
                    raise DatabaseBusy(
                        f"{error} Nothing of this call was saved; retry it."
                    ) from None
                time.sleep(random.uniform(*SLOT_PAUSES_S))
            except StorageError as error:
                raise DatabaseBusy(
                    f"PostgreSQL is unreachable; retry in a moment ({error})"
                ) from None

    def _held(self, run: Callable[[Callable[[Conn], T]], T], work: Callable[[Conn], T]) -> T:
        """`run(work)` with the shared connection this thread's alone."""
        with self._shared.held():
            return run(work)

    async def transact(self, work: Callable[[Conn], T]) -> T:
        """Run `work` in one transaction on a worker thread, with the process's shared
        connection; DatabaseBusy past the deadline (this process's queue and other
        processes' locks together)."""
        deadline = anyio.current_time() + self.busy_seconds
        with anyio.move_on_after(self.busy_seconds):
            await self._write_lock.acquire()
        if not self._write_lock.locked() or anyio.current_time() > deadline:
            raise self._busy()
        try:
            # Not cancellable: the unit of work runs to COMMIT or ROLLBACK once started.
            done = self._transact_here(work) if self.inline else []
            if done:
                result = done[0]
            else:
                result = await anyio.to_thread.run_sync(self._held, self._transact, work)
        finally:
            self._write_lock.release()
        for listener in list(self._commit_listeners):
            listener()
        return result

    async def transact_then_read(self, work: Callable[[Conn], Callable[[], T]]) -> T:
        """`transact`, the results read after COMMIT: a unit that looks at nothing sends
        BEGIN, its statements and COMMIT in one query (PgUnit) and keeps their results."""
        read = await self.transact(work)
        return read()

    async def try_transact(self, work: Callable[[Conn], object]) -> bool:
        """Run `work` unless this process is already writing (the heartbeat)."""
        if self._write_lock.locked():
            return False
        await self.transact(work)
        return True

    def _transact_here(self, work: Callable[[Conn], T]) -> list[T]:
        """`work` on this thread, if the connection is open and free and no row lock holds
        it past QUICK_LOCK_MS: [its result], or [] when nothing was saved and it is for a
        worker thread."""
        with self._shared.held_if_open() as conn:
            if conn is None:
                return []
            try:
                return [_attempt(conn, work, QUICK_OPENING)]
            except _Again:
                return []

    def _transact(self, work: Callable[[Conn], T]) -> T:
        conflicts = 0
        stale_ok = True  # one connection found dead at BEGIN is replaced, not reported
        while True:
            try:
                return _attempt(self._shared.conn(), work)
            except _Again as again:
                if again.why == "lock":
                    raise self._busy() from None
                if again.why == "conflict":
                    conflicts += 1
                    if conflicts > DEADLOCK_RETRIES:
                        raise self._busy() from None
                elif not stale_ok:
                    raise _lost(again.error) from None
                else:
                    # Nothing was saved (no COMMIT was sent): most likely the first query
                    # met a connection PostgreSQL had closed since the last call.
                    stale_ok = False

    def _busy(self) -> DatabaseBusy:
        return DatabaseBusy(
            f"another process held a lock this call needs for over {self.busy_seconds:g} s; "
            "retry the call in a moment. If it keeps happening, look for a stuck session "
            "in pg_stat_activity.",
            database_path=self.where,
        )

    async def search_candidates(self, q: CandidateQuery) -> list[Row]:
        return await search.candidates(self, q)

    async def index_search(self, *, batch: int = 0, at_least: int = 1) -> int:
        """Nothing to do: the trigram index is kept inside each writing transaction."""
        return 0

    async def schema_version(self) -> int:
        return await self.transact(_version)

    async def _migrate(self) -> None:
        """Bring the schema to SCHEMA_VERSION exactly once, however many processes start:
        each takes a transaction-scoped advisory lock, then reads the version again."""

        def migrate(conn: Conn) -> int:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (int(Lock.MIGRATION),))
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


class _Again(Exception):
    """Nothing of the unit was saved, and it may run again: `why` is "lock" (another
    process's row lock past lock_timeout), "conflict" (a deadlock, a serialization
    failure, prepared statements PostgreSQL no longer has) or "closed" (the connection
    was found closed before anything was sent)."""

    def __init__(self, why: str, error: Exception) -> None:
        super().__init__(why)
        self.why = why
        self.error = error


def _attempt(
    conn: psycopg.Connection[Any], work: Callable[[Conn], T], opening: tuple[str, ...] = ("BEGIN",)
) -> T:
    """One try of `work` as a unit of work on `conn`: its result, _Again, or a coded error."""
    pg = driver()
    unit = PgUnit(conn, opening)
    try:
        try:
            prepared(conn).prepare_wanted(conn)
            result = work(unit)
            unit.commit()
        except BaseException:
            unit.rollback()
            raise
        return result
    except pg.errors.LockNotAvailable as error:
        raise _Again("lock", error) from None
    except (pg.errors.DeadlockDetected, pg.errors.SerializationFailure, StalePrepared) as error:
        raise _Again("conflict", error) from None
    except pg.DataError as error:
        raise _bad_value(error) from None
    except pg.OperationalError as error:
        _close_if_closed(conn, error)
        if unit.trips > 1 or unit.committing:
            raise _lost(error, committing=unit.committing) from None
        raise _Again("closed", error) from None


def _close_if_closed(conn: psycopg.Connection[Any], error: Exception) -> None:
    """After an OperationalError: a connection PostgreSQL closed is closed here too (the
    caller decides whether to try again); on an open one the call was interrupted."""
    if not (conn.closed or conn.broken):
        raise _interrupted(error) from None
    conn.close()


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
