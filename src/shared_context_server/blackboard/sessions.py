"""Sessions: the shared workspaces agents post into, and their lifecycle."""

from __future__ import annotations

import json
import secrets
from typing import Any, Literal, TypedDict

from shared_context_server.blackboard import audit
from shared_context_server.blackboard.identity import VISIBLE_SQL, Agent, visible_to
from shared_context_server.blackboard.limits import (
    DEFAULT_LIMITS,
    DEFAULT_PAGE_LIMIT,
    MAX_SESSIONS_LIMIT,
    Limits,
    check_text,
    decode_metadata,
    encode_metadata,
)
from shared_context_server.blackboard.paging import cut, decode_cursor, encode_cursor
from shared_context_server.clock import utc_now
from shared_context_server.errors import Conflict, InvalidInput, PermissionDenied, SessionNotFound
from shared_context_server.storage.seam import Conn, Row, Store

Status = Literal["active", "completed", "archived"]
StatusFilter = Literal["active", "completed", "archived", "all"]

# Lifecycle: active -> completed -> archived; completed or archived -> active reopens.
TRANSITIONS: dict[str, frozenset[str]] = {
    "active": frozenset({"completed"}),
    "completed": frozenset({"archived", "active"}),
    "archived": frozenset({"active"}),
}


class Session(TypedDict):
    """A session as every layer hands it on. Its keys are the table's columns."""

    id: str
    purpose: str
    status: Status
    created_by: str
    created_at: str
    updated_at: str
    metadata: dict[str, Any] | None


_COLUMNS = ", ".join(Session.__annotations__)

INSERT_SESSION = (
    "INSERT INTO sessions (id, purpose, status, created_by, created_at, updated_at, metadata)"
    " VALUES (?, ?, 'active', ?, ?, ?, ?)"
)
SELECT_SESSION = f"SELECT {_COLUMNS} FROM sessions WHERE id = ?"  # noqa: S608 (constants only)
# Counts and participants over the messages the caller may see, never all of them: summed
# over the session's groups in session_activity (migration 7), which carry the columns
# VISIBLE_SQL reads, so the rule is the same one.
SESSION_ACTIVITY = (
    "SELECT coalesce(sum(m.message_count), 0) AS message_count,"  # noqa: S608
    " max(m.last_message_at) AS last_message_at,"
    " json_group_array(DISTINCT m.sender) AS participants"
    f" FROM session_activity m WHERE m.session_id = ? AND {VISIBLE_SQL}"
)
# Newest first from the cursor, as index ranges: rowid for every status, (status, rowid)
# (migration 8) for one; a "? IS NULL OR" form is a filter, which walked every newer
# session (or every session of another status) before the page.
LIST_SESSIONS = (
    f"SELECT rowid, {_COLUMNS} FROM sessions"  # noqa: S608 (constants only)
    " WHERE rowid < ? ORDER BY rowid DESC LIMIT ?"
)
LIST_SESSIONS_BY_STATUS = (
    f"SELECT rowid, {_COLUMNS} FROM sessions"  # noqa: S608 (constants only)
    " WHERE status = ? AND rowid < ? ORDER BY rowid DESC LIMIT ?"
)
NO_CURSOR = 2**63 - 1  # above every rowid
UPDATE_SESSION = (
    "UPDATE sessions SET status = ?, purpose = ?, metadata = ?, updated_at = ? WHERE id = ?"
)


def new_session_id() -> str:
    return "sess_" + secrets.token_hex(8)


