"""Which tools a process offers: the toolsets named by --toolsets, `core` by default."""

from __future__ import annotations

import json
from functools import cache

import mcp_types as types

from shared_context_server.config import TOOLSETS
from shared_context_server.server.tools import TOOLS, ToolSpec


def _toolset(name: str) -> dict[str, ToolSpec]:
    if name == "records":
        # Imported only when offered: a process without it (the default) never pays for it.
        from shared_context_server.server.records_tools import RECORDS_TOOLS

        return RECORDS_TOOLS
    return TOOLS


@cache
def tools_for(toolsets: frozenset[str]) -> dict[str, ToolSpec]:
    """The tools of `toolsets`, in TOOLSETS order."""
    return {name: spec for t in TOOLSETS if t in toolsets for name, spec in _toolset(t).items()}


@cache
def tool_list_for(toolsets: frozenset[str]) -> list[types.Tool]:
    return [spec.to_tool() for spec in tools_for(toolsets).values()]


def tool_list_size_for(toolsets: frozenset[str]) -> int:
    """Bytes of the tools/list result as JSON for these toolsets."""
    tools = [
        t.model_dump(by_alias=True, mode="json", exclude_none=True) for t in tool_list_for(toolsets)
    ]
    return len(json.dumps({"tools": tools}, separators=(",", ":")))
