"""What this copy prints depends on how it was installed (uvx, pipx, any other
environment), and `config` takes every flag `serve` takes, into the entry it prints."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from shared_context_server import about
from shared_context_server.about import (
    PACKAGE,
    POSTGRES_DRIVER,
    UVX,
    driver_install_hint,
    install_route,
)
from shared_context_server.cli import _serve_flags, build_parser, main
from shared_context_server.demo import next_command, next_steps
from shared_context_server.operations.client_config import server_command
from shared_context_server.storage.opener import default_db_path
from tests.support import run_cli

pytestmark = pytest.mark.processes  # real server processes: never quick

# A valid value for every serve flag (None: a switch). A serve flag missing here fails
# test_every_serve_flag_has_a_sample, so a new flag cannot skip the check below.
SAMPLES: dict[str, str | None] = {
    "--agent-id": "coder",
    "--agent-type": "reviewer",
    "--admin": None,
    "--max-memory-bytes": "1000",
    "--max-content-chars": "2000",
    "--poll-interval": "0.5",
    "--toolsets": "minimal",
    "--allow-raw-writes": None,
    "--token-ttl": "600",
    "--archive-after-days": "3",
    "--audit-retention-days": "7",
    "--maintenance-interval": "30",
    "--stdio": "threads",
    "--log-level": "INFO",
    "--push": "channels",
}
SERVE_FLAGS = [a.option_strings[-1] for a in _serve_flags()._actions if a.dest != "help"]


def test_every_serve_flag_has_a_sample() -> None:
    assert set(SERVE_FLAGS) == {*SAMPLES, "--db"}


def printed_entry(capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    assert main(["config", "generic", *args]) == 0
    entry = json.loads(capsys.readouterr().out)
    return [entry["command"], *entry["args"]]


@pytest.mark.parametrize("flag", sorted(SAMPLES))
def test_config_takes_every_serve_flag_and_the_entry_serves_with_it(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    given = [flag] if SAMPLES[flag] is None else [flag, str(SAMPLES[flag])]
    command = printed_entry(capsys, *given)
    assert command == [*UVX, *given]
    # The printed arguments are what `serve` parses to the same setting.
    served = build_parser().parse_args(["serve", *command[len(UVX) :]])
    direct = build_parser().parse_args(["serve", *given])
    assert vars(served) == vars(direct)


def test_config_takes_the_file_and_writes_it_absolute(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    command = printed_entry(capsys, "--db", "board.db", "--toolsets", "minimal")
    assert command == [*UVX, "--db", str(tmp_path / "board.db"), "--toolsets", "minimal"]


def test_config_cursor_toolsets_minimal_prints_the_entry() -> None:
    proc = run_cli("config", "cursor", "--agent-id", "a", "--toolsets", "minimal")
    assert proc.returncode == 0, proc.stderr
    entry = json.loads(proc.stdout)["mcpServers"]["shared-context"]
    assert entry["args"][-4:] == ["--agent-id", "a", "--toolsets", "minimal"]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--toolsets", "bogus"], "unknown toolset"),
        (["--poll-interval", "-1"], "--poll-interval"),
        (["--hooks", "--agent-id", "a", "--toolsets", "minimal"], "only the identity"),
    ],
)
def test_config_refuses_what_serve_would_refuse(args: list[str], said: str) -> None:
    client = "claude-code" if "--hooks" in args else "cursor"
    proc = run_cli("config", client, *args)
    assert proc.returncode == 2 and said in proc.stderr
    assert proc.stdout == ""


def uv_cache_env(tmp_path: Path) -> Path:
    cache = tmp_path / "uv-cache"
    (cache / "archive-v0" / "Ab12Cd").mkdir(parents=True)
    (cache / "CACHEDIR.TAG").write_text("Signature: 8a477f597d28d172789f06886806bc55\n")
    return cache / "archive-v0" / "Ab12Cd"


def test_the_install_route_is_read_from_where_the_environment_lives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UV_CACHE_DIR", raising=False)
    monkeypatch.delenv("PIPX_HOME", raising=False)
    assert install_route(uv_cache_env(tmp_path)) == "uvx"
    assert install_route(tmp_path / ".local" / "share" / "pipx" / "venvs" / PACKAGE) == "pipx"
    assert install_route(tmp_path / ".local" / "pipx" / "venvs" / PACKAGE) == "pipx"
    monkeypatch.setenv("PIPX_HOME", str(tmp_path / "apps"))
    assert install_route(tmp_path / "apps" / "venvs" / PACKAGE) == "pipx"
    assert install_route(tmp_path / "clone" / ".venv") == "environment"
    assert install_route(Path(sys.prefix)) == "environment"


def test_the_driver_hint_fits_each_route() -> None:
    assert f"--with '{POSTGRES_DRIVER}'" in driver_install_hint("uvx")
    assert driver_install_hint("pipx") == f"pipx inject {PACKAGE} '{POSTGRES_DRIVER}'"
    here = driver_install_hint("environment")
    assert f"{sys.executable} -m pip install '{POSTGRES_DRIVER}'" in here
    assert "shared-context-server>=2" not in here  # nothing that needs 2.0.0 on the index


def test_a_url_without_the_driver_says_how_to_add_it_to_this_install(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['psycopg'] = None; from shared_context_server.cli import main; "
        "sys.exit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "doctor", "--db", "postgresql://u@localhost:1/x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"{sys.executable} -m pip install '{POSTGRES_DRIVER}'" in done.stderr
    assert done.stderr.count("\n") == 1


def test_the_demo_hint_names_this_installation_outside_uvx() -> None:
    proc = run_cli("demo", "--pace", "0")
    assert proc.returncode == 0, proc.stderr
    executable = server_command(local=True)[0]
    assert f"claude mcp add shared-context -- {executable} --agent-id claude-main" in proc.stdout


def test_the_demo_hint_from_uvx_is_the_pinned_uvx_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UV_CACHE_DIR", raising=False)
    monkeypatch.setattr(about.sys, "prefix", str(uv_cache_env(tmp_path)))
    assert next_command() == shlex.join(
        ["claude", "mcp", "add", "shared-context", "--", *UVX, "--agent-id", "claude-main"]
    )


def test_the_demo_hint_names_the_team_database_it_ran_on_with_the_password_hidden() -> None:
    hint = next_steps("postgresql://scs:secret@db.example:5432/scs", temporary=False)
    assert "--agent-id claude-main --db 'postgresql://scs:***@db.example:5432/scs'" in hint
    assert "~/.pgpass" in hint and "secret" not in hint


def test_the_demo_hint_names_a_kept_file_but_not_the_default_or_a_temporary_one(
    tmp_path: Path,
) -> None:
    kept = tmp_path / "team.db"
    assert f"--agent-id claude-main --db {kept}" in next_steps(kept, temporary=False)
    assert "--db" not in next_steps(kept, temporary=True)
    assert "--db" not in next_steps(default_db_path(), temporary=False)
    assert "pgpass" not in next_steps(kept, temporary=False)
