"""What to paste into an MCP client so it starts this server as one agent."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any, Literal

Client = Literal["claude-desktop", "claude-code", "cursor", "generic"]
CLIENTS: dict[str, str] = {
    "claude-desktop": "claude_desktop_config.json (Settings > Developer > Edit Config)",
    "claude-code": "run in a terminal, in the project directory",
    "cursor": ".cursor/mcp.json in the project, or ~/.cursor/mcp.json for every project",
    "generic": "the server entry any MCP client's stdio configuration takes",
}
PACKAGE = "shared-context-server"


def server_command(local: bool) -> list[str]:
    """`uvx shared-context-server`, or (`local`) this install's own executable."""
    if not local:
        return ["uvx", PACKAGE]
    script = Path(sys.executable).parent / PACKAGE
    if script.is_file():
        return [str(script)]
    found = shutil.which(PACKAGE)
    if found:
        return [str(Path(found).absolute())]
    return [sys.executable, "-m", "shared_context_server"]


def server_args(
    agent_id: str | None, agent_type: str | None, db: Path | None, admin: bool
) -> list[str]:
    args: list[str] = []
    if agent_id:
        args += ["--agent-id", agent_id]
    if agent_type:
        args += ["--agent-type", agent_type]
    if db is not None:
        args += ["--db", str(db.expanduser().absolute())]
    if admin:
        args.append("--admin")
    return args


def render_config(
    client: Client,
    *,
    name: str = "shared-context",
    agent_id: str | None = None,
    agent_type: str | None = None,
    db: Path | None = None,
    admin: bool = False,
    local: bool = False,
) -> str:
    """The exact text for `client`: JSON for most, a `claude mcp add` command for Claude Code."""
    command, *prefix = server_command(local)
    args = prefix + server_args(agent_id, agent_type, db, admin)
    if client == "claude-code":
        return shlex.join(["claude", "mcp", "add", name, "--", command, *args])
    entry: dict[str, Any] = {"command": command, "args": args}
    document = entry if client == "generic" else {"mcpServers": {name: entry}}
    return json.dumps(document, indent=2)
