"""Config for hosts beyond the JSON ones: Codex's TOML entry, and the Claude Code hooks
that put the inbox in front of the model (hook.py)."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from typing import Any

from shared_context_server.operations.client_config import server_args, server_command
from shared_context_server.storage.seam import Target

HOSTS: dict[str, str] = {
    "codex": "~/.codex/config.toml, or .codex/config.toml in a trusted project",
}
HOOKS_NOTE = "merge into .claude/settings.json (or ~/.claude/settings.json) beside the MCP entry"
# Claude Code's hook events the hook answers (hook.py), and the seconds each may take
# before Claude Code gives up on it (a timeout never blocks the prompt).
HOOK_EVENTS = ("SessionStart", "UserPromptSubmit", "Stop")
HOOK_TIMEOUT_S = 10
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


def render_claude_hooks(
    agent_id: str, agent_type: str | None, db: Target | None, admin: bool, local: bool
) -> str:
    """The settings.json `hooks` block running `hook claude-code` with the MCP entry's
    identity and file."""
    command = [*server_command(local, db), "hook", "claude-code"]
    line = shlex.join(command + server_args(agent_id, agent_type, db, admin))
    handler: dict[str, Any] = {"type": "command", "command": line, "timeout": HOOK_TIMEOUT_S}
    hooks = {event: [{"hooks": [handler]}] for event in HOOK_EVENTS}
    return json.dumps({"hooks": hooks}, indent=2)
