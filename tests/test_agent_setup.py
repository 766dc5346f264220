"""What a user pastes to wire agents in: Codex's TOML, Claude Code's hooks, the
instructions paragraph; and the tool profiles a worker is offered."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest

from shared_context_server.about import UVX
from shared_context_server.config import Settings
from shared_context_server.instructions import AGENT_INSTRUCTIONS
from shared_context_server.server.toolsets import MINIMAL, tool_list_size_for, tools_for
from shared_context_server.storage.seam import Target
from tests.support import connect, ok, run_cli, spawn

ROOT = Path(__file__).parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, clean_env=True)


def as_claude_code_runs(command: str, event: dict[str, str]) -> str:
    """A command hook: the command line, the event's JSON on stdin; its stdout."""
    return subprocess.run(
        shlex.split(command), input=json.dumps(event), capture_output=True, text=True, timeout=60
    ).stdout


@pytest.mark.processes
def test_config_codex_prints_a_toml_mcp_servers_table_codex_can_read(tmp_path: Path) -> None:
    db = tmp_path / 'a "quoted" dir' / "bb.db"
    proc = run("config", "codex", "--agent-id", "codex-1", "--db", str(db), "--name", "shared ctx")
    assert proc.returncode == 0, proc.stderr
    # Codex's config.toml: [mcp_servers.<name>] with command (string) and args (strings).
    entry = tomllib.loads(proc.stdout)["mcp_servers"]["shared ctx"]
    assert set(entry) == {"command", "args"}
    assert [entry["command"], *entry["args"]] == [*UVX, "--agent-id", "codex-1", "--db", str(db)]
    assert "config.toml" in proc.stderr


def test_config_codex_hooks_prints_a_pre_tool_use_hook_on_apply_patch(tmp_path: Path) -> None:
    db = tmp_path / "bb.db"
    flags = ("--agent-id", "codex-1", "--db", str(db), "--auto-claim")
    proc = run("config", "codex", "--hooks", *flags)
    assert proc.returncode == 0, proc.stderr
    # Codex's config.toml: [[hooks.PreToolUse]] with a matcher, its [[...hooks]] commands.
    (group,) = tomllib.loads(proc.stdout)["hooks"]["PreToolUse"]
    assert group["matcher"] == "apply_patch"
    (handler,) = group["hooks"]
    assert handler["type"] == "command" and isinstance(handler["timeout"], int)
    command = shlex.split(handler["command"])
    assert command[: len(UVX)] == list(UVX) and command[-1] == "--auto-claim"
    rest = command[len(UVX) : -1]
    assert rest == ["hook", "codex", "--agent-id", "codex-1", "--db", str(db)]


@pytest.mark.processes
async def test_config_hooks_wires_the_hook_with_the_mcp_entrys_identity_and_file(
    target: Target,
) -> None:
    db = target
    flags = ("--agent-id", "alice", "--agent-type", "reviewer", "--db", str(db), "--local")
    hooks = json.loads(run("config", "claude-code", "--hooks", *flags).stdout)["hooks"]
    assert set(hooks) == {"SessionStart", "UserPromptSubmit", "Stop", "PreToolUse"}
    # PreToolUse only on the edit tools (Claude Code's matcher: tool names, | between).
    assert hooks["PreToolUse"][0]["matcher"] == "Edit|Write|MultiEdit|NotebookEdit"
    add = shlex.split(run("config", "claude-code", *flags).stdout)
    server = add[add.index("--") + 1 :]
    for groups in hooks.values():
        (group,) = groups
        (handler,) = group["hooks"]
        assert handler["type"] == "command" and isinstance(handler["timeout"], int)
        command = shlex.split(handler["command"])
        # The same program and the same identity flags as the MCP entry.
        assert command[0] == server[0] and command[1:3] == ["hook", "claude-code"]
        assert command[3:] == server[1:]
    # And the printed command works: alice's inbox, through the hook.
    async with spawn(db, "--agent-id", "bob") as bob:
        sid = (await ok(bob, "create_session", purpose="wired"))["session_id"]
        await ok(bob, "add_message", session_id=sid, content="hi", metadata={"to": ["alice"]})
    event = {"hook_event_name": "SessionStart", "session_id": "s", "source": "startup"}
    out = as_claude_code_runs(hooks["SessionStart"][0]["hooks"][0]["command"], event)
    assert '"hi"' in json.loads(out)["hookSpecificOutput"]["additionalContext"]


