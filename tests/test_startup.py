"""What a server's start-up does, which every agent's client waits for (its time is
measured in tests/benchmarks/bench.py, never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared_context_server.server import toolsets
from shared_context_server.server.toolsets import TOOL_LIST_FILE, generate_tool_lists


@pytest.mark.processes
def test_serving_leaves_the_operator_commands_dashboard_records_and_rapidfuzz_unimported() -> None:
    # Every agent's client waits for its server to start: what serving does not use is
    # imported when it is first used (start-up is measured in tests/benchmarks/bench.py).
    code = (
        "import sys; from shared_context_server import cli; "
        "from shared_context_server.server import app; "
        "print(' '.join(sorted(sys.modules)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert "shared_context_server.server.app" in loaded
    unwanted = (
        "shared_context_server.operations.",
        "shared_context_server.server.records",
        "shared_context_server.dashboard",
        "shared_context_server.storage.postgres.database",
    )
    # psycopg and pglast (the PostgreSQL driver and parser) load only for a postgresql:// --db.
    late = [
        m
        for m in loaded
        if m.startswith(unwanted) or m.split(".")[0] in ("rapidfuzz", "psycopg", "pglast")
    ]
    assert late == ["shared_context_server.operations.client_config"]


def test_the_shipped_tool_list_of_every_toolset_is_what_the_models_say() -> None:
    shipped = json.loads(TOOL_LIST_FILE.read_text())
    assert shipped == generate_tool_lists(), (
        "tool_list.json is out of date: run "
        "`.venv/bin/python -m shared_context_server.server.toolsets` and commit it"
    )


def test_without_the_shipped_file_the_tool_list_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(toolsets, "TOOL_LIST_FILE", tmp_path / "missing.json")
    assert toolsets._shipped_tool_lists() == generate_tool_lists()
    assert "missing or unreadable" in caplog.text
