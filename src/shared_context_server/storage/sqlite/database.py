"""The shared SQLite file: opening it, PRAGMAs, write transactions, retries and migrations.

Every agent's client starts its own server process and all of them open this one file, so
the file is the only shared state. WAL lets readers run beside the single writer;
`busy_timeout` makes a writer wait for the lock; `BEGIN IMMEDIATE` takes the write lock at
the start of a transaction, so a transaction never upgrades from a stale read snapshot
(which fails at once with SQLITE_BUSY_SNAPSHOT instead of waiting). Transactions are short
and hold no other I/O. Nothing read from the file is cached in the process: another
process's commit is visible to the next read.
"""

from __future__ import annotations

import logging
import math
import random
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TypeVar

import aiosqlite
import anyio

from shared_context_server.errors import DatabaseBusy, StorageError, StorageReplaced
from shared_context_server.storage.seam import (
    CandidateQuery,
    Change,
    Conn,
    Engine,
    Fetched,
    Params,
    Row,
)
from shared_context_server.storage.sqlite import search
from shared_context_server.storage.sqlite.faults import (
    FileIdentity,
    let_go,
    newer_schema,
    replaced,
    storage_fault,
)
from shared_context_server.storage.sqlite.files import (
    READ_ONLY_ERRNOS,
    prepare,
    unusable,
)
from shared_context_server.storage.sqlite.migrate import (
    WAL_SIZE_LIMIT,
    apply_migrations,
    configure,
    refuse_newer,
)
from shared_context_server.storage.sqlite.schema import SCHEMA_VERSION
from shared_context_server.storage.sqlite.transactions import (
    BeginBusy,
    Transaction,
    begin,
    fetch_at_most,
    in_transaction,
    is_busy,
    on_connection_thread,
    rollback,
)

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000
BUSY_RETRIES = 3
# A quick read blocks the event loop while it waits, so it waits briefly (WAL readers
# only wait during rare recovery of the shared-memory index).
QUICK_BUSY_MS = 200
# How long `transact` waits for another process's write lock on the event loop before it
# hands the transaction to aiosqlite's thread: the hand-off costs two thread wake-ups,
# each a wait for a core when every core is busy, which lengthened the tail of many
# processes writing at once (docs/PERFORMANCE.md).
QUICK_WRITE_BUSY_MS = 50

T = TypeVar("T")


# What the change feed reads once data_version has moved: the highest message id (ids
# grow in commit order across the file) and a counter that triggers move whenever the
# list of sessions changes (migration 3).
LAST_MESSAGE_ID = "SELECT coalesce(max(id), 0) FROM messages"
SESSIONS_COUNTER = "SELECT value FROM change_counters WHERE name = 'sessions'"

# The Database whose write() transaction the current task is inside, if any.
_WRITING: ContextVar[Database | None] = ContextVar("writing", default=None)


