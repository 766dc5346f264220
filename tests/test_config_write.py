"""config CLIENT --write: the printed entry or hooks merged into each client's own file."""

from __future__ import annotations

import json
import shlex
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest

from shared_context_server.cli import main
from shared_context_server.errors import InvalidInput
from shared_context_server.operations.config_write import target_file

JSON_ENTRY_FILES = {
    "cursor": ".cursor/mcp.json",
    "gemini": ".gemini/settings.json",
    "claude-code": ".mcp.json",
}
JSON_HOOK_FILES = {
    "claude-code": ".claude/settings.json",
    "gemini": ".gemini/settings.json",
    "cursor": ".cursor/hooks.json",
}
CODEX_FILE = "home/.codex/config.toml"


@pytest.fixture(autouse=True)
def _home_and_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The project is tmp_path, the home directory tmp_path/home."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SHARED_CONTEXT_DB", raising=False)


def config(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["config", *args])
    out, err = capsys.readouterr()
    return code, out, err


def printed_entry(capsys: pytest.CaptureFixture[str], client: str, *flags: str) -> Any:
    """The entry `config CLIENT` prints, as the file would hold it."""
    code, out, _ = config(capsys, client, *flags)
    assert code == 0
    if client == "claude-code":  # claude mcp add NAME -- COMMAND ARGS...
        command, *args = shlex.split(out)[5:]
        return {"command": command, "args": args}
    if client == "codex":
        return tomllib.loads(out)["mcp_servers"]["shared-context"]
    return json.loads(out)["mcpServers"]["shared-context"]


