"""Messages: posting into a session and reading back what the caller may see."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

from shared_context_server.blackboard import acks, audit
from shared_context_server.blackboard.identity import (
    VISIBLE_SQL,
    Agent,
    Visibility,
    check_visibility,
    visible_to,
)
from shared_context_server.blackboard.limits import (
    DEFAULT_LIMITS,
    DEFAULT_PAGE_LIMIT,
    MESSAGE_TYPE,
    Limits,
    check_text,
    decode_metadata,
    encode_metadata,
)
from shared_context_server.blackboard.sessions import (
    SELECT_SESSION,
    require_session,
    session_not_found,
)
from shared_context_server.clock import utc_now
from shared_context_server.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from shared_context_server.storage.seam import Conn, Row, Store


class Message(TypedDict):
    """A message as every layer hands it on: tools' results, resources, export and import,
    the terminal and the dashboard. Its keys are the table's columns, in this order."""

    id: int
    session_id: str
    sender: str
    sender_type: str
    content: str
    visibility: Visibility
    message_type: str
    metadata: dict[str, Any] | None
    parent_message_id: int | None
    created_at: str


class Page(TypedDict):
    """A page of messages, oldest first; `has_more`: more lie beyond it in its direction."""

    messages: list[Message]
    has_more: bool


MESSAGE_KEYS = tuple(Message.__annotations__)
_METADATA = MESSAGE_KEYS.index("metadata")
MESSAGE_COLUMNS = ", ".join(f"m.{key}" for key in MESSAGE_KEYS)

# One statement checks the session is active and the parent is a message of the same
# session that the poster may see, and inserts; no row back means one of those failed,
# and only then do we spend queries finding out which.
# The casts say the parent id's type to PostgreSQL, which prepares the statement once
# (storage/postgres/unit.py: a bare `? IS NULL` has no type it can infer).
INSERT_MESSAGE = (
    "INSERT INTO messages (session_id, sender, sender_type, content, visibility,"  # noqa: S608
    " message_type, metadata, parent_message_id, created_at)"
    " SELECT ?, ?, ?, ?, ?, ?, ?, CAST(? AS INTEGER), ? FROM sessions s"
    " WHERE s.id = ? AND s.status = 'active' AND (CAST(? AS INTEGER) IS NULL OR EXISTS ("
    f"  SELECT 1 FROM messages m WHERE m.id = ? AND m.session_id = s.id AND {VISIBLE_SQL}))"
    " RETURNING id"
)
# Every message read starts here and carries VISIBLE_SQL: the text is built from constants only.
_SELECT = f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE {VISIBLE_SQL} AND "  # noqa: S608
SELECT_MESSAGE = _SELECT + "m.session_id = ? AND m.id = ?"
_FILTERS = "m.session_id = ? AND (? IS NULL OR m.sender = ?) AND (? IS NULL OR m.visibility = ?)"
LATEST = _SELECT + _FILTERS + " ORDER BY m.id DESC LIMIT ?"
BEFORE = _SELECT + _FILTERS + " AND m.id < ? ORDER BY m.id DESC LIMIT ?"
AFTER = _SELECT + _FILTERS + " AND m.id > ? ORDER BY m.id ASC LIMIT ?"
# With a sender, the same pages down the (session_id, sender, id) index (migration 7): the
# "? IS NULL OR" form above cannot use it, and walking the session for one sender's
# messages costs the whole session when that sender wrote little.
_BY_SENDER = "m.session_id = ? AND m.sender = ? AND (? IS NULL OR m.visibility = ?)"
LATEST_BY = _SELECT + _BY_SENDER + " ORDER BY m.id DESC LIMIT ?"
BEFORE_BY = _SELECT + _BY_SENDER + " AND m.id < ? ORDER BY m.id DESC LIMIT ?"
AFTER_BY = _SELECT + _BY_SENDER + " AND m.id > ? ORDER BY m.id ASC LIMIT ?"

MAX_CONTEXT_LIMIT = 500


def message_dict(row: Row) -> Message:
    """A message row (selected with MESSAGE_COLUMNS) as the message object of the API."""
    message: Message = dict(zip(MESSAGE_KEYS, row, strict=True))  # type: ignore[assignment]
    if message["metadata"] is not None:  # most messages carry none: no call for them
        message["metadata"] = decode_metadata(row[_METADATA])
    return message


