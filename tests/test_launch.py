"""How a newcomer gets this package and starts it: the version, every printed launch
command (pinned to 2.x: the index's 1.x under the same name is another project), a server
started by hand from a terminal, and what the terminal prints.

Run on a SQLite file only: what is tested here never reaches an engine's differences.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import tomllib
from contextlib import closing
from importlib.metadata import version
from pathlib import Path
from typing import Any

import anyio
import pytest
from packaging.specifiers import SpecifierSet

from shared_context_server.about import PACKAGE, REQUIREMENT, UVX, UVX_POSTGRES
from shared_context_server.cli import CLIENT_NAMES
from shared_context_server.errors import InvalidInput
from shared_context_server.operations import client_config
from shared_context_server.operations.client_config import server_command, uv_cache_of
from shared_context_server.storage.sqlite.schema import SCHEMA_VERSION
from tests.support import poll_until, run_cli

ROOT = Path(__file__).parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# Everything a newcomer reads a launch command from, besides what the code prints.
DOCUMENTS = [ROOT / "README.md", ROOT / "examples" / "README.md", *(ROOT / "docs").glob("*.md")]
SOURCES = sorted((ROOT / "src").rglob("*.py"))


run = run_cli


def test_the_release_is_2_x_and_the_pin_admits_it_but_never_the_other_projects_1_x() -> None:
    project = PYPROJECT["project"]
    assert project["version"] == version(PACKAGE)
    assert int(project["version"].split(".")[0]) == 2
    # No address nobody chose: the source is this clone and the sdist (README).
    assert "urls" not in project
    pin = SpecifierSet(REQUIREMENT.removeprefix(PACKAGE))
    assert project["version"] in pin
    assert not any(v in pin for v in ("1.1.0", "1.1.9", "1.99"))


@pytest.mark.processes
def test_version_flag_prints_the_installed_version() -> None:
    proc = run("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"shared-context-server {version(PACKAGE)}\n"


def configured_command(client: str, *args: str) -> list[str]:
    """The command line `config CLIENT ARGS` tells the client to run."""
    proc = run("config", client, *args)
    assert proc.returncode == 0, proc.stderr
    if client == "claude-code":
        words = shlex.split(proc.stdout.splitlines()[0])
        return words[words.index("--") + 1 :]
    if client == "codex":
        entry = tomllib.loads(proc.stdout)["mcp_servers"]["shared-context"]
    else:
        document = json.loads(proc.stdout)
        entry = document if client == "generic" else document["mcpServers"]["shared-context"]
    return [entry["command"], *entry["args"]]


@pytest.mark.processes
@pytest.mark.parametrize("client", CLIENT_NAMES)
def test_every_clients_config_launches_the_pinned_package(client: str) -> None:
    assert configured_command(client, "--agent-id", "a") == [*UVX, "--agent-id", "a"]


@pytest.mark.processes
@pytest.mark.parametrize("client", CLIENT_NAMES)
def test_a_postgresql_url_config_brings_the_driver_and_keeps_the_url_whole(client: str) -> None:
    url = "postgresql://scs@db.example:5432/scs?sslmode=verify-full&connect_timeout=3"
    command = configured_command(client, "--agent-id", "a", "--db", url)
    assert command == [*UVX_POSTGRES, "--agent-id", "a", "--db", url]


def _as_commands(text: str) -> str:
    """`text` with each JSON block's server entries written as the command they run."""

    def entries(node: Any) -> list[list[str]]:
        if isinstance(node, dict):
            if "command" in node:
                return [[node["command"], *node.get("args", [])]]
            return [e for value in node.values() for e in entries(value)]
        return []

    def rewrite(block: re.Match[str]) -> str:
        return "\n".join(shlex.join(e) for e in entries(json.loads(block[1])))

    return re.sub(r"```json\n(.*?)\n```", rewrite, text, flags=re.S)


