"""Config for hosts beyond the JSON ones: Codex's TOML entry, and the Claude Code hooks
that put the inbox in front of the model (hook.py)."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from shared_context_server.operations.client_config import server_args, server_command
from shared_context_server.store import Target

HOSTS: dict[str, str] = {
    "codex": "~/.codex/config.toml, or .codex/config.toml in a trusted project",
}
HOOKS_NOTE = "merge into .claude/settings.json (or ~/.claude/settings.json) beside the MCP entry"
CODEX_HOOKS_NOTE = "add to ~/.codex/config.toml (or a trusted project's) beside the MCP entry"
# Claude Code's hook events the hook answers (hook.py), and the seconds each may take
# before Claude Code gives up on it (a timeout never blocks the prompt).
HOOK_EVENTS = ("SessionStart", "UserPromptSubmit", "Stop")
HOOK_TIMEOUT_S = 10
# The edit tools whose PreToolUse the hook answers (hook_edits.py), as each host's matcher.
CLAUDE_EDIT_MATCHER = "Edit|Write|MultiEdit|NotebookEdit"
CODEX_EDIT_MATCHER = "apply_patch"
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
) -> str:
    """Codex's `[mcp_servers.NAME]` table: command and args, as TOML."""
    command, *prefix = server_command(local, db)
    args = prefix + server_args(agent_id, agent_type, db, admin)
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
    """Codex's config.toml hook on PreToolUse of apply_patch, running `hook codex`."""
    line = _hook_line("codex", agent_id, agent_type, db, admin, local)
    line += ["--auto-claim"] if auto_claim else []
    return "\n".join(
        [
            "[[hooks.PreToolUse]]",
            f"matcher = {_toml_string(CODEX_EDIT_MATCHER)}",
            "[[hooks.PreToolUse.hooks]]",
            'type = "command"',
            f"command = {_toml_string(shlex.join(line))}",
            f"timeout = {HOOK_TIMEOUT_S}",
        ]
    )
