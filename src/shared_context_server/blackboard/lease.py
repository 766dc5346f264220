"""Leases: a row in the shared file that says which process does a background job.

Every server process runs the same maintenance loop, but a job such as sweeping expired
rows should run in one process at a time, not N. Whoever holds a job's unexpired lease does
it and renews the lease each round; a holder that dies simply stops renewing, and after the
lease expires the next process to ask takes over. Taking the lease is one upsert inside
`BEGIN IMMEDIATE`, so two processes asking at once are serialised by SQLite's write lock
and exactly one wins.
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import datetime, timedelta

from shared_context_server.clock import iso, now_utc
from shared_context_server.storage.seam import Store

# The row is taken if it is free, expired, or already ours; otherwise the WHERE fails,
# the upsert changes nothing and RETURNING yields no row.
ACQUIRE = (
    "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)"
    " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at"
    " WHERE leases.holder = excluded.holder OR leases.expires_at <= ?"
    " RETURNING holder"
)
RELEASE = "DELETE FROM leases WHERE name = ? AND holder = ?"
HOLDER = "SELECT holder, expires_at FROM leases WHERE name = ?"


def new_holder_id() -> str:
    """A name for this process as a lease holder: readable, and unique even across hosts."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


async def acquire_lease(
    db: Store, name: str, holder: str, ttl_s: float, *, now: datetime | None = None
) -> bool:
    """Take or renew lease `name` for `ttl_s` seconds; False if another holder has it."""
    moment = now or now_utc()
    params = (name, holder, iso(moment + timedelta(seconds=ttl_s)), iso(moment))
    row = await db.transact(lambda conn: conn.execute(ACQUIRE, params).fetchone())
    return row is not None


async def release_lease(db: Store, name: str, holder: str) -> bool:
    """Give lease `name` up, if `holder` has it, so another process need not wait it out."""
    released = await db.transact(lambda conn: conn.execute(RELEASE, (name, holder)).rowcount)
    return released > 0


async def lease_holder(db: Store, name: str) -> tuple[str, str] | None:
    """(holder, expires_at) of lease `name`, expired or not, or None if nobody took it."""
    row = await db.read_one(HOLDER, (name,))
    return (row["holder"], row["expires_at"]) if row else None
