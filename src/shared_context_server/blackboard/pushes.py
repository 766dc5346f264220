"""The messages to push to an agent as they commit: its news since this process started,
each handed to one process of the agent only.

The inbox's rule and marks decide (blackboard/news.py). A push tells the model of a
message as the Claude Code hook's nudge does, so it moves the marks the hook keeps of
what it mentioned: `nudged_id` for messages for the agent, `hinted_id` for all pushed.
Taking reads and moves them in one BEGIN IMMEDIATE transaction, so two processes of one
agent never push the same message and the hook does not mention it again; check_inbox's
`seen_id` stays where it is, so the agent still reads the message itself there.
"""

from __future__ import annotations

from typing import Any

from shared_context_server.blackboard import news
from shared_context_server.blackboard.identity import Agent
from shared_context_server.blackboard.limits import decode_metadata
from shared_context_server.storage.seam import Conn, Row, Store

BATCH = 20
# Past the process's floor; `for you` alone, or everything in the agent's sessions.
FOR_YOU = news.NEWS["nudged_id"].replace(
    " ORDER BY", f" AND m.id > ? AND {news.FOR_YOU_SQL} ORDER BY"
)
EVERY = news.NEWS["hinted_id"].replace(" ORDER BY", " AND m.id > ? ORDER BY")
LAST_ID = "SELECT coalesce(max(id), 0) FROM messages"
_KEYS = tuple(column.strip().removeprefix("m.") for column in news.COLUMNS.split(","))


async def last_message_id(db: Store) -> int:
    """The newest message id now: what a process pushes starts after it."""
    row = await db.read_one(LAST_ID, small=True)
    return int(row[0]) if row is not None else 0


def _query(agent: Agent, floor: int, every: bool, limit: int) -> tuple[str, tuple[Any, ...]]:
    if every:
        return EVERY, (*news.news_params(agent), floor, limit)
    return FOR_YOU, (*news.news_params(agent), floor, agent.agent_id, agent.agent_id, limit)


async def take_pushes(
    db: Store, agent: Agent, floor: int, *, every: bool = False, limit: int = BATCH
) -> list[dict[str, Any]]:
    """The oldest `limit` messages past `floor` to push to `agent`, in id order, each with
    `for_you` and its session's `purpose`; the marks move past them. A look that finds
    nothing takes no write lock. Raises StorageError."""
    sql, params = _query(agent, floor, every, limit)
    if not await db.read(sql, (*params[:-1], 1), small=True):
        return []

    def work(conn: Conn) -> list[Row]:
        rows: list[Row] = conn.execute(sql, params).fetchall()
        shown = [(row["session_id"], row["id"]) for row in rows]
        news.move_marks(conn, agent.agent_id, shown, "hinted_id")
        addressed = [(row["session_id"], row["id"]) for row in rows if row["for_you"]]
        news.move_marks(conn, agent.agent_id, addressed, "nudged_id")
        return rows

    taken = await db.transact(work)
    messages = []
    for row in taken:
        message = dict(zip(_KEYS, row, strict=False))
        message["metadata"] = decode_metadata(message["metadata"])
        message["for_you"] = bool(row["for_you"])
        message["purpose"] = row["purpose"]
        messages.append(message)
    return messages
