"""Which tools a process offers: the toolsets named by --toolsets, `core` by default.

The tools/list a client sees is generated from the pydantic models, once, into
tool_list.json beside this file: building it at start-up was a large part of every
server's spawn-to-tools/list (pydantic does not cache JSON schemas; figures in
docs/PERFORMANCE.md), and every agent's client waits for that.
`python -m shared_context_server.server.toolsets` writes the file again; a test fails
until it matches the models.
"""

from __future__ import annotations

import json
import logging
import sys
from functools import cache
from pathlib import Path
from typing import Any

import mcp_types as types

from shared_context_server.config import TOOLSETS
from shared_context_server.server.registry import ToolSpec
from shared_context_server.server.tools import TOOLS

logger = logging.getLogger(__name__)

TOOL_LIST_FILE = Path(__file__).with_name("tool_list.json")

# A worker agent's tools, under 4 KB of tools/list: its news and the long poll across its
# sessions (check_inbox, which stands in for wait_for_messages), reading a session
# (get_context pages it; a missing session is SESSION_NOT_FOUND, so get_session is not
# needed), posting (add_message: replies, `to`, private), starting a session for a
# hand-off, finding earlier findings (search_context), whoami when identities confuse,
# and claiming what it works on (claim, release) so other agents' edits keep off it.
# Sessions' lifecycle, memory, tokens and the audit log stay with `core`.
MINIMAL = (
    "create_session",
    "add_message",
    "get_context",
    "check_inbox",
    "search_context",
    "whoami",
    "claim",
    "release",
)


def _toolset(name: str) -> dict[str, ToolSpec[Any]]:
    if name == "records":
        # Imported only when offered: a process without it (the default) never pays for it.
        from shared_context_server.server.records_tools import RECORDS_TOOLS

        return RECORDS_TOOLS
    if name == "minimal":
        return {tool: TOOLS[tool] for tool in MINIMAL}
    return TOOLS


def _offered(toolsets: frozenset[str]) -> list[str]:
    # minimal is part of core: both together are core.
    return [t for t in TOOLSETS if t in toolsets and not (t == "minimal" and "core" in toolsets)]


@cache
def tools_for(toolsets: frozenset[str]) -> dict[str, ToolSpec[Any]]:
    """The tools of `toolsets`, in TOOLSETS order."""
    return {name: spec for t in _offered(toolsets) for name, spec in _toolset(t).items()}


@cache
def tool_list_for(toolsets: frozenset[str]) -> list[types.Tool]:
    """What tools/list answers: the shipped tool list of each toolset, in TOOLSETS order."""
    shipped = _shipped_tool_lists()
    return [types.Tool.model_validate(tool) for t in _offered(toolsets) for tool in shipped[t]]


def generate_tool_lists() -> dict[str, list[dict[str, Any]]]:
    """Each toolset's tools/list entries, from the models and descriptions in the code."""
    return {
        name: [
            spec.to_tool().model_dump(by_alias=True, mode="json", exclude_none=True)
            for spec in _toolset(name).values()
        ]
        for name in TOOLSETS
    }


def _shipped_tool_lists() -> dict[str, list[dict[str, Any]]]:
    try:
        shipped: dict[str, list[dict[str, Any]]] = json.loads(TOOL_LIST_FILE.read_text())
    except (OSError, ValueError):
        logger.warning("%s is missing or unreadable; building the tool list", TOOL_LIST_FILE)
        return generate_tool_lists()
    return shipped


def tool_list_size_for(toolsets: frozenset[str]) -> int:
    """Bytes of the tools/list result as JSON: what every agent pays for on every turn."""
    tools = [
        t.model_dump(by_alias=True, mode="json", exclude_none=True) for t in tool_list_for(toolsets)
    ]
    return len(json.dumps({"tools": tools}, separators=(",", ":")))


if __name__ == "__main__":  # regenerate tool_list.json after changing a tool
    TOOL_LIST_FILE.write_text(json.dumps(generate_tool_lists(), indent=1) + "\n")
    print(f"wrote {TOOL_LIST_FILE}", file=sys.stderr)
