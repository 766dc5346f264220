"""The audit trail: who did what, when, to which session and target, and with what result.

A mutation writes its entry inside its own transaction (`write_entry` / `record`), so the
log never claims a change that rolled back or misses one that committed. A refused call
(a permission check, a bad token) changes nothing, so its entry is a transaction of its
own (`record_refusal`). Reads are not logged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from shared_context_server.blackboard.identity import Agent, in_family
from shared_context_server.blackboard.limits import DEFAULT_PAGE_LIMIT
from shared_context_server.blackboard.paging import MAX_POSITION, cut, decode_cursor, encode_cursor
from shared_context_server.blackboard.sweeps import OLD_AUDIT
from shared_context_server.clock import iso, now_utc, utc_now
from shared_context_server.errors import (
    BlackboardError,
    DatabaseBusy,
    InvalidInput,
    PermissionDenied,
)
from shared_context_server.storage.seam import Conn, Row, Store

logger = logging.getLogger(__name__)

# Who the command line's changes (prune, import) are logged as.
OPERATOR = Agent("operator", "cli")
MAX_LIMIT = 200
MAX_DETAIL = 300
TRIM_BATCH = 5000

INSERT = (
    "INSERT INTO audit_log (ts, agent_id, via, action, session_id, target, result, detail)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
# A posted message's entry, in the same trip as the message (transact_then_read): its target
# is the session's newest message if that is the one just posted (the poster's, at this
# time), so nothing is logged when the post inserted nothing. The newest: no other writer
# to the session commits between the two statements (BEGIN IMMEDIATE; the session's row
# lock, taken for the message's id, on PostgreSQL).
INSERT_FOR_POSTED = (
    "INSERT INTO audit_log (ts, agent_id, via, action, session_id, target, result, detail)"
    " SELECT ?, ?, ?, ?, ?, 'message:' || m.id, ?, ? FROM messages m"
    " WHERE m.session_id = ? AND m.sender = ? AND m.created_at = ?"
    " AND m.id = (SELECT max(id) FROM messages WHERE session_id = ?)"
)
_COLUMNS = "id, ts, agent_id, via, action, session_id, target, result, detail"
# Newest first down the ids (the table has no other index: see migration 5), stopping at
# `limit` matches; retention keeps the walk bounded.
# The first two parameters: an agent id, or (for a non-admin reading its own entries and
# its sub-agents') the prefix `agent/` too.
SELECT = (
    f"SELECT {_COLUMNS} FROM audit_log"  # noqa: S608 (constants only)
    " WHERE (? IS NULL OR agent_id = ? OR (? IS NOT NULL AND substr(agent_id, 1, ?) = ?))"
    " AND (? IS NULL OR session_id = ?)"
    " AND (? IS NULL OR action = ?) AND id < ? ORDER BY id DESC LIMIT ?"
)
# ts grows with id (both taken under the write lock), so entries older than the cutoff are
# a prefix of ids: find where it ends by walking from the oldest, and delete up to there.


def entry(
    agent: Agent,
    action: str,
    *,
    session_id: str | None = None,
    target: str | None = None,
    result: str = "ok",
    detail: str | None = None,
    ts: str | None = None,
) -> tuple[Any, ...]:
    """One audit row, for `write_entry` or `record`. `ts` defaults to now: take the row
    inside the transaction, so times grow with ids."""
    if detail is not None and len(detail) > MAX_DETAIL:
        detail = detail[: MAX_DETAIL - 1] + "…"
    return (ts or utc_now(), agent.agent_id, agent.via, action, session_id, target, result, detail)


def write_entry(conn: Conn, row: tuple[Any, ...]) -> None:
    """Log `row` (from `entry`) inside the unit of work of the change it describes."""
    conn.execute(INSERT, row)


def write_posted_entry(conn: Conn, row: tuple[Any, ...]) -> None:
    """Log `row` (from `entry`, with no target) for the message its agent has just posted
    into its session at its time, if one was: the target is that message."""
    ts, agent_id, via, action, session_id, _target, result, detail = row
    entry_values = (ts, agent_id, via, action, session_id, result, detail)
    conn.execute(INSERT_FOR_POSTED, (*entry_values, session_id, agent_id, ts, session_id))


async def record_refusal(
    db: Store,
    agent: Agent,
    action: str,
    session_id: str | None,
    target: str | None,
    error: BlackboardError,
) -> None:
    """Log a refused call (PERMISSION_DENIED, TOKEN_INVALID) in a transaction of its own.

    The refusal stands even if the log cannot be written (a busy file)."""
    await _record_alone(
        db,
        agent,
        action,
        session_id=session_id,
        target=target,
        result=error.code,
        detail=error.message,
    )


async def _record_alone(db: Store, agent: Agent, action: str, **fields: Any) -> None:
    """One entry in a transaction of its own, for something that already happened (or was
    refused): a file too busy to take it gets a warning on stderr, never a different
    result for the caller."""
    try:
        row = entry(agent, action, **fields)
        await db.transact(lambda conn: write_entry(conn, row))
    except DatabaseBusy:
        logger.warning("could not log %s by %s: database busy", action, agent.agent_id)


def entry_dict(row: Row) -> dict[str, Any]:
    entry = {
        "id": row["id"],
        "ts": row["ts"],
        "agent_id": row["agent_id"],
        "action": row["action"],
        "session_id": row["session_id"],
        "target": row["target"],
        "result": row["result"],
    }
    for optional in ("via", "detail"):
        if row[optional] is not None:
            entry[optional] = row[optional]
    return entry


async def get_audit_log(
    db: Store,
    agent: Agent,
    session_id: str | None = None,
    agent_id: str | None = None,
    action: str | None = None,
    limit: int = DEFAULT_PAGE_LIMIT,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Entries newest first. Admins see every agent's; others their own and their
    sub-agents' (`their-id/...`), which they minted.

    Raises PermissionDenied (another agent's entries), InvalidInput (a bad cursor or limit).
    """
    agent.require("read", "get_audit_log")
    family: str | None = None
    if not agent.is_admin:
        own = agent.agent_id
        if agent_id is not None and not in_family(agent_id, own):
            raise PermissionDenied(
                f"only admins read other agents' audit entries; leave agent_id out to see "
                f"yours and your sub-agents' ({own}, {own}/...)."
            )
        if agent_id is None:
            agent_id, family = own, own + "/"
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be 1-{MAX_LIMIT}; got {limit}.")
    (before,) = decode_cursor(cursor, (int,), "get_audit_log") if cursor else (MAX_POSITION - 1,)
    who = (agent_id, agent_id, family, len(family or ""), family)
    params = (*who, session_id, session_id, action, action, before, limit + 1)
    rows, more = cut(await db.read(SELECT, params), limit)
    entries = [entry_dict(row) for row in rows]
    return {"entries": entries, "next_cursor": encode_cursor(entries[-1]["id"]) if more else None}


