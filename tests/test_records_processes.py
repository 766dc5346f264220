"""The records toolset through real `shared-context-server` processes sharing one file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from shared_context_server.storage.seam import Target
from tests.support import ENGINES, fails, ok, spawn

pytestmark = pytest.mark.processes  # real server processes: never quick

RECORDS = ("--toolsets", "core,records")
TASKS = 30


@pytest.mark.parametrize("engine", ENGINES)
async def test_two_agent_processes_claim_each_task_exactly_once(
    engine: str, make_target: Callable[[str], Target]
) -> None:
    db: Any = make_target(engine)
    board_ready = anyio.Event()
    connected = {"alice": anyio.Event(), "bob": anyio.Event()}
    won: dict[str, list[int]] = {"alice": [], "bob": []}
    spans: dict[str, tuple[float, float]] = {}

    async def agent(name: str) -> None:
        async with spawn(db, "--agent-id", name, *RECORDS) as s:
            connected[name].set()  # both processes are up before anyone claims
            for event in connected.values():
                await event.wait()
            if name == "alice":
                columns = {"title": "TEXT NOT NULL", "claimed_by": "TEXT"}
                await ok(s, "create_table", table_name="tasks", columns=columns)
                for n in range(TASKS):
                    await ok(s, "insert_record", table_name="tasks", data={"title": f"task {n}"})
                board_ready.set()
            await board_ready.wait()
            order = range(1, TASKS + 1) if name == "alice" else range(TASKS, 0, -1)
            started = anyio.current_time()
            for task_id in order:
                claimed = await ok(
                    s,
                    "update_record",
                    table_name="tasks",
                    filters={"id": task_id, "claimed_by": {"is_null": True}},
                    data={"claimed_by": name},
                )
                assert claimed["count"] in (0, 1)
                if claimed["count"]:
                    won[name].append(task_id)
            spans[name] = (started, anyio.current_time())

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            tg.start_soon(agent, "alice")
            tg.start_soon(agent, "bob")

    assert sorted(won["alice"] + won["bob"]) == list(range(1, TASKS + 1))  # each once
    # They really raced: both claim loops ran at the same time (who wins what is timing).
    assert max(a for a, _ in spans.values()) < min(b for _, b in spans.values())
    if engine == "sqlite":
        stored = sqlite3.connect(db.with_name("bb-records.db")).execute(
            "SELECT id, claimed_by FROM tasks ORDER BY id"
        )
        found = {task_id: owner for task_id, owner in stored}
    else:
        import psycopg

        with psycopg.connect(db) as conn:
            rows = conn.execute("SELECT id, claimed_by FROM records.tasks ORDER BY id")
            found = {task_id: owner for task_id, owner in rows}
    assert found == {
        **{i: "alice" for i in won["alice"]},
        **{i: "bob" for i in won["bob"]},
    }


async def test_an_identifier_injection_is_rejected_and_changes_nothing(tmp_path: Path) -> None:
    async with spawn(tmp_path / "bb.db", *RECORDS) as s:
        await ok(s, "create_table", table_name="tasks", columns={"title": "TEXT"})
        await ok(s, "insert_record", table_name="tasks", data={"title": "keep"})
        evil = 'tasks" (x); DROP TABLE tasks; --'
        await fails(s, "create_table", "INVALID_INPUT", table_name=evil, columns={"a": "TEXT"})
        await fails(s, "insert_record", "INVALID_INPUT", table_name=evil, data={})
        await fails(
            s, "query_records", "NOT_FOUND", table_name="tasks", filters={'title" OR 1=1 --': 1}
        )
        bad_type = {"a": "TEXT); DROP TABLE tasks; --"}
        await fails(s, "create_table", "INVALID_INPUT", table_name="t2", columns=bad_type)
        page = await ok(s, "query_records", table_name="tasks")
        assert page["records"] == [{"id": 1, "title": "keep"}]


INSERT = {"query": "INSERT INTO notes (text) VALUES (?)", "params": ["hi"]}


@pytest.mark.parametrize(
    ("args", "env"),
    [((), {}), (("--allow-raw-writes",), {}), ((), {"SHARED_CONTEXT_ALLOW_RAW_WRITES": "1"})],
)
async def test_a_raw_insert_needs_the_allow_raw_writes_setting(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str]
) -> None:
    allowed = bool(args or env)
    async with spawn(tmp_path / "bb.db", *RECORDS, *args, env=env) as s:
        await ok(s, "create_table", table_name="notes", columns={"text": "TEXT"})
        if allowed:
            assert (await ok(s, "execute_raw_query", **INSERT))["changes"] == 1
        else:
            text = await fails(s, "execute_raw_query", "INVALID_INPUT", **INSERT)
            assert "--allow-raw-writes" in text
        count = await ok(s, "execute_raw_query", query="SELECT count(*) FROM notes")
        assert count["rows"] == [[1 if allowed else 0]]


BLACKBOARD_REACHES: list[tuple[str, dict[str, Any]]] = [
    ("query_records", {"table_name": "sessions"}),
    ("query_records", {"table_name": "messages"}),
    ("query_records", {"table_name": "main.messages"}),
    ("query_records", {"table_name": "sqlite_master"}),
    ("describe_table", {"table_name": "messages"}),
    ("insert_record", {"table_name": "messages", "data": {"content": "x"}}),
    ("update_record", {"table_name": "sessions", "filters": {}, "data": {}, "all_rows": True}),
    ("delete_record", {"table_name": "messages", "filters": {}, "all_rows": True}),
    ("create_table", {"table_name": "main.evil", "columns": {"a": "TEXT"}}),
    ("execute_raw_query", {"query": "SELECT * FROM messages"}),
    ("execute_raw_query", {"query": "SELECT * FROM main.sessions"}),
    ("execute_raw_query", {"query": "DELETE FROM messages"}),
    ("execute_raw_query", {"query": "SELECT sql FROM sqlite_master WHERE name = 'messages'"}),
    ("execute_raw_query", {"query": "ATTACH DATABASE ? AS bb", "params": ["BLACKBOARD"]}),
    ("execute_raw_query", {"query": "SELECT * FROM bb.messages"}),
]


async def test_no_records_tool_reaches_a_blackboard_table(tmp_path: Path) -> None:
    db = tmp_path / "bb.db"
    async with spawn(db, "--agent-id", "alice", *RECORDS, "--allow-raw-writes") as s:
        sid = (await ok(s, "create_session", purpose="secret work"))["session_id"]
        await ok(s, "add_private_note", session_id=sid, content="the secret")
        for tool, arguments in BLACKBOARD_REACHES:
            if arguments.get("params") == ["BLACKBOARD"]:
                arguments = {**arguments, "params": [str(db)]}
            result = await s.call_tool(tool, arguments)
            found = result.structured_content.get("rows")
            # The one read that succeeds (sqlite_master) sees only the records file.
            assert result.is_error or found == [], (tool, arguments, result.structured_content)
            assert "secret" not in result.content[0].text
        assert (await ok(s, "list_tables"))["tables"] == []
        context = await ok(s, "get_context", session_id=sid)
        assert [m["content"] for m in context["messages"]] == ["the secret"]
    names = {r[0] for r in sqlite3.connect(db).execute("SELECT name FROM sqlite_master")}
    assert {"sessions", "messages"} <= names and "evil" not in names


async def test_a_runaway_recursive_query_is_stopped_and_the_process_serves_on(
    tmp_path: Path,
) -> None:
    runaway = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT max(x) FROM n"
    async with spawn(tmp_path / "bb.db", *RECORDS) as s:
        with anyio.fail_after(30):
            text = await fails(s, "execute_raw_query", "LIMIT_EXCEEDED", query=runaway)
        assert "was stopped" in text
        assert (await ok(s, "execute_raw_query", query="SELECT 2"))["rows"] == [[2]]
        await ok(s, "whoami")


async def test_the_toolsets_variable_turns_records_on_and_the_flag_beats_it(tmp_path: Path) -> None:
    env = {"SHARED_CONTEXT_TOOLSETS": "core,records"}
    async with spawn(tmp_path / "bb.db", env=env) as s:
        assert "create_table" in {t.name for t in (await s.list_tools()).tools}
    async with spawn(tmp_path / "bb.db", "serve", "--toolsets", "core", env=env) as s:
        assert "create_table" not in {t.name for t in (await s.list_tools()).tools}


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--toolsets", "core,recrods"], {}),
        (["serve", "--toolsets", ""], {}),
        ([], {"SHARED_CONTEXT_TOOLSETS": "everything"}),
    ],
)
def test_an_unknown_toolset_stops_the_server_with_one_line(
    tmp_path: Path, args: list[str], env: dict[str, str]
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "shared_context_server", *args, "--db", str(tmp_path / "x.db")],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", **env},
    )
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "toolset" in lines[0] and "core, minimal, records" in lines[0], lines
