"""Agent memory: a private key-value store per agent, global or per session, with expiry.

Every statement is keyed by the caller's agent_id, so no path shows one agent another's
memory. An expired entry is invisible at once because every read filters on
`expires_at > now`; the rows themselves are deleted later by `sweep_expired_memory`, which
the maintenance loop runs in one process at a time (never on reads).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

from shared_context_server.blackboard import audit
from shared_context_server.blackboard.identity import Agent
from shared_context_server.blackboard.limits import (
    DEFAULT_LIMITS,
    DEFAULT_PAGE_LIMIT,
    MAX_MEMORY_KEY_CHARS,
    Limits,
    encode_json,
)
from shared_context_server.blackboard.paging import cut, decode_cursor, encode_cursor
from shared_context_server.blackboard.sessions import (
    SESSION_EXISTS,
    require_session,
    session_not_found,
)
from shared_context_server.blackboard.sweeps import EXPIRED_MEMORY
from shared_context_server.clock import iso, now_utc
from shared_context_server.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from shared_context_server.storage.seam import Conn, Row, Store

MAX_EXPIRES_IN = 365 * 24 * 3600  # one year, in seconds
MAX_LIST_LIMIT = 200
SNAPSHOT_LIMIT = 1000
SWEEP_BATCH = 500
ALL = "all"

# 1-255 printable characters, no whitespace: keys are typed by models and read in logs.
_KEY = re.compile(rf"^[^\s\x00-\x1f\x7f]{{1,{MAX_MEMORY_KEY_CHARS}}}$")

_LIVE = "(expires_at IS NULL OR expires_at > ?)"
_SCOPE = "ifnull(session_id, '')"  # the unique index's expression: '' is global
_COLUMNS = "key, session_id, value, created_at, updated_at, expires_at"

FIND = f"SELECT id, expires_at FROM memory WHERE agent_id = ? AND {_SCOPE} = ? AND key = ?"  # noqa: S608
INSERT = (
    "INSERT INTO memory (agent_id, session_id, key, value, created_at, updated_at, expires_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
# A live entry keeps its created_at when replaced; an expired one is a new entry.
REPLACE = (
    "UPDATE memory SET value = ?, updated_at = ?, expires_at = ?,"
    " created_at = CASE WHEN ? THEN created_at ELSE ? END WHERE id = ?"
)
GET = (
    f"SELECT {_COLUMNS} FROM memory"  # noqa: S608 (constants only)
    f" WHERE agent_id = ? AND {_SCOPE} = ? AND key = ? AND {_LIVE}"
)
DELETE = f"DELETE FROM memory WHERE agent_id = ? AND {_SCOPE} = ? AND key = ? AND {_LIVE}"  # noqa: S608
# Cursor: the last (scope, key) of the previous page ('', '' for the first); row values
# compare in index order. Each form starts its walk down memory_key at the cursor: an
# "? IS NULL OR" form is a filter, which walked (and read the row of) every key before
# the page, or every key of the agent's other scopes.
_LISTED = (
    f"SELECT key, session_id, expires_at, length(CAST(value AS BLOB)) AS size,"  # noqa: S608
    f" {_SCOPE} AS scope_key FROM memory WHERE agent_id = ? AND {_LIVE}"
    f" AND substr(key, 1, ?) = ? AND ({_SCOPE}, key) > (?, ?)"
)
# One scope ('' = global): from the cursor's key on, when the cursor is in that scope.
LIST_SCOPE = _LISTED + f" AND {_SCOPE} = ? AND key > ? ORDER BY key LIMIT ?"
# Every scope: from the cursor's scope on.
LIST_ALL = _LISTED + f" AND {_SCOPE} >= ? ORDER BY {_SCOPE}, key LIMIT ?"
SNAPSHOT = (
    f"SELECT {_COLUMNS} FROM memory WHERE agent_id = ? AND {_LIVE}"  # noqa: S608
    f" ORDER BY {_SCOPE}, key LIMIT ?"
)
# Every agent's keys (admin only), without values; cursor as LIST's plus the agent.
ALL_KEYS = (
    "SELECT agent_id, key, session_id, expires_at, updated_at,"  # noqa: S608 (constants only)
    f" length(CAST(value AS BLOB)) AS size, {_SCOPE} AS scope_key FROM memory"
    f" WHERE (? IS NULL OR agent_id = ?) AND {_LIVE}"
    f" AND (? IS NULL OR (agent_id, {_SCOPE}, key) > (?, ?, ?))"
    f" ORDER BY agent_id, {_SCOPE}, key LIMIT ?"
)


def check_key(key: str) -> str:
    if not _KEY.match(key):
        raise InvalidInput(
            f"key must be 1-255 printable characters without spaces; got {key!r}.",
            argument="key",
        )
    return key


def _scope_key(session_id: str | None) -> str:
    return session_id or ""


def entry_dict(row: Row) -> dict[str, Any]:
    return {
        "key": row["key"],
        "value": json.loads(row["value"]),
        "scope": "session" if row["session_id"] else "global",
        "session_id": row["session_id"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "expires_at": row["expires_at"],
    }


def _encode_value(value: Any, limits: Limits) -> str:
    return encode_json(
        value, "value", limits.max_memory_bytes, "Store a summary, or split it across several keys."
    )


def _expiry(expires_in: int | None, moment: datetime) -> str | None:
    if expires_in is None:
        return None
    if not 1 <= expires_in <= MAX_EXPIRES_IN:
        raise InvalidInput(
            f"expires_in must be 1-{MAX_EXPIRES_IN} seconds ({MAX_EXPIRES_IN // 86400} days); "
            f"got {expires_in}. "
            "Omit it to keep the entry until you delete it.",
            argument="expires_in",
        )
    return iso(moment + timedelta(seconds=expires_in))


async def _require_session(db: Store, session_id: str | None) -> None:
    if session_id is not None:  # None: global memory, no session to check
        await require_session(db, session_id)


def _not_found(key: str, session_id: str | None) -> NotFound:
    where = f"session {session_id}" if session_id else "your global memory"
    return NotFound(
        f"no memory {key!r} in {where} (never set, deleted, or expired); "
        "list_memory shows your keys.",
        argument="key",
    )


async def set_memory(
    db: Store,
    agent: Agent,
    key: str,
    value: Any,
    session_id: str | None = None,
    expires_in: int | None = None,
    overwrite: bool = True,
    limits: Limits = DEFAULT_LIMITS,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Store `value` under `key` for `agent`, globally or in an existing session.

    With overwrite=False a live entry is kept and Conflict raised; an expired one is
    replaced. Raises SessionNotFound, Conflict, InvalidInput, LimitExceeded.
    """
    agent.require("write", "set_memory")
    check_key(key)
    text = _encode_value(value, limits)
    moment = now or now_utc()
    stamp, expires_at = iso(moment), _expiry(expires_in, moment)
    scope_key = _scope_key(session_id)

    def store(conn: Conn) -> None:
        # One unit of work on the writer's own thread, like add_message: a statement per
        # trip to aiosqlite's thread made this write 1.6x the floor's.
        if (
            session_id is not None
            and conn.execute(SESSION_EXISTS, (session_id,)).fetchone() is None
        ):
            raise session_not_found(session_id)
        row = conn.execute(FIND, (agent.agent_id, scope_key, key)).fetchone()
        live = row is not None and (row["expires_at"] is None or row["expires_at"] > stamp)
        if row is None:
            conn.execute(INSERT, (agent.agent_id, session_id, key, text, stamp, stamp, expires_at))
        elif live and not overwrite:
            raise Conflict(
                f"memory {key!r} already exists; pass overwrite=true to replace it, "
                "or use another key.",
                argument="key",
                expires_at=row["expires_at"],
            )
        else:
            conn.execute(REPLACE, (text, stamp, expires_at, live, stamp, row["id"]))
        audit.write_entry(
            conn, audit.entry(agent, "set_memory", session_id=session_id, target=f"memory:{key}")
        )

    await db.transact(store)
    return {
        "key": key,
        "scope": "session" if session_id else "global",
        "session_id": session_id,
        "expires_at": expires_at,
        "size": len(text.encode()),
    }


