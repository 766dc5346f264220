"""The PostgreSQL schema gives the domain's statements what SQLite's does: the same statements,
run on a file migrated by the product and on a migrated PostgreSQL database, leave the same
trigger-kept tables and read the same rows; message ids grow in commit order; NOTIFY only on
commit; SQLite's functions and byte-order collation (separate from test_postgres.py, which
covers the engine, to keep each module short)."""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest

from shared_context_server.blackboard import memory, messages, news, sessions
from shared_context_server.blackboard.identity import Agent
from shared_context_server.blackboard.visibility import visible_to
from shared_context_server.errors import StorageError
from shared_context_server.operations import watch
from shared_context_server.storage.postgres.database import PgDatabase
from shared_context_server.storage.postgres.schema import CHANNEL
from shared_context_server.storage.postgres.unit import to_pyformat
from shared_context_server.storage.sqlite.database import Database
from tests.pg_cluster import Cluster

ALICE, BOB = Agent("alice", "reviewer"), Agent("bob", "writer")
ROOT = Agent("root", "operator", frozenset({"read", "write", "admin"}))
MESSAGE = (
    "INSERT INTO messages (session_id, sender, sender_type, content, visibility, message_type,"
    " metadata, parent_message_id, created_at) VALUES (?, ?, ?, ?, ?, 'message', ?, ?, ?)"
)


def pg_sql(sql: str) -> str:
    """What the PostgreSQL engine runs for a domain statement (see storage/postgres/unit.py)."""
    return to_pyformat(sql).replace(" CROSS JOIN ", " JOIN ")


def _connect(url: str) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(url, autocommit=True, cursor_factory=psycopg.ClientCursor)


@pytest.fixture
def migrated(pg_cluster: Cluster) -> str:
    """A migrated database whose default collation is not byte order (as en_US's is not),
    so that only the schema's own COLLATE "C" can make text sort as in SQLite."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with _connect(pg_cluster.url()) as conn:
        conn.execute(
            f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8'"
            " LOCALE_PROVIDER icu ICU_LOCALE 'und' LOCALE 'C.UTF-8'"
        )
    url = pg_cluster.url(name)

    async def migrate() -> None:
        await (await PgDatabase.open(url)).close()

    anyio.run(migrate)
    return url


@pytest.fixture
def pg(migrated: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    with _connect(migrated) as conn:
        yield conn


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    async def migrate() -> None:
        await (await Database.open(tmp_path / "bb.db")).close()

    anyio.run(migrate)
    conn = sqlite3.connect(tmp_path / "bb.db", isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    yield conn
    conn.close()


class Both:
    """The same statement on the SQLite file and on PostgreSQL."""

    def __init__(self, lite: sqlite3.Connection, pg: psycopg.Connection[tuple[Any, ...]]):
        self.lite, self.pg = lite, pg

    def run(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        self.lite.execute(sql, params)
        self.pg.execute(pg_sql(sql), params)

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[list[Any], list[Any]]:
        cursor = self.pg.execute(pg_sql(sql), params)
        on_pg = [tuple(int(v) if isinstance(v, bool) else v for v in r) for r in cursor]
        return self.lite.execute(sql, params).fetchall(), on_pg

    def same(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        on_lite, on_pg = self.rows(sql, params)
        assert on_pg == on_lite, sql
        return on_lite


@pytest.fixture
def both(lite: sqlite3.Connection, pg: psycopg.Connection[tuple[Any, ...]]) -> Both:
    return Both(lite, pg)


def _session(both: Both, session_id: str, creator: str) -> None:
    both.run(sessions.INSERT_SESSION, (session_id, "purpose", creator, "t0", "t0", None))


def _post(both: Both, session_id: str, sender: Agent, **extra: Any) -> None:
    to = extra.get("to")
    both.run(
        MESSAGE,
        (
            session_id,
            sender.agent_id,
            sender.agent_type,
            extra.get("content", "hello"),
            extra.get("visibility", "public"),
            json.dumps({"to": to}) if to is not None else extra.get("metadata"),
            extra.get("parent"),
            extra.get("at", "t1"),
        ),
    )


def _story(both: Both) -> None:
    """Sessions and messages that take every branch of the triggers SQLite's schema has."""
    _session(both, "s1", "alice")
    _session(both, "s2", "bob")
    _post(both, "s1", BOB)  # 1: bob's mark moves to 1 (nothing between)
    _post(both, "s1", ALICE, to="carol", at="t3")  # 2: alice keeps 0 (1 came since); carol 1
    _post(both, "s1", BOB, to=["dave", "dave", "bob", 7, None], visibility="private")  # 3
    both.run(news.MOVE_MARK["seen_id"], (3, "bob", "s1"))
    _post(both, "s1", BOB, at="t2", visibility="agent_only")  # 4: moves to 4
    _post(both, "s1", ROOT, metadata='{"to": {"x": "erin"}}', parent=2)  # 5: erin from 4
    _post(both, "s1", ALICE, metadata='{"note": 1}', parent=4, content="B then a")  # 6
    _post(both, "s2", ALICE, to="bob", visibility="admin_only")  # 7
    both.run(news.MOVE_MARK["hinted_id"], (1, "bob", "s2"))
    both.run(news.MOVE_MARK["hinted_id"], (7, "alice", "s2"))
    both.run(news.MOVE_MARK["nudged_id"], (5, "carol", "s1"))
    # Two rows in one statement: SQLite fires the row triggers after each row,
    # PostgreSQL after the statement; the marks must come out the same.
    both.run(
        "INSERT INTO messages (session_id, sender, sender_type, content, visibility,"
        " message_type, metadata, created_at) VALUES"
        " ('s2', 'bob', 'writer', 'x', 'public', 'message', '{\"to\": \"zoe\"}', 't4'),"
        " ('s2', 'carol', 'writer', 'y', 'public', 'message', NULL, 't5')"
    )
    both.run(sessions.UPDATE_SESSION, ("completed", "purpose", None, "t6", "s2"))
    both.run(sessions.UPDATE_SESSION, ("completed", "purpose", '{"a": 1}', "t7", "s2"))


