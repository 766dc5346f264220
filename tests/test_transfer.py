"""export and import at any size: JSON Lines read and written in bounded memory, every
record checked before anything is written, short write transactions that other agents'
writers do not wait long behind, a rerun that continues, and an export that never writes
through a planted link."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
import pytest

from shared_context_server.blackboard.acks import acknowledge
from shared_context_server.blackboard.messages import add_message, get_message
from shared_context_server.blackboard.sessions import create_session
from shared_context_server.cli import main
from shared_context_server.errors import DatabaseBusy
from shared_context_server.operations.import_read import ExportReader, ImportedMessage
from shared_context_server.operations.import_write import BATCH, import_messages
from shared_context_server.operations.transfer import Form, export_session
from shared_context_server.operations.viewers import ADMIN_VIEWER
from shared_context_server.storage.opener import open_store
from shared_context_server.storage.seam import Store, Target
from shared_context_server.storage.sqlite.database import Database
from tests.support import ALICE, BOB, CAROL, rows, run_cli

SID = "sess_0123456789abcdef"
TIME = "2026-11-22T05:33:12.123456Z"


def header(**changes: Any) -> dict[str, Any]:
    session = {
        "id": SID,
        "purpose": "bulk",
        "status": "active",
        "created_by": "alice",
        "created_at": TIME,
        "updated_at": TIME,
        "metadata": None,
    }
    return {
        "format": "shared-context-server/session",
        "version": 1,
        "form": "json-lines",
        "exported_at": TIME,
        "view": "admin",
        "complete": True,
        "session": {**session, **changes.pop("session", {})},
        **changes,
    }


def message(i: int, **changes: Any) -> dict[str, Any]:
    return {
        "id": i,
        "sender": "alice" if i % 2 else "bob",
        "sender_type": "generic",
        "content": f"message {i} " + "x" * 80,
        "visibility": "public",
        "message_type": "message",
        "metadata": None,
        "parent_message_id": i - 1 if i % 3 == 0 else None,
        "created_at": TIME,
        **changes,
    }


def lines(count: int, head: dict[str, Any] | None = None) -> Iterator[str]:
    yield json.dumps(head or header()) + "\n"
    for i in range(1, count + 1):
        yield json.dumps(message(i)) + "\n"


def write_lines(path: Path, count: int) -> Path:
    with path.open("w") as out:
        out.writelines(lines(count))
    return path


def assert_refused(proc: subprocess.CompletedProcess[str], *phrases: str) -> None:
    assert proc.returncode == 2, proc
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "unexpected" not in proc.stderr, proc.stderr
    for phrase in phrases:
        assert phrase in proc.stderr, proc.stderr


def test_import_of_dev_zero_is_refused_by_its_size_without_a_traceback(tmp_path: Path) -> None:
    proc = run_cli("import", "/dev/zero", "--db", str(tmp_path / "bb.db"))
    assert_refused(proc, "larger than 32 MB", "re-export the session", "nothing was written")


def test_a_line_longer_than_any_message_is_refused_by_its_number(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", 2)
    with path.open("a") as out:
        out.write('{"content": "' + "x" * 3 * 2**20 + '"}\n')
    proc = run_cli("import", str(path), "--db", str(tmp_path / "bb.db"))
    assert_refused(proc, "line 4 is longer than 2 MB", "nothing was written")


@pytest.mark.parametrize(
    ("head", "bad", "phrase"),
    [
        ({}, {"created_at": "2026-13-01T00:00:00.000000Z"}, "line 3 is not a message: created_at"),
        ({}, {"created_at": "2026-11-22T99:99:00.000000Z"}, "not a real date and time"),
        ({}, {"created_at": "2999-01-01T00:00:00.000000Z"}, "more than a day in the future"),
        ({}, {"id": 0}, "must be a message id"),
        ({"version": 0}, {}, "line 1 is not a session export: version: Value error, must be 1"),
        ({"session": {"id": "../../../etc/passwd"}}, {}, "must be a session id like sess_"),
        ({"session": {"updated_at": "2026-02-30T00:00:00.000000Z"}}, {}, "not a real date"),
    ],
)
def test_import_refuses_bad_dates_versions_and_session_ids_writing_nothing(
    tmp_path: Path, head: dict[str, Any], bad: dict[str, Any], phrase: str
) -> None:
    path = tmp_path / "in.jsonl"
    text = list(lines(3, header(**head)))
    text[2] = json.dumps(message(2, **bad)) + "\n"  # line 3
    path.write_text("".join(text))
    db = tmp_path / "bb.db"
    assert_refused(run_cli("import", str(path), "--db", str(db)), phrase, "nothing was written")
    assert not db.exists() or anyio.run(rows, db, "SELECT count(*) FROM sessions") == [(0,)]


@pytest.mark.parametrize("form", ["jsonl", "json"])
async def test_a_hand_off_keeps_who_acknowledged_it_through_export_and_import(
    target: Target, other_target: Target, form: Form
) -> None:
    source = await open_store(target)
    try:
        sid = (await create_session(source, ALICE, "hand-offs"))["id"]
        sent = await add_message(source, ALICE, sid, "yours", metadata={"to": ["bob", "carol"]})
        await acknowledge(source, BOB, sid, [sent["message_id"]])
        before = await get_message(source, ALICE, sid, sent["message_id"])
        out = io.StringIO()
        await export_session(source, ADMIN_VIEWER, sid, out.write, form)
    finally:
        await source.close()
    file = ExportReader(io.BytesIO(out.getvalue().encode()), "out")
    copy = await open_store(other_target)
    try:
        await import_messages(copy, file.header, file.messages())
        (row,) = await copy.read("SELECT message_id FROM imported_messages")
        after = await get_message(copy, CAROL, sid, row[0])
    finally:
        await copy.close()
    assert list(before["acknowledged"]) == ["bob"]
    assert after["acknowledged"] == before["acknowledged"]  # the same agent, the same time
    assert after["unacknowledged"] == before["unacknowledged"] == ["carol"]


@pytest.mark.parametrize(
    ("acks", "phrase"),
    [
        ({"acknowledged": {"dave": TIME}}, "line 3: acknowledged names 'dave'"),
        ({"unacknowledged": ["alice"]}, "line 3: unacknowledged names 'alice'"),
        ({"acknowledged": {"bob": TIME}, "unacknowledged": ["bob"]}, "line 3: 'bob' is both"),
        ({"acknowledged": {"bob": "yesterday"}}, "line 3 is not a message: acknowledged.bob"),
        ({"acknowledged": {"bad name!": TIME}}, "line 3 is not a message: acknowledged.bad"),
    ],
)
def test_import_refuses_acknowledgements_by_agents_the_hand_off_does_not_address(
    tmp_path: Path, acks: dict[str, Any], phrase: str
) -> None:
    path = tmp_path / "in.jsonl"
    text = list(lines(3))
    hand_off = message(2, sender="alice", metadata={"to": ["bob", "carol"]}, **acks)
    text[2] = json.dumps(hand_off) + "\n"
    path.write_text("".join(text))
    db = tmp_path / "bb.db"
    assert_refused(run_cli("import", str(path), "--db", str(db)), phrase, "nothing was written")
    assert not db.exists() or anyio.run(rows, db, "SELECT count(*) FROM sessions") == [(0,)]


def test_export_does_not_follow_a_link_planted_at_its_partial_file(tmp_path: Path) -> None:
    db = tmp_path / "bb.db"
    assert (
        run_cli("import", str(write_lines(tmp_path / "in.jsonl", 3)), "--db", str(db)).returncode
        == 0
    )
    victim = tmp_path / "victim"
    victim.write_text("precious")
    out = tmp_path / "out.jsonl"
    (tmp_path / f".out.jsonl.{os.getpid()}.partial").symlink_to(victim)  # the old name
    assert main(["export", SID, "--admin", "--db", str(db), "-o", str(out)]) == 0
    assert victim.read_text() == "precious"
    assert out.read_text().count("\n") == 4 and not out.is_symlink()
    assert [p.name for p in tmp_path.glob(".out.jsonl.*")] == [f".out.jsonl.{os.getpid()}.partial"]


class Interrupted(Exception):
    pass


def cut_after(messages: Iterator[ImportedMessage], count: int) -> Iterator[ImportedMessage]:
    """The messages, then an interruption (a kill, a lost connection) after `count`."""
    for n, m in enumerate(messages, 1):
        if n > count:
            raise Interrupted
        yield m


def reader(count: int) -> ExportReader:
    return ExportReader(io.BytesIO("".join(lines(count)).encode()), "in.jsonl")


async def test_a_rerun_of_an_interrupted_import_continues_without_duplicates(
    target: Target,
) -> None:
    total = 2 * BATCH + 50
    db = await open_store(target)
    try:
        first = reader(total)
        with pytest.raises(Interrupted):
            await import_messages(db, first.header, cut_after(first.messages(), BATCH + 10))
        assert [tuple(r) for r in await db.read("SELECT count(*) FROM messages")] == [(BATCH,)]
        again = reader(total)
        result = await import_messages(db, again.header, again.messages())
        assert result["resumed"] and result["messages"] == total and result["session_id"] == SID
        done = reader(total)
        repeat = await import_messages(db, done.header, done.messages())
        assert repeat["already_imported"] and repeat["messages"] == total
        stored = await db.read(
            "SELECT m.id, m.content, p.content FROM messages m"
            " LEFT JOIN messages p ON p.id = m.parent_message_id ORDER BY m.id"
        )
    finally:
        await db.close()
    assert [row[1] for row in stored] == [message(i)["content"] for i in range(1, total + 1)]
    for i, row in enumerate(stored, 1):  # replies across batches found their parents
        assert row[2] == (message(i - 1)["content"] if i % 3 == 0 else None)
    audited = await rows(target, "SELECT action, detail FROM audit_log")
    assert audited == [("import", f"{total} messages")]


@pytest.mark.parametrize("status", ["completed", "archived"])
async def test_a_closed_session_imports_whole_and_keeps_its_status(
    target: Target, status: str
) -> None:
    # Every batch posts into the session, which PostgreSQL refuses for a closed one as a
    # tool would: the import writes it active and closes it in its last transaction.
    total = BATCH + 5
    source = ExportReader(
        io.BytesIO("".join(lines(total, header(session={"status": status}))).encode()),
        "in.jsonl",
    )
    db = await open_store(target)
    try:
        result = await import_messages(db, source.header, source.messages())
    finally:
        await db.close()
    assert result["messages"] == total
    assert await rows(target, "SELECT status, updated_at FROM sessions") == [(status, TIME)]
    assert await rows(target, "SELECT count(*) FROM messages") == [(total,)]


def test_importing_a_file_twice_adds_nothing_the_second_time(tmp_path: Path) -> None:
    path, db = write_lines(tmp_path / "in.jsonl", 5), str(tmp_path / "bb.db")
    assert "imported session" in run_cli("import", str(path), "--db", db).stdout
    again = run_cli("import", "-", "--db", db, stdin=path.read_text())
    assert (
        again.returncode == 0
        and "imported before" in again.stdout
        and "nothing added" in again.stdout
    )
    assert anyio.run(rows, Path(db), "SELECT count(*) FROM messages") == [(5,)]


async def test_other_agents_write_while_a_large_import_runs(target: Target, tmp_path: Path) -> None:
    db: Store
    if isinstance(target, Path):  # a one-second bound: one transaction for it all would pass it
        count = 30_000
        db = await Database.open(target, busy_timeout_ms=1000, busy_retries=0)
    else:  # PostgreSQL's writers to other sessions never wait for an import; a shorter run
        count = 5_000
        db = await open_store(target)
    path = write_lines(tmp_path / "big.jsonl", count)
    written, during = 0, 0
    try:
        sid = (await create_session(db, ALICE, "meanwhile"))["id"]
        command = [sys.executable, "-m", "shared_context_server", "import", str(path)]
        async with await anyio.open_process([*command, "--db", str(target)]) as importer:
            with anyio.fail_after(240):
                while importer.returncode is None:
                    try:
                        await add_message(db, BOB, sid, f"still here {written}")
                    except DatabaseBusy as error:  # pragma: no cover - the defect
                        pytest.fail(f"add_message waited past its bound: {error}")
                    written += 1
                    imported = await db.read_one("SELECT count(*) FROM imported_messages")
                    during += 0 < (imported[0] if imported else 0) < count
                    await anyio.sleep(0.02)
            assert await importer.wait() == 0
    finally:
        await db.close()
    assert during >= 5  # the writes overlapped the import, not only its start or end
    assert await rows(target, "SELECT count(*) FROM messages WHERE session_id = ?", (SID,)) == [
        (count,)
    ]


async def test_ctrl_c_during_an_import_says_how_far_it_got_and_a_rerun_finishes_it(
    tmp_path: Path,
) -> None:
    count, db = 20_000, tmp_path / "bb.db"
    path = write_lines(tmp_path / "big.jsonl", count)
    command = [sys.executable, "-m", "shared_context_server", "import", str(path), "--db", str(db)]
    async with await anyio.open_process(command) as importer:
        with anyio.fail_after(120):
            while imported(db) == 0:  # noqa: ASYNC110 (polls another process's file)
                await anyio.sleep(0.05)
        importer.send_signal(signal.SIGINT)
        assert await importer.wait() == 130
        assert importer.stderr is not None
        stderr = (await importer.stderr.receive()).decode()
    assert "Traceback" not in stderr and "run the same import again to continue" in stderr
    assert 0 < imported(db) < count
    proc = run_cli("import", str(path), "--db", str(db))
    assert proc.returncode == 0 and "continuing an interrupted import" in proc.stdout, proc
    stored = await rows(db, "SELECT count(*), count(DISTINCT content) FROM messages")
    assert stored == [(count, count)]


def imported(db: Path) -> int:
    """How many messages an import has committed so far (0 before its schema exists)."""
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            return int(conn.execute("SELECT count(*) FROM imported_messages").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