async def get_memory(
    db: Store,
    agent: Agent,
    key: str,
    session_id: str | None = None,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The caller's live entry. Raises NotFound (missing or expired), SessionNotFound."""
    agent.require("read", "get_memory")
    check_key(key)
    stamp = iso(now or now_utc())
    row = await db.read_one(GET, (agent.agent_id, _scope_key(session_id), key, stamp))
    if row is None:
        await _require_session(db, session_id)
        raise _not_found(key, session_id)
    return entry_dict(row)


async def delete_memory(
    db: Store,
    agent: Agent,
    key: str,
    session_id: str | None = None,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Delete the caller's live entry; `deleted` is False if there was none."""
    agent.require("write", "delete_memory")
    check_key(key)
    stamp = iso(now or now_utc())

    def delete(conn: Conn) -> int:
        params = (agent.agent_id, _scope_key(session_id), key, stamp)
        deleted = conn.execute(DELETE, params).rowcount
        if deleted:
            audit.write_entry(
                conn,
                audit.entry(agent, "delete_memory", session_id=session_id, target=f"memory:{key}"),
            )
        return deleted

    deleted = await db.transact(delete)
    if not deleted:
        await _require_session(db, session_id)
    return {"deleted": deleted > 0}


async def list_memory(
    db: Store,
    agent: Agent,
    session_id: str | None = None,
    prefix: str = "",
    limit: int = DEFAULT_PAGE_LIMIT,
    cursor: str | None = None,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The caller's live keys in key order, one page; `next_cursor` continues (None at end).

    session_id None lists global entries, a session id that session's, "all" both.
    Raises SessionNotFound, InvalidInput.
    """
    agent.require("read", "list_memory")
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise InvalidInput(f"limit must be 1-{MAX_LIST_LIMIT}; got {limit}.", argument="limit")
    if session_id != ALL:
        await _require_session(db, session_id)
    after_scope, after_key = (
        decode_cursor(cursor, (str, str), "list_memory") if cursor else ("", "")
    )
    listed = (agent.agent_id, iso(now or now_utc()), len(prefix), prefix, after_scope, after_key)
    if session_id == ALL:
        rows = await db.read(LIST_ALL, (*listed, after_scope, limit + 1), small=True)
    else:
        scope = _scope_key(session_id)
        from_key = after_key if after_scope == scope else ""
        rows = await db.read(LIST_SCOPE, (*listed, scope, from_key, limit + 1), small=True)
    page, more = cut(rows, limit)
    entries = [
        {
            "key": row["key"],
            "scope": "session" if row["session_id"] else "global",
            "session_id": row["session_id"],
            "expires_at": row["expires_at"],
            "size": row["size"],
        }
        for row in page
    ]
    last = page[-1] if page else None
    return {
        "entries": entries,
        "next_cursor": encode_cursor(last["scope_key"], last["key"]) if more and last else None,
    }


async def memory_snapshot(
    db: Store, agent: Agent, limit: int = SNAPSHOT_LIMIT, *, now: datetime | None = None
) -> dict[str, Any]:
    """All of the caller's live memory with values, as JSON-ready data (for a resource).

    At most `limit` entries, global first then by session and key; `truncated` says more exist.
    """
    agent.require("read", "memory")
    rows = await db.read(SNAPSHOT, (agent.agent_id, iso(now or now_utc()), limit + 1))
    page, truncated = cut(rows, limit)
    return {
        "agent_id": agent.agent_id,
        "entries": [entry_dict(row) for row in page],
        "truncated": truncated,
    }


async def sweep_expired_memory(db: Store, *, now: datetime | None = None) -> int:
    """Delete expired entries in short batches (each its own transaction); returns how many."""
    stamp = iso(now or now_utc())
    total = 0
    while True:
        deleted = await EXPIRED_MEMORY.delete_batch(db, stamp, SWEEP_BATCH)
        total += deleted
        if deleted < SWEEP_BATCH:
            return total


async def all_memory_keys(
    db: Store,
    admin: Agent,
    agent_id: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Every agent's live keys (or `agent_id`'s), with sizes but no values, one page.

    Raises PermissionDenied (not an admin), InvalidInput."""
    if not admin.is_admin:
        raise PermissionDenied("only admins list other agents' memory.")
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise InvalidInput(f"limit must be 1-{MAX_LIST_LIMIT}; got {limit}.", argument="limit")
    after: tuple[str | None, ...] = (None, None, None)
    if cursor:
        after = decode_cursor(cursor, (str, str, str), "all_memory_keys")
    stamp = iso(now or now_utc())
    rows = await db.read(ALL_KEYS, (agent_id, agent_id, stamp, after[0], *after, limit + 1))
    page, more = cut(rows, limit)
    entries = [
        {
            "agent_id": row["agent_id"],
            "key": row["key"],
            "scope": "session" if row["session_id"] else "global",
            "session_id": row["session_id"],
            "updated_at": row["updated_at"],
            "expires_at": row["expires_at"],
            "size": row["size"],
        }
        for row in page
    ]
    last = page[-1] if page else None
    next_cursor = (
        encode_cursor(last["agent_id"], last["scope_key"], last["key"]) if more and last else None
    )
    return {"entries": entries, "next_cursor": next_cursor}


async def any_memory(
    db: Store,
    admin: Agent,
    agent_id: str,
    key: str,
    session_id: str | None = None,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """One agent's live entry, value included, read by an admin.

    Raises PermissionDenied (not an admin), NotFound, SessionNotFound."""
    if not admin.is_admin:
        raise PermissionDenied("only admins read other agents' memory.")
    check_key(key)
    stamp = iso(now or now_utc())
    row = await db.read_one(GET, (agent_id, _scope_key(session_id), key, stamp))
    if row is None:
        await _require_session(db, session_id)
        raise _not_found(key, session_id)
    return {"agent_id": agent_id, **entry_dict(row)}