@pytest.mark.parametrize("client", [*JSON_ENTRY_FILES, "codex"])
def test_write_puts_the_printed_entry_in_a_fresh_client_file(
    client: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ("--agent-id", "a1", "--db", str(tmp_path / "bb.db"))
    code, out, err = config(capsys, client, "--write", *flags)
    assert code == 0, err
    path = tmp_path / (CODEX_FILE if client == "codex" else JSON_ENTRY_FILES[client])
    key = "[mcp_servers.shared-context]" if client == "codex" else "mcpServers.shared-context"
    assert out == f"added {key} in {path}\n"
    text = path.read_text()
    written = (
        tomllib.loads(text)["mcp_servers"] if client == "codex" else json.loads(text)["mcpServers"]
    )
    assert written == {"shared-context": printed_entry(capsys, client, *flags)}


@pytest.mark.parametrize("client", JSON_ENTRY_FILES)
def test_write_keeps_the_files_other_servers_and_keys_and_a_rerun_changes_nothing(
    client: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / JSON_ENTRY_FILES[client]
    path.parent.mkdir(parents=True, exist_ok=True)
    theirs = {"theme": "dark", "mcpServers": {"other": {"command": "o", "args": []}}}
    path.write_text(json.dumps(theirs))
    assert config(capsys, client, "--write", "--agent-id", "a1")[0] == 0
    first = path.read_text()
    code, out, _ = config(capsys, client, "--write", "--agent-id", "a1")
    assert code == 0 and out.startswith("updated mcpServers.shared-context in ")
    assert path.read_text() == first
    document = json.loads(first)
    assert document["theme"] == "dark"
    assert document["mcpServers"]["other"] == theirs["mcpServers"]["other"]
    assert document["mcpServers"]["shared-context"] == printed_entry(
        capsys, client, "--agent-id", "a1"
    )


@pytest.mark.parametrize(
    ("client", "name", "text"),
    [
        ("cursor", ".cursor/mcp.json", '{"mcpServers": {'),
        ("claude-code", ".claude/settings.json", "[1, 2]"),
        ("codex", CODEX_FILE, "[mcp_servers\ncommand = 1"),
        ("codex", CODEX_FILE, 'mcp_servers = { other = { command = "o" } }\n'),
    ],
)
def test_write_refuses_a_file_it_cannot_merge_into_and_leaves_it_as_it_was(
    client: str, name: str, text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    hooks = ("--hooks",) if name.endswith("settings.json") else ()
    code, out, err = config(capsys, client, *hooks, "--write", "--agent-id", "a1")
    assert code == 2 and out == ""
    assert str(path) in err and len(err.splitlines()) == 1
    assert path.read_text() == text
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def test_write_keeps_codex_comments_and_tables_and_replaces_only_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / CODEX_FILE
    path.parent.mkdir(parents=True)
    theirs = (
        'model = "o3"  # my model\n\n'
        "[mcp_servers.shared-context]\n"
        'command = "old"\n\n'
        "# the env stays with the entry\n"
        "[mcp_servers.shared-context.env]\n"
        'A = "1"\n\n'
        "# my other server\n"
        "[mcp_servers.other]\n"
        'command = "o"\n'
    )
    path.write_text(theirs)
    code, out, _ = config(capsys, "codex", "--write", "--agent-id", "c1")
    assert code == 0 and out.startswith("updated [mcp_servers.shared-context] in ")
    first = path.read_text()
    assert config(capsys, "codex", "--write", "--agent-id", "c1")[0] == 0
    assert path.read_text() == first
    for line in theirs.splitlines()[4:]:
        assert line in first.splitlines()
    assert first.startswith('model = "o3"  # my model\n')
    written = tomllib.loads(first)["mcp_servers"]
    assert written["other"] == {"command": "o"}
    assert written["shared-context"] == {
        **printed_entry(capsys, "codex", "--agent-id", "c1"),
        "env": {"A": "1"},
    }


def ours(hooks: dict[str, Any], host: str) -> list[str]:
    """Every hook command in a hooks object that runs `hook HOST`."""
    found = []
    for items in hooks.values():
        for item in items:
            for handler in item.get("hooks", [item]):
                if f"hook {host}" in handler["command"]:
                    found.append(handler["command"])
    return found


@pytest.mark.parametrize("client", JSON_HOOK_FILES)
def test_write_hooks_adds_ours_beside_the_users_hooks_once_however_often_it_runs(
    client: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / JSON_HOOK_FILES[client]
    path.parent.mkdir(parents=True, exist_ok=True)
    event = {"claude-code": "Stop", "gemini": "AfterAgent", "cursor": "stop"}[client]
    mine = {"command": "notify-send done"}
    item = mine if client == "cursor" else {"hooks": [mine]}
    path.write_text(json.dumps({"model": "m", "hooks": {event: [item], "Other": [item]}}))
    flags = ("--hooks", "--agent-id", "a1")
    assert config(capsys, client, *flags, "--write")[0] == 0
    code, out, _ = config(capsys, client, *flags, "--agent-id", "a2", "--write")
    assert code == 0 and out == f"updated the {client} hooks in {path}\n"
    document = json.loads(path.read_text())
    assert document["model"] == "m"
    assert document["hooks"]["Other"] == [item]
    assert document["hooks"][event][0] == item
    printed = json.loads(config(capsys, client, *flags, "--agent-id", "a2")[1])["hooks"]
    assert sorted(ours(document["hooks"], client)) == sorted(ours(printed, client))
    assert all("a2" in command for command in ours(document["hooks"], client))


def test_write_codex_hooks_keeps_the_users_hooks_and_turns_hooks_on_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / CODEX_FILE
    path.parent.mkdir(parents=True)
    theirs = (
        "[features]\n"
        "web_search = true  # mine\n\n"
        "# my own stop hook\n"
        "[[hooks.Stop]]\n"
        "[[hooks.Stop.hooks]]\n"
        'type = "command"\n'
        'command = "notify-send done"\n'
    )
    path.write_text(theirs)
    flags = ("--hooks", "--agent-id", "c1", "--auto-claim", "--write")
    assert config(capsys, "codex", *flags)[0] == 0
    first = path.read_text()
    code, out, _ = config(capsys, "codex", *flags)
    assert code == 0 and out == f"updated the codex hooks in {path}\n"
    assert path.read_text() == first
    assert "# my own stop hook" in first and "web_search = true  # mine" in first
    document = tomllib.loads(first)
    assert document["features"] == {"web_search": True, "codex_hooks": True}
    mine = {"hooks": [{"type": "command", "command": "notify-send done"}]}
    assert document["hooks"]["Stop"][0] == mine
    printed = tomllib.loads(config(capsys, "codex", *flags[:-1])[1])["hooks"]
    assert {event: items for event, items in document["hooks"].items()} == {
        **printed,
        "Stop": [mine, *printed["Stop"]],
    }


def test_write_keeps_the_files_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / ".cursor" / "mcp.json"
    path.parent.mkdir()
    path.write_text("{}")
    path.chmod(0o600)
    assert config(capsys, "cursor", "--write", "--agent-id", "a1")[0] == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_write_to_a_named_file_and_claude_desktop_where_it_is_documented(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    mac = home / "Library" / "Application Support" / "Claude" / "claude_desktop_config.json"
    assert target_file("claude-desktop", False, None, platform="darwin") == mac
    windows = target_file("claude-desktop", False, None, "win32", {"APPDATA": str(tmp_path)})
    assert windows == tmp_path / "Claude" / "claude_desktop_config.json"
    with pytest.raises(InvalidInput, match="--file"):
        target_file("claude-desktop", False, None, platform="linux")
    code, out, _ = config(
        capsys, "claude-desktop", "--write", "--file", "d.json", "--agent-id", "d"
    )
    assert code == 0 and out == f"added mcpServers.shared-context in {tmp_path / 'd.json'}\n"
    written = json.loads((tmp_path / "d.json").read_text())["mcpServers"]["shared-context"]
    assert written == printed_entry(capsys, "claude-desktop", "--agent-id", "d")


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("generic", "--write"), "generic has no file"),
        (("cursor", "--file", "x.json"), "--file goes with --write"),
    ],
)
def test_write_refuses_what_has_no_file(
    args: tuple[str, ...], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = config(capsys, *args)
    assert code == 2 and said in err


def test_write_through_a_symlink_replaces_its_target_and_keeps_the_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dotfiles = tmp_path / "dotfiles" / "config.toml"
    dotfiles.parent.mkdir()
    dotfiles.write_text("# mine\n")
    link = tmp_path / CODEX_FILE
    link.parent.mkdir(parents=True)
    link.symlink_to(dotfiles)
    assert config(capsys, "codex", "--write", "--name", "shared ctx", "--agent-id", "c1")[0] == 0
    assert link.is_symlink()
    assert config(capsys, "codex", "--write", "--name", "shared ctx", "--agent-id", "c1")[0] == 0
    text = dotfiles.read_text()
    assert text.startswith("# mine\n") and text.count("[mcp_servers.") == 1
    assert set(tomllib.loads(text)["mcp_servers"]) == {"shared ctx"}


def test_write_codex_hooks_leaves_hooks_turned_off_off_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / CODEX_FILE
    path.parent.mkdir(parents=True)
    path.write_text("[features]\ncodex_hooks = false\n")
    code, out, _ = config(capsys, "codex", "--hooks", "--agent-id", "c1", "--write")
    assert code == 0 and out.endswith("but its [features] codex_hooks is off\n")
    assert tomllib.loads(path.read_text())["features"] == {"codex_hooks": False}