@pytest.mark.processes
@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("config", "claude-code", "--hooks"), "--hooks needs --agent-id"),
        (("config", "claude-desktop", "--hooks", "--agent-id", "a"), "--hooks is for claude-code"),
        (("config", "cursor", "--hooks", "--auto-claim", "--agent-id", "a"), "--auto-claim"),
        (("config",), "config needs a client"),
        (("config", "codex", "--push", "channels"), "--push is for claude-code"),
        (("config", "claude-code", "--hooks", "--agent-id", "a", "--push", "channels"), "--push"),
    ],
)
def test_config_refuses_what_it_cannot_print(args: tuple[str, ...], said: str) -> None:
    proc = run(*args)
    assert proc.returncode == 2 and said in proc.stderr and proc.stdout == ""


@pytest.mark.processes
async def test_instructions_are_the_initialize_result_and_config_prints_them(
    target: Target,
) -> None:
    printed = run("config", "--instructions").stdout
    assert " ".join(printed.split()) == AGENT_INSTRUCTIONS
    assert "check_inbox" in AGENT_INSTRUCTIONS and "wait_s" in AGENT_INSTRUCTIONS
    async with spawn(target, "--agent-id", "alice") as alice:
        # ClientSession keeps the initialize result's instructions.
        result = await alice.initialize()
    assert result.instructions == AGENT_INSTRUCTIONS


def test_the_minimal_profile_is_a_worker_s_tools_under_4_5_kb() -> None:
    assert set(tools_for(frozenset({"minimal"}))) == set(MINIMAL)
    assert {"check_inbox", "claim", "release"} <= set(MINIMAL)
    assert set(MINIMAL) < set(tools_for(frozenset({"core"})))
    assert tool_list_size_for(frozenset({"minimal"})) < 4500
    assert tool_list_size_for(frozenset({"core"})) < 12000
    # core and minimal together are core; records adds to either.
    assert tools_for(frozenset({"core", "minimal"})) == tools_for(frozenset({"core"}))
    both = tools_for(frozenset({"minimal", "records"}))
    assert set(MINIMAL) < set(both) and "query_records" in both


@pytest.mark.parametrize("era", ["handshake", "modern"])
async def test_a_minimal_server_lists_and_serves_only_its_tools(target: Target, era: str) -> None:
    settings = Settings(db_path=target, agent_id="w", toolsets=frozenset({"minimal"}))
    async with connect(era, settings) as s:
        listed = [t.name for t in (await s.list_tools()).tools]
        assert listed == list(MINIMAL)
        with pytest.raises(Exception, match="Unknown tool"):
            await s.call_tool("set_memory", {"key": "k", "value": 1})
        assert (await ok(s, "check_inbox"))["sessions"] == []


def test_the_tools_reference_table_of_profiles_gives_each_size() -> None:
    readme = (ROOT / "docs" / "TOOLS.md").read_text()
    for profile in ("core", "minimal", "core,records", "minimal,records"):
        size = tool_list_size_for(frozenset(profile.split(",")))
        row = re.search(rf"^\| `{profile}` \| [^|]*\| ([\d.]+) KB \|", readme, re.M)
        assert row, f"docs/TOOLS.md: no row for the {profile} profile"
        assert float(row.group(1)) == round(size / 1000, 1), profile


def test_config_push_adds_the_flag_to_the_entry_and_says_how_claude_code_hears_it() -> None:
    proc = run("config", "claude-code", "--agent-id", "main", "--push", "channels", "--name", "sc")
    add = shlex.split(proc.stdout)
    assert add[-3:] == ["main", "--push", "channels"]
    assert "claude --dangerously-load-development-channels server:sc" in proc.stderr


@pytest.mark.processes
def test_the_readme_codex_block_is_what_config_codex_prints() -> None:
    readme = (ROOT / "README.md").read_text()
    (block,) = re.findall(r"```toml\n(.*?)\n```", readme, re.S)
    assert run("config", "codex", "--agent-id", "codex").stdout.strip() == block