KEPT = (
    "SELECT * FROM session_activity ORDER BY session_id, sender, sender_type, visibility",
    "SELECT * FROM inbox_marks ORDER BY agent_id, session_id",
    "SELECT value FROM change_counters WHERE name = 'sessions'",
    "SELECT id, session_id, sender FROM messages ORDER BY id",
)


def test_triggers_keep_activity_inbox_and_counter_as_sqlite_does(both: Both) -> None:
    _story(both)
    for sql in KEPT:
        assert both.same(sql)
    both.run("DELETE FROM messages WHERE id IN (6, 4)")
    both.run("DELETE FROM messages WHERE id = 3")
    for sql in KEPT:
        both.same(sql)
    both.run("DELETE FROM sessions WHERE id = 's2'")
    for sql in KEPT:
        both.same(sql)
    assert both.same(KEPT[2]) == [(4,)]  # two created, one status change, one deleted


def test_the_domains_reads_return_what_they_return_on_sqlite(both: Both) -> None:
    _story(both)
    for agent in (ALICE, BOB, ROOT, Agent("carol", "writer"), Agent("erin")):
        params = news.news_params(agent)
        for mark in ("seen_id", "hinted_id", "nudged_id"):
            both.same(news.NEWS[mark], (*params, 50))
            both.same(news.BRIEF[mark], (*params, 50))
        both.same(news.ADDRESSED, (*params, agent.agent_id, agent.agent_id, 50))
        seen = visible_to(agent)
        on_lite, on_pg = both.rows(sessions.SESSION_ACTIVITY, ("s1", *seen))
        assert [r[:2] for r in on_pg] == [r[:2] for r in on_lite]
        assert sorted(json.loads(on_pg[0][2])) == sorted(json.loads(on_lite[0][2]))
        both.same(watch.SESSION_OVERVIEW, (*seen, "all", "all"))
        both.same(watch.COUNT_VISIBLE, ("s1", *seen))
        for page in (messages.LATEST, messages.AFTER):
            cursor = () if page is messages.LATEST else (2,)
            both.same(page, (*seen, "s1", None, None, None, None, *cursor, 10))
        both.same(messages.LATEST_BY, (*seen, "s1", "bob", None, None, 10))
    both.same(sessions.LIST_SESSIONS, (sessions.NO_CURSOR, 10))
    both.same(sessions.LIST_SESSIONS_BY_STATUS, ("completed", 2, 10))


