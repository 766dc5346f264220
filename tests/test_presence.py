"""Heartbeat rows of live server processes, and the operator's progress counter."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from shared_context_server.blackboard.processes import Heartbeat, live_processes
from shared_context_server.clock import iso, now_utc, utc_now
from shared_context_server.operations.doctor import diagnose
from shared_context_server.storage.seam import Store
from shared_context_server.storage.sqlite.database import Database
from shared_context_server.terminal import Progress

INSERT = (
    "INSERT INTO server_processes (host, pid, agent_id, agent_type, client_name, started_at,"
    " last_seen) VALUES (?, ?, ?, 'generic', NULL, ?, ?)"
)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.processes
async def test_rows_not_refreshed_lately_or_of_dead_pids_are_hidden_and_deleted(
    db: Store,
) -> None:
    now, old = utc_now(), "2020-01-01T00:00:00.000000Z"
    host = socket.gethostname()
    planted = [
        (host, os.getpid(), "me", now, now),
        (host, os.getpid(), "silent", old, old),
        (host, dead_pid(), "dead", now, now),
        ("elsewhere", 1, "remote", now, now),
    ]
    await db.transact(lambda conn: [conn.execute(INSERT, row) for row in planted])
    live = await live_processes(db)
    assert [p["agent_id"] for p in live] == ["me", "remote"]
    assert len(await db.read("SELECT * FROM server_processes")) == 2


async def test_a_row_is_stale_after_three_of_its_engines_beats(db: Store) -> None:
    """An idle PostgreSQL process opens a connection for each beat, so it beats every 15 s
    (a crowd's beats then fit the connection limit); its row is live for 45 s, a file's
    for 15."""
    now = utc_now()
    ago = [(f"{s}s", iso(now_utc() - timedelta(seconds=s))) for s in (12, 20, 40, 50)]
    await db.transact(
        lambda conn: [conn.execute(INSERT, ("elsewhere", 1, name, now, t)) for name, t in ago]
    )
    live = [p["agent_id"] for p in await live_processes(db)]
    assert live == (["12s"] if db.engine == "sqlite" else ["12s", "20s", "40s"])


async def test_a_heartbeat_writes_who_it_serves_and_comes_back_after_being_judged_stale(
    db: Store,
) -> None:
    beat = Heartbeat(db, "reviewer")
    await beat.beat()
    beat.note_client("alice", "claude-code")
    await beat.beat()
    (row,) = await live_processes(db)
    assert (row["agent_id"], row["client_name"], row["pid"]) == (
        "alice",
        "claude-code",
        os.getpid(),
    )
    # As if judged stale (a laptop slept past STALE_AFTER).
    await db.transact(lambda conn: conn.execute("DELETE FROM server_processes"))
    await beat.beat()
    assert len(await live_processes(db)) == 1
    await beat.remove()
    assert await live_processes(db) == []


async def test_doctor_reports_an_older_schema_as_a_warning_without_migrating(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    db = await Database.open(path)
    await db.fetchall("PRAGMA user_version = 1")
    await db.close()
    data = await diagnose(path)
    assert data["ok"] and data["schema_version"] == 1
    assert "the next server to start migrates the file" in data["warnings"][0]["fix"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_counts_on_a_terminal_after_its_delay_and_stays_silent_otherwise() -> None:
    tty, pipe = Terminal(), io.StringIO()
    for stream, delay in ((tty, 0.0), (pipe, 0.0), (Terminal(), 60.0)):
        progress = Progress("exported", stream, delay=delay)
        progress.update(500, 1000)
        progress.finish()
    assert tty.getvalue() == "\rexported 500/1,000\n"
    assert pipe.getvalue() == ""
