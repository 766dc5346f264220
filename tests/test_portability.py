"""The fallbacks for what POSIX has and Windows lacks, exercised here by making this
process look like Windows where the code asks (sys.platform), or like an event loop
without signal handlers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from shared_context_server.blackboard import processes
from shared_context_server.operations import doctor
from shared_context_server.server import app


def test_a_live_and_a_finished_process_are_told_apart() -> None:
    assert processes.pid_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not processes.pid_alive(child.pid)


def test_windows_never_signals_a_process_to_see_if_it_lives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[int] = []
    monkeypatch.setattr(processes.sys, "platform", "win32")
    monkeypatch.setattr(processes, "_windows_pid_alive", lambda pid: asked.append(pid) or True)
    monkeypatch.setattr(processes.os, "kill", lambda *a: pytest.fail("os.kill on Windows"))
    assert processes.pid_alive(1234) and asked == [1234]


def test_doctor_on_windows_reports_no_permission_bits(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    db = tmp_path / "open.db"
    db.write_bytes(b"")
    db.chmod(0o666)
    report = doctor.Report(db)
    monkeypatch.setattr(doctor.sys, "platform", "win32")
    doctor._permissions(report, db)
    assert report.healthy and report.data["permissions"] == {}
    monkeypatch.undo()
    doctor._permissions(report, db)  # the same file on POSIX is a problem
    assert not report.healthy


async def test_ctrl_c_handling_steps_aside_where_the_loop_takes_no_signal_handlers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*signals: int) -> None:
        raise NotImplementedError  # as asyncio's add_signal_handler on Windows

    monkeypatch.setattr(app.anyio, "open_signal_receiver", refuse)
    pressed = anyio.Event()
    with anyio.fail_after(5), anyio.CancelScope() as scope:
        await app._cancel_on_ctrl_c(scope, pressed)
    assert not pressed.is_set() and not scope.cancel_called
