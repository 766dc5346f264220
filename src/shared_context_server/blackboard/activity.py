"""Who posts, and when: per-agent activity over the messages a viewer may see (the
dashboard's chart and its sessions list)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared_context_server.blackboard.identity import VISIBLE_SQL, Agent, visible_to
from shared_context_server.blackboard.sessions import require_session
from shared_context_server.clock import iso
from shared_context_server.storage.seam import Store

BUCKETS = 48
# Per sender and minute, so the rows are bounded by minutes of activity, not messages.
PER_MINUTE = (
    "SELECT m.sender, substr(m.created_at, 1, 16) AS minute, count(*) AS n"  # noqa: S608
    f" FROM messages m WHERE m.session_id = ? AND {VISIBLE_SQL}"
    " GROUP BY m.sender, minute ORDER BY minute"
)
SENDERS = (
    "SELECT m.session_id, m.sender, count(*) AS n FROM messages m"  # noqa: S608
    f" WHERE {VISIBLE_SQL} GROUP BY m.session_id, m.sender ORDER BY n DESC, m.sender"
)


def _minute(text: str) -> datetime:
    return datetime.fromisoformat(text + ":00+00:00")


async def session_senders(db: Store, viewer: Agent) -> dict[str, list[dict[str, Any]]]:
    """For each session, the agents whose messages `viewer` may see, busiest first."""
    out: dict[str, list[dict[str, Any]]] = {}
    for row in await db.read(SENDERS, visible_to(viewer)):
        out.setdefault(row["session_id"], []).append({"agent": row["sender"], "count": row["n"]})
    return out


async def messages_over_time(
    db: Store, viewer: Agent, session_id: str, buckets: int = BUCKETS
) -> dict[str, Any]:
    """Messages per agent in `buckets` equal spans of whole minutes from the session's first
    visible message to its last, busiest agent first. Raises SessionNotFound."""
    await require_session(db, session_id)
    rows = await db.read(PER_MINUTE, (session_id, *visible_to(viewer)))
    if not rows:
        return {"start": None, "end": None, "bucket_seconds": 60, "agents": []}
    start, end = _minute(rows[0]["minute"]), _minute(rows[-1]["minute"])
    minutes = int((end - start).total_seconds() // 60) + 1
    per_bucket = -(-minutes // buckets)  # whole minutes per bar, rounded up
    count = -(-minutes // per_bucket)
    series: dict[str, list[int]] = {}
    for row in rows:
        index = int((_minute(row["minute"]) - start).total_seconds() // 60) // per_bucket
        series.setdefault(row["sender"], [0] * count)[index] += row["n"]
    agents = sorted(series.items(), key=lambda item: (-sum(item[1]), item[0]))
    return {
        "start": iso(start),
        "end": iso(end),
        "bucket_seconds": per_bucket * 60,
        "agents": [{"agent": name, "counts": counts} for name, counts in agents],
    }
