"""Config for hosts beyond the JSON ones: Codex's TOML entry, and each host's hooks that
put the inbox in front of the model and guard edits (hook.py, hook_hosts.py)."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Sequence
from typing import Any

from shared_context_server.operations.client_config import server_args, server_command
from shared_context_server.storage.seam import Target

HOSTS: dict[str, str] = {
    "codex": "~/.codex/config.toml, or .codex/config.toml in a trusted project",
}
HOOKS_NOTE = "merge into .claude/settings.json (or ~/.claude/settings.json) beside the MCP entry"
CODEX_HOOKS_NOTE = (
    "add to ~/.codex/config.toml (or a trusted project's) beside the MCP entry; hooks need "
    "[features] codex_hooks = true"
)
GEMINI_HOOKS_NOTE = (
    "merge into .gemini/settings.json (or ~/.gemini/settings.json) beside the MCP entry"
)
CURSOR_HOOKS_NOTE = "save as .cursor/hooks.json (or ~/.cursor/hooks.json), or merge into it"
# Claude Code's hook events the hook answers (hook.py), and the seconds each may take
# before Claude Code gives up on it (a timeout never blocks the prompt).
HOOK_EVENTS = ("SessionStart", "UserPromptSubmit", "Stop")
HOOK_TIMEOUT_S = 10
# The edit tools whose PreToolUse the hook answers (hook_edits.py), as each host's matcher.
CLAUDE_EDIT_MATCHER = "Edit|Write|MultiEdit|NotebookEdit"
CODEX_EDIT_MATCHER = "apply_patch"
GEMINI_EDIT_MATCHER = "write_file|replace"  # BeforeTool matchers are regexes of tool names
HOOK_NAME = "shared-context"  # Gemini CLI names its hooks in logs and /hooks
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_string(text: str) -> str:
    # A JSON string without \u escapes of surrogates is a TOML basic string.
    return json.dumps(text, ensure_ascii=False)


def render_codex(
    name: str,
    agent_id: str | None,
    agent_type: str | None,
    db: Target | None,
    admin: bool,
    local: bool,
    extra: Sequence[str] = (),
) -> str:
    """Codex's `[mcp_servers.NAME]` table: command and args, as TOML."""
    command, *prefix = server_command(local, db)
    args = prefix + server_args(agent_id, agent_type, db, admin, extra)
    key = name if _BARE_KEY.match(name) else _toml_string(name)
    return "\n".join(
        [
            f"[mcp_servers.{key}]",
            f"command = {_toml_string(command)}",
            "args = [" + ", ".join(_toml_string(arg) for arg in args) + "]",
        ]
    )


def _hook_line(
    host: str, agent_id: str, agent_type: str | None, db: Target | None, admin: bool, local: bool
) -> list[str]:
    return [*server_command(local, db), "hook", host, *server_args(agent_id, agent_type, db, admin)]


def render_claude_hooks(
    agent_id: str,
    agent_type: str | None,
    db: Target | None,
    admin: bool,
    local: bool,
    auto_claim: bool = False,
) -> str:
    """The settings.json `hooks` block running `hook claude-code` with the MCP entry's
    identity and file: the inbox on SessionStart, UserPromptSubmit and Stop, and claims
    on PreToolUse of the edit tools."""
    line = _hook_line("claude-code", agent_id, agent_type, db, admin, local)
    handler: dict[str, Any] = {
        "type": "command",
        "command": shlex.join(line),
        "timeout": HOOK_TIMEOUT_S,
    }
    hooks: dict[str, Any] = {event: [{"hooks": [handler]}] for event in HOOK_EVENTS}
    edit = {**handler, "command": shlex.join(line + (["--auto-claim"] if auto_claim else []))}
    hooks["PreToolUse"] = [{"matcher": CLAUDE_EDIT_MATCHER, "hooks": [edit]}]
    return json.dumps({"hooks": hooks}, indent=2)


def render_codex_hooks(
    agent_id: str,
    agent_type: str | None,
    db: Target | None,
    admin: bool,
    local: bool,
    auto_claim: bool = False,
) -> str:
    """Codex's config.toml hooks running `hook codex`: the inbox on SessionStart,
    UserPromptSubmit and Stop (the same events and answers as Claude Code's), and claims
    on PreToolUse of apply_patch."""
    line = _hook_line("codex", agent_id, agent_type, db, admin, local)
    lines: list[str] = []
    for event in (*HOOK_EVENTS, "PreToolUse"):
        command = line + (["--auto-claim"] if auto_claim and event == "PreToolUse" else [])
        lines += [f"[[hooks.{event}]]"]
        if event == "PreToolUse":
            lines += [f"matcher = {_toml_string(CODEX_EDIT_MATCHER)}"]
        lines += [
            f"[[hooks.{event}.hooks]]",
            'type = "command"',
            f"command = {_toml_string(shlex.join(command))}",
            f"timeout = {HOOK_TIMEOUT_S}",
            "",
        ]
    return "\n".join(lines).rstrip()


def render_gemini_hooks(
    agent_id: str,
    agent_type: str | None,
    db: Target | None,
    admin: bool,
    local: bool,
    auto_claim: bool = False,
) -> str:
    """Gemini CLI's settings.json `hooks` block running `hook gemini`: the inbox on
    SessionStart, BeforeAgent (a prompt) and AfterAgent (a stop), claims on BeforeTool of
    write_file and replace. Its timeouts are in milliseconds."""
    line = _hook_line("gemini", agent_id, agent_type, db, admin, local)

    def handler(command: list[str]) -> dict[str, Any]:
        return {
            "name": HOOK_NAME,
            "type": "command",
            "command": shlex.join(command),
            "timeout": HOOK_TIMEOUT_S * 1000,
        }

    inbox = ("SessionStart", "BeforeAgent", "AfterAgent")
    hooks: dict[str, Any] = {event: [{"hooks": [handler(line)]}] for event in inbox}
    edit = handler(line + (["--auto-claim"] if auto_claim else []))
    hooks["BeforeTool"] = [{"matcher": GEMINI_EDIT_MATCHER, "hooks": [edit]}]
    return json.dumps({"hooks": hooks}, indent=2)


def render_cursor_hooks(
    agent_id: str,
    agent_type: str | None,
    db: Target | None,
    admin: bool,
    local: bool,
    auto_claim: bool = False,
) -> str:
    """Cursor's hooks.json (version 1) running `hook cursor`: the inbox on sessionStart,
    a follow-up on stop. No edit guard: Cursor's preToolUse does not document its Write
    tool's input (hook_hosts.py), so `auto_claim` has nothing to add to."""
    del auto_claim
    line = _hook_line("cursor", agent_id, agent_type, db, admin, local)
    handler = {"command": shlex.join(line), "timeout": HOOK_TIMEOUT_S}
    hooks = {"sessionStart": [handler], "stop": [handler]}
    return json.dumps({"version": 1, "hooks": hooks}, indent=2)


# config CLIENT --hooks: each host's renderer and where its output goes.
HOOKS: dict[str, tuple[Callable[..., str], str]] = {
    "claude-code": (render_claude_hooks, HOOKS_NOTE),
    "codex": (render_codex_hooks, CODEX_HOOKS_NOTE),
    "gemini": (render_gemini_hooks, GEMINI_HOOKS_NOTE),
    "cursor": (render_cursor_hooks, CURSOR_HOOKS_NOTE),
}
