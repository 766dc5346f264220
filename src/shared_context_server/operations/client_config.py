"""What to paste into an MCP client so it starts this server as one agent."""

from __future__ import annotations

import importlib.util
import json
import shlex
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from shared_context_server.about import (
    PACKAGE,
    PIPX_INSTALL,
    UVX,
    UVX_POSTGRES,
    UVX_TEXT,
    driver_install_hint,
    uv_cache_of,
)
from shared_context_server.errors import InvalidInput
from shared_context_server.storage.opener import is_postgres_url
from shared_context_server.storage.seam import Target

Client = Literal["claude-desktop", "claude-code", "cursor", "gemini", "generic"]
CLIENTS: dict[str, str] = {
    "claude-desktop": "claude_desktop_config.json (Settings > Developer > Edit Config)",
    "claude-code": "run in a terminal, in the project directory",
    "cursor": ".cursor/mcp.json in the project, or ~/.cursor/mcp.json for every project",
    "gemini": ".gemini/settings.json in the project, or ~/.gemini/settings.json",
    "generic": "the server entry any MCP client's stdio configuration takes",
}


def server_command(local: bool, db: Target | None = None) -> list[str]:
    """uvx with the major version pinned (and the PostgreSQL driver for a URL), or
    (`local`) this install's own executable. Raises InvalidInput when this install lives
    in uv's cache, or lacks the driver a URL needs."""
    if not local:
        return list(UVX_POSTGRES if is_postgres_url(db) else UVX)
    if is_postgres_url(db) and importlib.util.find_spec("psycopg") is None:
        raise InvalidInput(
            f"--local with a PostgreSQL --db needs the driver in this install: "
            f"{driver_install_hint()}, then run config again."
        )
    script = Path(sys.executable).parent / PACKAGE
    if script.is_file():
        command = [str(script)]
    elif found := shutil.which(PACKAGE):
        command = [str(Path(found).absolute())]
    else:
        command = [sys.executable, "-m", "shared_context_server"]
    cache = uv_cache_of(Path(command[0]))
    if cache is not None:
        raise InvalidInput(
            f"--local would name {command[0]}, inside uv's cache ({cache}), which uv may "
            "delete at any time (`uv cache clean`, an upgrade). Leave --local out: the "
            f"config then runs `{UVX_TEXT}`. Or install it to stay: `{PIPX_INSTALL}` (or "
            "`uv tool install` with the same requirement), then that copy's `config --local`. "
            "Running from a clone before 2.0.0 is on the package index: `pipx install "
            "/path/to/clone`, then `config --local`."
        )
    return command


def server_args(
    agent_id: str | None,
    agent_type: str | None,
    db: Target | None,
    admin: bool,
    extra: Sequence[str] = (),
) -> list[str]:
    """The served process's arguments: identity, file, then any other serve flags."""
    args: list[str] = []
    if agent_id:
        args += ["--agent-id", agent_id]
    if agent_type:
        args += ["--agent-type", agent_type]
    if db is not None:
        where = db if isinstance(db, str) else str(db.expanduser().absolute())
        args += ["--db", where]
    if admin:
        args.append("--admin")
    return args + list(extra)


def server_entry(
    agent_id: str | None,
    agent_type: str | None,
    db: Target | None,
    admin: bool,
    local: bool,
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    """The stdio server entry every client takes: `command` and `args`."""
    command, *prefix = server_command(local, db)
    return {
        "command": command,
        "args": prefix + server_args(agent_id, agent_type, db, admin, extra),
    }


def render_config(
    client: Client,
    *,
    name: str = "shared-context",
    agent_id: str | None = None,
    agent_type: str | None = None,
    db: Target | None = None,
    admin: bool = False,
    local: bool = False,
    extra: Sequence[str] = (),
) -> str:
    """The exact text for `client`: JSON for most, a `claude mcp add` command for Claude Code."""
    entry = server_entry(agent_id, agent_type, db, admin, local, extra)
    if client == "claude-code":
        return shlex.join(["claude", "mcp", "add", name, "--", entry["command"], *entry["args"]])
    document = entry if client == "generic" else {"mcpServers": {name: entry}}
    return json.dumps(document, indent=2)
