"""Claims: which agent is working on which files or task, so two agents do not collide.

A claim is exclusive unless `shared`: an exclusive target overlaps no other agent's live
claim, and a shared one no other agent's exclusive claim (the rules: claim_rules.py).
Every claim write first updates the 'claims' counter row, inside the transaction: SQLite's
BEGIN IMMEDIATE serialises writers anyway, and on PostgreSQL the row lock makes every
other claim writer wait until this one commits, then see its rows (READ COMMITTED takes a
new snapshot per statement). So however many processes race, a check and the insert it
allows are never interleaved with another's. Claims, releases and breaks write their
audit entries in the same transaction.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared_context_server.blackboard import claim_rules as rules
from shared_context_server.blackboard.audit import OPERATOR, entry, write_entry
from shared_context_server.blackboard.identity import Agent
from shared_context_server.blackboard.processes import stale_cutoff
from shared_context_server.clock import iso, now_utc
from shared_context_server.errors import InvalidInput, NotFound, PermissionDenied
from shared_context_server.storage.seam import Conn, Row, Store

MAX_TARGETS = 50
MAX_REASON_CHARS = 500
MAX_LISTED = 500

SELECT_OWN = "SELECT id FROM claims WHERE holder = ? AND target = ?"
SELECT_ONE = "SELECT id, target, holder FROM claims WHERE id = ?"
SELECT_HELD = "SELECT id, target FROM claims WHERE holder = ? ORDER BY id"
SELECT_OF_PROCESS = "SELECT id, target, holder FROM claims WHERE process = ?"
DELETE_EXPIRED = "DELETE FROM claims WHERE expires_at <= ?"
SWEEP_BATCH = 1000
# Rows of claims that have ended (expired, token gone, holder gone): reads already skip
# them; maintenance deletes them in batches.
DELETE_ENDED = (
    "DELETE FROM claims WHERE id IN (SELECT c.id FROM claims c"  # noqa: S608 (constants)
    f" WHERE NOT ({rules.LIVE_SQL}) LIMIT ?)"
)
LIST = (
    f"SELECT {rules.CLAIM_COLUMNS} FROM claims c"  # noqa: S608 (constants)
    " WHERE (? IS NULL OR c.holder = ?) AND (? IS NULL OR substr(c.target, 1, ?) = ?)"
    f" AND {rules.LIVE_SQL} ORDER BY c.target, c.id LIMIT ?"
)


@dataclass(frozen=True)
class Presence:
    """The server process a claim is made through: its clean exit releases it, and its
    heartbeat row keeps it alive. `process` tells two runs in one pid apart."""

    host: str
    pid: int
    process: str


def claim_dict(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "target": row["target"],
        "holder": row["holder"],
        "shared": bool(row["shared"]),
        "reason": row["reason"],
        "since": row["created_at"],
        "until": row["expires_at"],
    }


def _conflict(target: str, row: Row) -> dict[str, Any]:
    return {
        "target": target,
        "held_by": row["holder"],
        "claim": row["target"],
        "reason": row["reason"],
        "until": row["expires_at"],
    }


def _normalised(targets: list[str], cwd: str) -> list[tuple[str, str, str]]:
    if not 1 <= len(targets) <= MAX_TARGETS:
        raise InvalidInput(f"give 1-{MAX_TARGETS} targets; got {len(targets)}.")
    found: dict[str, tuple[str, str, str]] = {}
    for raw in targets:
        try:
            target = rules.normalise(raw, cwd)
        except rules.BadTarget as error:
            raise InvalidInput(f"target {error}.", argument="targets") from None
        found.setdefault(target[0], target)
    return list(found.values())


async def claim(
    db: Store,
    agent: Agent,
    targets: list[str],
    *,
    cwd: str,
    presence: Presence | None,
    reason: str | None = None,
    ttl_s: int = rules.DEFAULT_TTL_S,
    shared: bool = False,
    session_id: str | None = None,
    partial: bool = False,
    token_hash: str | None = None,
) -> dict[str, Any]:
    """Claim what is free; name the holder of what is not. All or nothing unless
    `partial`. Claiming one's own target again renews it. Raises InvalidInput,
    PermissionDenied."""
    agent.require("write", "claim")
    if not 1 <= ttl_s <= rules.MAX_TTL_S:
        raise InvalidInput(f"ttl_s must be 1-{rules.MAX_TTL_S} seconds; got {ttl_s}.")
    if reason is not None and len(reason) > MAX_REASON_CHARS:
        raise InvalidInput(f"reason must be at most {MAX_REASON_CHARS} characters.")
    wanted = _normalised(targets, cwd)
    host = socket.gethostname()

    def work(conn: Conn) -> dict[str, Any]:
        conn.execute(rules.LOCK_CLAIMS)
        moment = now_utc()
        now, cutoff = iso(moment), stale_cutoff(db.engine, moment)
        until = iso(moment + timedelta(seconds=ttl_s))
        conflicts: list[dict[str, Any]] = []
        free: list[tuple[str, str, str]] = []
        for target, kind, base in wanted:
            rows = rules.covering(conn, target, kind, base, now, cutoff, host)
            blocking = [
                r for r in rows if r["holder"] != agent.agent_id and (not shared or not r["shared"])
            ]
            conflicts += [_conflict(target, r) for r in blocking]
            if not blocking:
                free.append((target, kind, base))
        if conflicts and not partial:
            free = []
        granted = []
        where = (presence.host, presence.pid, presence.process) if presence else (None,) * 3
        for target, kind, base in free:
            own = conn.execute(SELECT_OWN, (agent.agent_id, target)).fetchone()
            fields = (int(shared), reason, session_id, *where, token_hash)
            if own is not None:
                claim_id = int(own[0])
                conn.execute(rules.RENEW_CLAIM, (*fields, now, until, claim_id))
            else:
                row = conn.execute(
                    rules.INSERT_CLAIM,
                    (target, kind, base, agent.agent_id, *fields, now, now, until),
                ).fetchone()
                claim_id = int(row[0])
            granted.append({"id": claim_id, "target": target, "shared": shared, "until": until})
            detail = ("shared; " if shared else "") + (reason or "")
            write_entry(
                conn,
                entry(agent, "claim", session_id=session_id, target=target, detail=detail or None),
            )
        return {"granted": granted, "conflicts": conflicts}

    result: dict[str, Any] = await db.transact(work)
    return result


async def release(
    db: Store,
    agent: Agent,
    *,
    cwd: str,
    targets: list[str] | None = None,
    ids: list[int] | None = None,
) -> dict[str, Any]:
    """Release the caller's claims on `targets` (as claimed), by `ids`, or all of them.
    An admin may give another agent's claim id: that breaks it. Raises InvalidInput,
    NotFound, PermissionDenied."""
    agent.require("read", "release")
    wanted = [t for t, _, _ in _normalised(targets, cwd)] if targets else None

    def work(conn: Conn) -> dict[str, Any]:
        conn.execute(rules.LOCK_CLAIMS)
        gone: list[tuple[int, str, str]] = []  # (id, target, holder)
        if ids:
            for claim_id in ids:
                row = conn.execute(SELECT_ONE, (claim_id,)).fetchone()
                if row is None:
                    raise NotFound(f"no claim {claim_id}; list_claims shows them.")
                if row["holder"] != agent.agent_id and not agent.is_admin:
                    raise PermissionDenied(
                        f"claim {claim_id} is {row['holder']}'s; only admins break others' claims."
                    )
                gone.append((claim_id, row["target"], row["holder"]))
        elif wanted is not None:
            for target in wanted:
                row = conn.execute(SELECT_OWN, (agent.agent_id, target)).fetchone()
                if row is not None:
                    gone.append((int(row[0]), target, agent.agent_id))
        else:
            rows = conn.execute(SELECT_HELD, (agent.agent_id,)).fetchall()
            gone = [(int(r[0]), r[1], agent.agent_id) for r in rows]
        for claim_id, target, holder in gone:
            conn.execute(rules.DELETE_CLAIM, (claim_id,))
            broken = holder != agent.agent_id
            write_entry(
                conn,
                entry(
                    agent,
                    "break_claim" if broken else "release",
                    target=target,
                    detail=f"held by {holder}" if broken else None,
                ),
            )
        return {"released": [{"id": i, "target": t, "holder": h} for i, t, h in gone]}

    result: dict[str, Any] = await db.transact(work)
    return result


async def break_claim(db: Store, claim_id: int, by: Agent = OPERATOR) -> dict[str, Any]:
    """The operator (or an admin) ends another agent's claim. Raises NotFound."""
    admin = Agent(by.agent_id, by.agent_type, frozenset({"read", "write", "admin"}), by.source)
    return await release(db, admin, cwd="/", ids=[claim_id])


