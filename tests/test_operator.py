"""The operator's subcommands as a user runs them: real subprocesses on tmp databases."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process

from shared_context_server.blackboard import memory
from shared_context_server.blackboard.messages import add_message
from shared_context_server.blackboard.sessions import create_session, update_session
from shared_context_server.blackboard.tokens import authenticate_agent
from shared_context_server.config import ENV_AUDIT_RETENTION
from shared_context_server.storage.opener import open_store
from shared_context_server.storage.seam import Target
from tests.support import ADMIN, ALICE, BOB, CAROL, execute, ok, rows, run_cli, spawn

pytestmark = pytest.mark.processes  # real server processes: never quick

run = run_cli


def assert_one_line_error(proc: Any, *phrases: str) -> None:
    assert proc.returncode == 2, proc
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("shared-context-server: error: ")
    for phrase in phrases:
        assert phrase in proc.stderr


async def blackboard(path: Target) -> dict[str, Any]:
    """A file with one session: alice's public finding, her private note, bob's agent_only
    reply to the finding (with metadata), carol's public reply, an admin_only message."""
    db = await open_store(path)
    try:
        s = await create_session(db, ALICE, "review the parser", {"ticket": 7})
        sid = s["id"]
        first = await add_message(db, ALICE, sid, "finding: overflow", message_type="finding")
        await add_message(db, ALICE, sid, "note to self", visibility="private")
        await add_message(
            db,
            BOB,
            sid,
            "reviewers: agreed",
            visibility="agent_only",
            metadata={"severity": "high"},
            parent_message_id=first["message_id"],
        )
        await add_message(db, CAROL, sid, "docs updated", parent_message_id=first["message_id"])
        await add_message(db, ADMIN, sid, "admins only", visibility="admin_only")
        return {"session_id": sid, "first": first["message_id"]}
    finally:
        await db.close()


# --- config -----------------------------------------------------------------------------


@pytest.mark.parametrize("client", ["claude-desktop", "cursor"])
def test_config_prints_mcp_servers_json_with_identity_and_db(client: str, tmp_path: Path) -> None:
    proc = run("config", client, "--agent-id", "rev-1", "--agent-type", "reviewer", "--db", "x.db")
    assert proc.returncode == 0, proc.stderr
    entry = json.loads(proc.stdout)["mcpServers"]["shared-context"]
    assert entry == {
        "command": "uvx",
        "args": [
            "--from",
            "shared-context-server>=2,<3",
            "shared-context-server",
            "--agent-id",
            "rev-1",
            "--agent-type",
            "reviewer",
            "--db",
            str(Path("x.db").absolute()),
        ],
    }


def test_config_for_claude_code_is_a_claude_mcp_add_command() -> None:
    proc = run("config", "claude-code", "--agent-id", "main", env={"SHARED_CONTEXT_DB": "/t/b.db"})
    assert proc.stdout.strip() == (
        "claude mcp add shared-context -- uvx --from 'shared-context-server>=2,<3' "
        "shared-context-server --agent-id main --db /t/b.db"
    )


def test_config_generic_local_runs_this_installation_without_db_when_none_given() -> None:
    env = {"SHARED_CONTEXT_DB": ""}
    proc = run("config", "generic", "--local", "--agent-id", "a", "--admin", env=env)
    entry = json.loads(proc.stdout)
    assert Path(entry["command"]).is_absolute() and Path(entry["command"]).exists()
    assert entry["args"][-3:] == ["--agent-id", "a", "--admin"]
    assert "--db" not in entry["args"]


def test_config_refuses_an_agent_id_with_spaces_in_one_line() -> None:
    assert_one_line_error(run("config", "cursor", "--agent-id", "two words"), "--agent-id")


# --- doctor -----------------------------------------------------------------------------


async def test_doctor_reports_a_healthy_file(tmp_path: Path) -> None:
    db = tmp_path / "bb.db"
    await blackboard(db)
    proc = run("doctor", "--db", str(db))
    assert proc.returncode == 0, proc.stdout
    for line in ("journal mode  wal", "integrity     ok", "1 session, 5 messages", "ok"):
        assert line in proc.stdout
    data = json.loads(run("doctor", "--db", str(db), "--json").stdout)
    assert data["ok"] and data["problems"] == [] and data["permissions"]["file"] == "0600"


