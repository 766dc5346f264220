"""Writing an export into a database: a batch of messages per short transaction, so that
no agent's write waits long behind an import of any size, and a record of what was
written, so that a rerun of an interrupted import continues instead of repeating.

Why a record rather than a content hash: two messages may well have the same text, sender
and time, and the reply-to links of later batches must find the new id of an earlier
message. So the `imports` table holds one row per file (its key is a hash of the file's
header, the same for both forms of one export) with the session it went into, and
`imported_messages` holds each message's id in the file beside the id it was given. A
rerun skips every message at or below the highest recorded one: batches commit in file
order, so nothing is skipped that was not written, and nothing is written twice.

Messages get fresh ids in their original order; the session keeps its id unless the
target already has one by that name. A reply to a message the file does not hold (a
narrower export) loses its link, and is counted. A hand-off's acknowledgements take the
times the file records, in the transaction that writes the message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

import anyio

from shared_context_server.blackboard import audit
from shared_context_server.blackboard.sessions import SESSION_EXISTS, new_session_id
from shared_context_server.clock import utc_now
from shared_context_server.operations.import_read import Header, ImportedMessage
from shared_context_server.storage.seam import Conn, Store
from shared_context_server.terminal import counted

# Messages per transaction: a few tens of milliseconds of SQLite's write lock.
BATCH = 200

INSERT_SESSION = (
    "INSERT INTO sessions (id, purpose, status, created_by, created_at, updated_at, metadata)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
# Each engine gives the id, as for a posted message: ids keep growing in commit order.
# A batch looks at no result until its end, so on PostgreSQL it is one round trip, not
# one per message: a reply's parent is found in SQL (NULL when the file had no such
# message), and the message just written is the session's newest, because the batch
# holds the session (its row lock on PostgreSQL, the write lock on SQLite).
INSERT_MESSAGE = (
    "INSERT INTO messages (session_id, sender, sender_type, content, visibility,"
    " message_type, metadata, parent_message_id, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, (SELECT message_id FROM imported_messages"
    "  WHERE session_id = ? AND original_id = ?), ?)"
)
NEWEST = "(SELECT max(id) FROM messages WHERE session_id = ?)"
SELECT_IMPORT = "SELECT session_id, messages, dropped_links, finished_at FROM imports WHERE key = ?"
INSERT_IMPORT = "INSERT INTO imports (key, session_id, started_at) VALUES (?, ?, ?)"
LAST_IMPORTED = "SELECT max(original_id) FROM imported_messages WHERE session_id = ?"
INSERT_IMPORTED = (
    f"INSERT INTO imported_messages (session_id, original_id, message_id) VALUES (?, ?, {NEWEST})"  # noqa: S608 (constants)
)
# The batch's replies whose parent was not found: their link is dropped.
_DROPPED = (
    "(SELECT count(*) FROM imported_messages i JOIN messages m ON m.id = i.message_id"
    " WHERE i.session_id = ? AND i.original_id IN ({}) AND m.parent_message_id IS NULL)"
)
COUNT_BATCH = "UPDATE imports SET messages = messages + ?, dropped_links = dropped_links + {}"
COUNTED = "SELECT dropped_links FROM imports WHERE key = ?"
# The trigger that inserted the message made its `addressed` rows, none acknowledged.
ACKNOWLEDGED = (
    f"UPDATE addressed SET acknowledged_at = ? WHERE agent_id = ? AND message_id = {NEWEST}"  # noqa: S608 (constants)
)
FINISH = "UPDATE imports SET finished_at = ? WHERE key = ?"
# The session is written active, so that every batch may post into it (PostgreSQL refuses
# a post to a closed session, as a tool would), and takes its exported status at the end.
SET_STATUS = "UPDATE sessions SET status = ?, updated_at = ? WHERE id = ?"

Progress = Callable[[int], None]


@dataclass
class _Started:
    session_id: str
    messages: int
    dropped: int
    finished: bool
    after: int  # the highest id in the file already written


def _encode(metadata: dict[str, Any] | None) -> str | None:
    if metadata is None:
        return None
    return json.dumps(metadata, separators=(",", ":"), ensure_ascii=False)


def _start(header: Header) -> Callable[[Conn], _Started]:
    session = header.session

    def start(conn: Conn) -> _Started:
        row = conn.execute(SELECT_IMPORT, (header.key,)).fetchone()
        if row is not None:
            last = conn.execute(LAST_IMPORTED, (row[0],)).fetchone()
            after = int(last[0]) if last and last[0] is not None else 0
            return _Started(row[0], int(row[1]), int(row[2]), row[3] is not None, after)
        session_id = session.id
        if conn.execute(SESSION_EXISTS, (session_id,)).fetchone():
            session_id = new_session_id()
        conn.execute(
            INSERT_SESSION,
            (
                *(session_id, session.purpose, "active", session.created_by),
                *(session.created_at, session.updated_at, _encode(session.metadata)),
            ),
        )
        conn.execute(INSERT_IMPORT, (header.key, session_id, utc_now()))
        return _Started(session_id, 0, 0, False, 0)

    return start


def _write_batch(
    key: str, session_id: str, batch: list[ImportedMessage]
) -> Callable[[Conn], Callable[[], int]]:
    """A batch's unit: how to read, after COMMIT, the import's dropped links so far."""

    def write(conn: Conn) -> Callable[[], int]:
        for m in batch:
            values = (
                *(session_id, m.sender, m.sender_type, m.content, m.visibility),
                *(m.message_type, _encode(m.metadata), session_id, m.parent_message_id),
                m.created_at,
            )
            conn.execute(INSERT_MESSAGE, values)
            conn.execute(INSERT_IMPORTED, (session_id, m.id, session_id))
            for agent_id, when in (m.acknowledged or {}).items():
                conn.execute(ACKNOWLEDGED, (when, agent_id, session_id))
        replies = [m.id for m in batch if m.parent_message_id is not None]
        if replies:
            dropped = _DROPPED.format(", ".join("?" * len(replies)))
            conn.execute(
                COUNT_BATCH.format(dropped) + " WHERE key = ?",
                (len(batch), session_id, *replies, key),
            )
        else:
            conn.execute(COUNT_BATCH.format("0") + " WHERE key = ?", (len(batch), key))
        counted = conn.execute(COUNTED, (key,))

        def read() -> int:
            row = counted.fetchone()
            return int(row[0]) if row else 0

        return read

    return write


def _finish(
    key: str, session_id: str, messages: int, status: str, updated_at: str
) -> Callable[[Conn], None]:
    def finish(conn: Conn) -> None:
        conn.execute(FINISH, (utc_now(), key))
        conn.execute(SET_STATUS, (status, updated_at, session_id))
        audit.write_entry(
            conn,
            audit.entry(
                audit.OPERATOR,
                "import",
                session_id=session_id,
                target=f"session:{session_id}",
                detail=counted(messages, "messages"),
            ),
        )

    return finish


def _batches(messages: Iterable[ImportedMessage], after: int) -> Iterator[list[ImportedMessage]]:
    pending = (m for m in messages if m.id > after)
    while batch := list(islice(pending, BATCH)):
        yield batch


async def import_messages(
    db: Store,
    header: Header,
    messages: Iterable[ImportedMessage],
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write the session and its `messages` (checked, in id order), a batch per
    transaction, or continue an earlier import of the same file.

    On SQLite the importer rests between batches as long as the batch held the write lock,
    so a waiting agent's writer gets the lock within its busy bound; PostgreSQL's writers
    to other sessions never wait for it. Raises what the store raises; what was committed
    stays, and a rerun continues from it.
    """
    started = await db.transact(_start(header))
    result = {
        "session_id": started.session_id,
        "original_session_id": header.session.id,
        "view": header.view,
        "complete": header.complete,
        "resumed": started.messages > 0 and not started.finished,
        "already_imported": started.finished,
    }
    written, dropped = started.messages, started.dropped
    if not started.finished:
        for batch in _batches(messages, started.after):
            began = time.monotonic()
            dropped = await db.transact_then_read(
                _write_batch(header.key, started.session_id, batch)
            )
            written += len(batch)
            if progress:
                progress(written)
            if db.engine == "sqlite":
                await anyio.sleep(time.monotonic() - began)
        await db.transact(
            _finish(
                header.key,
                started.session_id,
                written,
                header.session.status,
                header.session.updated_at,
            )
        )
        # Indexed now, in short batches after the import's own transactions: no server
        # process may run on this file for a while, and search reads only a bounded tail.
        await db.index_search()
    return {**result, "messages": written, "dropped_reply_links": dropped}