def unpinned_launches(text: str) -> list[str]:
    """Lines that launch this package through uvx or pipx without the 2.x pin (or a path:
    a clone, before 2.0.0 is on the index)."""
    bad = []
    for line in _as_commands(text).splitlines():
        for tool in ("uvx", "pipx install"):
            for found in re.finditer(rf"\b{tool}\b", line):
                rest = line[found.end() :].replace("`", " ")
                if PACKAGE not in rest:
                    continue  # prose about the tool, not a command
                words = rest.split()
                target = words[1] if tool == "uvx" and words[:1] == ["--from"] else None
                if tool == "pipx install":
                    target = words[0] if words else None
                target = (target or "").strip("'\"").replace("[postgres]", "")
                if target != REQUIREMENT and not target.startswith(("/", ".", "~", "git+")):
                    bad.append(line)
    return bad


def test_the_pin_check_catches_an_unpinned_command() -> None:
    assert unpinned_launches("run `uvx shared-context-server --agent-id a`") != []
    assert unpinned_launches('"command": "uvx"') == []  # prose-like fragment: no package
    block = '```json\n{"command": "uvx", "args": ["shared-context-server"]}\n```'
    assert unpinned_launches(block) != []
    assert unpinned_launches("pipx install shared-context-server") != []
    assert unpinned_launches("uvx --from 'shared-context-server>=1' shared-context-server") != []