def test_doctor_fails_on_a_corrupted_file_and_leaves_it_alone(tmp_path: Path) -> None:
    db = tmp_path / "bb.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE sessions (id TEXT PRIMARY KEY, purpose TEXT)")
    conn.executemany("INSERT INTO sessions VALUES (?, ?)", [(str(i), "x" * 500) for i in range(50)])
    conn.commit()
    conn.close()
    raw = bytearray(db.read_bytes())
    raw[4096 : 3 * 4096] = os.urandom(2 * 4096)  # garbage over the table's first pages
    db.write_bytes(bytes(raw))
    db.chmod(0o600)
    proc = run("doctor", "--db", str(db))
    assert proc.returncode == 1
    assert "PROBLEM: the integrity check failed" in proc.stdout
    assert "restore the newest backup" in proc.stdout
    assert db.read_bytes() == bytes(raw)


async def test_doctor_quick_never_says_ok_of_a_file_whose_index_is_damaged(
    tmp_path: Path,
) -> None:
    db = tmp_path / "bb.db"
    await blackboard(db)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'messages_session'"
    ).fetchone()[0]
    conn.close()
    with db.open("r+b") as f:  # flip the last bytes of a key in the index: pages stay valid
        f.seek(root * page_size - 40)
        key = f.read(8)
        f.seek(root * page_size - 40)
        f.write(bytes(b ^ 0x55 for b in key))
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA quick_check").fetchone() == ("ok",)  # what --quick ran
    assert conn.execute("PRAGMA integrity_check").fetchone() != ("ok",)
    conn.close()
    proc = run("doctor", "--quick", "--db", str(db))
    assert proc.returncode == 1, proc.stdout
    assert "PROBLEM: the integrity check failed" in proc.stdout
    assert not proc.stdout.rstrip().endswith("ok")


async def test_doctor_quick_on_a_large_file_says_the_full_check_was_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared_context_server.operations import doctor
    from shared_context_server.terminal import doctor_report

    db = tmp_path / "bb.db"
    await blackboard(db)
    monkeypatch.setattr(doctor, "QUICK_FULL_BELOW", 0)  # every file counts as large
    data = await doctor.diagnose(db, quick=True)
    assert data["integrity"] == "quick_check ok" and data["ok"]
    assert "does not compare indexes" in data["warnings"][0]["warning"]
    assert doctor_report(data).splitlines()[-1].startswith("no problems found by the quick")


def test_doctor_fails_on_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "bb.db"
    db.write_bytes(b"not a database at all" * 100)
    db.chmod(0o600)
    proc = run("doctor", "--db", str(db), "--json")
    assert proc.returncode == 1
    assert "not an SQLite database" in json.loads(proc.stdout)["problems"][0]["problem"]


async def test_doctor_fails_on_a_non_wal_file_without_switching_it(tmp_path: Path) -> None:
    db = tmp_path / "bb.db"
    await blackboard(db)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    proc = run("doctor", "--db", str(db))
    assert proc.returncode == 1
    assert "journal mode  rollback" in proc.stdout and "not in WAL mode" in proc.stdout
    assert db.read_bytes()[18:20] == b"\x01\x01"  # still a rollback-journal file


