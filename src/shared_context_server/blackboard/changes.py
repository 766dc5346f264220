"""Noticing other processes' commits: one change feed per process, and the long poll on it.

Processes share nothing but the database, so how a process hears of another's commit is
the engine's business (`Store.changes`, `Store.push`). On a SQLite file the feed looks
every `interval` seconds: a look is one `PRAGMA data_version` while nothing changed (a
few microseconds on the event loop thread), and a commit of this process wakes it at once
when a long poll of this process waits. On PostgreSQL the engine hears every commit on
its LISTEN connection and wakes the feed; nobody polls. The engine listens only while
someone here watches (`Store.want_news`): a commit between a waiter's look and LISTEN
being in place is reported when it is (a resync), so the waiter looks again.

The feed sleeps outright, with no timer, while nobody is watching (no subscription,
listen stream or long poll).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import anyio

from shared_context_server.blackboard.identity import VISIBLE_SQL, Agent, visible_to
from shared_context_server.blackboard.limits import DEFAULT_LIMITS, DEFAULT_WAIT_S, Limits
from shared_context_server.blackboard.messages import Page, get_context
from shared_context_server.errors import BlackboardError, InvalidInput
from shared_context_server.storage.seam import Change, Store, background, run_in_background

logger = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL = 0.1
MAX_WAIT_S = 120.0

# The sessions that gained a message `agent` may see in an id range: the range comes
# from the feed, so this reads only the new rows.
SESSIONS_WITH_NEWS = (
    "SELECT DISTINCT m.session_id FROM messages m"  # noqa: S608 (constants only)
    f" WHERE m.id > ? AND m.id <= ? AND {VISIBLE_SQL}"
)

OnChange = Callable[[Change], Awaitable[None]]


class ChangeFeed:
    """One process's view of commits to the shared database, from any process."""

    def __init__(self, db: Store, interval: float = DEFAULT_POLL_INTERVAL) -> None:
        self.db = db
        self.interval = interval
        self.watchers = 0
        self._long_polls = 0
        self._nap: anyio.CancelScope | None = None
        self._woken = False
        self._seen = anyio.Event()

    async def start(self) -> None:
        """Take the baseline: what exists now is not news."""
        try:
            await self.poll()
        except BlackboardError as error:  # a damaged file: serve, and say so at each call
            logger.warning("change feed baseline failed: %s", error.message)

    def poke(self) -> None:
        """A commit: look now if someone here waits for it.

        On a file this is this process's own commit, and only a long poll is woken: the
        feed's next tick sees it anyway, and every add_message would otherwise pay for a
        look. Where the engine pushes, every commit heard of arrives here."""
        if self._long_polls or (self.db.push and self.watchers):
            self._wake()

    def _wake(self) -> None:
        self._woken = True
        if self._nap is not None:
            self._nap.cancel()

    def watch(self) -> None:
        """Someone wants to hear of changes: keep looking until the matching `unwatch`."""
        self.watchers += 1
        if self.watchers == 1:
            self.db.want_news(True)
        self._wake()

    async def watch_from_now(self) -> None:
        """`watch`, for a subscriber: it hears of commits after this call, never of older
        ones. While nobody watched, the feed did not look, so look first (once the engine
        hears every commit)."""
        if not self.watchers:
            self.db.want_news(True)
            try:
                await self.db.news_ready()
            finally:
                if not self.watchers:  # cancelled, or done: watch() says so again
                    self.db.want_news(False)
        if not self.watchers and await self.poll() is not None:
            self._tick()  # only long polls could be waiting: they look again
        self.watch()

    def unwatch(self) -> None:
        self.watchers -= 1
        if not self.watchers:
            self.db.want_news(False)

    @contextmanager
    def watching(self) -> Iterator[None]:
        """`watch` while inside (a long poll): this process's own commits wake it at once.
        Its looks are background work: while it waits, the process holds only the
        engine's LISTEN connection, not one for reads too."""
        self._long_polls += 1
        self.watch()
        try:
            with background():
                yield
        finally:
            self.unwatch()
            self._long_polls -= 1

    def next_change(self) -> anyio.Event:
        """An event set by the next change seen. Take it *before* reading, so a change that
        lands between the read and the wait still wakes the waiter."""
        return self._seen

    async def poll(self) -> Change | None:
        """Look once; the change since the last look, or None. While nobody watches, the
        last look grows old: the first look after a pause may report older commits."""
        return await self.db.changes()

    def _tick(self) -> None:
        seen, self._seen = self._seen, anyio.Event()
        seen.set()

    async def run(self, on_change: OnChange) -> None:
        """Look until cancelled, calling `on_change` for each change and waking waiters."""
        run_in_background()  # what it reads for waiters keeps no connection open
        while True:
            if not self._woken:
                with anyio.CancelScope() as self._nap:
                    if self.watchers and not self.db.push:
                        await anyio.sleep(self.interval)
                    else:
                        await anyio.sleep_forever()
                self._nap = None
            if not self.watchers:
                self._woken = False
                continue  # a commit nobody waits for; the next look catches up
            self._woken = False
            try:
                change = await self.poll()
            except BlackboardError as error:  # the file, disk or server failed
                logger.warning("change poll failed: %s", error.message)
                continue
            except self.db.errors:
                logger.exception("change poll failed; trying again next tick")
                continue
            if change is None:
                continue
            self._tick()
            try:
                await on_change(change)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                logger.info("a client left while its notifications were sent")


async def sessions_with_news(db: Store, agent: Agent, change: Change) -> set[str]:
    """Sessions that gained a message `agent` may see in `change`: no notification ever
    tells an agent about a message it cannot read."""
    if not change.new_messages:
        return set()
    rows = await db.read(
        SESSIONS_WITH_NEWS, (change.first_id - 1, change.last_id, *visible_to(agent))
    )
    return {row[0] for row in rows}


async def wait_for_messages(
    feed: ChangeFeed,
    agent: Agent,
    session_id: str,
    after_id: int,
    timeout_s: float = DEFAULT_WAIT_S,
    limits: Limits = DEFAULT_LIMITS,
) -> Page:
    """The messages `agent` may see with id > after_id, as soon as any exist; none at timeout.

    Holds no lock and no transaction while it waits: each look is one read through the
    feed's connection (committed data only), and between looks it sleeps until the feed
    sees a commit from any process. Messages the caller may not see never end the wait.
    Raises SessionNotFound (at once), InvalidInput.
    """
    agent.require("read", "wait_for_messages")
    if after_id < 0:
        raise InvalidInput(f"after_id must be 0 or more (0: from the start); got {after_id}.")
    if not 0 <= timeout_s <= MAX_WAIT_S:
        raise InvalidInput(f"timeout_s must be 0-{MAX_WAIT_S:.0f} seconds; got {timeout_s}.")

    async def look() -> Page:
        return await get_context(feed.db, agent, session_id, after_id=after_id, limits=limits)

    with feed.watching():
        changed = feed.next_change()
        page = await look()
        with anyio.move_on_after(timeout_s):
            while not page["messages"]:
                await changed.wait()
                changed = feed.next_change()
                page = await look()
    return page
