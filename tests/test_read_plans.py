"""Reads that must cost the same at any size: each starts its walk down an index at the
cursor and reads rows only for what it returns (the planner's own account, on a real file:
the plan tests are SQLite's; the pages they give are checked on both engines).
The figures are bench_scale.py's; here, the plans they rely on, and the pages they give."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from shared_context_server.blackboard import memory, search, sessions
from shared_context_server.storage.seam import Store
from shared_context_server.storage.sqlite.database import Database
from shared_context_server.storage.sqlite.search import best_holding
from tests.support import ALICE, BOB


def plan(path: Path, sql: str) -> str:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("EXPLAIN QUERY PLAN " + sql, [None] * sql.count("?")).fetchall()
    finally:
        conn.close()
    return "\n".join(row[3] for row in rows)


async def test_a_status_page_of_list_sessions_starts_at_the_cursor_in_its_status(
    sqlite_db: Database,
) -> None:
    # Most sessions end archived: walking all of them newest first for the active few
    # costs the whole history.
    assert "INDEX sessions_listing (status=? AND rowid<?)" in plan(
        sqlite_db.path, sessions.LIST_SESSIONS_BY_STATUS
    )
    assert "INTEGER PRIMARY KEY (rowid<?)" in plan(sqlite_db.path, sessions.LIST_SESSIONS)


async def test_list_sessions_pages_one_status_among_many_others(db: Store) -> None:
    made = [(await sessions.create_session(db, ALICE, f"task {i}"))["id"] for i in range(12)]
    for sid in made[::3]:
        await sessions.update_session(db, ALICE, sid, status="completed")
    for status, want in (
        ("completed", made[::3]),
        ("active", [s for s in made if s not in made[::3]]),
    ):
        seen: list[str] = []
        cursor = None
        while True:
            page = await sessions.list_sessions(db, BOB, status=status, limit=2, cursor=cursor)
            seen += [s["id"] for s in page["sessions"]]
            assert all(s["status"] == status for s in page["sessions"])
            if (cursor := page["next_cursor"]) is None:
                break
        assert seen == want[::-1]


async def test_list_memory_starts_at_the_cursor_in_its_scope(sqlite_db: Database) -> None:
    # The agent's other scopes and the keys before the cursor are not walked.
    assert "INDEX memory_key (agent_id=? AND <expr>=? AND key>?)" in plan(
        sqlite_db.path, memory.LIST_SCOPE
    )
    assert "INDEX memory_key (agent_id=? AND <expr>>?)" in plan(sqlite_db.path, memory.LIST_ALL)
    for sql in (memory.LIST_SCOPE, memory.LIST_ALL):
        assert "TEMP B-TREE" not in plan(sqlite_db.path, sql)  # already in key order


async def test_list_memory_pages_one_scope_and_honours_a_cursor_from_another(
    db: Store,
) -> None:
    sid = (await sessions.create_session(db, ALICE, "review"))["id"]
    for i in range(7):
        await memory.set_memory(db, ALICE, f"k{i}", i)
        await memory.set_memory(db, ALICE, f"k{i}", i, session_id=sid)
    seen: list[str] = []
    cursor = None
    while True:
        page = await memory.list_memory(db, ALICE, sid, limit=3, cursor=cursor)
        seen += [e["key"] for e in page["entries"]]
        assert {e["session_id"] for e in page["entries"]} == {sid}
        if (cursor := page["next_cursor"]) is None:
            break
    assert seen == [f"k{i}" for i in range(7)]
    # A cursor holds (scope, key): one from the global scope ('' sorts first) lets every
    # session key follow; one from the session's scope past its last key, none.
    global_page = await memory.list_memory(db, ALICE, None, limit=2)
    after_global = await memory.list_memory(db, ALICE, sid, cursor=global_page["next_cursor"])
    assert [e["key"] for e in after_global["entries"]] == [f"k{i}" for i in range(7)]
    all_page = await memory.list_memory(db, ALICE, "all", limit=12)
    after_most = await memory.list_memory(db, ALICE, None, cursor=all_page["next_cursor"])
    assert after_most["entries"] == []


@pytest.mark.parametrize("trigrams", [1, 3])
async def test_search_reads_only_the_sessions_matches_and_leaves_bm25_alone(
    sqlite_db: Database, trigrams: int
) -> None:
    # bm25 read every match's column sizes to rank it, and looking matches up by id read
    # every match's row, other sessions' included: at 1M messages most of a search.
    sql = best_holding(search.candidate_query(ALICE, "s", "query", None), trigrams)
    shown = plan(sqlite_db.path, sql)
    assert "INDEX messages_session (session_id=? AND id=?" in shown
    assert "PRIMARY KEY" not in shown
    assert "rank" not in sql
