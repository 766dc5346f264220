"""Push across machines on PostgreSQL: NOTIFY inside the writing transaction (the schema's
triggers call pg_notify), LISTEN on one connection per process (here).

`pg_notify` sent inside a transaction is delivered when, and only if, it commits, so a
listener never hears of a row it cannot read yet. Notifications are not stored: one sent
while a listener was disconnected is lost, so after reconnecting the listener yields
RESYNC and its consumer re-reads by id, as after a missed wake-up on SQLite.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING

import anyio

from shared_context_server.errors import StorageError
from shared_context_server.storage.postgres.connect import TupleRow, connect, driver

if TYPE_CHECKING:
    import psycopg

logger = logging.getLogger(__name__)

# Yielded after the listening connection was re-established: anything may have been missed.
RESYNC = ("", "")
RECONNECT_DELAY_S = 0.5
# How often a listener wakes for notifications, at most, once it has used a burst of
# WAKE_BURST wakes: each read then takes all that arrived meanwhile. Every process hears
# every commit, and with 20 processes posting, waking once per commit cost each message
# more CPU than its write (README, Performance, "On PostgreSQL"). Commits a few a second
# apart are heard at once; in a stream, news waits at most 1/WAKE_RATE s, the file's poll
# interval.
WAKE_RATE = 10.0
WAKE_BURST = 20.0


def _quoted(channel: str) -> str:
    # LISTEN takes an identifier, not a parameter; channels are our own constants.
    if not channel.replace("_", "").isalnum():
        raise ValueError(f"channel names are letters, digits and _; got {channel!r}")
    return f'"{channel}"'


class PgListener:
    """One process's listening connection: `notes()` yields (channel, payload) pairs."""

    def __init__(self, url: str, channels: Iterable[str]) -> None:
        self.url = url
        self.channels = tuple(_quoted(channel) for channel in channels)
        self._wakes = WAKE_BURST  # a token bucket: wakes left before pacing
        self._last_wake = 0.0
        self._conn: psycopg.AsyncConnection[TupleRow] | None = None

    async def _listen(self) -> psycopg.AsyncConnection[TupleRow]:
        conn = await connect(self.url)
        for channel in self.channels:
            await conn.execute(f"LISTEN {channel}")
        return conn

    async def start(self) -> None:
        """LISTEN now, so nothing committed after this returns is missed."""
        self._conn = await self._listen()

    async def notes(self) -> AsyncIterator[tuple[str, str]]:
        """Every notification on the channels, RESYNC after each reconnection; forever."""
        pg = driver()
        while True:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = await self._listen()
                    yield RESYNC
                for note in await _received(self._conn):
                    yield note
                await self._pace()
            except (pg.OperationalError, OSError) as error:
                logger.warning("lost the PostgreSQL listening connection (%s); reconnecting", error)
                await self._drop()
                await anyio.sleep(RECONNECT_DELAY_S)
            except StorageError:  # the server is still down: try again shortly
                await anyio.sleep(RECONNECT_DELAY_S)

    async def _pace(self) -> None:
        """Take a wake from the bucket; if it is empty, wait for the next one."""
        now = anyio.current_time()
        refill = (now - self._last_wake) * WAKE_RATE
        self._wakes = min(WAKE_BURST, self._wakes + refill) - 1.0
        self._last_wake = now
        if self._wakes < 0:
            await anyio.sleep(-self._wakes / WAKE_RATE)

    async def _drop(self) -> None:
        if self._conn is not None:
            with anyio.CancelScope(shield=True):
                await self._conn.close()
            self._conn = None

    async def close(self) -> None:
        await self._drop()


async def _received(conn: psycopg.AsyncConnection[TupleRow]) -> list[tuple[str, str]]:
    """Every notification that has arrived, after waiting for at least one. Straight from
    libpq: psycopg's notifies() costs a wait (a reader and a timer on the event loop) per
    notification."""
    pgconn = conn.pgconn
    encoding = conn.info.encoding
    while True:
        await anyio.wait_readable(pgconn.socket)
        pgconn.consume_input()  # OperationalError once the server is gone
        found: list[tuple[str, str]] = []
        while (note := pgconn.notifies()) is not None:
            found.append((note.relname.decode(encoding), note.extra.decode(encoding)))
        if found:
            return found
