"""Noticing commits from any process, the way the server does: one look at
`PRAGMA data_version` per interval on one connection, and only while a browser listens."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio

from shared_context_server.errors import BlackboardError

logger = logging.getLogger(__name__)

INTERVAL = 0.25  # new messages reach the page well within a second


class Changes:
    """Counts the commits seen (`seen`); listeners wait for it to move."""

    def __init__(
        self,
        version: Callable[[], Awaitable[int]],
        interval: float = INTERVAL,
        errors: tuple[type[Exception], ...] = (),
    ) -> None:
        self._version = version
        # The storage engine's own errors (Store.errors), besides coded ones.
        self._errors: tuple[type[Exception], ...] = (BlackboardError, *errors)
        self._interval = interval
        self._listeners = 0
        self._someone = anyio.Event()
        self._moved = anyio.Event()
        self.seen = 0
        self.looks = 0  # data_version reads so far (the tests count them)
        self.stopped = False

    @asynccontextmanager
    async def listening(self) -> AsyncIterator[None]:
        """While inside, the poller runs; with no listener left it stops looking."""
        self._listeners += 1
        self._someone.set()
        try:
            yield
        finally:
            self._listeners -= 1
            if not self._listeners:
                self._someone = anyio.Event()

    async def wait(self, seen: int) -> int | None:
        """Wait until a commit after `seen` has been noticed; returns the new count, or
        None once the server is stopping (each stream then ends, so shutdown is prompt)."""
        while self.seen == seen and not self.stopped:
            await self._moved.wait()
        return None if self.stopped else self.seen

    def stop(self) -> None:
        """Wake every listener for the last time."""
        self.stopped = True
        self._moved.set()

    async def run(self) -> None:
        """Poll until cancelled; idle (no statement at all) while nobody listens."""
        last: int | None = None
        while True:
            if not self._listeners:
                last = None  # a listener arriving later starts from a fresh look
                await self._someone.wait()
            try:
                current = await self._version()
            except self._errors as error:  # a page going stale beats a dead dashboard
                logger.warning("could not look for changes (%s); retrying", error)
                await anyio.sleep(self._interval)
                continue
            self.looks += 1
            if last is not None and current != last:
                self.seen += 1
                moved, self._moved = self._moved, anyio.Event()
                moved.set()
            last = current
            await anyio.sleep(self._interval)
