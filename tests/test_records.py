"""The records toolset's domain on both engines (a real file, a real PostgreSQL database):
tables, values, filters, the raw-query guard."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from shared_context_server.blackboard.records import rows
from shared_context_server.blackboard.records.location import RecordsStore
from shared_context_server.blackboard.records.raw_query import execute_raw_query
from shared_context_server.errors import BlackboardError
from shared_context_server.storage.opener import open_records, open_store
from shared_context_server.storage.postgres.raw import PgRawQueries
from shared_context_server.storage.postgres.records import CONFINED_ROLE
from shared_context_server.storage.seam import Target
from tests.support import ALICE, BOB, ENGINES

TASKS = {"title": "TEXT NOT NULL", "claimed_by": "TEXT", "priority": "INTEGER", "done": "BOOLEAN"}


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def opened(target: Target, **options: Any) -> AsyncIterator[RecordsStore]:
    """The shared tables of the blackboard at `target`, as a server opens them."""
    main = await open_store(target)  # a real blackboard beside (or around) them
    records = RecordsStore.of(await open_records(main, seconds=0.5, **options))
    try:
        yield records
    finally:
        await records.close()
        await main.close()


@pytest.fixture
async def store(engine: str, make_target: Callable[[str], Target]) -> AsyncIterator[RecordsStore]:
    async with opened(make_target(engine)) as records:
        yield records


@pytest.fixture
async def writable(
    engine: str, make_target: Callable[[str], Target]
) -> AsyncIterator[RecordsStore]:
    async with opened(make_target(engine), allow_writes=True) as records:
        yield records


async def board(store: RecordsStore, *titles: str) -> None:
    await rows.create_table(store, ALICE, "tasks", TASKS)
    for n, title in enumerate(titles):
        await rows.insert_record(store, ALICE, "tasks", {"title": title, "priority": n})


async def refused(code: str, call: Any) -> str:
    with pytest.raises(BlackboardError) as info:
        await call
    assert info.value.code == code, info.value.to_dict()
    return info.value.message


async def test_records_live_in_their_own_private_wal_file_beside_the_blackboard(
    store: RecordsStore, tmp_path: Path, engine: str
) -> None:
    await board(store, "a")
    if engine == "postgres":
        # In the schema `records` of the blackboard's own database, not beside its tables.
        found = await store.db.read(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_name IN ('tasks', 'messages') ORDER BY table_name"
        )
        assert [tuple(r) for r in found] == [("public", "messages"), ("records", "tasks")]
        return
    path = tmp_path / "bb-records.db"
    assert store.db.where == str(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert (await store.db.read("PRAGMA journal_mode"))[0][0] == "wal"
    blackboard = sqlite3.connect(tmp_path / "bb.db")
    names = {r[0] for r in blackboard.execute("SELECT name FROM sqlite_master")}
    assert "messages" in names and "tasks" not in names


@pytest.mark.parametrize(
    "name", ["t; DROP TABLE x", 'a"b', "main.messages", "sqlite_master", "1st", "a" * 64, "", "é"]
)
async def test_names_that_are_not_plain_identifiers_are_refused_everywhere(
    store: RecordsStore, name: str
) -> None:
    await board(store, "a")
    await refused("INVALID_INPUT", rows.create_table(store, ALICE, name, {"a": "TEXT"}))
    await refused("INVALID_INPUT", rows.create_table(store, ALICE, "t2", {name: "TEXT"}))
    await refused("INVALID_INPUT", rows.query_records(store, ALICE, name))
    await refused("INVALID_INPUT", rows.insert_record(store, ALICE, name, {"title": "x"}))
    # As a column, an odd name is simply not one of the table's columns.
    await refused("NOT_FOUND", rows.query_records(store, ALICE, "tasks", {name: 1}))
    if name:  # an empty order_by means the default order
        await refused("NOT_FOUND", rows.query_records(store, ALICE, "tasks", order_by=name))
    await refused("NOT_FOUND", rows.insert_record(store, ALICE, "tasks", {name: "x"}))
    assert (await rows.list_tables(store, ALICE))["tables"] == [
        {"table_name": "tasks", "row_count": 1}
    ]


@pytest.mark.parametrize(
    "spec", ["VARCHAR(10)", "TEXT PRIMARY KEY", "TEXT); DROP TABLE tasks; --", "", "TEXT DEFAULT 1"]
)
async def test_column_types_outside_the_whitelist_are_refused(
    store: RecordsStore, spec: str
) -> None:
    text = await refused("INVALID_INPUT", rows.create_table(store, ALICE, "t", {"a": spec}))
    assert "TEXT, INTEGER" in text or "NOT NULL and UNIQUE" in text


async def test_values_of_every_type_round_trip(store: RecordsStore, engine: str) -> None:
    columns = {
        "t": "text",
        "i": "INTEGER",
        "r": "REAL",
        "n": "NUMERIC",
        "b": "BOOLEAN",
        "j": "JSON",
        "d": "DATETIME",
        "x": "BLOB",
    }
    await rows.create_table(store, ALICE, "kinds", columns)
    data = {
        "t": "0042",
        "i": 2**62,
        "r": 2,
        "n": 1.5,
        "b": True,
        "j": {"big": 2**70, "list": [1, "two", None]},
        "d": "2026-05-01T12:00:00.123456Z",
        "x": "AAEC/w==",
    }
    inserted = await rows.insert_record(store, ALICE, "kinds", data)
    expected = {"id": 1, **data, "r": 2.0}
    assert inserted == {"id": 1, "record": expected}
    assert (await rows.query_records(store, ALICE, "kinds"))["records"] == [expected]
    # As stored: bytes, JSON as the text given, a boolean as 0/1 or true.
    if engine == "sqlite":
        stored = await store.db.read_one("SELECT x, typeof(j), b FROM kinds")
        assert stored is not None and tuple(stored) == (b"\x00\x01\x02\xff", "text", 1)
    else:
        stored = await store.db.read_one("SELECT x, j, b FROM records.kinds")
        assert stored is not None and tuple(stored) == (
            b"\x00\x01\x02\xff",
            '{"big":1180591620717411303424,"list":[1,"two",null]}',
            True,
        )


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("title", 5),
        ("priority", "high"),
        ("priority", 1.5),
        ("priority", True),
        ("priority", 2**64),
        ("done", 1),
        ("title", ["a"]),
    ],
)
async def test_a_value_of_the_wrong_type_names_the_column(
    store: RecordsStore, column: str, value: Any
) -> None:
    await board(store)
    data = {"title": "x", column: value}
    text = await refused("INVALID_INPUT", rows.insert_record(store, ALICE, "tasks", data))
    assert f"data.{column}" in text
    filters = {column: value}
    await refused("INVALID_INPUT", rows.query_records(store, ALICE, "tasks", filters))


@pytest.mark.parametrize(
    ("filters", "titles"),
    [
        ({"priority": 1}, ["b"]),
        ({"priority": {"!=": 1}}, ["a", "c", "d"]),
        ({"priority": {">": 1}}, ["c", "d"]),
        ({"priority": {">=": 1, "<": 3}}, ["b", "c"]),
        ({"priority": {"<=": 0}}, ["a"]),
        ({"title": {"like": "C%"}}, ["c"]),
        ({"title": {"in": ["a", "d", "z"]}}, ["a", "d"]),
        ({"claimed_by": None}, ["a", "c", "d"]),
        ({"claimed_by": {"is_null": False}}, ["b"]),
        ({"claimed_by": {"!=": "alice"}}, ["a", "c", "d"]),  # unclaimed rows included
        ({"claimed_by": "alice", "priority": 1}, ["b"]),
    ],
)
async def test_filters_match_by_every_operator(
    store: RecordsStore, filters: dict[str, Any], titles: list[str]
) -> None:
    await board(store, "a", "b", "c", "d")
    await rows.update_record(store, ALICE, "tasks", {"title": "b"}, {"claimed_by": "alice"})
    page = await rows.query_records(store, ALICE, "tasks", filters)
    assert [r["title"] for r in page["records"]] == titles


@pytest.mark.parametrize(
    "filters",
    [
        {"priority": {"between": [1, 2]}},
        {"priority": {"in": []}},
        {"priority": {"in": 3}},
        {"priority": {"is_null": "yes"}},
        {"priority": {"<": None}},
        {"priority": {}},
        {"title": {"like": 5}},
    ],
)
async def test_malformed_filters_are_refused_with_the_operator_list(
    store: RecordsStore, filters: dict[str, Any]
) -> None:
    await board(store, "a")
    text = await refused("INVALID_INPUT", rows.query_records(store, ALICE, "tasks", filters))
    assert "filters.priority" in text or "filters.title" in text


async def test_update_and_delete_refuse_empty_filters_unless_all_rows(
    store: RecordsStore,
) -> None:
    await board(store, "a", "b")
    for filters in (None, {}):
        text = await refused(
            "INVALID_INPUT", rows.update_record(store, ALICE, "tasks", filters, {"done": True})
        )
        assert "all_rows=true" in text
        await refused("INVALID_INPUT", rows.delete_record(store, ALICE, "tasks", filters))
    both = rows.delete_record(store, ALICE, "tasks", {"title": "a"}, all_rows=True)
    await refused("INVALID_INPUT", both)
    assert (await rows.update_record(store, ALICE, "tasks", None, {"done": True}, True)) == {
        "count": 2
    }
    assert (await rows.delete_record(store, ALICE, "tasks", {}, all_rows=True)) == {"count": 2}


async def test_a_conditional_update_claims_a_row_once(store: RecordsStore) -> None:
    await board(store, "a")
    claim = {"id": 1, "claimed_by": {"is_null": True}}
    first = await rows.update_record(store, ALICE, "tasks", claim, {"claimed_by": "alice"})
    second = await rows.update_record(store, BOB, "tasks", claim, {"claimed_by": "bob"})
    assert (first["count"], second["count"]) == (1, 0)


async def test_duplicate_tables_and_constraint_violations_are_conflicts(
    store: RecordsStore,
) -> None:
    await rows.create_table(store, ALICE, "files", {"path": "TEXT UNIQUE", "owner": "TEXT"})
    await refused("CONFLICT", rows.create_table(store, BOB, "FILES", {"a": "TEXT"}))
    await rows.insert_record(store, ALICE, "files", {"path": "a.py"})
    text = await refused("CONFLICT", rows.insert_record(store, BOB, "files", {"path": "a.py"}))
    assert "UNIQUE constraint failed: files.path" in text
    await rows.create_table(store, ALICE, "tasks", TASKS)
    text = await refused("CONFLICT", rows.insert_record(store, ALICE, "tasks", {"priority": 1}))
    assert "NOT NULL" in text
    described = await rows.describe_table(store, ALICE, "files")
    assert [(c["name"], c["primary_key"], c["unique"]) for c in described["columns"]] == [
        ("id", True, False),
        ("path", False, True),
        ("owner", False, False),
    ]


async def test_a_named_primary_key_replaces_the_added_id(store: RecordsStore) -> None:
    columns = {"agent": "TEXT", "file": "TEXT", "note": "TEXT"}
    await rows.create_table(store, ALICE, "claims", columns, ["agent", "file"])
    await rows.insert_record(store, ALICE, "claims", {"agent": "alice", "file": "a"})
    duplicate = rows.insert_record(store, ALICE, "claims", {"agent": "alice", "file": "a"})
    await refused("CONFLICT", duplicate)
    described = await rows.describe_table(store, ALICE, "claims")
    assert [c["name"] for c in described["columns"] if c["primary_key"]] == ["agent", "file"]
    bad = rows.create_table(store, ALICE, "c2", columns, "nope")
    assert "primary_key" in await refused("INVALID_INPUT", bad)


async def test_pages_follow_order_by_and_offset_without_gaps(store: RecordsStore) -> None:
    await board(store, *"abcdefg")
    seen: list[str] = []
    offset = 0
    while True:
        page = await rows.query_records(
            store, ALICE, "tasks", limit=3, offset=offset, order_by="-priority"
        )
        seen += [r["title"] for r in page["records"]]
        offset += len(page["records"])
        if not page["has_more"]:
            break
    assert seen == list("gfedcba")


async def test_a_page_stops_early_when_its_text_is_large(store: RecordsStore) -> None:
    from shared_context_server.blackboard.limits import Limits

    await board(store)
    for n in range(5):
        await rows.insert_record(store, ALICE, "tasks", {"title": str(n) * 1000})
    small = Limits(max_page_chars=2500)
    page = await rows.query_records(store, ALICE, "tasks", limits=small)
    assert len(page["records"]) == 2 and page["has_more"] is True


async def test_concurrent_raw_writes_each_report_their_own_table(
    writable: RecordsStore,
) -> None:
    # The tables a raw write changed are taken while its statement's guard is held: read
    # after it was released, another call's statement could have replaced them.
    await rows.create_table(writable, ALICE, "red", {"v": "INTEGER"})
    await rows.create_table(writable, ALICE, "blue", {"v": "INTEGER"})
    seen: list[tuple[str, str]] = []

    async def hook(agent: Any, action: str, table: str, count: int) -> None:
        seen.append((agent.agent_id, table))
        await anyio.lowlevel.checkpoint()  # the other writer's statement runs meanwhile

    writable.on_write = hook

    async def write(table: str, agent: Any) -> None:
        for n in range(10):
            insert = f"INSERT INTO {table} (v) VALUES (?)"  # noqa: S608 (the test's own names)
            await execute_raw_query(writable, agent, insert, [n])

    async with anyio.create_task_group() as tg:
        tg.start_soon(write, "red", ALICE)
        tg.start_soon(write, "blue", BOB)
    assert sorted(seen) == sorted([("alice", "red")] * 10 + [("bob", "blue")] * 10)


async def test_every_write_passes_the_one_write_hook(writable: RecordsStore) -> None:
    seen: list[tuple[str, str, str, int]] = []

    async def hook(agent: Any, action: str, table: str, count: int) -> None:
        seen.append((agent.agent_id, action, table, count))

    writable.on_write = hook
    await board(writable, "a", "b")
    await rows.update_record(writable, BOB, "tasks", {"title": "a"}, {"done": True})
    await rows.delete_record(writable, BOB, "tasks", {"title": "b"})
    await execute_raw_query(writable, BOB, "INSERT INTO tasks (title) VALUES ('c')")
    await execute_raw_query(writable, BOB, "SELECT * FROM tasks")  # not a write
    assert seen == [
        ("alice", "create_table", "tasks", 0),
        ("alice", "insert_record", "tasks", 1),
        ("alice", "insert_record", "tasks", 1),
        ("bob", "update_record", "tasks", 1),
        ("bob", "delete_record", "tasks", 1),
        ("bob", "execute_raw_query", "tasks", 1),
    ]


async def test_raw_queries_read_with_bound_parameters(store: RecordsStore) -> None:
    await board(store, "a", "b", "c")
    result = await execute_raw_query(
        store, ALICE, "SELECT title, done FROM tasks WHERE priority >= ? ORDER BY id", [1]
    )
    assert result["columns"] == ["title", "done"]
    assert result["rows"] == [["b", None], ["c", None]]
    assert result["row_count"] == 2 and result["truncated"] is False
    bad = execute_raw_query(store, ALICE, "SELECT ?", [])
    await refused("INVALID_INPUT", bad)


FORBIDDEN_ALWAYS = [
    "ATTACH DATABASE 'other.db' AS other",
    "DETACH DATABASE main",
    "CREATE TABLE t2 (a)",
    "CREATE TEMP TABLE t2 (a)",
    "DROP TABLE tasks",
    "ALTER TABLE tasks ADD COLUMN x",
    "CREATE INDEX i ON tasks (title)",
    "CREATE TRIGGER tr AFTER INSERT ON tasks BEGIN DELETE FROM tasks; END",
    "PRAGMA query_only = 0",
    "PRAGMA writable_schema = 1",
    "PRAGMA journal_mode = DELETE",
    "UPDATE sqlite_master SET sql = 'x'",
    "UPDATE sqlite_sequence SET seq = 0",
    "BEGIN",
    "SAVEPOINT s",
    "VACUUM",
    "VACUUM INTO 'copy.db'",
    "SELECT * FROM temp.sqlite_master",
    "SELECT load_extension('x')",
]
# The same intents on PostgreSQL, and the ways out of a role taken with SET ROLE.
PG_FORBIDDEN = [
    "SET ROLE postgres",
    "RESET ROLE",
    "SET statement_timeout = 0",
    "SELECT set_config('role', 'postgres', true)",
    "SELECT \"set_config\"('role', 'postgres', true)",
    "SELECT pg_catalog.set_config('statement_timeout', '0', false), pg_sleep(2)",
    "UPDATE pg_settings SET setting = 'postgres' WHERE name = 'role'",
    "SELECT query_to_xml('SELECT * FROM public.messages', true, true, '')",
    "SELECT * FROM public.messages",
    "TABLE public.audit_log",
    "SELECT * FROM public.sessions",
    "CREATE TABLE t2 (a int)",
    "CREATE TEMP TABLE t2 (a int)",
    "DROP TABLE tasks",
    "ALTER TABLE tasks ADD COLUMN x int",
    "CREATE INDEX i ON tasks (title)",
    "SELECT * INTO t2 FROM tasks",
    "SELECT * INTO TEMP t2 FROM tasks",
    "WITH x AS (SELECT 1) SELECT * INTO public.t3 FROM x",
    "COPY tasks TO PROGRAM 'touch /tmp/scs-pwned'",
    "COPY (SELECT 1) TO '/tmp/scs-pwned'",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT lo_import('/etc/passwd')",
    "SELECT pg_advisory_lock(1)",
    "SELECT 1; SELECT * FROM public.messages",
    "SELECT 1 /* ; */ ; DROP TABLE tasks",
    "DO $$ BEGIN PERFORM 1; END $$",
    "SELECT $$x$$, set_config('role', 'postgres', true)",
    "SELECT E'\\' ; DROP TABLE tasks; --', set_config('role', 'postgres', true)",
    "BEGIN",
    "COMMIT",
    "SAVEPOINT s",
    "LOCK TABLE tasks",
    "VACUUM",
    "GRANT SELECT ON tasks TO PUBLIC",
]
WRITES = [
    "INSERT INTO tasks (title) VALUES ('x')",
    "UPDATE tasks SET done = true",
    "DELETE FROM tasks",
    "INSERT INTO tasks (title) VALUES ('x') RETURNING id",
]
FORBIDDEN = [("sqlite", q) for q in FORBIDDEN_ALWAYS] + [("postgres", q) for q in PG_FORBIDDEN]


@pytest.mark.parametrize(("engine", "query"), FORBIDDEN + [(e, q) for e in ENGINES for q in WRITES])
async def test_raw_queries_are_read_only_without_the_flag(store: RecordsStore, query: str) -> None:
    await board(store, "a")
    await refused("INVALID_INPUT", execute_raw_query(store, ALICE, query))
    page = await rows.query_records(store, ALICE, "tasks")
    assert [(r["title"], r["done"]) for r in page["records"]] == [("a", None)]


@pytest.mark.parametrize(("engine", "query"), FORBIDDEN)
async def test_raw_writes_still_refuse_schema_attach_pragma_and_transactions(
    writable: RecordsStore, query: str
) -> None:
    await board(writable, "a")
    await refused("INVALID_INPUT", execute_raw_query(writable, ALICE, query))
    assert [t["table_name"] for t in (await rows.list_tables(writable, ALICE))["tables"]] == [
        "tasks"
    ]
    # Still confined: the next statement runs as the raw-query role, within its limits.
    if isinstance(writable.raw, PgRawQueries):
        who = await execute_raw_query(writable, ALICE, "SELECT current_user")
        assert who["rows"] == [[CONFINED_ROLE]]


async def test_raw_writes_change_rows_when_allowed(writable: RecordsStore) -> None:
    await board(writable, "a")
    inserted = await execute_raw_query(writable, ALICE, WRITES[3])
    assert inserted["rows"] == [[2]] and inserted["changes"] == 1
    updated = await execute_raw_query(writable, ALICE, "UPDATE tasks SET done = ?", [True])
    assert updated["changes"] == 2 and updated["columns"] == []
    # A second statement is refused before the first runs.
    two = "INSERT INTO tasks (title) VALUES ('y'); DELETE FROM tasks"
    assert "one statement" in await refused(
        "INVALID_INPUT", execute_raw_query(writable, ALICE, two)
    )
    assert len((await rows.query_records(writable, ALICE, "tasks"))["records"]) == 2


RUNAWAY = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n"


async def test_a_runaway_recursive_query_is_stopped_by_the_time_limit(
    store: RecordsStore,
) -> None:
    text = await refused("LIMIT_EXCEEDED", execute_raw_query(store, ALICE, RUNAWAY))
    assert "0.5 s" in text
    # The connection is usable afterwards.
    assert (await execute_raw_query(store, ALICE, "SELECT 1"))["rows"] == [[1]]


async def test_an_endless_row_stream_is_cut_at_the_row_cap(store: RecordsStore) -> None:
    endless = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT x FROM n"
    result = await execute_raw_query(store, ALICE, endless)
    assert result["row_count"] == store.raw.max_rows and result["truncated"] is True


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM messages",
        "SELECT * FROM main.messages",
        "SELECT * FROM sessions",
        "SELECT * FROM schema_history",
    ],
)
async def test_blackboard_tables_do_not_exist_for_raw_queries(
    store: RecordsStore, query: str, engine: str
) -> None:
    text = await refused("NOT_FOUND", execute_raw_query(store, ALICE, query))
    assert "not reachable" in text
    if engine == "sqlite":
        listed = await execute_raw_query(store, ALICE, "SELECT name FROM sqlite_master")
        assert listed["rows"] == []


async def test_a_raw_query_cannot_outlast_its_timeout_on_either_engine(
    store: RecordsStore, engine: str
) -> None:
    sleep = "SELECT pg_sleep(10)" if engine == "postgres" else RUNAWAY
    with anyio.fail_after(8):
        text = await refused("LIMIT_EXCEEDED", execute_raw_query(store, ALICE, sleep))
    assert "0.5 s" in text
    assert (await execute_raw_query(store, ALICE, "SELECT 1"))["rows"] == [[1]]


async def test_list_tables_counts_every_table_in_one_read_after_the_names(
    store: RecordsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two reads whatever the number of tables (on PostgreSQL each read is a round trip),
    and each count stays with its own table."""
    for n in range(5):
        await rows.create_table(store, ALICE, f"t{n}", {"text": "TEXT"})
        for i in range(n):
            await rows.insert_record(store, ALICE, f"t{n}", {"text": f"{i}"})
    reads: list[str] = []
    read = store.db.read

    async def counted(sql: str, params: Any = (), **options: Any) -> Any:
        reads.append(sql)
        return await read(sql, params, **options)

    monkeypatch.setattr(store.db, "read", counted)
    listed = await rows.list_tables(store, ALICE)
    assert listed["tables"] == [{"table_name": f"t{n}", "row_count": n} for n in range(5)]
    assert len(reads) == 2
