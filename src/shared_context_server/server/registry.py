"""A row of the tool registry, and the annotation hints the rows share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import mcp_types as types
from pydantic import BaseModel

from shared_context_server.blackboard.identity import Agent
from shared_context_server.server.models import Input, compact_schema
from shared_context_server.server.outputs import output_schema
from shared_context_server.server.state import AppState

A = TypeVar("A", bound=Input)


@dataclass(frozen=True, kw_only=True)
class ToolSpec(Generic[A]):
    """One tool. The handler takes the input model's instance, so a row whose handler
    expects another tool's arguments does not type-check."""

    name: str
    description: str
    input_model: type[A]
    output_model: type[BaseModel]
    handler: Callable[[AppState, Agent, A], Awaitable[dict[str, Any]]]
    render: Callable[[dict[str, Any]], str]
    annotations: types.ToolAnnotations | None

    def to_tool(self) -> types.Tool:
        return types.Tool(
            name=self.name,
            description=self.description,
            input_schema=compact_schema(self.input_model),
            output_schema=output_schema(self.output_model),
            annotations=self.annotations,
        )


# Only hints that differ from MCP's defaults (readOnly false, destructive true, idempotent
# false) are written: every agent pays for each byte on every turn. openWorldHint is left
# out too: no tool reaches beyond the local file, and a copy per tool is paid on every turn.
READ = types.ToolAnnotations(read_only_hint=True)
APPEND = types.ToolAnnotations(destructive_hint=False)
UPDATE = types.ToolAnnotations(destructive_hint=False, idempotent_hint=True)
DELETE = types.ToolAnnotations(idempotent_hint=True)  # destructive is the default