async def release_process(db: Store, presence: Presence) -> int:
    """At a clean exit: release every claim made through this process run."""

    def work(conn: Conn) -> int:
        conn.execute(rules.LOCK_CLAIMS)
        rows = conn.execute(SELECT_OF_PROCESS, (presence.process,)).fetchall()
        for row in rows:
            conn.execute(rules.DELETE_CLAIM, (row["id"],))
            holder = Agent(row["holder"])
            write_entry(
                conn,
                entry(holder, "release", target=row["target"], detail="its server process ended"),
            )
        conn.execute(DELETE_EXPIRED, (iso(now_utc()),))
        return len(rows)

    count: int = await db.transact(work)
    return count


async def list_claims(
    db: Store,
    agent: Agent,
    *,
    cwd: str,
    prefix: str | None = None,
    holder: str | None = None,
    limit: int = MAX_LISTED,
) -> dict[str, Any]:
    """Live claims, by target: who holds what, why and until when. Everyone sees them.
    `prefix`: targets starting with it (a relative path is made absolute)."""
    agent.require("read", "list_claims")
    if prefix and not prefix.startswith(rules.TASK) and not prefix.startswith(("/", "~")):
        prefix = cwd.rstrip("/") + "/" + prefix
    moment = now_utc()
    live = rules.live_params(iso(moment), stale_cutoff(db.engine, moment))
    size = len(prefix) if prefix else None
    params = (holder, holder, prefix, size, prefix, *live, limit + 1)
    rows = await db.read(LIST, params)
    host = socket.gethostname()
    claims = [claim_dict(r) for r in rows[:limit] if not rules.gone_here(r, host)]
    return {"claims": claims, "has_more": len(rows) > limit}


async def sweep_ended_claims(db: Store, *, now: datetime | None = None) -> int:
    """Delete a batch of claims that have ended (maintenance); returns how many."""
    moment = now or now_utc()
    params = (*rules.live_params(iso(moment), stale_cutoff(db.engine, moment)), SWEEP_BATCH)

    def work(conn: Conn) -> int:
        return int(conn.execute(DELETE_ENDED, params).rowcount)

    count: int = await db.transact(work)
    return count
