"""What ships, built and run as a user gets it: the wheel installed alone in a fresh venv
(serving over stdio, --version, the dashboard's files), the sdist holding the source,
and the Claude Desktop bundle served through uv as its manifest says.

Marked slow (tens of seconds, uv's cache and the package index): -m 'not slow' skips."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Iterator
from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

ROOT = Path(__file__).parents[1]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
STATIC = ("index.html", "app.js", "app.css", "icon.svg")
# uv sets UV for the processes it runs; .ci/run exports it; else uv on PATH.
UV = os.environ.get("UV") or shutil.which("uv")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(UV is None, reason="needs uv (UV=path or uv on PATH)"),
]


def uv(*args: str, cwd: Path = ROOT) -> str:
    assert UV is not None
    proc = subprocess.run(
        [UV, *args], cwd=cwd, capture_output=True, text=True, timeout=180, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("dist")
    uv("build", "--out-dir", str(out))  # the sdist, then the wheel built from it
    yield out


def bin_dir(venv: Path) -> Path:
    return venv / ("Scripts" if sys.platform == "win32" else "bin")


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel and its dependencies, nothing from this checkout."""
    venv = tmp_path_factory.mktemp("venv") / "v"
    uv("venv", "--python", sys.executable, str(venv))
    (wheel,) = dist.glob("*.whl")
    uv("pip", "install", "--python", str(venv), str(wheel))
    return venv


def environment(**settings: str) -> dict[str, str]:
    """This process's environment (the index's proxy and certificates, PATH) without any
    SHARED_CONTEXT_* of the caller's, plus `settings`."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith("SHARED_CONTEXT_")}
    return {**keep, **settings}


async def initialize_and_list(command: str, args: list[str], env: dict[str, str]) -> list[str]:
    params = StdioServerParameters(command=command, args=args, env=env)
    async with (
        stdio_client(params) as (read, write),
        ClientSession(read, write) as session,
    ):
        with anyio.fail_after(60):
            await session.initialize()
            tools = await session.list_tools()
            who = await session.call_tool("whoami", {})
    assert not who.is_error
    return [tool.name for tool in tools.tools] + [json.dumps(who.structured_content)]


def test_the_distributions_pass_twine_check(dist: Path) -> None:
    twine = Path(sys.executable).parent / "twine"
    proc = subprocess.run(
        [str(twine), "check", "--strict", *map(str, [*dist.glob("*.whl"), *dist.glob("*.tar.gz")])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_wheel_carries_the_dashboards_files(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for name in STATIC:
        assert f"shared_context_server/dashboard/static/{name}" in names
    assert "shared_context_server/server/tool_list.json" in names


def test_the_sdist_is_where_the_source_lives(dist: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    top = f"shared_context_server-{VERSION}"
    with tarfile.open(sdist) as archive:
        names = set(archive.getnames())
    for path in ("bundle/manifest.json", "bundle/icon.png", "server.json", "uv.lock"):
        assert f"{top}/{path}" in names


def test_the_installed_wheel_says_its_version(installed: Path) -> None:
    exe = bin_dir(installed) / "shared-context-server"
    proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
    assert proc.stdout == f"shared-context-server {VERSION}\n", proc.stderr


async def test_the_installed_wheel_serves_mcp_over_stdio(installed: Path, tmp_path: Path) -> None:
    exe = str(bin_dir(installed) / "shared-context-server")
    env = environment(SHARED_CONTEXT_DB=str(tmp_path / "w.db"))
    names = await initialize_and_list(exe, ["--agent-id", "wheel"], env)
    assert {"create_session", "add_message", "check_inbox"} <= set(names)
    assert json.loads(names[-1])["agent_id"] == "wheel"
    check = "from importlib.resources import files; import sys; sys.exit(not all(" + (
        f"(files('shared_context_server.dashboard') / 'static' / n).is_file() for n in {STATIC}))"
    )
    python = bin_dir(installed) / "python"
    assert (await anyio.run_process([str(python), "-c", check], check=False)).returncode == 0


async def test_the_bundle_serves_as_its_manifest_says_with_the_users_settings(
    tmp_path: Path,
) -> None:
    spec = spec_from_file_location("bundle_build", ROOT / "bundle" / "build.py")
    assert spec is not None and spec.loader is not None
    build = module_from_spec(spec)
    spec.loader.exec_module(build)
    staged = build.stage(tmp_path / "bundle")
    manifest = json.loads((staged / "manifest.json").read_text())
    config = manifest["server"]["mcp_config"]
    settings = {"agent_id": "desk", "agent_type": "writer", "database": str(tmp_path / "b.db")}

    def substitute(text: str) -> str:
        text = text.replace("${__dirname}", str(staged))
        for key, value in settings.items():
            text = text.replace(f"${{user_config.{key}}}", value)
        return text

    assert config["command"] == "uv"
    env = environment(**{k: substitute(v) for k, v in config["env"].items()})
    assert UV is not None
    names = await initialize_and_list(UV, [substitute(a) for a in config["args"]], env)
    who = json.loads(names[-1])
    assert who["agent_id"] == "desk" and who["agent_type"] == "writer"
    assert (tmp_path / "b.db").exists()
