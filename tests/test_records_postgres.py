"""The records toolset on PostgreSQL only: raw queries confined to the shared tables
under real attacks through a real MCP session, a server role that cannot be confined,
and audit entries in the same transaction as the records write."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from shared_context_server.blackboard.records import rows
from shared_context_server.blackboard.records.location import RecordsStore
from shared_context_server.blackboard.records.raw_query import execute_raw_query
from shared_context_server.config import Settings
from shared_context_server.errors import BlackboardError
from shared_context_server.storage.opener import open_records
from tests.pg_cluster import Cluster
from tests.support import ALICE, BOB, connect, fails, ok

RECORDS = frozenset({"core", "records"})
# Each is refused, and afterwards the same process still writes the blackboard, and raw
# queries still run as the confined role within their time limit.
ATTACKS = [
    ("SELECT * FROM public.messages", "INVALID_INPUT"),
    ("SELECT * FROM public.audit_log", "INVALID_INPUT"),
    ("SELECT * FROM messages", "NOT_FOUND"),
    ("SET ROLE postgres", "INVALID_INPUT"),
    ("RESET ROLE", "INVALID_INPUT"),
    ("SELECT set_config('role', 'postgres', false)", "INVALID_INPUT"),
    ("SELECT set_config('statement_timeout', '0', false)", "INVALID_INPUT"),
    ("SELECT pg_sleep(10)", "LIMIT_EXCEEDED"),
    ("CREATE TABLE evil (a int)", "INVALID_INPUT"),
    ("DROP TABLE notes", "INVALID_INPUT"),
    ("ALTER TABLE notes ADD COLUMN x int", "INVALID_INPUT"),
    ("SELECT * INTO evil FROM notes", "INVALID_INPUT"),
    ("CREATE TEMP TABLE evil (a int)", "INVALID_INPUT"),
    ("COPY notes TO PROGRAM 'touch /tmp/scs-records-pwned'", "INVALID_INPUT"),
    ("SELECT pg_read_file('/etc/passwd')", "INVALID_INPUT"),
    ("SELECT 1; DELETE FROM public.messages", "INVALID_INPUT"),
    ("DO $$ BEGIN DELETE FROM public.messages; END $$", "INVALID_INPUT"),
    ("DELETE FROM public.messages", "INVALID_INPUT"),
    ("UPDATE pg_settings SET setting = 'postgres' WHERE name = 'role'", "INVALID_INPUT"),
    ("SELECT query_to_xml('SELECT * FROM public.messages', true, true, '')", "INVALID_INPUT"),
]


def settings(url: str, **more: Any) -> Settings:
    return Settings(db_path=url, agent_id="alice", agent_id_source="flag", toolsets=RECORDS, **more)


async def test_raw_query_attacks_are_refused_and_the_process_keeps_working(pg_url: str) -> None:
    import psycopg

    async with connect("2026", settings(pg_url, allow_raw_writes=True)) as s:
        await ok(s, "create_table", table_name="notes", columns={"text": "TEXT"})
        await ok(s, "insert_record", table_name="notes", data={"text": "keep"})
        for n, (query, code) in enumerate(ATTACKS):
            await fails(s, "execute_raw_query", code, query=query)
            await ok(s, "create_session", purpose=f"after {n}: {query}")
            who = await ok(s, "execute_raw_query", query="SELECT current_user")
            assert who["rows"] == [["shared_context_records"]], query
        with psycopg.connect(pg_url) as conn:
            made = conn.execute("SELECT count(*) FROM sessions").fetchone()
        assert made == (len(ATTACKS),)
        notes = await ok(s, "query_records", table_name="notes")
        assert [r["text"] for r in notes["records"]] == ["keep"]
        # Raw writes to the shared tables still work as allowed.
        wrote = await ok(s, "execute_raw_query", query="INSERT INTO notes (text) VALUES ('x')")
        assert wrote["changes"] == 1
        log = await ok(s, "get_audit_log", action="execute_raw_query")
        assert [(e["target"], e["detail"]) for e in log["entries"]] == [("table:notes", "1 row")]
    assert not Path("/tmp/scs-records-pwned").exists()


async def test_a_role_that_cannot_be_confined_refuses_raw_queries_and_says_why(
    pg_cluster: Cluster,
) -> None:
    import psycopg

    name = f"plain_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN NOCREATEROLE")
        conn.execute(f"CREATE DATABASE {name} OWNER {name}")
    url = pg_cluster.url(name).replace("postgres@", f"{name}@")
    async with connect("2026", settings(url)) as s:
        await ok(s, "create_table", table_name="notes", columns={"text": "TEXT"})
        await ok(s, "insert_record", table_name="notes", data={"text": "fine"})
        text = await fails(s, "execute_raw_query", "PERMISSION_DENIED", query="SELECT 1")
        assert "could not be confined" in text
        assert "CREATE ROLE shared_context_records LOGIN PASSWORD" in text
        assert f"ALTER ROLE {name} CREATEROLE" in text
        listed = await ok(s, "list_tables")
        assert listed["tables"] == [{"table_name": "notes", "row_count": 1}]
        # What the message tells a DBA to run is enough, without restarting the server.
        with psycopg.connect(pg_cluster.url(name), autocommit=True) as conn:
            conn.execute(f"ALTER ROLE {name} CREATEROLE")
        counted = await ok(s, "execute_raw_query", query="SELECT count(*) FROM notes")
        assert counted["rows"] == [[1]]
        await fails(s, "execute_raw_query", "INVALID_INPUT", query="TABLE public.sessions")


async def test_a_records_write_and_its_audit_entry_commit_together(pg_url: str) -> None:
    """The audit entry is written in the records write's transaction: when it cannot be
    written, the write does not happen either (on SQLite it follows the commit)."""
    import psycopg

    store = RecordsStore.of(await open_records(pg_url))
    try:
        store.audit_into(store.db)
        await rows.create_table(store, ALICE, "notes", {"text": "TEXT"})
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$"
            )
            conn.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON audit_log"
                " FOR EACH ROW EXECUTE FUNCTION refuse()"
            )
        with pytest.raises(BlackboardError):
            await rows.insert_record(store, ALICE, "notes", {"text": "unaudited"})
        assert (await rows.query_records(store, ALICE, "notes"))["records"] == []
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("DROP TRIGGER refuse ON audit_log")
        await rows.insert_record(store, ALICE, "notes", {"text": "audited"})
        logged = await store.db.read("SELECT action, target, detail FROM audit_log ORDER BY id")
        assert [tuple(r) for r in logged] == [
            ("create_table", "table:notes", "0 rows"),
            ("insert_record", "table:notes", "1 row"),
        ]
    finally:
        await store.close()


async def test_each_records_write_with_its_audit_entry_is_one_round_trip(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """insert_record, update_record and delete_record send the change, its audit entry and
    COMMIT in one query: a claimed row's lock is held over no trip to this process. The
    entry still counts the rows each changed."""
    from shared_context_server.storage.postgres.unit import PgUnit

    store = RecordsStore.of(await open_records(pg_url))
    try:
        store.audit_into(store.db)
        await rows.create_table(store, ALICE, "tasks", {"title": "TEXT", "owner": "TEXT"})
        trips: list[str] = []
        send_held = PgUnit.send_held

        def counted(unit: PgUnit, tail: str = "") -> None:
            trips.append(tail)
            send_held(unit, tail)

        monkeypatch.setattr(PgUnit, "send_held", counted)
        for title in ("a", "b", "c"):
            await rows.insert_record(store, ALICE, "tasks", {"title": title})
        claim = await rows.update_record(store, ALICE, "tasks", {"owner": None}, {"owner": "al"})
        again = await rows.update_record(store, BOB, "tasks", {"owner": None}, {"owner": "bob"})
        gone = await rows.delete_record(store, ALICE, "tasks", {"title": "a"})
        assert (claim, again, gone) == ({"count": 3}, {"count": 0}, {"count": 1})
        assert trips == ["COMMIT"] * 6
        logged = await store.db.read("SELECT action, agent_id, detail FROM audit_log ORDER BY id")
        assert [tuple(r) for r in logged][1:] == [
            *[("insert_record", "alice", "1 row")] * 3,
            ("update_record", "alice", "3 rows"),
            ("update_record", "bob", "0 rows"),
            ("delete_record", "alice", "1 row"),
        ]
    finally:
        await store.close()


async def test_create_table_is_two_round_trips_and_grants_the_confined_role(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name's check, then the table, its grant, its description, its audit entry
    and COMMIT in one query (six before); raw queries reach the new table."""
    from shared_context_server.storage.postgres.unit import PgUnit

    store = RecordsStore.of(await open_records(pg_url))
    try:
        store.audit_into(store.db)
        await execute_raw_query(store, ALICE, "SELECT 1")  # makes the confined login
        trips: list[str] = []
        send_held = PgUnit.send_held

        def counted(unit: PgUnit, tail: str = "") -> None:
            trips.append(tail)
            send_held(unit, tail)

        monkeypatch.setattr(PgUnit, "send_held", counted)
        made = await rows.create_table(
            store, ALICE, "Files", {"path": "TEXT NOT NULL UNIQUE", "at": "DATETIME"}
        )
        assert trips == ["", "COMMIT"]
        assert made == {
            "table_name": "Files",
            "columns": [
                {"name": "id", "type": "INTEGER", "not_null": True, "primary_key": True,
                 "unique": False},
                {"name": "path", "type": "TEXT", "not_null": True, "primary_key": False,
                 "unique": True},
                {"name": "at", "type": "DATETIME", "not_null": False, "primary_key": False,
                 "unique": False},
            ],
        }  # fmt: skip
        await rows.insert_record(store, ALICE, "files", {"path": "a.py"})
        found = await execute_raw_query(store, ALICE, 'SELECT path FROM "Files"')
        assert found["rows"] == [["a.py"]]
    finally:
        await store.close()