def test_memory_keys_sizes_and_scopes_read_as_on_sqlite(both: Both) -> None:
    _session(both, "s1", "alice")
    for session_id, key, value in ((None, "b", "é"), ("s1", "a", "xyz"), (None, "B", "\u2603")):
        both.run(memory.INSERT, ("alice", session_id, key, value, "t0", "t0", None))
    listed = ("alice", "t0", 0, "", "", "")
    rows = both.same(memory.LIST_ALL, (*listed, "", 10))
    assert [(r[0], r[3]) for r in rows] == [("B", 3), ("b", 2), ("a", 3)]
    both.same(memory.LIST_SCOPE, ("alice", "t0", 0, "", "", "B", "", "B", 10))
    both.same(memory.ALL_KEYS, (None, None, "t0", None, None, None, None, 10))
    both.same(memory.FIND, ("alice", "", "b"))
    with pytest.raises(psycopg.errors.UniqueViolation):  # NULL scope counts as '' there too
        both.pg.execute(pg_sql(memory.INSERT), ("alice", None, "b", "v", "t", "t", None))


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT max(1, 2), max(2, 1), max(3, NULL), max(NULL, 3)",
        "SELECT max('B', 'a'), max('a', 'B'), max('é', 'z'), max('x', NULL)",
        "SELECT ifnull(NULL, 'x'), ifnull('y', 'x'), ifnull(NULL, 2)",
        "SELECT length(CAST('é\u2603' AS BLOB)), length('é\u2603')",
        "SELECT json_group_array(x) FROM (SELECT 'b' AS x UNION ALL SELECT 'a\"\\') AS v",
        "SELECT json_group_array(x) FROM (SELECT 'b' AS x) AS v WHERE 1 = 0",
        "SELECT json_group_array(DISTINCT x) FROM (SELECT 'b' AS x UNION ALL SELECT 'b') AS v",
        *(
            f"SELECT CAST(value AS TEXT), type FROM json_each('{doc}', '{path}')"  # noqa: S608
            for doc, path in (
                ('{"to": "bob"}', "$.to"),
                # A nested container's text keeps its spacing here; SQLite's is minified.
                ('{"to": ["bob", 3, -2.5, true, false, null, {"a":1}, ["c"]]}', "$.to"),
                ('{"to": {"k": "v", "n": 1}}', "$.to"),
                ('{"a": {"b": "c"}}', "$.a.b"),
                ('{"x": 1}', "$.to"),
                ('[1, "x"]', "$"),
                ("{}", "$.to"),
            )
        ),
    ],
)
def test_sqlites_functions_return_what_sqlite_returns(both: Both, sql: str) -> None:
    both.same(sql)


def test_text_sorts_and_compares_in_byte_order_as_in_sqlite(both: Both) -> None:
    for session_id in ("a", "B", "_x", "é", "Z", "b1", "b10", "b2"):
        _session(both, session_id, session_id)
    order = both.same("SELECT id FROM sessions ORDER BY id")
    assert [r[0] for r in order] == ["B", "Z", "_x", "a", "b1", "b10", "b2", "é"]
    assert both.pg.execute("SELECT 'B' < 'a'").fetchone() == (False,)  # the database's own
    both.same("SELECT id FROM sessions WHERE id > 'Z' ORDER BY id DESC")
    both.same("SELECT max(id), min(created_by) FROM sessions")


def test_explicit_ids_are_kept_and_later_ids_never_collide(pg: Any) -> None:
    pg.execute(pg_sql(sessions.INSERT_SESSION), ("s", "p", "a", "t", "t", None))
    params = ("s", "a", "t", "x", "public", None, None, "t")
    insert = pg_sql(MESSAGE + " RETURNING id")
    explicit = pg_sql(MESSAGE.replace("(session_id,", "(id, session_id,").replace("(?,", "(?, ?,"))
    pg.execute(explicit, (1, *params))  # before the sequence ever gave one
    assert pg.execute(insert, params).fetchone() == (2,)
    pg.execute(explicit, (100, *params))
    pg.execute(explicit, (50, *params))  # below the sequence: kept, and moves nothing back
    assert pg.execute(insert, params).fetchone() == (101,)
    ids = pg.execute("SELECT id FROM messages ORDER BY id").fetchall()
    assert [i for (i,) in ids] == [1, 2, 50, 100, 101]


