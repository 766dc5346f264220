"""Background maintenance: jobs that keep the shared file small, run by one process at a time.

Every server process runs `run_maintenance`; each round it asks for the maintenance lease
(lease.py) and only the holder does the jobs, so N processes do not sweep the same rows N
times. Reads never clean up after themselves: they filter expired rows out instead. Each
job does at most a batch per round in short transactions, so agents' writes never wait long.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio

from shared_context_server.blackboard.audit import trim_audit_log
from shared_context_server.blackboard.claims import sweep_ended_claims
from shared_context_server.blackboard.identity import Agent
from shared_context_server.blackboard.lease import acquire_lease
from shared_context_server.blackboard.memory import sweep_expired_memory
from shared_context_server.blackboard.sessions import archive_idle_sessions
from shared_context_server.blackboard.tokens import sweep_expired_tokens
from shared_context_server.clock import iso, now_utc
from shared_context_server.errors import BlackboardError, DatabaseBusy
from shared_context_server.storage.seam import Store, run_in_background

logger = logging.getLogger(__name__)

LEASE = "maintenance"
DEFAULT_INTERVAL_S = 60.0
DEFAULT_ARCHIVE_AFTER_DAYS = 30
DEFAULT_AUDIT_RETENTION_DAYS = 90
# The holder renews every round; three missed rounds mean it is gone.
LEASE_ROUNDS = 3


@dataclass(frozen=True)
class Policy:
    """What maintenance acts on (0 turns an age off)."""

    interval_s: float = DEFAULT_INTERVAL_S
    archive_after_days: int = DEFAULT_ARCHIVE_AFTER_DAYS
    audit_retention_days: int = DEFAULT_AUDIT_RETENTION_DAYS


Job = Callable[[Store, Policy, str, datetime], Awaitable[int]]


async def _archive(db: Store, policy: Policy, holder: str, now: datetime) -> int:
    if policy.archive_after_days <= 0:
        return 0
    cutoff = iso(now - timedelta(days=policy.archive_after_days))
    # Audited as "maintenance", through the process that held the lease.
    return await archive_idle_sessions(db, Agent("maintenance", "system", via=holder), cutoff)


# name -> job(db, policy, holder, now) returning how many rows (or WAL frames) it handled.
JOBS: dict[str, Job] = {
    "expired_memory": lambda db, policy, holder, now: sweep_expired_memory(db, now=now),
    "expired_tokens": lambda db, policy, holder, now: sweep_expired_tokens(db, now=now),
    # Claims whose holder, token or time is gone: already ignored; their rows go here.
    "ended_claims": lambda db, policy, holder, now: sweep_ended_claims(db, now=now),
    "idle_sessions_archived": _archive,
    "audit_trimmed": lambda db, policy, holder, now: trim_audit_log(
        db, policy.audit_retention_days, now=now
    ),
    # Normally done by the writing process within a second; this catches rows whose
    # writer exited first, and bulk imports.
    "search_index": lambda db, policy, holder, now: db.index_search(),
    "wal_checkpointed": lambda db, policy, holder, now: db.checkpoint_if_large(),
}


async def maintain_once(
    db: Store, holder: str, policy: Policy = Policy(), *, now: datetime | None = None
) -> dict[str, int] | None:
    """One round: if `holder` gets the lease, run every job; None if another process has it."""
    moment = now or now_utc()
    if not await acquire_lease(db, LEASE, holder, policy.interval_s * LEASE_ROUNDS, now=moment):
        return None
    return {name: await job(db, policy, holder, moment) for name, job in JOBS.items()}


async def run_maintenance(db: Store, holder: str, policy: Policy = Policy()) -> None:
    """Run maintenance rounds every `policy.interval_s` until cancelled.

    The first round waits a jittered fraction of a round (at most a second or two), so
    starting a process costs nothing and processes started together do not all ask at once.
    """
    run_in_background()  # no agent waits for it: it keeps no connection open
    await anyio.sleep(min(policy.interval_s, 1.0) * (0.5 + random.random()))
    uncoded: tuple[type[Exception], ...] = (*db.errors, OSError)
    while True:
        try:
            done = await maintain_once(db, holder, policy)
            if done and any(done.values()):
                logger.info("maintenance: %s", done)
        except DatabaseBusy:
            # Routine: another process held the write lock; the next round catches up.
            logger.info("maintenance skipped a round: the database was busy")
        except BlackboardError as error:  # the file or disk failed; the next round retries
            logger.warning("maintenance round failed: %s", error.message)
        except uncoded as error:  # the same, not yet given a code
            logger.warning("maintenance round failed: %s", error)
        except Exception:
            # A bug: said once, with its traceback, and this process stops maintaining
            # (the others take the lease over); serving goes on.
            logger.exception("maintenance stopped in this process after an unexpected error")
            return
        await anyio.sleep(policy.interval_s)