def session_dict(row: Row) -> Session:
    """A session row (selected with its columns, by name) as the session object of the API."""
    return {
        "id": row["id"],
        "purpose": row["purpose"],
        "status": row["status"],
        "created_by": row["created_by"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "metadata": decode_metadata(row["metadata"]),
    }


def _check_purpose(purpose: str, limits: Limits) -> str:
    purpose = purpose.strip()
    if not purpose:
        raise InvalidInput("purpose must say what the session is for; it was empty.")
    return check_text(
        purpose, "purpose", limits.max_purpose_chars, "Summarise; put detail in a first message."
    )


async def create_session(
    db: Store,
    agent: Agent,
    purpose: str,
    metadata: dict[str, Any] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> dict[str, Any]:
    """Create an active session owned by `agent`. Raises InvalidInput, LimitExceeded."""
    agent.require("write", "create_session")
    purpose = _check_purpose(purpose, limits)
    meta = encode_metadata(metadata, limits)
    session_id = new_session_id()

    def insert(conn: Conn) -> str:
        now = utc_now()
        conn.execute(INSERT_SESSION, (session_id, purpose, agent.agent_id, now, now, meta))
        audit.write_entry(
            conn,
            audit.entry(
                agent,
                "create_session",
                session_id=session_id,
                target=f"session:{session_id}",
                ts=now,
            ),
        )
        return now

    now = await db.transact(insert)
    return {
        "id": session_id,
        "purpose": purpose,
        "status": "active",
        "created_by": agent.agent_id,
        "created_at": now,
        "updated_at": now,
        "metadata": metadata,
    }


async def fetch_session(db: Store, session_id: str) -> Session:
    """The session row. Raises SessionNotFound."""
    row = await db.read_one(SELECT_SESSION, (session_id,))
    if row is None:
        raise session_not_found(session_id)
    return session_dict(row)


def session_not_found(session_id: str) -> SessionNotFound:
    return SessionNotFound(
        f"no session {session_id!r}; list_sessions shows existing ones, "
        "create_session makes a new one.",
        session_id=session_id,
    )


SESSION_EXISTS = "SELECT 1 FROM sessions WHERE id = ?"


async def require_session(db: Store, session_id: str) -> None:
    """Raises SessionNotFound unless the session exists (any status)."""
    if await db.read_one(SESSION_EXISTS, (session_id,), small=True) is None:
        raise session_not_found(session_id)


async def get_session(db: Store, agent: Agent, session_id: str) -> dict[str, Any]:
    """The session with counts of the messages `agent` may see. Raises SessionNotFound."""
    agent.require("read", "get_session")
    session = await fetch_session(db, session_id)
    activity = await db.read_one(SESSION_ACTIVITY, (session_id, *visible_to(agent)))
    assert activity is not None  # an aggregate always returns one row
    return {
        "session": session,
        "message_count": activity["message_count"],
        "participants": sorted(json.loads(activity["participants"])),
        "last_message_at": activity["last_message_at"],
    }


async def list_sessions(
    db: Store,
    agent: Agent,
    status: StatusFilter = "active",
    limit: int = DEFAULT_PAGE_LIMIT,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Sessions newest first, one page; `next_cursor` continues it (None at the end)."""
    agent.require("read", "list_sessions")
    if not 1 <= limit <= MAX_SESSIONS_LIMIT:
        raise InvalidInput(f"limit must be 1-{MAX_SESSIONS_LIMIT}; got {limit}.", argument="limit")
    (before,) = decode_cursor(cursor, (int,), "list_sessions") if cursor else (NO_CURSOR,)
    if status == "all":
        rows = await db.read(LIST_SESSIONS, (before, limit + 1), small=True)
    else:
        rows = await db.read(LIST_SESSIONS_BY_STATUS, (status, before, limit + 1), small=True)
    page, more = cut(rows, limit)
    return {
        "sessions": [session_dict(row) for row in page],
        "next_cursor": encode_cursor(page[-1]["rowid"]) if more and page else None,
    }


async def update_session(
    db: Store,
    agent: Agent,
    session_id: str,
    status: Status | None = None,
    purpose: str | None = None,
    metadata: dict[str, Any] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> dict[str, Any]:
    """Change status (by the lifecycle), purpose or metadata (replaced whole).

    Only the session's creator or an admin may. Raises SessionNotFound, PermissionDenied,
    Conflict (a transition the lifecycle does not allow), InvalidInput, LimitExceeded.
    """
    agent.require("write", "update_session")
    if status is None and purpose is None and metadata is None:
        raise InvalidInput("update_session needs at least one of status, purpose, metadata.")
    new_purpose = _check_purpose(purpose, limits) if purpose is not None else None
    new_meta = encode_metadata(metadata, limits) if metadata is not None else None

    def update(conn: Conn) -> tuple[Row, tuple[Any, ...]]:
        row = conn.execute(SELECT_SESSION, (session_id,)).fetchone()
        if row is None:
            raise session_not_found(session_id)
        if row["created_by"] != agent.agent_id and not agent.is_admin:
            raise PermissionDenied(
                f"only the session's creator ({row['created_by']}) or an admin may update "
                f"session {session_id}."
            )
        current = row["status"]
        if status is not None and status != current and status not in TRANSITIONS[current]:
            allowed = " or ".join(sorted(TRANSITIONS[current]))
            raise Conflict(
                f"session {session_id} is {current}; it can become {allowed}, not {status}.",
                status=current,
            )
        now = utc_now()
        values = (
            status or current,
            new_purpose if new_purpose is not None else row["purpose"],
            new_meta if metadata is not None else row["metadata"],
            now,
            session_id,
        )
        conn.execute(UPDATE_SESSION, values)
        changed = [
            f"status {status}" if status is not None else "",
            "purpose" if purpose is not None else "",
            "metadata" if metadata is not None else "",
        ]
        audit.write_entry(
            conn,
            audit.entry(
                agent,
                "update_session",
                session_id=session_id,
                target=f"session:{session_id}",
                detail=", ".join(c for c in changed if c),
                ts=now,
            ),
        )
        return row, values

    row, values = await db.transact(update)
    now = values[3]
    return {
        **session_dict(row),
        "status": values[0],
        "purpose": values[1],
        "metadata": decode_metadata(values[2]),
        "updated_at": now,
    }


# Idle: no update and no message since the cutoff. The newest message of a session is one
# step down the (session_id, id) index. Completed sessions idle as long are archived too.
_IDLE = (
    "status != 'archived' AND updated_at < ?"
    " AND coalesce((SELECT created_at FROM messages WHERE session_id = sessions.id"
    " ORDER BY id DESC LIMIT 1), '') < ?"
)
IDLE_SESSIONS = f"SELECT id FROM sessions WHERE {_IDLE} LIMIT ?"  # noqa: S608 (constants)
# The same test again under the write lock: a message may have arrived since the read.
ARCHIVE = (
    f"UPDATE sessions SET status = 'archived', updated_at = ? WHERE id = ? AND {_IDLE}"  # noqa: S608
    " RETURNING id"
)
ARCHIVE_BATCH = 200


async def archive_idle_sessions(db: Store, actor: Agent, cutoff: str) -> int:
    """Archive up to a batch of sessions with no update and no message since `cutoff`,
    each with an audit entry by `actor` (maintenance); returns how many.

    They are found by a plain read, so other processes' writes never wait for the search;
    only the few found are re-checked and changed under the write lock."""
    found = await db.read(IDLE_SESSIONS, (cutoff, cutoff, ARCHIVE_BATCH))
    if not found:
        return 0

    def archive(conn: Conn) -> int:
        archived = 0
        now = utc_now()
        for (session_id,) in found:
            if conn.execute(ARCHIVE, (now, session_id, cutoff, cutoff)).fetchone() is None:
                continue
            archived += 1
            audit.write_entry(
                conn,
                audit.entry(
                    actor,
                    "auto_archive",
                    session_id=session_id,
                    target=f"session:{session_id}",
                    detail=f"idle since before {cutoff}",
                    ts=now,
                ),
            )
        return archived

    return await db.transact(archive)
