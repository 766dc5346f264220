"""Whose eyes the operator reads through: the visibility rule applies to the terminal too."""

from __future__ import annotations

from shared_context_server.blackboard.identity import Agent, check_name
from shared_context_server.storage.seam import Store

# Whitespace is forbidden in agent ids and types, so no message can be this viewer's own
# private note or match its type: the operator's default view is public messages only.
PUBLIC_VIEWER = Agent("operator (public view)", "operator (public view)", frozenset({"read"}))
ADMIN_VIEWER = Agent("operator (admin view)", "operator (admin view)", frozenset({"read", "admin"}))

LAST_TYPE = "SELECT sender_type FROM messages WHERE sender = ? ORDER BY id DESC LIMIT 1"


async def choose_viewer(
    db: Store, as_agent: str | None, agent_type: str | None, admin: bool
) -> Agent:
    """The operator by default, an admin with `admin`, or the agent `as_agent` (whose type is
    `agent_type`, else the type it last posted with, else generic). Raises InvalidInput."""
    if admin:
        return ADMIN_VIEWER
    if as_agent is None:
        return PUBLIC_VIEWER
    check_name(as_agent, "--as")
    if agent_type is None:
        row = await db.read_one(LAST_TYPE, (as_agent,))
        agent_type = str(row["sender_type"]) if row else "generic"
    check_name(agent_type, "--agent-type")
    return Agent(as_agent, agent_type, frozenset({"read"}))


def describe(viewer: Agent) -> str:
    if viewer is PUBLIC_VIEWER:
        return "public messages only (--as AGENT or --admin to see more)"
    if viewer is ADMIN_VIEWER:
        return "every message (admin)"
    return f"what {viewer.agent_id} (type {viewer.agent_type}) can see"
