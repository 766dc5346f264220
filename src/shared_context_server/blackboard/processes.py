"""Which server processes are using the file right now: one heartbeat row per process.

Every server process inserts a row when it starts, refreshes `last_seen` every
`HEARTBEAT_S[engine]` seconds with one short write, and deletes the row on a clean exit. A
process that was killed leaves its row behind; a row is stale once it has not been
refreshed for three intervals (`stale_after`), or its pid is gone on this host. Stale rows
are never shown and are deleted by whoever notices them.

On PostgreSQL a process nobody calls holds no connection, so each beat of an idle process
opens one for a moment: a team of 150 beating every 5 s would open 30 a second, and under
load those moments overlap into the server's connection limit. There the interval is 15 s
(a process killed on another host is noticed within 45 s; on its own host at once, by
its pid).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from shared_context_server.clock import iso, utc_now
from shared_context_server.errors import BlackboardError
from shared_context_server.storage.seam import Conn, Row, Store, run_in_background

logger = logging.getLogger(__name__)

HEARTBEAT_S: dict[str, float] = {"sqlite": 5.0, "postgres": 15.0}
# Pauses between tries of a write that never waits for the lock (about a second in all).
SKIPPABLE_PAUSES = (0.0, 0.05, 0.15, 0.3, 0.5)

INSERT_PROCESS = (
    "INSERT INTO server_processes"
    " (host, pid, agent_id, agent_type, client_name, started_at, last_seen)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id"
)
REFRESH_PROCESS = (
    "UPDATE server_processes SET last_seen = ?, agent_id = ?, client_name = ? WHERE id = ?"
)
DELETE_PROCESS = "DELETE FROM server_processes WHERE id = ?"
DELETE_SILENT = "DELETE FROM server_processes WHERE last_seen < ?"
SELECT_PROCESSES = (
    "SELECT id, host, pid, agent_id, agent_type, client_name, started_at, last_seen"
    " FROM server_processes ORDER BY started_at, id"
)


def stale_after(engine: str) -> float:
    """Seconds without a beat after which a process's row is stale: three missed beats."""
    return 3 * HEARTBEAT_S[engine]


def stale_cutoff(engine: str, now: datetime | None = None) -> str:
    """Rows last seen before this time are stale."""
    return iso((now or datetime.now(UTC)) - timedelta(seconds=stale_after(engine)))


def pid_alive(pid: int) -> bool:
    if sys.platform == "win32":
        return _windows_pid_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _windows_pid_alive(pid: int) -> bool:
    """Windows has no signal 0: os.kill(pid, 0) would send CTRL_C_EVENT (which is 0) to
    the process group, and any other signal terminates the process. Ask the kernel for
    the process's exit code instead."""
    if sys.platform != "win32":  # never called elsewhere; lets mypy check what follows
        raise NotImplementedError("Windows only")
    import ctypes

    kernel32 = ctypes.windll.kernel32
    query_limited_information, still_active, access_denied = 0x1000, 259, 5
    handle = kernel32.OpenProcess(query_limited_information, False, pid)
    if not handle:
        return bool(kernel32.GetLastError() == access_denied)  # alive, someone else's
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True  # cannot tell: keep the row; its heartbeat ages out anyway
        return code.value == still_active
    finally:
        kernel32.CloseHandle(handle)


def is_live(row: Row | dict[str, Any], cutoff: str, host: str) -> bool:
    """Refreshed recently, and (on this host) its pid still exists."""
    if row["last_seen"] < cutoff:
        return False
    return row["host"] != host or pid_alive(int(row["pid"]))


def process_dict(row: Row) -> dict[str, Any]:
    return {
        "pid": row["pid"],
        "host": row["host"],
        "agent_id": row["agent_id"],
        "agent_type": row["agent_type"],
        "client_name": row["client_name"],
        "started_at": row["started_at"],
        "last_seen": row["last_seen"],
    }


