"""Reading sessions as an operator: the overview, a session's latest messages, and new
messages from any process as they are committed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio

from shared_context_server.blackboard.identity import VISIBLE_SQL, Agent, visible_to
from shared_context_server.blackboard.messages import MAX_CONTEXT_LIMIT, Message, get_context
from shared_context_server.blackboard.sessions import StatusFilter, session_dict
from shared_context_server.storage.seam import Store

FOLLOW_INTERVAL = 0.2

# Counts and last message time over what the viewer may see, from the same per-session
# groups as get_session's (session_activity), not from every message.
SESSION_OVERVIEW = (
    "SELECT s.id, s.purpose, s.status, s.created_by, s.created_at, s.updated_at, s.metadata,"  # noqa: S608
    " coalesce(sum(m.message_count), 0) AS message_count,"
    " max(m.last_message_at) AS last_message_at"
    f" FROM sessions s LEFT JOIN session_activity m ON m.session_id = s.id AND {VISIBLE_SQL}"
    " WHERE (? = 'all' OR s.status = ?)"
    " GROUP BY s.id ORDER BY max(coalesce(max(m.last_message_at), ''), s.updated_at) DESC, s.id"
)
COUNT_VISIBLE = (
    "SELECT coalesce(sum(m.message_count), 0) FROM session_activity m"  # noqa: S608
    f" WHERE m.session_id = ? AND {VISIBLE_SQL}"
)


async def session_overview(
    db: Store, viewer: Agent, status: StatusFilter = "all"
) -> list[dict[str, Any]]:
    """Every session with `status`, most recently active first, with the number and time
    of the messages `viewer` may see; `last_activity` is the later of that and the
    session's own last update."""
    rows = await db.read(SESSION_OVERVIEW, (*visible_to(viewer), status, status))
    out = []
    for row in rows:
        last = row["last_message_at"]
        out.append(
            {
                **session_dict(row),
                "message_count": row["message_count"],
                "last_message_at": last,
                "last_activity": max(last or "", row["updated_at"]),
            }
        )
    return out


async def latest_messages(db: Store, viewer: Agent, session_id: str, count: int) -> list[Message]:
    """The latest `count` messages `viewer` may see, oldest first. Raises SessionNotFound."""
    page = await get_context(db, viewer, session_id, limit=min(count, MAX_CONTEXT_LIMIT))
    messages = page["messages"]
    while page["has_more"] and messages and len(messages) < count:
        limit = min(count - len(messages), MAX_CONTEXT_LIMIT)
        page = await get_context(db, viewer, session_id, limit=limit, before_id=messages[0]["id"])
        messages = page["messages"] + messages
    return messages


async def messages_after(
    db: Store, viewer: Agent, session_id: str, after_id: int
) -> AsyncIterator[Message]:
    """Every message `viewer` may see with id > `after_id`, in order, page by page."""
    while True:
        page = await get_context(db, viewer, session_id, limit=MAX_CONTEXT_LIMIT, after_id=after_id)
        for message in page["messages"]:
            after_id = message["id"]
            yield message
        if not page["has_more"] or not page["messages"]:
            return


async def follow(
    db: Store,
    viewer: Agent,
    session_id: str,
    after_id: int,
    interval: float = FOLLOW_INTERVAL,
) -> AsyncIterator[Message]:
    """New messages `viewer` may see, as any process commits them, forever.

    Looks at the store's data_version every `interval` seconds and queries only when it
    moved, so a quiet session costs next to nothing (on PostgreSQL, nothing: the number
    moves with what `Store.listen`, run beside this, hears). Raises SessionNotFound if the
    session disappears (pruned).
    """
    version: int | None = None
    while True:
        current = await db.data_version()
        if current != version:
            version = current
            async for message in messages_after(db, viewer, session_id, after_id):
                after_id = message["id"]
                yield message
        await anyio.sleep(interval)


async def all_messages(db: Store, viewer: Agent, session_id: str) -> AsyncIterator[Message]:
    """Every message of the session `viewer` may see, oldest first. Raises SessionNotFound."""
    async for message in messages_after(db, viewer, session_id, 0):
        yield message


async def count_visible(db: Store, viewer: Agent, session_id: str) -> int:
    row = await db.read_one(COUNT_VISIBLE, (session_id, *visible_to(viewer)))
    return int(row[0]) if row else 0
