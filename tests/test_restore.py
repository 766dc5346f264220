"""`restore BACKUP` as a user runs it, against real server processes on tmp files."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from shared_context_server.storage.sqlite.schema import SCHEMA_VERSION
from tests.support import run_cli
from tests.test_storage_faults import RawServer, clean_exit

pytestmark = pytest.mark.processes  # real server processes: never quick


def contents(db: Path) -> list[str]:
    """The messages at `db`, read as a fresh process would, after an integrity check."""
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return [r[0] for r in conn.execute("SELECT content FROM messages ORDER BY id")]
    finally:
        conn.close()


def backed_up(tmp_path: Path) -> tuple[Path, Path, str]:
    """A blackboard with one message backed up and one written after; no server running."""
    db, copy = tmp_path / "bb.db", tmp_path / "copy.db"
    server = RawServer(db)
    server.ready()  # the server has opened the file
    sid = server.call("create_session", purpose="restore")["session_id"]
    server.call("add_message", session_id=sid, content="in the backup")
    assert run_cli("backup", str(copy), "--db", str(db)).returncode == 0
    server.call("add_message", session_id=sid, content="after the backup")
    clean_exit(server)
    return db, copy, sid


def test_restore_puts_the_backup_in_place_keeps_the_old_file_and_servers_carry_on(
    tmp_path: Path,
) -> None:
    db, copy, sid = backed_up(tmp_path)
    done = run_cli("restore", str(copy), "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert "1 session, 1 message" in done.stdout and "integrity ok" in done.stdout
    side = next(tmp_path.glob("bb.db.before-restore-*"))
    assert str(side) in done.stdout
    assert contents(side) == ["in the backup", "after the backup"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["bb.db", "copy.db", side.name])
    server = RawServer(db)  # a server on the restored file: its contents, fresh ids
    server.ready()  # the server has opened the file
    added = server.call("add_message", session_id=sid, content="after the restore")
    assert not added["is_error"], added
    clean_exit(server)
    assert contents(db) == ["in the backup", "after the restore"]
    assert contents(copy) == ["in the backup"]  # the backup itself is left as it was


def test_restore_refuses_while_a_server_uses_the_file_and_names_it(tmp_path: Path) -> None:
    db, copy, _ = backed_up(tmp_path)
    server = RawServer(db)
    server.ready()  # the server has opened the file
    done = run_cli("restore", str(copy), "--db", str(db))
    assert done.returncode == 2
    assert f"pid {server.proc.pid}" in done.stderr and "faults" in done.stderr
    assert "Close those agents' clients" in done.stderr and "doctor" in done.stderr
    clean_exit(server)
    assert contents(db) == ["in the backup", "after the backup"]
    assert not list(tmp_path.glob("*before-restore*")) and not list(tmp_path.glob(".*"))


def test_restore_after_a_killed_server_keeps_what_only_its_wal_held(tmp_path: Path) -> None:
    db, copy, sid = backed_up(tmp_path)
    server = RawServer(db)
    server.ready()  # the server has opened the file
    server.call("add_message", session_id=sid, content="only in the WAL")
    server.proc.kill()  # no clean exit: the commit is in the -wal alone
    server.proc.wait(timeout=30)
    assert Path(f"{db}-wal").stat().st_size > 0
    done = run_cli("restore", str(copy), "--db", str(db))
    assert done.returncode == 0, done.stderr
    side = next(tmp_path.glob("bb.db.before-restore-*"))
    assert contents(side)[-1] == "only in the WAL"
    assert contents(db) == ["in the backup"]


def test_restore_with_discard_old_keeps_no_side_copy(tmp_path: Path) -> None:
    db, copy, _ = backed_up(tmp_path)
    done = run_cli("restore", str(copy), "--db", str(db), "--discard-old")
    assert done.returncode == 0, done.stderr
    assert "discarded" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bb.db", "copy.db"]
    assert contents(db) == ["in the backup"]


def test_restore_replaces_a_damaged_database(tmp_path: Path) -> None:
    db, copy, _ = backed_up(tmp_path)
    damaged = b"SQLite format 3\x00" + b"\xa5" * 8000
    db.write_bytes(damaged)
    done = run_cli("restore", str(copy), "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert contents(db) == ["in the backup"]
    assert next(tmp_path.glob("bb.db.before-restore-*")).read_bytes() == damaged


def _corrupt(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[4096:8192] = b"\xa5" * 4096
    path.write_bytes(bytes(raw))


def _foreign(path: Path) -> None:
    path.unlink()
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    conn.close()


def _newer(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()


BAD_BACKUPS: dict[str, tuple[Callable[[Path], None], str]] = {
    "damaged": (_corrupt, "integrity check"),
    "not sqlite": (lambda p: p.write_bytes(b"hello" * 1000), "not a database"),
    "another program's": (_foreign, "another program"),
    "a newer schema": (_newer, "newer than this"),
}


@pytest.mark.parametrize("kind", BAD_BACKUPS)
def test_restore_checks_the_backup_first_and_changes_nothing_when_it_is_bad(
    tmp_path: Path, kind: str
) -> None:
    db, copy, _ = backed_up(tmp_path)
    spoil, said = BAD_BACKUPS[kind]
    spoil(copy)
    before = db.read_bytes()
    done = run_cli("restore", str(copy), "--db", str(db))
    assert done.returncode == 2 and said in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bb.db", "copy.db"]


def test_restore_on_a_postgresql_url_says_to_use_pg_restore() -> None:
    done = run_cli("restore", "dump.pgc", "--db", "postgresql://u:secret@h/db")
    assert done.returncode == 2 and "pg_restore" in done.stderr
    assert "secret" not in done.stderr
