"""The command line as a user runs it: real subprocesses.

Run on a SQLite file only: what is tested here never reaches an engine's differences.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from shared_context_server.cli import COMMANDS
from tests.support import run_cli

pytestmark = pytest.mark.processes  # real server processes: never quick

run = run_cli


def test_demo_shows_three_agents_and_never_touches_the_real_blackboard(tmp_path: Path) -> None:
    real = tmp_path / "real.db"
    proc = run("demo", "--pace", "0", env={"SHARED_CONTEXT_DB": str(real)})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for agent in ("security", "performance", "docs"):
        assert f"joined as {agent}" in out
    assert "private note (only security can read it)" in out
    assert "docs  can see 3 of the 6 messages" in out
    assert "security  can see 6 of the 6 messages" in out
    assert "temporary file" in out and not real.exists()
    # The closing hint launches this installation (tests/test_install.py: each route).
    assert "claude mcp add shared-context -- " in out and "--agent-id claude-main" in out


def test_demo_with_db_keeps_the_collaboration(tmp_path: Path) -> None:
    kept = tmp_path / "demo.db"
    proc = run("demo", "--pace", "0", "--db", str(kept))
    assert proc.returncode == 0, proc.stderr
    conn = sqlite3.connect(kept)
    rows = conn.execute("SELECT sender, visibility FROM messages ORDER BY id").fetchall()
    assert len(rows) == 6 and ("security", "private") in rows
    assert f"kept in {kept}" in proc.stdout
    # The hint's agents share this file, not the default one (demo.next_steps).
    assert f"--agent-id claude-main --db {kept}" in proc.stdout


def test_help_lists_every_subcommand() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    for command in COMMANDS:
        assert command in proc.stdout


def test_the_two_agents_example_runs(tmp_path: Path) -> None:
    example = Path(__file__).parents[1] / "examples" / "two_agents.py"
    proc = subprocess.run(
        [sys.executable, str(example), str(tmp_path / "ex.db")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "coder sees 1 message:" in proc.stdout  # the planner's private note stayed private
    assert "planner reads the reply: Done" in proc.stdout


@pytest.mark.parametrize("example", ["two_agents.py", "multi_agent_pipeline.py"])
def test_an_example_refuses_a_mistyped_url_rather_than_make_a_file_of_it(
    tmp_path: Path, example: str
) -> None:
    script = Path(__file__).parents[1] / "examples" / example
    proc = subprocess.run(
        [sys.executable, str(script), "postgresql:/scs:secret@db.example:5432/scs"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode != 0 and "postgresql://user@host:5432/dbname" in proc.stderr
    assert "secret" not in proc.stderr + proc.stdout
    assert list(tmp_path.iterdir()) == []


def test_the_multi_agent_pipeline_example_hands_off_security_performance_docs(
    tmp_path: Path,
) -> None:
    example = Path(__file__).parents[1] / "examples" / "multi_agent_pipeline.py"
    db = tmp_path / "pipeline.db"
    proc = subprocess.run(
        [sys.executable, str(example), str(db)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "performance  read security's #1" in proc.stdout
    assert "docs         read 2 findings from ['performance', 'security']" in proc.stdout
    assert "security     read the docs summary #3" in proc.stdout
    conn = sqlite3.connect(db)
    senders = [s for (s,) in conn.execute("SELECT sender FROM messages ORDER BY id")]
    assert senders == ["security", "performance", "docs", "security"]


def test_the_client_configs_in_the_examples_readme_are_what_config_prints() -> None:
    text = (Path(__file__).parents[1] / "examples" / "README.md").read_text()
    blocks = re.findall(r"```(\w+)\n(.*?)\n```", text, re.S)
    pairs = [
        (command, (kind, expected))
        for (_, command), (kind, expected) in itertools.pairwise(blocks)
        if command.startswith("shared-context-server config ")
    ]
    assert len(pairs) == 3
    for command, (kind, expected) in pairs:
        proc = run(*shlex.split(command)[1:])
        assert proc.returncode == 0, proc.stderr
        if kind == "json":
            assert json.loads(proc.stdout) == json.loads(expected), command
        else:
            assert proc.stdout.strip() == expected, command
