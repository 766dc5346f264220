"""Real `shared-context-server` processes over stdio sharing one file: what only processes show."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from shared_context_server.storage.seam import Target
from shared_context_server.storage.sqlite.schema import SCHEMA_VERSION
from tests.support import INITIALIZE, INITIALIZED, ok, spawn, tool_call

pytestmark = pytest.mark.processes  # real server processes: never quick

WRITERS = 20
PER_WRITER = 100


async def test_twenty_processes_on_a_new_file_migrate_once_and_lose_nothing(
    tmp_path: Path,
) -> None:
    # On PostgreSQL: tests/test_postgres.py (twenty processes migrate an empty database
    # once) and tests/test_postgres_processes.py (twenty agents lose nothing, in order).
    db = tmp_path / "fresh.db"
    session_ready = anyio.Event()
    session_id: list[str] = []
    results: dict[str, list[int]] = {}
    errors: list[str] = []

    async def writer(n: int) -> None:
        async with spawn(db, "--agent-id", f"agent-{n:02d}") as s:  # all start at once
            if n == 0:
                session_id.append((await ok(s, "create_session", purpose="load"))["session_id"])
                session_ready.set()
            await session_ready.wait()
            ids = results.setdefault(f"agent-{n:02d}", [])
            for i in range(PER_WRITER):
                r = await s.call_tool(
                    "add_message", {"session_id": session_id[0], "content": f"{n}:{i}"}
                )
                if r.is_error:
                    errors.append(r.content[0].text)
                else:
                    ids.append(r.structured_content["message_id"])

    with anyio.fail_after(240):
        async with anyio.create_task_group() as tg:
            for n in range(WRITERS):
                tg.start_soon(writer, n)

    assert errors == []
    all_ids = [i for ids in results.values() for i in ids]
    assert len(all_ids) == len(set(all_ids)) == WRITERS * PER_WRITER
    for ids in results.values():  # each process saw its own ids grow
        assert ids == sorted(ids)
    conn = sqlite3.connect(db)
    stored = conn.execute(
        "SELECT sender, content FROM messages WHERE session_id = ? ORDER BY id", session_id
    ).fetchall()
    assert len(stored) == WRITERS * PER_WRITER
    assert {c for _, c in stored} == {f"{n}:{i}" for n in range(WRITERS) for i in range(PER_WRITER)}
    history = conn.execute("SELECT version FROM schema_history").fetchall()
    assert [v for (v,) in history] == list(range(1, SCHEMA_VERSION + 1))  # migrated once
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def test_flags_beat_environment_and_serve_is_the_default(target: Target) -> None:
    db = target
    env = {"SHARED_CONTEXT_AGENT_ID": "from-env", "SHARED_CONTEXT_AGENT_TYPE": "envtype"}
    async with spawn(db, env=env) as s:
        me = await ok(s, "whoami")
        assert (me["agent_id"], me["agent_type"], me["identity_source"]) == (
            "from-env",
            "envtype",
            "env",
        )
    async with spawn(db, "serve", "--agent-id", "from-flag", env=env) as s:
        me = await ok(s, "whoami")
        assert (me["agent_id"], me["identity_source"]) == ("from-flag", "flag")
    async with spawn(db, "--agent-id", "flag-before-serve", env=env) as s:
        assert (await ok(s, "whoami"))["agent_id"] == "flag-before-serve"


def test_stdout_carries_only_protocol_even_with_debug_logging(tmp_path: Path) -> None:
    db = tmp_path / "bb.db"
    requests = [
        INITIALIZE,
        INITIALIZED,
        tool_call(2, "create_session", {"purpose": "raw"}),
        tool_call(3, "get_session", {"session_id": 7}),
    ]
    # stderr to a file: DEBUG logs of a new file's migrations pass a pipe's 64 KB, and a
    # pipe nobody reads yet would stop the server mid-log, before it answers.
    log = (tmp_path / "stderr.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "shared_context_server", "--db", str(db), "--log-level", "DEBUG"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert proc.stdin and proc.stdout
    for request in requests:
        proc.stdin.write(json.dumps(request) + "\n")
    proc.stdin.flush()
    lines: list[dict[str, Any]] = []
    while len([line for line in lines if "id" in line]) < 3:
        lines.append(json.loads(proc.stdout.readline()))  # each line is JSON-RPC
    rest, _ = proc.communicate(timeout=60)  # closes stdin: the client hangs up
    log.close()
    stderr = (tmp_path / "stderr.log").read_text()
    # Nothing else reached stdout, even at exit, but notifications (the session created
    # changes the resource list).
    notes = [json.loads(line) for line in rest.splitlines()] + lines
    assert {n["method"] for n in notes if "id" not in n} <= {"notifications/resources/list_changed"}
    by_id = {line["id"]: line for line in lines if "id" in line}  # any order
    assert sorted(by_id) == [1, 2, 3]
    assert by_id[2]["result"]["structuredContent"]["created_by"] == "raw"
    assert by_id[3]["result"]["isError"] is True
    assert "DEBUG" in stderr  # the logs went somewhere, and not to stdout


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--agent-id", "has space"], {}, "--agent-id"),
        (["--agent-id", ""], {}, "--agent-id"),
        ([], {"SHARED_CONTEXT_ADMIN": "maybe"}, "SHARED_CONTEXT_ADMIN"),
        ([], {"SHARED_CONTEXT_LOG_LEVEL": "loud"}, "SHARED_CONTEXT_LOG_LEVEL"),
        ([], {"SHARED_CONTEXT_STDIO": "thread"}, "SHARED_CONTEXT_STDIO"),
        (["--stdio", "fast"], {}, "--stdio"),
        (["--db", "{tmp}"], {}, "it is a directory"),
        (["--db", ""], {}, "--db is empty"),
        (["sessions", "--db", ""], {}, "--db is empty"),
        (["--db", "{tmp}/notes.txt"], {}, "cannot be used as a shared-context-server database"),
        (["--db", "/proc/no-such-dir/x.db"], {}, "writable directory"),
        (["demo", "--db", "{tmp}"], {}, "it is a directory"),
        (["demo", "--pace", "-1"], {}, "--pace"),
    ],
)
def test_bad_configuration_exits_2_saying_what_to_fix_without_a_traceback(
    tmp_path: Path, args: list[str], env: dict[str, str], says: str
) -> None:
    (tmp_path / "notes.txt").write_text("not a database, just notes\n" * 100)
    args = [a.format(tmp=tmp_path) for a in args]
    proc = subprocess.run(
        [sys.executable, "-m", "shared_context_server", "--db", str(tmp_path / "x.db"), *args],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**_base_env(), **env},
    )
    assert proc.returncode == 2 and says in proc.stderr and proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "notes.txt").read_text().startswith("not a database")


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--db", "postgresql:/scs:secret@db.example:5432/scs"], {}),
        (["sessions", "--db", "postgresql+psycopg://scs:secret@db.example/scs"], {}),
        (["demo", "--pace", "0", "--db", "postgresq://scs:secret@db.example/scs"], {}),
        (["doctor"], {"SHARED_CONTEXT_DB": "postgresql:/scs:secret@db.example/scs"}),
    ],
)
def test_a_mistyped_postgresql_url_is_refused_in_one_line_not_made_a_file(
    tmp_path: Path, args: list[str], env: dict[str, str]
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "shared_context_server", *args],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env={**_base_env(), **env},
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert "postgresql://user@host:5432/dbname" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "secret" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_newer_database_is_refused_at_start(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    sqlite3.connect(db).execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}").connection.close()
    proc = subprocess.run(
        [sys.executable, "-m", "shared_context_server", "--db", str(db)],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and "newer than this shared-context-server" in proc.stderr


def _base_env() -> dict[str, Any]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("SHARED_CONTEXT_")}
