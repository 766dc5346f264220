"""get_session and the `sessions` overview count from per-session groups (migration 7);
those counts must equal a count over the messages themselves, whatever wrote them."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

from shared_context_server.blackboard import messages, sessions
from shared_context_server.blackboard.identity import VISIBLE_SQL, Agent, visible_to
from shared_context_server.operations.import_read import ExportReader
from shared_context_server.operations.import_write import import_messages
from shared_context_server.operations.transfer import export_session
from shared_context_server.operations.watch import count_visible, session_overview
from shared_context_server.storage.seam import Store
from shared_context_server.storage.sqlite.database import Database
from shared_context_server.storage.sqlite.schema import MIGRATIONS
from tests.support import ADMIN, ALICE, BOB, CAROL

VIEWERS = (ALICE, BOB, CAROL, ADMIN)
DIRECT = (
    "SELECT count(*), max(created_at), json_group_array(DISTINCT sender)"  # noqa: S608
    f" FROM messages m WHERE m.session_id = ? AND {VISIBLE_SQL}"
)


async def assert_counts_are_exact(db: Store, session_id: str) -> None:
    overview = {row["id"]: row for row in await session_overview(db, ADMIN)}
    for viewer in VIEWERS:
        count, last, senders = (await db.read(DIRECT, (session_id, *visible_to(viewer))))[0]
        detail = await sessions.get_session(db, viewer, session_id)
        assert detail["message_count"] == count, viewer
        assert detail["last_message_at"] == last, viewer
        assert sorted(set(detail["participants"])) == sorted(set(json.loads(senders))), viewer
        assert await count_visible(db, viewer, session_id) == count, viewer
    everything = (await db.read(DIRECT, (session_id, *visible_to(ADMIN))))[0]
    assert overview[session_id]["message_count"] == everything[0]
    assert overview[session_id]["last_message_at"] == everything[1]


async def post_every_kind(db: Store, session_id: str) -> None:
    first = await messages.add_message(db, ALICE, session_id, "public from alice")
    await messages.add_message(db, BOB, session_id, "public from bob")
    await messages.add_message(db, ALICE, session_id, "alice only", visibility="private")
    await messages.add_message(db, BOB, session_id, "reviewers", visibility="agent_only")
    await messages.add_message(db, CAROL, session_id, "writers", visibility="agent_only")
    await messages.add_message(db, ADMIN, session_id, "admins", visibility="admin_only")
    await messages.add_message(
        db, CAROL, session_id, "a reply", parent_message_id=first["message_id"]
    )


async def test_counts_match_the_messages_for_every_viewer_and_visibility(db: Store) -> None:
    sid = (await sessions.create_session(db, ALICE, "counted"))["id"]
    await assert_counts_are_exact(db, sid)  # empty: zero, no last time, nobody
    await post_every_kind(db, sid)
    await assert_counts_are_exact(db, sid)
    await messages.add_message(db, ALICE, sid, "and one more")
    await assert_counts_are_exact(db, sid)


async def test_imported_sessions_are_counted_and_deleted_ones_leave_no_groups(
    db: Store,
) -> None:
    sid = (await sessions.create_session(db, ALICE, "to copy"))["id"]
    await post_every_kind(db, sid)
    lines: list[str] = []
    await export_session(db, ADMIN, sid, lines.append)
    reader = ExportReader(io.BytesIO("".join(lines).encode()), "x.jsonl")
    copy = (await import_messages(db, reader.header, reader.messages()))["session_id"]
    await assert_counts_are_exact(db, copy)
    await db.transact(lambda c: c.execute("DELETE FROM sessions WHERE id = ?", (sid,)))
    left = await db.read("SELECT count(*) FROM session_activity WHERE session_id = ?", (sid,))
    assert left[0][0] == 0
    await assert_counts_are_exact(db, copy)


async def test_a_file_from_before_the_groups_existed_is_counted_after_migrating(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for version in range(1, 6):
        for statement in MIGRATIONS[version]:
            conn.execute(statement)
    conn.execute("INSERT INTO sessions VALUES ('s1', 'p', 'active', 'alice', 't0', 't0', NULL)")
    rows = [
        ("alice", "reviewer", "public", "t1"),
        ("bob", "reviewer", "private", "t2"),
        ("carol", "writer", "agent_only", "t3"),
        ("alice", "reviewer", "public", "t4"),
    ]
    conn.executemany(
        "INSERT INTO messages (session_id, sender, sender_type, content, visibility,"
        " message_type, created_at) VALUES ('s1', ?, ?, 'text', ?, 'message', ?)",
        rows,
    )
    conn.execute("PRAGMA user_version = 5")
    conn.commit()
    conn.close()
    db = await Database.open(path)
    try:
        await assert_counts_are_exact(db, "s1")
        detail = await sessions.get_session(db, Agent("dave", "reviewer"), "s1")
        assert (detail["message_count"], detail["last_message_at"]) == (2, "t4")
    finally:
        await db.close()