async def add_message(
    db: Store,
    agent: Agent,
    session_id: str,
    content: str,
    visibility: str = "public",
    message_type: str = "message",
    metadata: dict[str, Any] | None = None,
    parent_message_id: int | None = None,
    limits: Limits = DEFAULT_LIMITS,
    action: str = "add_message",
) -> dict[str, Any]:
    """Append a message; ids grow in commit order across every process on the file.
    `action`: the tool's name in the audit entry written with it.

    Raises SessionNotFound, Conflict (session not active), NotFound (parent),
    PermissionDenied (admin_only by a non-admin), InvalidInput, LimitExceeded.
    """
    agent.require("write", "add_message")
    vis: Visibility = check_visibility(visibility)
    if vis == "admin_only" and not agent.is_admin:
        raise PermissionDenied(
            "only admins may post admin_only messages; use agent_only or private instead."
        )
    if not content.strip():
        raise InvalidInput("content is empty; say something.")
    check_text(content, "content", limits.max_content_chars, "Split it across several messages.")
    if not MESSAGE_TYPE.match(message_type):
        raise InvalidInput(
            "message_type must be 1-64 letters, digits or _.:- (e.g. 'finding', 'question'); "
            f"got {message_type!r}."
        )
    meta = encode_metadata(metadata, limits)
    reader = visible_to(agent)

    def insert(conn: Conn) -> Callable[[], tuple[int, str] | None]:
        # Taken under the write lock, so timestamps follow commit order like the ids.
        now = utc_now()
        inserted = conn.execute(
            INSERT_MESSAGE,
            (
                session_id,
                agent.agent_id,
                agent.agent_type,
                content,
                vis,
                message_type,
                meta,
                parent_message_id,
                now,
                session_id,
                parent_message_id,
                parent_message_id,
                *reader,
            ),
        )
        # Not looked at before the entry: both go with COMMIT in one trip on PostgreSQL,
        # so the session's row lock is held over no round trip to this process.
        audit.write_posted_entry(conn, audit.entry(agent, action, session_id=session_id, ts=now))

        def posted() -> tuple[int, str] | None:
            row = inserted.fetchone()
            return None if row is None else (int(row[0]), now)

        return posted

    posted = await db.transact_then_read(insert)
    if posted is None:  # nothing was written: say why
        raise await _why_not_posted(db, session_id, parent_message_id)
    message_id, created_at = posted
    return {"message_id": message_id, "session_id": session_id, "created_at": created_at}


async def _why_not_posted(db: Store, session_id: str, parent_message_id: int | None) -> Exception:
    found = await db.read(SELECT_SESSION, (session_id,), small=True)
    if not found:
        return session_not_found(session_id)
    session = found[0]
    if session["status"] != "active":
        return Conflict(
            f"session {session_id} is {session['status']}; reopen it with "
            "update_session(status='active') before posting.",
            status=session["status"],
        )
    if parent_message_id is None:  # closed as the message came, and reopened since
        return Conflict(
            f"session {session_id} was closed as the message arrived and has been reopened "
            "since; nothing was posted: post it again.",
            status=session["status"],
        )
    return NotFound(
        f"parent_message_id {parent_message_id} is not a message of session "
        f"{session_id} that you can see; use an id from get_context of this session.",
        argument="parent_message_id",
    )


async def get_message(db: Store, agent: Agent, session_id: str, message_id: int) -> Message:
    """One message the caller may see. Raises SessionNotFound, NotFound."""
    agent.require("read", "get_message")
    found = await db.read(SELECT_MESSAGE, (*visible_to(agent), session_id, message_id), small=True)
    row = found[0] if found else None
    if row is None:
        await require_session(db, session_id)
        raise NotFound(
            f"no message {message_id} that you can see in session {session_id}.",
            argument="message_id",
        )
    message = message_dict(row)
    await acks.attach(db, [message])
    return message


async def get_context(
    db: Store,
    agent: Agent,
    session_id: str,
    limit: int = DEFAULT_PAGE_LIMIT,
    after_id: int | None = None,
    before_id: int | None = None,
    sender: str | None = None,
    visibility: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Page:
    """A page of visible messages, oldest first.

    No cursor: the latest `limit`. `after_id`: the first `limit` after it. `before_id`: the
    `limit` just before it. `has_more` says whether more lie beyond the page in the paging
    direction (older for latest/before, newer for after). A page also ends early once it
    holds `limits.max_page_chars` of content. Raises SessionNotFound, InvalidInput.
    """
    agent.require("read", "get_context")
    if after_id is not None and before_id is not None:
        raise InvalidInput("give after_id or before_id, not both: one pages forward, one back.")
    if not 1 <= limit <= MAX_CONTEXT_LIMIT:
        raise InvalidInput(f"limit must be 1-{MAX_CONTEXT_LIMIT}; got {limit}.")
    if visibility is not None:
        check_visibility(visibility)
    if sender is None:
        params: tuple[Any, ...] = (*visible_to(agent), session_id, None, None)
        latest, before, after = LATEST, BEFORE, AFTER
    else:
        params = (*visible_to(agent), session_id, sender)
        latest, before, after = LATEST_BY, BEFORE_BY, AFTER_BY
    params += (visibility, visibility)
    if after_id is not None:
        rows = await db.read(after, (*params, after_id, limit + 1), small=True)
    elif before_id is not None:
        rows = await db.read(before, (*params, before_id, limit + 1), small=True)
    else:
        rows = await db.read(latest, (*params, limit + 1), small=True)
    if not rows:
        await require_session(db, session_id)
    has_more = len(rows) > limit
    page: list[Message] = []
    chars = 0
    for row in rows[:limit]:  # nearest first in the paging direction
        chars += len(row["content"])
        if page and chars > limits.max_page_chars:
            has_more = True
            break
        page.append(message_dict(row))
    if after_id is None:
        page.reverse()
    await acks.attach(db, page)
    return {"messages": page, "has_more": has_more}