@pytest.mark.parametrize("path", DOCUMENTS + SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_launch_command_written_down_is_pinned(path: Path) -> None:
    assert unpinned_launches(path.read_text()) == []


@pytest.mark.processes
def test_doctor_shows_the_package_version_beside_the_schema_version(tmp_path: Path) -> None:
    db = tmp_path / "bb.db"
    assert run("serve", "--db", str(db)).returncode == 0  # creates and migrates the file
    text = run("doctor", "--db", str(db)).stdout
    assert f"release       shared-context-server {version(PACKAGE)} (schema version" in text
    data = json.loads(run("doctor", "--db", str(db), "--json").stdout)
    assert data["package_version"] == version(PACKAGE)
    assert data["schema_version"] == data["expected_schema_version"] == SCHEMA_VERSION


def uv_cache(tmp_path: Path) -> Path:
    """uv's cache layout: CACHEDIR.TAG at the root, uvx's environments in archive-v0."""
    cache = tmp_path / "uv-cache"
    (cache / "archive-v0" / "Ab12Cd" / "bin").mkdir(parents=True)
    (cache / "CACHEDIR.TAG").write_text("Signature: 8a477f597d28d172789f06886806bc55\n")
    return cache


def test_uv_cache_paths_are_recognised_and_others_are_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UV_CACHE_DIR", raising=False)
    cache = uv_cache(tmp_path)
    assert uv_cache_of(cache / "archive-v0" / "Ab12Cd" / "bin" / "python") == cache
    assert uv_cache_of(Path(sys.executable)) is None
    elsewhere = tmp_path / "moved"
    monkeypatch.setenv("UV_CACHE_DIR", str(elsewhere))
    assert uv_cache_of(elsewhere / "anything" / "bin" / "python") == elsewhere


def test_config_local_refuses_an_executable_in_uvs_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As `uvx --from ... shared-context-server config cursor --local` runs: the interpreter
    # and the script live in one of uvx's throwaway environments.
    monkeypatch.delenv("UV_CACHE_DIR", raising=False)
    bin_dir = uv_cache(tmp_path) / "archive-v0" / "Ab12Cd" / "bin"
    (bin_dir / PACKAGE).write_text("#!/bin/sh\n")
    monkeypatch.setattr(client_config.sys, "executable", str(bin_dir / "python"))
    with pytest.raises(InvalidInput, match="inside uv's cache") as refused:
        server_command(local=True)
    assert f"--from '{REQUIREMENT}'" in str(refused.value)
    from shared_context_server.cli import main

    assert main(["config", "cursor", "--local", "--agent-id", "a"]) == 2


def test_config_local_outside_a_cache_names_this_installation() -> None:
    command = server_command(local=True)
    assert Path(command[0]).is_absolute() and Path(command[0]).exists()


def heartbeat_of(db: Path, pid: int) -> bool:
    if not db.exists():
        return False
    with closing(sqlite3.connect(db)) as conn:
        try:
            rows = conn.execute("SELECT 1 FROM server_processes WHERE pid = ?", (pid,))
            return rows.fetchone() is not None
        except sqlite3.OperationalError:  # not migrated yet
            return False


@pytest.mark.processes
async def test_started_from_a_terminal_it_says_what_it_is_and_ctrl_c_ends_it_at_once(
    tmp_path: Path,
) -> None:
    pty = pytest.importorskip("pty")  # a pseudo-terminal: POSIX only
    leader, terminal = pty.openpty()
    db = tmp_path / "t.db"
    command = [sys.executable, "-m", "shared_context_server", "--db", str(db)]
    try:
        async with await anyio.open_process(
            command, stdin=terminal, stdout=subprocess.DEVNULL
        ) as server:
            assert server.stderr is not None
            said = ""
            try:
                with anyio.fail_after(30):
                    while not said.endswith("\n"):
                        said += (await server.stderr.receive()).decode()
                    # Serving has begun once the file holds its heartbeat: the transport's
                    # thread is reading the terminal. Then Ctrl-C, as the terminal sends it.
                    await poll_until(lambda: heartbeat_of(db, server.pid))
                    server.send_signal(signal.SIGINT)
                    assert await server.wait() == 0  # without a press of Enter
                    # It left cleanly: its heartbeat row went with it.
                    assert not heartbeat_of(db, server.pid)
            finally:
                if server.returncode is None:  # still waiting for Enter: the failure
                    server.kill()
    finally:
        os.close(leader)
        os.close(terminal)
    assert said.count("\n") == 1
    assert "MCP server" in said and "shared-context-server demo" in said
    assert version(PACKAGE) in said


@pytest.mark.processes
def test_the_examples_readme_commands_run_as_written_from_the_clone(tmp_path: Path) -> None:
    if not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip("the commands name the clone's .venv, which this checkout does not have")
    text = (ROOT / "examples" / "README.md").read_text()
    block = next(b for b in re.findall(r"```sh\n(.*?)\n```", text, re.S) if "examples/" in b)
    db = str(tmp_path / "pipeline.db")
    outputs = []
    for line in block.splitlines():
        words = [w.replace("/tmp/pipeline.db", db) for w in shlex.split(line, comments=True)]
        proc = subprocess.run(words, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, (line, proc.stderr)
        outputs.append(proc.stdout)
    transcript = outputs[1].splitlines()[-1].removeprefix("the transcript: ")
    tail = subprocess.run(shlex.split(transcript), capture_output=True, text=True, timeout=60)
    assert tail.returncode == 0 and "Review PR #7" in tail.stdout, tail.stderr
    assert "Review PR #7" in outputs[2]  # `sessions` lists the pipeline's session


@pytest.mark.processes
def test_an_example_run_without_the_projects_python_says_which_to_use() -> None:
    # -S: no site-packages, as a system python without the project installed.
    proc = subprocess.run(
        [sys.executable, "-S", "examples/two_agents.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert ".venv/bin/python examples/two_agents.py" in proc.stderr


@pytest.mark.parametrize(
    ("n", "plural", "said"),
    [
        (1, "archived sessions", "1 archived session"),
        (1, "expired memory entries", "1 expired memory entry"),
        (1, "live server processes", "1 live server process"),
        (0, "messages", "0 messages"),
        (2, "reply-to links", "2 reply-to links"),
        (1200, "messages", "1,200 messages"),
    ],
)
def test_counts_are_singular_for_one(n: int, plural: str, said: str) -> None:
    from shared_context_server.terminal import counted

    assert counted(n, plural) == said