def test_doctor_on_a_missing_file_says_so_and_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "nope.db"
    proc = run("doctor", "--db", str(db))
    assert proc.returncode == 1 and "no database at" in proc.stdout
    assert not db.exists()


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Poll `condition` until it holds, failing after 20 seconds."""
    with anyio.fail_after(20):
        for _ in itertools.count():
            if await condition():
                return
            await anyio.sleep(0.1)


def server_rows(db: Path) -> int:
    count: int = sqlite3.connect(db).execute("SELECT count(*) FROM server_processes").fetchone()[0]
    return count


async def doctor_pids(db: Path) -> set[int]:
    proc = await anyio.run_process(
        [sys.executable, "-m", "shared_context_server", "doctor", "--json", "--db", str(db)],
        check=False,
    )
    return {p["pid"] for p in json.loads(proc.stdout)["processes"]}


async def test_doctor_lists_a_live_server_and_forgets_it_once_it_exits(tmp_path: Path) -> None:
    db = tmp_path / "bb.db"
    async with spawn(db, "--agent-id", "watched") as session:
        await ok(session, "whoami")
        rows = sqlite3.connect(db).execute("SELECT pid, agent_id FROM server_processes")
        (pid, agent_id) = rows.fetchone()
        assert agent_id == "watched"

        async def listed() -> bool:
            return pid in await doctor_pids(db)

        await until(listed)

    async def row_deleted() -> bool:  # a clean exit deletes the process's own row
        return server_rows(db) == 0

    await until(row_deleted)
    assert pid not in await doctor_pids(db)


async def test_doctor_hides_and_deletes_the_row_of_a_killed_server(tmp_path: Path) -> None:
    db = tmp_path / "bb.db"
    command = [sys.executable, "-m", "shared_context_server", "--db", str(db)]
    async with await anyio.open_process(command, stderr=subprocess.DEVNULL) as server:

        async def listed() -> bool:  # the heartbeat starts without waiting for a client
            return server.pid in await doctor_pids(db)

        await until(listed)
        server.kill()
        await server.wait()
    assert server_rows(db) == 1  # killed: no chance to clean up
    assert server.pid not in await doctor_pids(db)
    assert server_rows(db) == 0


# --- sessions and tail ------------------------------------------------------------------


async def test_sessions_lists_counts_of_what_the_viewer_may_see(target: Target) -> None:
    db = target
    sid = (await blackboard(db))["session_id"]
    table = run("sessions", "--db", str(db))
    assert table.returncode == 0
    header, row = table.stdout.splitlines()
    assert header.split()[:3] == ["SESSION", "STATUS", "MSGS"]
    assert row.split()[:3] == [sid, "active", "2"]  # the two public messages
    assert table.stderr == "MSGS counts public messages only (--as AGENT or --admin to see more)\n"
    as_bob_table = run("sessions", "--db", str(db), "--as", "bob")
    assert as_bob_table.stderr == "MSGS counts what bob (type reviewer) can see\n"
    assert run("sessions", "--db", str(db), "--admin").stderr == ""  # every message: no caveat
    admin = json.loads(run("sessions", "--db", str(db), "--admin", "--json").stdout)
    assert admin[0]["message_count"] == 5 and admin[0]["last_message_at"]
    as_bob = json.loads(run("sessions", "--db", str(db), "--as", "bob", "--json").stdout)
    assert as_bob[0]["message_count"] == 3  # public two + bob's agent_only reply
    assert run("sessions", "--db", str(db), "--status", "archived").stdout == ""


async def test_tail_shows_public_messages_with_threading_unless_told_whose_eyes(
    target: Target,
) -> None:
    db = target
    sid = (await blackboard(db))["session_id"]
    public = run("tail", sid, "--db", str(db)).stdout
    assert "finding: overflow" in public and "docs updated" in public
    assert "note to self" not in public and "reviewers: agreed" not in public
    assert "carol (writer) reply-to #1" in public and "alice (reviewer) finding" in public
    alice = run("tail", sid, "--db", str(db), "--as", "alice").stdout
    assert "alice (reviewer) private" in alice and "reviewers: agreed" in alice
    assert "admins only" not in alice
    assert "admins only" in run("tail", sid, "--db", str(db), "--admin").stdout
    last = run("tail", sid, "--db", str(db), "--admin", "-n", "1").stdout
    assert "admins only" in last and "overflow" not in last


async def test_tail_and_sessions_fail_in_one_line_on_a_missing_session_or_file(
    tmp_path: Path,
) -> None:
    db = tmp_path / "bb.db"
    await blackboard(db)
    assert_one_line_error(run("tail", "sess_nope", "--db", str(db)), "no session 'sess_nope'")
    missing = tmp_path / "missing.db"
    assert_one_line_error(run("sessions", "--db", str(missing)), "no database at")
    assert not missing.exists()


@contextmanager
def no_database_file(kind: str, tmp_path: Path) -> Iterator[Path]:
    """A path that exists and is no database file: one of `kind`."""
    if kind.startswith("/"):
        if not Path(kind).exists():
            pytest.skip(f"no {kind} here")
        yield Path(kind)
    elif kind == "directory":
        yield tmp_path
    elif kind == "fifo":
        os.mkfifo(tmp_path / "fifo")
        yield tmp_path / "fifo"
    else:  # a socket's path must be short: not under tmp_path
        with tempfile.TemporaryDirectory(prefix="scs") as short, socket.socket(socket.AF_UNIX) as s:
            s.bind(f"{short}/sock")
            yield Path(short) / "sock"


@pytest.mark.parametrize(
    ("kind", "phrase", "doctor_says"),
    [
        ("fifo", "it is a FIFO (named pipe)", "it is a FIFO"),
        ("socket", "it is a socket", "it is a socket"),
        ("directory", "it is a directory", "it is a directory"),
        ("/dev/zero", "it is a character device", "it is a character device"),
        ("/proc/self/mem", "cannot be used as a shared-context-server database", "cannot be read"),
    ],
)
def test_a_db_path_that_is_no_database_file_fails_each_command_in_one_line(
    tmp_path: Path, kind: str, phrase: str, doctor_says: str
) -> None:
    # SQLite's own failure to open it (a FIFO, /proc/self/mem) left aiosqlite's thread to
    # print a traceback after the error line.
    with no_database_file(kind, tmp_path) as path:
        for command in (["serve"], ["sessions"], ["tail", "sess_x"], ["export", "sess_x"]):
            assert_one_line_error(run(*command, "--db", str(path)), phrase)
        doctor = run("doctor", "--db", str(path))
        assert doctor.returncode == 1 and doctor.stderr == "", doctor.stderr
        assert doctor_says in doctor.stdout


async def read_until(process: Process, text: str, seen: list[str]) -> None:
    assert process.stdout is not None
    while text not in "".join(seen):
        seen.append((await process.stdout.receive()).decode())


async def test_tail_follow_prints_a_message_another_process_writes_and_stops_on_ctrl_c(
    target: Target,
) -> None:
    db = target
    sid = (await blackboard(db))["session_id"]
    command = [sys.executable, "-m", "shared_context_server", "tail", sid, "-f", "--db", str(db)]
    async with await anyio.open_process(command) as tail:
        seen: list[str] = []
        with anyio.fail_after(30):
            await read_until(tail, "docs updated", seen)  # the history came first
            async with spawn(db, "--agent-id", "late") as writer:
                await ok(writer, "add_message", session_id=sid, content="written elsewhere")
                await ok(writer, "add_private_note", session_id=sid, content="not for tail")
            await read_until(tail, "written elsewhere", seen)
            tail.send_signal(signal.SIGINT)
            assert await tail.wait() == 0
        assert tail.stderr is not None
        stderr = b"".join([chunk async for chunk in tail.stderr]).decode()
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert "late (generic)" in "".join(seen) and "not for tail" not in "".join(seen)
    # The header goes where the lines go, so a saved transcript says whose view it is.
    assert "".join(seen).startswith(f"{sid} [active] review the parser\nshowing public messages")


# --- export and import ------------------------------------------------------------------


def read_export(text: str) -> dict[str, Any]:
    """An export in either form as one document: JSON Lines is a header, then messages."""
    first, _, rest = text.partition("\n")
    header = json.loads(first) if first.startswith('{"') else None
    if header is None or "messages" in header:
        return dict(json.loads(text))
    header.pop("form")
    return {**header, "messages": [json.loads(line) for line in rest.splitlines()]}


def normalised(document: dict[str, Any]) -> dict[str, Any]:
    """The export without its ids and export time: message ids become positions."""
    position = {m["id"]: i for i, m in enumerate(document["messages"])}
    messages = [
        {**m, "id": position[m["id"]], "parent_message_id": position.get(m["parent_message_id"])}
        for m in document["messages"]
    ]
    session = {k: v for k, v in document["session"].items() if k != "id"}
    return {"session": session, "messages": messages, "view": document["view"]}


@pytest.mark.parametrize("name", ["s.jsonl", "s.json"])
async def test_export_import_round_trip_is_lossless_into_another_database(
    target: Target, other_target: Target, tmp_path: Path, name: str
) -> None:
    source, target = target, other_target
    sid = (await blackboard(source))["session_id"]
    exported = tmp_path / name
    assert run("export", sid, "--admin", "--db", str(source), "-o", str(exported)).returncode == 0
    assert exported.stat().st_mode & 0o077 == 0  # it may hold private messages
    proc = run("import", str(exported), "--db", str(target))
    assert proc.returncode == 0, proc.stderr
    assert f"imported session {sid}: 5 messages" in proc.stdout
    again = read_export(run("export", sid, "--admin", "--db", str(target)).stdout)
    original = read_export(exported.read_text())
    assert exported.read_text().startswith("{\n" if name.endswith(".json") else '{"format"')
    assert again["session"] == original["session"]  # the id was free, so it was kept
    assert normalised(again) == normalised(original)
    assert again["messages"][2]["metadata"] == {"severity": "high"}
    audited = await rows(target, "SELECT agent_id, action, session_id, detail FROM audit_log")
    assert audited == [("operator", "import", sid, "5 messages")]


async def test_importing_into_the_same_database_gets_fresh_ids_and_says_so(target: Target) -> None:
    db = target
    sid = (await blackboard(db))["session_id"]
    exported = run("export", sid, "--admin", "--db", str(db)).stdout
    proc = run("import", "-", "--db", str(db), stdin=exported)
    assert proc.returncode == 0, proc.stderr
    assert f"session {sid} already exists there, so the import got the new id" in proc.stdout
    ids = {s["id"] for s in json.loads(run("sessions", "--json", "--db", str(db)).stdout)}
    assert len(ids) == 2 and sid in ids
    (new_sid,) = ids - {sid}
    assert proc.stdout.rstrip().endswith(new_sid)
    copy = read_export(run("export", new_sid, "--admin", "--db", str(db)).stdout)
    assert normalised(copy) == normalised(read_export(exported))
    assert min(m["id"] for m in copy["messages"]) > max(
        m["id"] for m in read_export(exported)["messages"]
    )
    if isinstance(db, Path):  # PostgreSQL checks every foreign key at each commit
        assert await rows(db, "PRAGMA foreign_key_check") == []


async def test_a_public_export_holds_public_messages_and_imports_without_dangling_links(
    target: Target, other_target: Target
) -> None:
    path = target
    sid = (await blackboard(path))["session_id"]
    db = await open_store(path)
    try:  # a public reply to alice's private note: its parent cannot be exported publicly
        await add_message(db, ALICE, sid, "done, see my note", parent_message_id=2)
    finally:
        await db.close()
    proc = run("export", sid, "--db", str(path))
    assert "only public messages" in proc.stderr
    document = read_export(proc.stdout)
    contents = [m["content"] for m in document["messages"]]
    assert contents == ["finding: overflow", "docs updated", "done, see my note"]
    imported = run("import", "-", "--db", str(other_target), stdin=proc.stdout)
    assert "1 reply-to link pointed at messages the file does not hold" in imported.stdout


async def test_markdown_export_is_a_readable_transcript(tmp_path: Path) -> None:
    db = tmp_path / "bb.db"
    sid = (await blackboard(db))["session_id"]
    text = run("export", sid, "--format", "markdown", "--as", "bob", "--db", str(db)).stdout
    assert text.startswith("# review the parser\n")
    assert "## #3 · bob (reviewer) · " in text and "agent_only · reply to #1" in text
    assert "what bob (reviewer) can see" in text and "note to self" not in text


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        ("{not json", "is not JSON (line 1"),
        ('{"format": "other"}', "is not a session export: format"),
        ('{"format": "shared-context-server/session", "version": 9}', "format version 9, newer"),
    ],
)
def test_import_rejects_a_bad_file_in_one_line(tmp_path: Path, content: str, phrase: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    assert_one_line_error(run("import", str(bad), "--db", str(tmp_path / "bb.db")), phrase)


async def test_import_is_all_or_nothing(tmp_path: Path) -> None:
    source, target = tmp_path / "a.db", tmp_path / "b.db"
    sid = (await blackboard(source))["session_id"]
    document = read_export(run("export", sid, "--admin", "--db", str(source)).stdout)
    document["messages"][4]["visibility"] = "everyone"
    proc = run("import", "-", "--db", str(target), stdin=json.dumps(document))
    assert_one_line_error(proc, "messages[4] is not a message: visibility")
    document["messages"][4]["visibility"] = "public"
    document["messages"][4]["parent_message_id"] = document["messages"][4]["id"] + 1
    assert_one_line_error(run("import", "-", "--db", str(target), stdin=json.dumps(document)))
    document["messages"][4]["parent_message_id"] = None
    document["messages"][4]["content"] = "\ud800"  # valid JSON, unstorable: fails mid-write
    proc = run("import", "-", "--db", str(target), stdin=json.dumps(document))
    assert_one_line_error(proc, "not valid Unicode", "nothing was written")
    assert not target.exists() or sqlite3.connect(target).execute(
        "SELECT count(*) FROM sessions"
    ).fetchone() == (0,)


# --- backup and prune -------------------------------------------------------------------


async def test_backup_while_agents_write_is_consistent_and_never_overwrites(
    tmp_path: Path,
) -> None:
    db, copy = tmp_path / "bb.db", tmp_path / "copy.db"
    sid = (await blackboard(db))["session_id"]
    async with spawn(db, "--agent-id", "busy") as writer:
        stop = anyio.Event()

        async def keep_writing() -> None:
            i = 0
            while not stop.is_set():
                await ok(writer, "add_message", session_id=sid, content=f"write {i} " * 50)
                i += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(keep_writing)
            proc = await anyio.run_process(
                [sys.executable, "-m", "shared_context_server", "backup", str(copy), "--db", db],
                check=False,
            )
            stop.set()
    assert proc.returncode == 0, proc.stderr
    assert b"integrity ok" in proc.stdout
    conn = sqlite3.connect(copy)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] >= 5
    assert copy.stat().st_mode & 0o077 == 0
    conn.close()
    assert_one_line_error(run("backup", str(copy), "--db", str(db)), "--force")
    assert run("backup", str(copy), "--force", "--db", str(db)).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir() if "copy" in p.name) == ["copy.db"]


async def test_prune_removes_old_archived_sessions_expired_memory_tokens_and_old_audit_only(
    target: Target,
) -> None:
    path = target
    old_sid = (await blackboard(path))["session_id"]
    db = await open_store(path)
    try:
        recent = await create_session(db, ALICE, "recently archived")
        for sid in (old_sid, recent["id"]):
            await update_session(db, ALICE, sid, status="completed")
            await update_session(db, ALICE, sid, status="archived")
        await create_session(db, ALICE, "still active")
        await memory.set_memory(db, ALICE, "stale", 1, expires_in=1)
        await memory.set_memory(db, ALICE, "kept", 2, expires_in=3600)
        await authenticate_agent(db, ALICE, "alice/old")
        await authenticate_agent(db, ALICE, "alice/new")
    finally:
        await db.close()
    await execute(
        path,
        "UPDATE sessions SET updated_at = '2020-01-01T00:00:00.000000Z' WHERE id = ?",
        (old_sid,),
    )
    await execute(
        path, "UPDATE memory SET expires_at = '2020-01-01T00:00:00.000000Z' WHERE key = 'stale'"
    )
    await execute(
        path,
        "UPDATE agent_tokens SET expires_at = '2020-01-01T00:00:00.000000Z'"
        " WHERE agent_id = 'alice/old'",
    )
    await execute(path, "UPDATE audit_log SET ts = '2020-01-01T00:00:00.000000Z' WHERE id <= 2")
    audit_entries = (await rows(path, "SELECT count(*) FROM audit_log"))[0][0]
    keep_audit = run("prune", "--dry-run", "--db", str(path), env={ENV_AUDIT_RETENTION: "0"})
    assert "audit" not in keep_audit.stdout  # retention 0 keeps every entry, as in serve
    preview = run("prune", "--dry-run", "--db", str(path))
    assert preview.stdout.strip() == (
        "would remove 1 archived session (5 messages)\nwould remove 1 expired memory entry"
        "\nwould remove 1 expired token\nwould remove 2 audit entries"
    )
    assert await rows(path, "SELECT count(*) FROM sessions") == [(3,)]
    done = run("prune", "--db", str(path))
    assert done.stdout.strip() == (
        "removed 1 archived session (5 messages)\nremoved 1 expired memory entry"
        "\nremoved 1 expired token\nremoved 2 audit entries"
    )
    assert [r[0] for r in await rows(path, "SELECT agent_id FROM agent_tokens")] == ["alice/new"]
    # What went is itself recorded, in the transaction of each batch.
    entries = await rows(
        path, "SELECT agent_id, action, target, detail FROM audit_log WHERE action = 'prune'"
    )
    assert entries == [
        ("operator", "prune", "sessions", "1 archived session, 5 messages"),
        ("operator", "prune", "memory", "1 expired memory entry"),
        ("operator", "prune", "agent_tokens", "1 expired token"),
        ("operator", "prune", "audit_log", "2 audit entries"),
    ]
    assert await rows(path, "SELECT count(*) FROM audit_log") == [(audit_entries + 2,)]
    assert [r[0] for r in await rows(path, "SELECT key FROM memory")] == ["kept"]
    left = {row[0] for row in await rows(path, "SELECT purpose FROM sessions")}
    assert left == {"recently archived", "still active"}
    assert await rows(path, "SELECT count(*) FROM messages") == [(0,)]
    assert run("prune", "--db", str(path)).stdout.strip() == "nothing to prune"
    everything = run("prune", "--archived-older-than", "0", "--db", str(path))
    assert everything.stdout.strip() == "removed 1 archived session (0 messages)"


@pytest.mark.parametrize(
    ("command", "says"),
    [
        (["export", "SID", "-o", "{tmp}/adir"], "is a directory"),
        (["export", "SID", "-o", "{tmp}/missing/x.json"], "is not a directory; create it first"),
        (["backup", "{tmp}/adir", "--force"], "is a directory"),
    ],
)
async def test_an_unusable_output_path_is_named_as_the_user_gave_it(
    tmp_path: Path, command: list[str], says: str
) -> None:
    path = tmp_path / "bb.db"
    sid = (await blackboard(path))["session_id"]
    (tmp_path / "adir").mkdir()
    args = [a.format(tmp=tmp_path).replace("SID", sid) for a in command]
    proc = run(*args, "--db", str(path))
    assert_one_line_error(proc, says)
    assert ".partial" not in proc.stderr and list((tmp_path / "adir").iterdir()) == []


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--maintenance-interval", "abc"], "invalid float value: 'abc'"),
        (["--token-ttl", "1.5"], "invalid int value: '1.5'"),
        (["prune", "--audit-retention-days", "x"], "invalid int value: 'x'"),
        (["serve", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_a_usage_mistake_is_one_line_not_the_usage_block(args: list[str], says: str) -> None:
    assert_one_line_error(run(*args), says, "--help")


def test_doctor_on_a_file_that_is_not_a_blackboard_gives_no_permission_advice(
    tmp_path: Path,
) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("not a database\n")
    other.chmod(0o644)
    proc = run("doctor", "--db", str(other))
    assert proc.returncode == 1
    assert "not an SQLite database" in proc.stdout + proc.stderr
    assert "chmod" not in proc.stdout + proc.stderr


def test_import_of_a_missing_file_says_what_to_name(tmp_path: Path) -> None:
    proc = run("import", str(tmp_path / "nothere.json"), "--db", str(tmp_path / "bb.db"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "name a file that `export` wrote" in proc.stderr
