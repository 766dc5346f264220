"""What is new for an agent: the reads and mark moves of its inbox, over a plain connection.

check_inbox (blackboard/inbox.py) and the Claude Code hook (hook.py) share these. The hook
runs on every prompt in a fresh process, so this module imports nothing beyond the
standard library and the visibility rule.

An agent takes part in a session it created, posted in, or was addressed in; the
`inbox_marks` row of each (migration 6) says up to which message id it has been shown news.
A message is *for* the agent when it replies to one of the agent's messages, or when its
metadata `to` (an agent id, or a list of them) names the agent. The rule is `to`, not
`@name` in the content: ids may hold any punctuation, and content quotes code and email
addresses (`@property`, `a@b.c`) that a pattern would take for mentions.
"""

from __future__ import annotations

from shared_context_server.blackboard.visibility import VISIBLE_SQL, visible_to

# typing and collections cost the hook milliseconds: for mypy only (it takes any
# TYPE_CHECKING name as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, Literal

    from shared_context_server.blackboard.visibility import Reader
    from shared_context_server.storage.seam import Conn, Row

    Mark = Literal["seen_id", "hinted_id", "nudged_id"]

COLUMNS = (
    "m.id, m.session_id, m.sender, m.sender_type, m.content, m.visibility,"
    " m.message_type, m.metadata, m.parent_message_id, m.created_at"
)
# The parent's sender as a scalar subquery, not EXISTS: PostgreSQL may run an EXISTS as
# one hash of every message the agent sent, which grows with the table.
FOR_YOU_SQL = (
    "(coalesce((SELECT p.sender FROM messages p WHERE p.id = m.parent_message_id) = ?, FALSE)"
    " OR EXISTS (SELECT 1 FROM json_each(coalesce(m.metadata, '{}'), '$.to') t"
    "  WHERE t.type = 'text' AND t.value = ?))"
)


def _news_sql(mark: str, columns: str) -> str:
    # CROSS JOIN keeps the agent's marks as the outer loop: each is a short range of the
    # (session_id, id) index, where ORDER BY m.id alone could walk every message.
    since = "i.seen_id" if mark == "seen_id" else f"max(i.seen_id, i.{mark})"
    return (
        f"SELECT {columns}, {FOR_YOU_SQL} AS for_you, s.purpose"  # noqa: S608 (constants)
        " FROM inbox_marks i CROSS JOIN messages m ON m.session_id = i.session_id"
        f" AND m.id > {since}"
        " JOIN sessions s ON s.id = i.session_id"
        f" WHERE i.agent_id = ? AND m.sender != ? AND {VISIBLE_SQL}"
        " ORDER BY m.id LIMIT ?"
    )


NEWS = {mark: _news_sql(mark, COLUMNS) for mark in ("seen_id", "hinted_id", "nudged_id")}
# The digest: newest first, as it tells of them; no metadata; a snippet of the content.
BRIEF = {
    mark: _news_sql(mark, "m.id, m.session_id, m.sender, substr(m.content, 1, 400)").replace(
        "ORDER BY m.id", "ORDER BY m.id DESC"
    )
    for mark in ("seen_id", "hinted_id", "nudged_id")
}
# Stop's question: only messages for the agent, so older chatter never hides one.
ADDRESSED = BRIEF["nudged_id"].replace(" ORDER BY", f" AND {FOR_YOU_SQL} ORDER BY")
# Hand-offs awaiting the agent's acknowledgement (acks.py; migration 10 made `addressed`):
# the newest first, and (Stop) only those it was not yet nudged about.
ACK_SCHEMA = 10
PENDING = (
    "SELECT a.message_id, a.session_id, m.sender, substr(m.content, 1, 400)"  # noqa: S608
    " FROM addressed a JOIN messages m ON m.id = a.message_id"
    " WHERE a.agent_id = ? AND a.acknowledged_at IS NULL AND (? OR a.nudged = 0)"
    f" AND {VISIBLE_SQL} ORDER BY a.message_id DESC LIMIT ?"
)
NUDGED = "UPDATE addressed SET nudged = 1 WHERE agent_id = ? AND message_id = ?"
MOVE_MARK = {
    mark: f"UPDATE inbox_marks SET {mark} = max({mark}, ?)"  # noqa: S608 (constants)
    " WHERE agent_id = ? AND session_id = ?"
    for mark in ("seen_id", "hinted_id", "nudged_id")
}


def news_params(agent: Reader) -> tuple[Any, ...]:
    return (agent.agent_id, agent.agent_id, agent.agent_id, agent.agent_id, *visible_to(agent))


def news(conn: Conn, agent: Reader, limit: int, mark: Mark = "seen_id") -> list[Row]:
    """The oldest `limit` messages new to `agent` past `mark`, that it may see and did not
    send, in id order: for each session a run from its mark on, so marks can move to the
    last of each."""
    rows: list[Row] = conn.execute(NEWS[mark], (*news_params(agent), limit)).fetchall()
    return rows


def brief_news(
    conn: Conn, agent: Reader, limit: int, mark: Mark = "seen_id"
) -> list[tuple[Any, ...]]:
    """The newest `limit` of `news`, newest first, as (id, session_id, sender, content
    snippet, for_you, purpose) tuples."""
    return conn.execute(BRIEF[mark], (*news_params(agent), limit)).fetchall()


def addressed_news(conn: Conn, agent: Reader, limit: int) -> list[tuple[Any, ...]]:
    """`brief_news` past the nudged marks, of messages for `agent` only."""
    params = (*news_params(agent), agent.agent_id, agent.agent_id, limit)
    return conn.execute(ADDRESSED, params).fetchall()


def move_marks(conn: Conn, agent_id: str, rows: Iterable[tuple[str, int]], mark: Mark) -> None:
    """Move `mark` of each (session_id, message_id) forward; a mark never moves back."""
    last: dict[str, int] = {}
    for session_id, message_id in rows:
        last[session_id] = max(message_id, last.get(session_id, 0))
    for session_id, message_id in last.items():
        conn.execute(MOVE_MARK[mark], (message_id, agent_id, session_id))


def unacknowledged(conn: Conn, agent: Reader, limit: int, *, fresh: bool) -> list[Any]:
    """The newest messages addressed to `agent` that it has not acknowledged, as (id,
    session_id, sender, content snippet); `fresh`: only those not yet nudged about."""
    params = (agent.agent_id, not fresh, *visible_to(agent), limit)
    rows: list[Any] = conn.execute(PENDING, params).fetchall()
    return rows


def mark_nudged(conn: Conn, agent_id: str, message_ids: Iterable[int]) -> None:
    """The Stop hook told of these: it never blocks twice for one."""
    for message_id in message_ids:
        conn.execute(NUDGED, (agent_id, message_id))