@dataclass
class Heartbeat:
    """This process's row. `client_name` and `agent_id` may be learnt after it starts."""

    db: Store
    agent_type: str
    agent_id: str | None = None
    client_name: str | None = None
    row_id: int | None = None
    interval: float | None = None  # HEARTBEAT_S of the store's engine

    def __post_init__(self) -> None:
        self._news = anyio.Event()
        self.started_at = utc_now()

    def note_client(self, agent_id: str, client_name: str | None) -> None:
        """Record who this process serves; the next beat (at once) writes it."""
        if (agent_id, client_name) != (self.agent_id, self.client_name):
            self.agent_id, self.client_name = agent_id, client_name
            self._news.set()

    def _beat(self, conn: Conn) -> None:
        now = utc_now()
        changed = 0
        if self.row_id is not None:
            changed = conn.execute(
                REFRESH_PROCESS, (now, self.agent_id, self.client_name, self.row_id)
            ).rowcount
        if not changed:
            row = conn.execute(
                INSERT_PROCESS,
                (
                    socket.gethostname(),
                    os.getpid(),
                    self.agent_id,
                    self.agent_type,
                    self.client_name,
                    self.started_at,
                    now,
                ),
            ).fetchone()
            self.row_id = int(row[0])
        conn.execute(DELETE_SILENT, (stale_cutoff(self.db.engine),))

    async def beat(self) -> bool:
        """One short write: refresh our row (re-inserting it if someone judged it stale),
        and delete rows nobody has refreshed for STALE_AFTER seconds.

        Never waits for the write lock: presence must not hold up a call, nor queue in
        front of one. If the lock is taken, it tries again a few times within about a
        second, then leaves it to the next beat (False).
        """
        return await _when_lock_free(self.db, self._beat)

    async def run(self) -> None:
        """Beat every `interval` seconds (sooner when news arrives) until cancelled.

        A failed beat is logged and retried next time: presence must never stop a server.
        No agent waits for it, so it keeps no connection open on PostgreSQL.
        """
        run_in_background()
        failures: tuple[type[Exception], ...] = (BlackboardError, *self.db.errors, OSError)
        interval = self.interval if self.interval is not None else HEARTBEAT_S[self.db.engine]
        while True:
            self._news = anyio.Event()
            try:
                await self.beat()
            except failures as error:
                logger.warning("heartbeat write failed (%s); retrying", error)
            except Exception:
                # A bug: said once; the row goes stale and `doctor` stops listing this
                # process, which goes on serving.
                logger.exception("heartbeat stopped after an unexpected error")
                return
            # Spread: processes started together do not keep beating together.
            with anyio.move_on_after(interval * (0.9 + 0.2 * random.random())):
                await self._news.wait()

    async def remove(self) -> None:
        """Delete our row (clean exit); if the file stays busy the row just goes stale."""
        row_id = self.row_id
        if row_id is not None and await _when_lock_free(
            self.db, lambda conn: conn.execute(DELETE_PROCESS, (row_id,))
        ):
            self.row_id = None


async def _when_lock_free(db: Store, work: Callable[[Conn], object]) -> bool:
    for pause in SKIPPABLE_PAUSES:
        if pause:
            await anyio.sleep(pause * (0.5 + random.random()))
        if await db.try_transact(work):
            return True
    return False


async def live_processes(db: Store, *, forget_stale: bool = True) -> list[dict[str, Any]]:
    """Server processes using the file now, oldest first; stale rows are deleted unless
    `forget_stale` is False (a file opened only for inspection)."""
    rows = await db.read(SELECT_PROCESSES)
    cutoff, host = stale_cutoff(db.engine), socket.gethostname()
    live = [row for row in rows if is_live(row, cutoff, host)]
    stale = [row["id"] for row in rows if not is_live(row, cutoff, host)]
    if stale and forget_stale:

        def forget(conn: Conn) -> None:
            for row_id in stale:
                conn.execute(DELETE_PROCESS, (row_id,))

        await db.transact(forget)
    return [process_dict(row) for row in live]
