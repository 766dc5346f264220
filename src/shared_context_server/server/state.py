"""What one server process holds while it serves: settings and its connections to the files."""

from __future__ import annotations

from dataclasses import dataclass

from mcp.server import ServerRequestContext

from shared_context_server.blackboard.identity import DEFAULT_PERMISSIONS, Agent, Permission
from shared_context_server.blackboard.records.store import RecordsStore
from shared_context_server.config import Settings
from shared_context_server.db import Database


@dataclass
class AppState:
    settings: Settings
    db: Database
    records: RecordsStore | None = None  # open when the records toolset is on

    def process_agent(self, ctx: ServerRequestContext[AppState]) -> Agent:
        """This process's agent: --agent-id, else the env variable, else the client's name."""
        settings = self.settings
        permissions: frozenset[Permission] = (
            DEFAULT_PERMISSIONS | {"admin"} if settings.admin else DEFAULT_PERMISSIONS
        )
        if settings.agent_id and settings.agent_id_source:
            return Agent(
                settings.agent_id, settings.agent_type, permissions, settings.agent_id_source
            )
        params = ctx.session.client_params
        name = params.client_info.name.strip() if params is not None else ""
        if name:
            return Agent(name[:128], settings.agent_type, permissions, "client_info")
        return Agent("anonymous", settings.agent_type, permissions, "default")
