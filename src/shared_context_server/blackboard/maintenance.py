"""Background maintenance: jobs that clean the shared file, run by one process at a time.

Every server process runs `run_maintenance`; each round it asks for the maintenance lease
(lease.py) and only the holder does the jobs, so N processes do not sweep the same rows N
times. Reads never clean up after themselves: they filter expired rows out instead.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from datetime import datetime

import anyio

from shared_context_server.blackboard.lease import acquire_lease
from shared_context_server.blackboard.memory import sweep_expired_memory
from shared_context_server.blackboard.search import index_pending
from shared_context_server.db import Database
from shared_context_server.errors import DatabaseBusy

logger = logging.getLogger(__name__)

LEASE = "maintenance"
DEFAULT_INTERVAL_S = 60.0
# The holder renews every round; three missed rounds mean it is gone.
LEASE_ROUNDS = 3

Job = Callable[..., Awaitable[int]]
# name -> job(db, now=...) returning how many rows it handled. Later jobs (expired tokens,
# audit retention, auto-archive) are added here.
JOBS: dict[str, Job] = {
    "expired_memory": sweep_expired_memory,
    # Normally done by the writing process within a second; this catches rows whose
    # writer exited first, and bulk imports.
    "search_index": lambda db, now=None: index_pending(db),
}


async def maintain_once(
    db: Database, holder: str, interval_s: float, *, now: datetime | None = None
) -> dict[str, int] | None:
    """One round: if `holder` gets the lease, run every job; None if another process has it."""
    if not await acquire_lease(db, LEASE, holder, interval_s * LEASE_ROUNDS, now=now):
        return None
    return {name: await job(db, now=now) for name, job in JOBS.items()}


async def run_maintenance(
    db: Database, holder: str, interval_s: float = DEFAULT_INTERVAL_S
) -> None:
    """Run maintenance rounds every `interval_s` until cancelled.

    The first round waits a jittered fraction of a round (at most a second or two), so
    starting a process costs nothing and processes started together do not all ask at once.
    """
    await anyio.sleep(min(interval_s, 1.0) * (0.5 + random.random()))
    while True:
        try:
            done = await maintain_once(db, holder, interval_s)
            if done and any(done.values()):
                logger.info("maintenance: %s", done)
        except DatabaseBusy:
            # Routine: another process held the write lock; the next round catches up.
            logger.info("maintenance skipped a round: the database was busy")
        except Exception:
            # A failed round must not take the server down with it; the next round retries.
            logger.exception("maintenance round failed")
        await anyio.sleep(interval_s)