@pytest.mark.parametrize("allow_writes", [False, True])
async def test_a_raw_query_is_four_queries_and_leaves_its_session_as_it_found_it(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, allow_writes: bool
) -> None:
    """BEGIN with the transaction's settings in one query, the statement, its end, then
    DISCARD ALL (eight queries before); none of the settings outlives the call."""
    import psycopg

    store = RecordsStore.of(await open_records(pg_url, allow_writes=allow_writes))
    try:
        await rows.create_table(store, ALICE, "notes", {"text": "TEXT"})
        await execute_raw_query(store, ALICE, "SELECT 1")  # connects
        sent: list[str] = []
        execute, stream = psycopg.Cursor.execute, psycopg.Cursor.stream

        def counted_execute(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            sent.append(str(query).split(";")[0].split()[0])
            return execute(cursor, query, *args, **kwargs)

        def counted_stream(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            sent.append(str(query).split()[0])
            return stream(cursor, query, *args, **kwargs)

        monkeypatch.setattr(psycopg.Cursor, "execute", counted_execute)
        monkeypatch.setattr(psycopg.Cursor, "stream", counted_stream)
        found = await execute_raw_query(store, ALICE, "SELECT count(*) FROM notes")
        assert found["rows"] == [[0]]
        assert sent == ["BEGIN", "SELECT", "ROLLBACK", "DISCARD"]
        if allow_writes:
            sent.clear()
            await execute_raw_query(store, ALICE, "INSERT INTO notes (text) VALUES (?)", ["a"])
            assert sent == ["BEGIN", "INSERT", "COMMIT", "DISCARD"]
        monkeypatch.undo()
        session: Any = store.raw._conn  # type: ignore[attr-defined]
        assert session.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert session.execute("SHOW statement_timeout").fetchone()[0] == "0"
        assert "records" not in session.execute("SHOW search_path").fetchone()[0]
        assert session.execute("SHOW transaction_read_only").fetchone()[0] == "off"
    finally:
        await store.close()


@pytest.mark.parametrize(
    "query",
    [
        "SELECT repeat('x', 1000000) FROM generate_series(1, 50)",
        "SELECT x FROM generate_series(1, 100000000) x",
    ],
)
async def test_big_or_endless_results_are_cut_on_postgresql(pg_url: str, query: str) -> None:
    store = RecordsStore.of(await open_records(pg_url, seconds=2.0))
    try:
        try:
            result = await execute_raw_query(store, ALICE, query)
        except BlackboardError as error:
            assert error.code == "LIMIT_EXCEEDED", error.message
        else:
            assert result["truncated"] is True and result["row_count"] == store.raw.max_rows
        assert (await execute_raw_query(store, ALICE, "SELECT 1"))["rows"] == [[1]]
    finally:
        await store.close()


async def test_an_explicit_id_moves_the_sequence_past_it(pg_url: str) -> None:
    store = RecordsStore.of(await open_records(pg_url))
    try:
        await rows.create_table(store, ALICE, "tasks", {"title": "TEXT"})
        await rows.insert_record(store, ALICE, "tasks", {"id": 10, "title": "given"})
        made = await rows.insert_record(store, ALICE, "tasks", {"title": "next"})
        assert made["id"] == 11
    finally:
        await store.close()


async def test_a_confined_role_that_can_reach_blackboard_tables_is_refused(pg_url: str) -> None:
    """Should a grant let the role read a blackboard table, raw queries stop, saying which."""
    import psycopg

    await (RecordsStore.of(await open_records(pg_url))).close()  # makes the schema and the role
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("GRANT SELECT ON messages TO PUBLIC")
    store = RecordsStore.of(await open_records(pg_url))
    try:
        with pytest.raises(BlackboardError) as info:
            await execute_raw_query(store, ALICE, "SELECT count(*) FROM public.messages")
        assert info.value.code == "PERMISSION_DENIED"
        assert "messages" in info.value.message and "revoke" in info.value.message
    finally:
        await store.close()
