"""How many connections one process holds, and when: as few as its work needs.

Every agent's client starts its own server process, so a team runs out of PostgreSQL
connections first (the default max_connections is 100). A process holds:

- one connection for its reads and writes (`SharedConnection`), opened by the first use
  and closed once no call has used it for IDLE_S seconds. A read waits for this
  process's own write in flight, never for other processes'. Background work (the
  heartbeat, maintenance: `seam.in_background`) borrows it when it is open; otherwise it
  opens one for that moment and closes it straight after, so a process nobody calls holds
  no connection between its beats;
- a LISTEN connection only while someone in the process waits for news (a subscription,
  a long poll, `tail --follow`, the dashboard), and for IDLE_S seconds after the last one
  stops waiting (PgDatabase.listen).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from shared_context_server.storage.postgres.unit import closed_by_server
from shared_context_server.storage.seam import in_background

if TYPE_CHECKING:
    import psycopg

# A connection (or LISTEN) nobody in the process used for this long is closed.
IDLE_S = 10.0


class SharedConnection:
    """The process's one connection for reads and writes, lent to one worker thread at a
    time; `connect` opens it (and raises a coded error if it cannot)."""

    def __init__(
        self, connect: Callable[[], psycopg.Connection[Any]], *, idle_s: float = IDLE_S
    ) -> None:
        self._connect = connect
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._last_call = -math.inf  # time.monotonic() when a call last gave it back
        self.opened = 0  # connections made so far (tests count them)

    @property
    def is_open(self) -> bool:
        return self._conn is not None and not self._conn.closed

    @contextmanager
    def held(self) -> Iterator[None]:
        """This thread alone uses the connection (`conn()`) until the block ends. One the
        block closed, or left broken, is dropped: the next `conn()` opens another."""
        background = in_background()
        with self._lock:
            try:
                yield
            finally:
                self._given_back(background)

    @contextmanager
    def held_if_open(self) -> Iterator[psycopg.Connection[Any] | None]:
        """The open connection, this thread's alone until the block ends, if nobody holds
        it and PostgreSQL has not closed it; else None (and nothing is held)."""
        if not self._lock.acquire(blocking=False):
            yield None
            return
        background = in_background()
        try:
            conn = self._conn
            if conn is not None and not conn.closed and closed_by_server(conn):
                self._drop(conn)
            if self._conn is None or self._conn.closed:
                yield None
                return
            try:
                yield self._conn
            finally:
                self._given_back(background)
        finally:
            self._lock.release()

    def _given_back(self, background: bool) -> None:
        now = time.monotonic()
        if not background:
            self._last_call = now
        conn = self._conn
        if conn is not None and (conn.closed or conn.broken or now - self._last_call > self.idle_s):
            self._drop(conn)

    def conn(self) -> psycopg.Connection[Any]:
        """The open connection, connecting if there is none or PostgreSQL closed it while
        it sat idle (so a unit sent whole with its COMMIT is never reported as maybe
        saved); only inside `held()`."""
        if self._conn is not None and not self._conn.closed and closed_by_server(self._conn):
            self._drop(self._conn)
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
            self.opened += 1
        return self._conn

    def adopt(self, conn: psycopg.Connection[Any]) -> None:
        """Use `conn`, opened by the caller (start-up), as the shared connection."""
        with self._lock:
            self._conn = conn
            self.opened += 1
            self._last_call = time.monotonic()

    def close_if_idle(self) -> bool:
        """Close the connection if no call used it for `idle_s` seconds and nobody holds
        it now; True if it was closed."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            conn = self._conn
            if conn is None or time.monotonic() - self._last_call <= self.idle_s:
                return False
            self._drop(conn)
            return True
        finally:
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._drop(self._conn)

    def _drop(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = None
        conn.close()
