"""What one server process holds while it serves: settings, its connections to the files,
and who is listening for changes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mcp.server import ServerRequestContext
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus

from shared_context_server.blackboard.changes import ChangeFeed
from shared_context_server.blackboard.claims import Presence
from shared_context_server.blackboard.identity import (
    DEFAULT_PERMISSIONS,
    RESERVED_IDS,
    Agent,
    Permission,
)
from shared_context_server.blackboard.processes import Heartbeat
from shared_context_server.config import Settings
from shared_context_server.server.subscriptions import Subscriptions
from shared_context_server.storage.seam import Store

if TYPE_CHECKING:  # imported only when the records toolset is offered
    from shared_context_server.blackboard.records.location import RecordsStore


def client_agent_id(client_name: str) -> str:
    """A client's self-reported name as an agent id: runs of spaces, control, format and
    bidirectional-override characters and '/' (kept for sub-agents) become one "-", and
    it is cut to the 128 characters an agent id may have."""
    safe = "".join(c if c.isprintable() and c != "/" else " " for c in client_name)
    name = _UNSAFE.sub("-", safe).strip("-")[:128]
    return f"{name}-client" if name in RESERVED_IDS else name


_UNSAFE = re.compile(r"\s+")


@dataclass
class AppState:
    settings: Settings
    db: Store
    feed: ChangeFeed
    # Discover era: listen streams take events from here (filtered by URI per stream).
    bus: InMemorySubscriptionBus
    # Both eras: the URIs followed, with the agent following each (whose visibility
    # decides what counts as news), capped per process.
    subscriptions: Subscriptions
    heartbeat: Heartbeat | None = None
    presence: Presence | None = None  # this run, which the claims made through it live with
    # Handshake era: the connection, captured at notifications/initialized so the poller
    # can notify outside any request.
    peer: ServerSession | None = None
    # Handshake era: whether the client listed resources (and so hears list_changed).
    list_watched: bool = False
    records: RecordsStore | None = None  # open when the records toolset is on

    def process_agent(self, ctx: ServerRequestContext[AppState]) -> Agent:
        """This process's agent: --agent-id, else the env variable, else the client's name."""
        return self.agent_for(ctx.session)

    def agent_for(self, session: ServerSession) -> Agent:
        """The agent of this process as the client of `session` makes it."""
        settings = self.settings
        permissions: frozenset[Permission] = (
            DEFAULT_PERMISSIONS | {"admin"} if settings.admin else DEFAULT_PERMISSIONS
        )
        if settings.agent_id and settings.agent_id_source:
            return Agent(
                settings.agent_id, settings.agent_type, permissions, settings.agent_id_source
            )
        params = session.client_params
        name = client_agent_id(params.client_info.name) if params is not None else ""
        if name:
            return Agent(name, settings.agent_type, permissions, "client_info")
        return Agent("anonymous", settings.agent_type, permissions, "default")

    def note_client(self, ctx: ServerRequestContext[AppState], agent: Agent) -> None:
        """Tell the heartbeat which agent and client this process serves (for `doctor`)."""
        if self.heartbeat is not None and agent.source != "token":
            params = ctx.session.client_params
            client = params.client_info.name if params is not None else None
            self.heartbeat.note_client(agent.agent_id, client)