async def trim_audit_log(db: Store, retention_days: int, *, now: datetime | None = None) -> int:
    """Delete entries older than `retention_days` (0 keeps everything); a batch per call."""
    if retention_days <= 0:
        return 0
    cutoff = iso((now or now_utc()) - timedelta(days=retention_days))
    return await OLD_AUDIT.delete_batch(db, cutoff, TRIM_BATCH)


def table_write_entry(agent: Agent, action: str, table: str, count: int) -> tuple[Any, ...]:
    rows = f"{count} row" if count == 1 else f"{count} rows"
    return entry(agent, action, target=f"table:{table}", detail=rows)


def log_table_write(conn: Conn, agent: Agent, action: str, table: str, count: int) -> None:
    """Log a records-toolset write inside its own transaction: on PostgreSQL the shared
    tables and the audit trail are one database."""
    write_entry(conn, table_write_entry(agent, action, table, count))


# A records UPDATE or DELETE and its audit entry as one statement (PostgreSQL's
# data-modifying WITH): the entry's detail counts the rows the change returned, so the
# change, its entry and COMMIT go in one round trip, and the rows it locks (a claim) are
# held over no trip to the server process.
WITH_COUNTED_ENTRY = (
    "WITH changed AS ({change} RETURNING 1), counted AS (SELECT count(*) AS n FROM changed),"
    " logged AS (INSERT INTO audit_log"
    " (ts, agent_id, via, action, session_id, target, result, detail)"
    " SELECT ?, ?, ?, ?, ?, ?, ?, n || CASE WHEN n = 1 THEN ' row' ELSE ' rows' END"
    " FROM counted) SELECT n FROM counted"
)


def with_counted_entry(
    change: str, params: Sequence[Any], agent: Agent, action: str, table: str
) -> tuple[str, tuple[Any, ...]]:
    """`change` (an UPDATE or DELETE without RETURNING) as one statement that also logs
    it, with the detail `table_write_entry` gives; it returns the rows changed."""
    *fields, _detail = table_write_entry(agent, action, table, 0)
    return WITH_COUNTED_ENTRY.format(change=change), (*params, *fields)


async def record_table_write(db: Store, agent: Agent, action: str, table: str, count: int) -> None:
    """Log a records-toolset write. The tables live in another file, and two SQLite files
    in WAL mode share no atomic transaction, so this entry follows the records commit; if
    the blackboard is too busy to take it, that is logged to stderr and the write stands."""
    rows = f"{count} row" if count == 1 else f"{count} rows"
    await _record_alone(db, agent, action, target=f"table:{table}", detail=rows)
