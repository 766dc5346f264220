"""A damaged environment under real server processes: each fault its own code, no crash.

SQLite only: faults of a file (disk full, read-only, deleted, replaced); PostgreSQL's
lost connection and restart are in tests/test_postgres.py and test_postgres_processes.py.
"""

from __future__ import annotations

import json
import os
import select
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared_context_server.storage.sqlite.schema import SCHEMA_VERSION
from tests.support import INITIALIZE, INITIALIZED, tool_call

pytestmark = pytest.mark.processes  # real server processes: never quick

SERVER = [sys.executable, "-m", "shared_context_server"]
MESSAGE_ROOT_PAGES = (
    "SELECT rootpage FROM sqlite_master WHERE tbl_name = 'messages' AND rootpage > 0"
)


class RawServer:
    """A server process spoken to line by line, so its exit status and stderr can be read."""

    def __init__(self, db: Path) -> None:
        self.proc = subprocess.Popen(
            [*SERVER, "--db", str(db), "--agent-id", "faults"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.buffer = b""
        self.next_id = 2
        self._send(INITIALIZE)  # answered in `ready`: servers made together start together
        self.handshaken = False

    def ready(self) -> None:
        """Wait for the answer to initialize: the server has opened the file."""
        if not self.handshaken:
            self._reply(1)
            self._send(INITIALIZED)
            self.handshaken = True

    def _send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def _reply(self, request_id: int) -> dict[str, Any]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30  # bounded: a hung server fails the test
        while True:
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                message = json.loads(line)
                if message.get("id") == request_id:
                    return dict(message)
            left = deadline - time.monotonic()
            assert left > 0, "the server did not answer within 30 s"
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                assert chunk, f"the server exited: {self.stop()[1]}"
                self.buffer += chunk

    def call(self, tool: str, **arguments: Any) -> dict[str, Any]:
        """The tool's structured result; an error's has `code` and `message`."""
        self.ready()
        request_id, self.next_id = self.next_id, self.next_id + 1
        self._send(tool_call(request_id, tool, arguments))
        result = self._reply(request_id)["result"]
        data: dict[str, Any] = result["structuredContent"]
        data["is_error"] = result.get("isError", False)
        return data

    def stop(self) -> tuple[int, str]:
        """Close stdin (the client leaves); the exit status and everything on stderr."""
        _, stderr = self.proc.communicate(timeout=30)
        return self.proc.returncode, stderr.decode()


def clean_exit(server: RawServer) -> None:
    code, stderr = server.stop()
    assert code == 0, stderr
    assert "Traceback" not in stderr, stderr


def doctor(db: Path) -> dict[str, Any]:
    done = subprocess.run(
        [*SERVER, "doctor", "--db", str(db), "--json"], capture_output=True, text=True, timeout=60
    )
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def problems(report: dict[str, Any]) -> str:
    return " | ".join(p["problem"] + " -> " + p["fix"] for p in report["problems"])


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MB tmpfs that can be filled (root only; else the test is skipped, saying why)."""
    if os.geteuid() != 0:
        pytest.skip("filling a disk needs a small tmpfs, and mounting one needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_is_storage_full_doctor_says_so_and_the_server_exits_cleanly(
    small_disk: Path,
) -> None:
    db = small_disk / "bb.db"
    server = RawServer(db)
    sid = server.call("create_session", purpose="disk")["session_id"]
    kept = server.call("add_message", session_id=sid, content="before the disk filled")
    filler = fill(small_disk)
    failed = server.call("add_message", session_id=sid, content="x" * 90_000)
    assert failed["is_error"] and failed["code"] == "STORAGE_FULL", failed
    assert "full" in failed["message"] and "doctor" in failed["message"]
    report = doctor(db)
    assert report["free_bytes"] < 1_000_000
    assert "disk holding the file is full" in problems(report)
    clean_exit(server)  # at exit its last writes fail too: logged, not a crash
    filler.unlink()
    again = RawServer(db)
    assert again.call("add_message", session_id=sid, content="space again")["message_id"]
    rows = again.call("get_context", session_id=sid)["messages"]
    assert [m["content"] for m in rows] == ["before the disk filled", "space again"]
    assert rows[0]["id"] == kept["message_id"]
    clean_exit(again)


def test_a_read_only_database_is_refused_at_start_as_storage_read_only(tmp_path: Path) -> None:
    rw = tmp_path / "rw"
    rw.mkdir()
    clean_exit(RawServer(rw / "bb.db"))
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:  # root may write any file: make the filesystem read-only instead
        if subprocess.run(["mount", "--bind", str(rw), str(ro)]).returncode:
            pytest.skip("cannot bind-mount here")
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
    else:
        ro.rmdir()
        ro = rw
        (rw / "bb.db").chmod(0o444)
    try:
        done = subprocess.run(
            [*SERVER, "--db", str(ro / "bb.db")], capture_output=True, text=True, timeout=60
        )
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", "-l", str(ro)], check=False)
    assert done.returncode == 2
    assert "STORAGE_READ_ONLY" in done.stderr and "Traceback" not in done.stderr


def test_a_malformed_page_is_storage_damaged_pointing_at_doctor(tmp_path: Path) -> None:
    db = tmp_path / "bb.db"
    server = RawServer(db)
    sid = server.call("create_session", purpose="pages")["session_id"]
    for n in range(40):
        server.call("add_message", session_id=sid, content=f"message {n} " + "words " * 100)
    clean_exit(server)  # the last close checkpoints: every page is in the file
    conn = sqlite3.connect(db)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    roots = [r[0] for r in conn.execute(MESSAGE_ROOT_PAGES)]
    conn.close()
    with db.open("r+b") as f:  # scribble over the root pages of messages and its indexes
        for root in roots:
            f.seek((root - 1) * page_size)
            f.write(b"\xa5" * page_size)
    server = RawServer(db)
    failed = server.call("get_context", session_id=sid)
    assert failed["is_error"] and failed["code"] == "STORAGE_DAMAGED", failed
    assert "doctor" in failed["message"]
    assert doctor(db)["integrity"] != "ok"
    clean_exit(server)


def _replace(db: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    clean_exit(RawServer(other))
    os.replace(other, db)


FILE_CHANGES = {
    "replaced": _replace,
    "deleted": lambda db, _: db.unlink(),
    "truncated": lambda db, _: os.truncate(db, 0),
    "-wal deleted": lambda db, _: Path(f"{db}-wal").unlink(),
    "-shm deleted": lambda db, _: Path(f"{db}-shm").unlink(),
}


@pytest.mark.parametrize("change", FILE_CHANGES)
def test_a_file_changed_under_running_servers_refuses_writes_and_doctor_names_them(
    tmp_path: Path, change: str
) -> None:
    db = tmp_path / "bb.db"
    first, second = RawServer(db), RawServer(db)
    second.ready()  # both hold the file before it changes
    sid = first.call("create_session", purpose="files")["session_id"]
    first.call("add_message", session_id=sid, content="acknowledged before")
    FILE_CHANGES[change](db, tmp_path)
    for server in (first, second):
        refused = server.call("add_message", session_id=sid, content="would vanish")
        assert refused["is_error"] and refused["code"] == "STORAGE_REPLACED", refused
        assert "doctor" in refused["message"]
    if "wal" in change or "shm" in change:  # the file is fine: say so, never "abandon it"
        assert "database file itself is fine" in refused["message"]
    else:
        assert change.split()[0] in refused["message"]
    report = doctor(db)
    holders = {h["pid"] for h in report["stale_holders"]}
    assert {first.proc.pid, second.proc.pid} <= holders, report
    assert "STORAGE_REPLACED" in problems(report)
    clean_exit(first)
    clean_exit(second)
    # No old WAL is left at the path to be read over the file there now (doctor's
    # read-only look may have made an empty one).
    wal = Path(f"{db}-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    if change == "deleted":
        return
    conn = sqlite3.connect(db)  # as the next server opens it
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    if change != "truncated":
        contents = [r[0] for r in conn.execute("SELECT content FROM messages")]
        # The file put in place stays what it was; a deleted -wal or -shm loses nothing.
        assert contents == ([] if change == "replaced" else ["acknowledged before"])
    conn.close()


@pytest.mark.parametrize("deleted", ["-wal", "-shm"])
def test_writes_acknowledged_before_the_wal_was_deleted_outlive_killed_servers(
    tmp_path: Path, deleted: str
) -> None:
    db = tmp_path / "bb.db"
    first, second = RawServer(db), RawServer(db)
    sid = first.call("create_session", purpose="kill")["session_id"]
    acknowledged = [
        server.call("add_message", session_id=sid, content=f"acknowledged {n}")["message_id"]
        for n in range(20)
        for server in (first, second)
    ]
    Path(f"{db}{deleted}").unlink()
    for server in (first, second):  # each notices at its next write (or heartbeat)
        refused = server.call("add_message", session_id=sid, content="refused")
        assert refused["code"] == "STORAGE_REPLACED", refused
        server.proc.kill()
        server.proc.wait(timeout=30)
    third = RawServer(db)
    kept = [m["id"] for m in third.call("get_context", session_id=sid, limit=100)["messages"]]
    assert kept == acknowledged
    added = third.call("add_message", session_id=sid, content="a fresh id")
    assert added["message_id"] > max(acknowledged)
    clean_exit(third)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()


def test_another_programs_sqlite_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    foreign = tmp_path / "notes.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.execute("INSERT INTO notes VALUES ('mine')")
    conn.commit()
    conn.close()
    before = foreign.read_bytes()
    done = subprocess.run(
        [*SERVER, "--db", str(foreign)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "another program" in done.stderr and "Traceback" not in done.stderr
    assert foreign.read_bytes() == before  # not migrated, not even switched to WAL


def test_a_blackboard_of_an_earlier_release_is_still_opened(tmp_path: Path) -> None:
    db = tmp_path / "bb.db"
    clean_exit(RawServer(db))
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA application_id = 0")  # as files made before the id was written
    conn.commit()
    conn.close()
    server = RawServer(db)
    assert server.call("create_session", purpose="old file")["session_id"]
    clean_exit(server)


def test_a_running_server_stops_writing_when_a_newer_release_migrates_the_file(
    tmp_path: Path,
) -> None:
    db = tmp_path / "bb.db"
    server = RawServer(db)
    sid = server.call("create_session", purpose="versions")["session_id"]
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    refused = server.call("add_message", session_id=sid, content="after the upgrade")
    assert refused["is_error"] and refused["code"] == "SCHEMA_TOO_NEW", refused
    clean_exit(server)
    start = subprocess.run([*SERVER, "--db", str(db)], capture_output=True, text=True, timeout=60)
    assert start.returncode == 2
    assert refused["message"] in start.stderr  # the same upgrade message as at start-up