class Database:
    """One process's connections to the shared file.

    Writers in this process queue on `_write_lock` for the one write connection; across
    processes SQLite's own lock does the same. Reads use the write connection while no
    write is pending, and a second connection while one is: a WAL reader never waits for
    a writer, so a read must not queue behind a BEGIN that waits for another process.
    """

    engine: Engine = "sqlite"
    push = False  # other processes' commits are found by looking: changes(), data_version()
    release_schema = SCHEMA_VERSION
    row_key = "rowid"
    errors: tuple[type[Exception], ...] = (sqlite3.Error,)

    def __init__(
        self,
        conn: aiosqlite.Connection,
        path: Path,
        *,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
        busy_retries: int = BUSY_RETRIES,
    ) -> None:
        self._conn = conn
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.busy_retries = busy_retries
        # Every call that writes waits at most this long in all, queued or not.
        self.busy_seconds = (busy_retries + 1) * busy_timeout_ms / 1000
        self._write_lock = anyio.Lock()
        self._commit_listeners: list[Callable[[], None]] = []
        self._quick: sqlite3.Connection | None = None
        self._quick_write: sqlite3.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._reader_opening = anyio.Lock()
        # Set once the file is open and migrated: what every write checks first.
        self._identity: FileIdentity | None = None
        # Set once a guard has found the files changed and this process has let go of
        # them (storage.let_go): it never writes, checkpoints or opens the path again.
        self._let_go = False
        self._blackboard = False
        # The change feed's marks (changes()): -1 until its first look.
        self._seen_version = -1
        self._seen_id = 0
        self._seen_sessions = 0

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
        busy_retries: int = BUSY_RETRIES,
        migrate: bool = True,
        statement_cache: bool = True,
    ) -> Database:
        """Open (creating if needed) the file, set PRAGMAs, verify WAL and migrate.

        `statement_cache=False` prepares every statement afresh, so an authorizer set on
        the connection judges every call. Raises StorageError if the file cannot be created
        or read as a database, WAL cannot be enabled, or the schema is newer than this code.
        """
        try:
            path, fs_type = await anyio.to_thread.run_sync(prepare, path)
        except sqlite3.Error as error:
            raise unusable(path.expanduser().absolute(), error) from None
        except OSError as error:
            code = "STORAGE_READ_ONLY: " if error.errno in READ_ONLY_ERRNOS else ""
            raise StorageError(
                f"{code}cannot use {path} as the database file: {error.strerror or error}. "
                "Point --db (or SHARED_CONTEXT_DB) at a file in a writable directory."
            ) from None
        if fs_type:
            logger.warning(
                "%s is on a network filesystem (%s): SQLite WAL needs local disk; "
                "processes on other hosts will corrupt or miss data. Use --db on a local disk.",
                path,
                fs_type,
            )
        # Compared with the file once open: one replaced meanwhile (a restore) would
        # otherwise be taken for the file this connection holds.
        before = await anyio.to_thread.run_sync(FileIdentity.of, path)
        try:
            conn = await aiosqlite.connect(
                path, isolation_level=None, cached_statements=128 if statement_cache else 0
            )
        except sqlite3.Error as error:
            raise unusable(path, error) from None
        conn.row_factory = sqlite3.Row
        db = cls(conn, path, busy_timeout_ms=busy_timeout_ms, busy_retries=busy_retries)
        try:
            await db._prepare_schema(migrate)
        except sqlite3.DatabaseError as error:
            await conn.close()
            raise unusable(path, error) from None
        except BaseException:
            await conn.close()
            raise
        identity = await anyio.to_thread.run_sync(FileIdentity.of, path)
        if identity.main != before.main:
            await db.close()
            raise StorageError(
                f"{path} was replaced while this server was opening it (a restore?); "
                "start the server again."
            )
        db._identity = identity
        db._blackboard = migrate
        return db

    async def close(self) -> None:
        """Close every connection; a file that went bad meanwhile is logged, not raised.

        Files changed under this process and not yet noticed are let go of first: SQLite's
        own close would leave the old -wal beside a replaced file.
        """
        try:
            if self._identity is not None and not self._let_go:
                try:
                    self._identity.check()
                except StorageReplaced:
                    await on_connection_thread(self._conn, self._release)
            for quick in (self._quick, self._quick_write):
                if quick is not None:
                    quick.close()
            if self._reader is not None:
                await self._reader.close()
            await self._conn.close()
        except sqlite3.Error as error:
            logger.warning("closing %s: %s", self.path, error)

    @property
    def where(self) -> str:
        return str(self.path)

    async def read(self, sql: str, params: Params = (), *, small: bool = False) -> list[Row]:
        """One statement, one snapshot of the latest commits; `small` (a page of rows at
        most) reads on this thread, where a trip to aiosqlite's thread costs more."""
        rows = self.read_now(sql, params) if small else await self.fetchall(sql, params)
        return [*rows]

    async def read_one(self, sql: str, params: Params = (), *, small: bool = False) -> Row | None:
        rows = await self.read(sql, params, small=small)
        return rows[0] if rows else None

    def _translated(self, error: sqlite3.Error) -> Exception:
        """A storage fault as its coded error; any other error unchanged."""
        return storage_fault(self.path, error) or error

    def _guard(self, conn: sqlite3.Connection) -> None:
        """Run under the write lock before any write: is the file still ours, and still a
        schema this release knows?"""
        self._check_files()
        if self._blackboard:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise newer_schema(self.path, version, SCHEMA_VERSION)

    def _check_files(self) -> None:
        """Raise StorageReplaced if the files at the path are not those this process
        opened; also before a connection is opened, which would open whatever is there."""
        if self._let_go:
            raise replaced(self.path, "changed")
        if self._identity is not None:
            self._identity.check()

    def _release(self, conn: sqlite3.Connection) -> None:
        """Let go of files found changed (once), through `conn`, outside a transaction."""
        if self._identity is not None and not self._let_go and not conn.in_transaction:
            self._let_go = True
            let_go(self._identity, conn)
            # The last connection to close would checkpoint and delete -wal and -shm by
            # name: another server's, by then. Only Python 3.12+ can turn that off.
            setconfig = getattr(conn, "setconfig", None)
            no_checkpoint = getattr(sqlite3, "SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE", None)
            if setconfig is not None and no_checkpoint is not None:
                setconfig(no_checkpoint, True)

    async def _released(self, error: StorageReplaced) -> StorageReplaced:
        """`error`, after letting go of the files on the main connection's thread."""
        with anyio.CancelScope(shield=True):
            await on_connection_thread(self._conn, self._release)
        return error

    def read_now(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        """A small bounded read run at once on the caller's thread, through a read-only
        connection of its own.

        For reads of at most a page of rows (get_context, get_message): a trip to
        aiosqlite's thread costs more than such a read, and in WAL a reader never waits
        for writers. It sees committed data only, never an open write() of this process.
        """
        if self._quick is None:
            self._check_files()
            quick = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            quick.execute(f"PRAGMA busy_timeout = {QUICK_BUSY_MS}")
            quick.execute("PRAGMA query_only = ON")
            quick.row_factory = sqlite3.Row
            self._quick = quick
        try:
            return self._quick.execute(sql, params).fetchall()
        except sqlite3.Error as error:
            raise self._translated(error) from None

    async def data_version(self) -> int:
        """`PRAGMA data_version` of the read-only connection: it moves with every commit
        of any connection but its own, and that one never writes."""
        return int(self.read_now("PRAGMA data_version")[0][0])

    async def changes(self) -> Change | None:
        """One look, on this thread: a pragma while nothing changed; after a commit, the
        highest message id and the sessions counter."""
        version = await self.data_version()
        if version == self._seen_version:
            return None
        last_id = int(self.read_now(LAST_MESSAGE_ID)[0][0])
        rows = self.read_now(SESSIONS_COUNTER)
        sessions = int(rows[0][0]) if rows else 0
        baseline = self._seen_version < 0
        change = Change(self._seen_id + 1, last_id, sessions != self._seen_sessions)
        self._seen_version, self._seen_id, self._seen_sessions = version, last_id, sessions
        if baseline or not (change.new_messages or change.sessions_changed):
            return None  # the baseline, or a commit elsewhere (memory, tokens...)
        return change

    async def listen(self) -> None:
        """Nothing to hear on a file: its readers look."""

    def want_news(self, wanted: bool) -> None:
        """Nothing to start: a file's readers look."""

    async def news_ready(self) -> None:
        """A look sees every commit before it."""

    def on_commit(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` after each commit of `write()` or `transact()`; returns a function
        that stops it.

        `PRAGMA data_version` shows other connections' commits, never this one's own, so
        the change poller also listens here.
        """
        self._commit_listeners.append(listener)
        return lambda: self._commit_listeners.remove(listener)

    async def set_authorizer(
        self, callback: Callable[[int, str | None, str | None, str | None, str | None], int]
    ) -> None:
        """Judge every statement this connection prepares (see sqlite3 set_authorizer)."""
        await self._conn.set_authorizer(callback)

    async def set_limit(self, category: int, value: int) -> None:
        """Lower one of SQLite's run-time limits on this connection (sqlite3 setlimit)."""
        await on_connection_thread(self._conn, lambda conn: conn.setlimit(category, value))

    async def set_progress_handler(self, handler: Callable[[], int | None], n: int) -> None:
        """Call `handler` every `n` VM steps; a true result interrupts the statement."""
        await self._conn.set_progress_handler(handler, n)

    async def _prepare_schema(self, migrate: bool) -> None:
        """PRAGMAs, then migrations, retried like a write when the file stays locked.

        Processes starting together on a new file race to switch it to WAL, and SQLite
        can answer such a lock change SQLITE_BUSY at once, without waiting busy_timeout.
        """
        # No overall bound: opening is not a call, and every try is bounded on its own.
        async for attempt in self._attempts(math.inf):
            try:
                await configure(self._conn, self.path, self.busy_timeout_ms, refuse_foreign=migrate)
                if migrate:
                    await self._migrate()
                return
            except sqlite3.OperationalError as error:
                if not is_busy(error) or attempt == self.busy_retries:
                    raise

    async def checkpoint_if_large(self, threshold_bytes: int = WAL_SIZE_LIMIT) -> int:
        """A passive checkpoint if the WAL file has grown past `threshold_bytes`; returns
        the frames copied back. SQLite checkpoints on its own at commit, but a reader that
        was busy then can leave the WAL growing; passive never waits for anyone."""
        if self._let_go:  # its WAL was written back, and is not the path's any more
            return 0
        try:
            size = self.path.with_name(self.path.name + "-wal").stat().st_size
        except FileNotFoundError:
            return 0
        if size < threshold_bytes:
            return 0
        row = await self.fetchone("PRAGMA wal_checkpoint(PASSIVE)")
        return int(row[2]) if row is not None and row[2] > 0 else 0

    async def search_candidates(self, q: CandidateQuery) -> list[Row]:
        return await search.candidates(self, q)

    async def index_search(self, *, batch: int = search.INDEX_BATCH, at_least: int = 1) -> int:
        return await search.index_pending(self, batch, at_least)

    async def schema_version(self) -> int:
        row = await self.fetchone("PRAGMA user_version")
        return int(row[0]) if row else 0

    async def _migrate(self) -> None:
        """Bring the schema to this release's exactly once, however many processes start:
        the version is read again under the write lock, so of N processes starting on a
        new file the first migrates and the others find nothing left to do."""
        current = await self.schema_version()
        refuse_newer(self.path, current)
        if current == SCHEMA_VERSION:
            return
        async with self.write() as tx:
            current = await apply_migrations(tx, self.path)
        if current < SCHEMA_VERSION:
            logger.info("migrated %s from schema %d to %d", self.path, current, SCHEMA_VERSION)

    async def _acquire(self, deadline: float) -> None:
        """Take this process's write lock by `deadline`, else DatabaseBusy."""
        with anyio.move_on_after(max(deadline - anyio.current_time(), 0)):
            await self._write_lock.acquire()
            return
        raise self._busy()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Transaction]:
        """`BEGIN IMMEDIATE` ... `COMMIT`, or `ROLLBACK` and re-raise.

        The call waits at most `busy_seconds` in all, for this process's queue and for
        other processes' locks together: BEGIN waits up to busy_timeout for the write lock
        (less if the bound is nearer), past that it is retried with jittered backoff, then
        DatabaseBusy is raised. Nothing inside may await other I/O. A fault of the file or
        disk is raised as its coded error (faults.py).
        """
        deadline = anyio.current_time() + self.busy_seconds
        await self._acquire(deadline)
        try:
            owner = _WRITING.set(self)
            try:
                # Shielded: a cancelled await does not stop the statement on aiosqlite's
                # thread, and a BEGIN that lands unseen would hold every process's lock.
                with anyio.CancelScope(shield=True):
                    await self._begin_immediate(deadline)
                try:
                    yield Transaction(self._conn)
                    with anyio.CancelScope(shield=True):
                        await self._conn.execute("COMMIT")
                except BaseException as error:
                    with anyio.CancelScope(shield=True):
                        await on_connection_thread(self._conn, rollback)
                    if isinstance(error, sqlite3.Error):
                        raise self._translated(error) from None
                    raise
            finally:
                _WRITING.reset(owner)
        finally:
            self._write_lock.release()
        self._committed()

    def _committed(self) -> None:
        for listener in list(self._commit_listeners):
            listener()

    async def transact(self, work: Callable[[Conn], T]) -> T:
        """Run `work` inside `BEGIN IMMEDIATE` ... `COMMIT`; ROLLBACK and re-raise if it
        raises.

        The hot path (add_message, create_session, search indexing). `write()` costs a
        trip to aiosqlite's thread per statement, which costs more than a short statement.
        Here, if the write lock is free (or frees within QUICK_WRITE_BUSY_MS), the whole
        transaction runs at once on this thread, as a plain sqlite3 server would run it;
        if another process holds it longer, it runs in one trip to aiosqlite's thread,
        which waits for the lock like `write()` (within `busy_seconds` in all, then
        DatabaseBusy) while the event loop serves this process's other requests. `work` is
        plain synchronous code over a sqlite3 connection, so by construction nothing else
        happens inside the transaction.
        """
        deadline = anyio.current_time() + self.busy_seconds
        await self._acquire(deadline)
        try:
            left_ms = int((deadline - anyio.current_time()) * 1000)
            conn = self._quick_writer()
            try:
                if left_ms >= QUICK_WRITE_BUSY_MS:
                    result = in_transaction(conn, work, self._guard)
                else:  # the bound is nearer than the usual wait
                    try:
                        result = in_transaction(conn, work, self._guard, max(1, left_ms))
                    finally:
                        conn.execute(f"PRAGMA busy_timeout = {QUICK_WRITE_BUSY_MS}")
            except BeginBusy:
                pass  # another process is writing: wait for it on aiosqlite's thread
            except sqlite3.Error as error:
                raise self._translated(error) from None
            except StorageReplaced as error:
                raise await self._released(error) from None
            else:
                self._committed()
                return result
            # One long wait on aiosqlite's thread, not more short ones here: each short
            # wait restarts SQLite's busy handler at its 1 ms sleeps, so fifty waiting
            # processes polled the lock far more often and took the cores from the writer
            # holding it (50 writers' p99 2.68x the floor's; docs/PERFORMANCE.md).
            # Shielded: once queued, the work runs to COMMIT or ROLLBACK whatever happens
            # to the caller; waiting for it keeps the lock honest.
            with anyio.CancelScope(shield=True):
                async for _ in self._attempts(deadline):
                    try:
                        result = await on_connection_thread(
                            self._conn, in_transaction, work, self._guard, self._wait_ms(deadline)
                        )
                    except BeginBusy:
                        continue
                    except sqlite3.Error as error:
                        raise self._translated(error) from None
                    except StorageReplaced as error:
                        raise await self._released(error) from None
                    self._committed()
                    return result
        finally:
            self._write_lock.release()
        raise self._busy()

    async def transact_then_read(self, work: Callable[[Conn], Callable[[], T]]) -> T:
        """`transact`, the results read before COMMIT (a sqlite3 cursor cannot be after)."""
        return await self.transact(lambda conn: work(conn)())

    async def try_transact(self, work: Callable[[Conn], object]) -> bool:
        """Run `work` in a transaction only if the write lock is free at this instant;
        False (nothing done) if this process or another is writing. Never waits.

        For writes that may be skipped (the heartbeat): they must never hold up a call.
        Raises a storage fault's coded error like `transact`.
        """
        if self._write_lock.locked():
            return False
        conn = self._quick_writer()
        conn.execute("PRAGMA busy_timeout = 0")  # the hot path's short wait is not for this
        try:
            in_transaction(conn, work, self._guard)
        except BeginBusy:
            return False
        except sqlite3.Error as error:
            raise self._translated(error) from None
        except StorageReplaced as error:
            raise await self._released(error) from None
        finally:
            conn.execute(f"PRAGMA busy_timeout = {QUICK_WRITE_BUSY_MS}")
        self._committed()
        return True

    def _quick_writer(self) -> sqlite3.Connection:
        if self._quick_write is None:
            self._check_files()
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {QUICK_WRITE_BUSY_MS}")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.row_factory = sqlite3.Row
            self._quick_write = conn
        return self._quick_write

    def _wait_ms(self, deadline: float) -> int:
        """How long the next BEGIN may wait: busy_timeout, or less if the bound is nearer."""
        left = int((deadline - anyio.current_time()) * 1000)
        return max(1, min(self.busy_timeout_ms, left))

    async def _attempts(self, deadline: float) -> AsyncIterator[int]:
        """One turn per try at the write lock, with jittered, doubling pauses between,
        while `deadline` is not past."""
        delay = 0.05
        for attempt in range(self.busy_retries + 1):
            if attempt:
                left = deadline - anyio.current_time()
                if left <= 0:
                    return
                await anyio.sleep(min(delay * (0.5 + random.random()), left))
                delay *= 2
                if anyio.current_time() >= deadline:
                    return
            yield attempt

    def _busy(self) -> DatabaseBusy:
        return DatabaseBusy(
            f"another process held the database's write lock for over "
            f"{self.busy_seconds:g} s; retry the call in a moment. If it keeps happening, "
            "look for a stuck process holding the file open.",
            database_path=str(self.path),
        )

    async def _begin_immediate(self, deadline: float) -> None:
        async for _ in self._attempts(deadline):
            try:
                await on_connection_thread(self._conn, begin, self._guard, self._wait_ms(deadline))
                return
            except BeginBusy:
                continue
            except sqlite3.Error as error:
                raise self._translated(error) from None
            except StorageReplaced as error:
                raise await self._released(error) from None
        raise self._busy()

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        """One read statement, one snapshot: outside a transaction each statement sees the
        latest commit of any process."""
        conn = self._conn
        if self._write_lock.locked() and _WRITING.get() is not self:
            # The write connection is, or is about to be, inside a transaction (or waiting
            # for the lock): this read would see its uncommitted rows, or wait behind it.
            conn = await self._reading_connection()
        try:
            return list(await conn.execute_fetchall(sql, params))
        except sqlite3.Error as error:
            raise self._translated(error) from None

    async def _reading_connection(self) -> aiosqlite.Connection:
        async with self._reader_opening:
            if self._reader is None:
                self._check_files()
                reader = await aiosqlite.connect(self.path, isolation_level=None)
                reader.row_factory = sqlite3.Row
                await reader.execute(f"PRAGMA busy_timeout = {QUICK_BUSY_MS}")
                self._reader = reader
        return self._reader

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def fetch_at_most(
        self, sql: str, params: Params, max_rows: int, max_bytes: int | None = None
    ) -> Fetched:
        """One statement outside a transaction, stopped after `max_rows` rows (and past
        `max_bytes` of text and blobs with ResultTooLarge)."""
        try:
            return await fetch_at_most(self._conn, sql, params, max_rows, max_bytes)
        except sqlite3.Error as error:
            raise self._translated(error) from None