def test_concurrent_writers_ids_reach_a_pager_in_order_and_none_is_skipped(
    migrated: str,
) -> None:
    with _connect(migrated) as conn:
        conn.execute(pg_sql(sessions.INSERT_SESSION), ("s", "p", "a", "t", "t", None))
    writers, each = 6, 15
    done = threading.Event()
    committed: list[int] = []
    failures: list[BaseException] = []

    def write(n: int) -> None:
        try:
            with psycopg.connect(migrated, cursor_factory=psycopg.ClientCursor) as conn:
                for i in range(each):
                    row = conn.execute(
                        pg_sql(MESSAGE + " RETURNING id"),
                        ("s", f"w{n}", "t", f"{i}", "public", None, None, "t"),
                    ).fetchone()
                    time.sleep(random.uniform(0, 0.004))  # holds its transaction open
                    conn.commit()
                    committed.append(int(row[0]) if row else 0)
        except BaseException as error:
            failures.append(error)

    def page() -> list[int]:
        # What the long poll and after_id paging do: read past the last id seen.
        seen: list[int] = []
        with _connect(migrated) as conn:
            while True:
                finished = done.is_set()
                rows = conn.execute(
                    pg_sql("SELECT id FROM messages WHERE session_id = ? AND id > ? ORDER BY id"),
                    ("s", seen[-1] if seen else 0),
                ).fetchall()
                seen.extend(i for (i,) in rows)
                if finished:
                    return seen

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    result: list[list[int]] = []
    pager = threading.Thread(target=lambda: result.append(page()))
    pager.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    done.set()
    pager.join(timeout=120)
    assert not failures
    assert len(committed) == writers * each
    assert result[0] == sorted(committed)  # every id, none skipped by the pager


def test_notifications_arrive_only_on_commit_and_say_what_changed(migrated: str) -> None:
    with _connect(migrated) as listener, _connect(migrated) as writer:
        listener.execute(f"LISTEN {CHANNEL}")

        def heard(expected: int = 0) -> list[str]:
            # Waits (bounded) for what is expected, then briefly for anything more.
            notes = listener.notifies(timeout=30, stop_after=expected) if expected else ()
            more = listener.notifies(timeout=0.3, stop_after=10)
            return [n.payload for n in (*notes, *more)]

        with writer.transaction():
            writer.execute(pg_sql(sessions.INSERT_SESSION), ("s", "p", "a", "t", "t", None))
            writer.execute(pg_sql(MESSAGE), ("s", "a", "t", "x", "public", None, None, "t"))
            assert heard() == []
        assert heard(2) == ["s s", "m s 1"]
        with pytest.raises(ZeroDivisionError), writer.transaction():
            writer.execute(pg_sql(MESSAGE), ("s", "a", "t", "x", "public", None, None, "t"))
            _ = 1 / 0
        writer.execute("UPDATE sessions SET updated_at = 'later', metadata = '{}'")
        writer.execute(pg_sql(sessions.UPDATE_SESSION), ("completed", "p", None, "t", "s"))
        writer.execute("DELETE FROM sessions")
        assert heard(2) == ["s s", "s s"]  # the rolled back message and the touch: nothing


def test_a_role_that_cannot_create_pg_trgm_gets_one_line_saying_what_to_do(
    pg_url: str,
) -> None:
    role = f"plain_{uuid.uuid4().hex[:8]}"
    with _connect(pg_url) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
    plain = pg_url.replace("postgres@", f"{role}@")

    async def open_as_plain() -> None:
        await (await PgDatabase.open(plain)).close()

    with pytest.raises(StorageError, match="CREATE EXTENSION pg_trgm") as refused:
        anyio.run(open_as_plain)
    assert "permission denied" in str(refused.value)
    assert "\n" not in str(refused.value)
    with _connect(pg_url) as admin:  # a superuser made the extension; the schema is next
        admin.execute("CREATE EXTENSION pg_trgm")
    with pytest.raises(StorageError, match="must own the database") as refused:
        anyio.run(open_as_plain)
    assert "permission denied for schema public" in str(refused.value)


def test_search_asks_for_the_exact_text_the_trigram_index_holds() -> None:
    from shared_context_server.storage.postgres.schema import SEARCH_TEXT
    from shared_context_server.storage.postgres.search import TRIGRAM_TEXT

    assert (
        f"({SEARCH_TEXT})".replace("content", "m.content")
        .replace("sender", "m.sender")
        .replace("metadata", "m.metadata")
        == TRIGRAM_TEXT
    )
