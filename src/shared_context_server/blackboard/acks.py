"""Acknowledged hand-offs: each agent a message's metadata `to` names acknowledges it.

A trigger (migration 10) writes one `addressed` row per agent named in `to` as the
message is inserted, on every path that writes; `acknowledge` stamps the caller's rows.
Whoever may read a message also sees who has acknowledged it and who has not
(`attach`): the sender learns its hand-off was taken up.
"""

from __future__ import annotations

from typing import Any

from shared_context_server.blackboard.audit import entry, write_entry
from shared_context_server.blackboard.identity import Agent
from shared_context_server.blackboard.visibility import VISIBLE_SQL, visible_to
from shared_context_server.clock import utc_now
from shared_context_server.errors import InvalidInput
from shared_context_server.storage.seam import Conn, Store

MAX_IDS = 200


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def _select_acks(count: int) -> str:
    return (
        "SELECT message_id, agent_id, acknowledged_at FROM addressed"  # noqa: S608
        f" WHERE message_id IN ({_marks(count)}) ORDER BY agent_id"
    )


def _select_mine(count: int) -> str:
    return (
        "SELECT a.message_id FROM addressed a JOIN messages m ON m.id = a.message_id"  # noqa: S608
        f" WHERE a.agent_id = ? AND m.session_id = ? AND a.message_id IN ({_marks(count)})"
        f" AND {VISIBLE_SQL}"
    )


def _stamp(count: int) -> str:
    return (
        "UPDATE addressed SET acknowledged_at = ?"  # noqa: S608
        f" WHERE agent_id = ? AND message_id IN ({_marks(count)}) AND acknowledged_at IS NULL"
    )


def names(metadata: Any, agent_id: str) -> bool:
    """Whether a message's metadata `to` (an id or a list of ids) names `agent_id`."""
    to = metadata.get("to") if isinstance(metadata, dict) else None
    return to == agent_id or (isinstance(to, list) and agent_id in to)


def recipients(metadata: Any, sender: str) -> set[str]:
    """The agents the trigger gives `addressed` rows for: each text in metadata `to` (the
    one value, an array's elements, an object's members, as json_each reads it) other
    than the sender."""
    to = metadata.get("to") if isinstance(metadata, dict) else None
    listed = to.values() if isinstance(to, dict) else to if isinstance(to, list) else [to]
    return {name for name in listed if isinstance(name, str) and name != sender}


def addressed_ids(messages: list[Any]) -> list[int]:
    return [
        int(m["id"])
        for m in messages
        if isinstance(m.get("metadata"), dict) and m["metadata"].get("to") is not None
    ]


def _apply(messages: list[Any], rows: list[Any]) -> None:
    by_id: dict[int, list[Any]] = {}
    for row in rows:
        by_id.setdefault(int(row[0]), []).append(row)
    for message in messages:
        found = by_id.get(int(message["id"]))
        if found is None:
            continue
        message["acknowledged"] = {r[1]: r[2] for r in found if r[2] is not None}
        message["unacknowledged"] = [r[1] for r in found if r[2] is None]


async def attach(db: Store, messages: list[Any]) -> None:
    """Add `acknowledged` ({agent: when}) and `unacknowledged` ([agent]) to each message
    addressed with `to`: one read for the lot."""
    ids = addressed_ids(messages)
    if ids:
        _apply(messages, await db.read(_select_acks(len(ids)), ids))


def attach_in(conn: Conn, messages: list[Any]) -> None:
    """`attach` inside a unit of work."""
    ids = addressed_ids(messages)
    if ids:
        _apply(messages, conn.execute(_select_acks(len(ids)), ids).fetchall())


def stamp_in(conn: Conn, agent: Agent, session_id: str | None, ids: list[int]) -> list[int]:
    """Acknowledge `ids` (all addressed to `agent`) inside a unit of work, audited."""
    if not ids:
        return []
    conn.execute(_stamp(len(ids)), (utc_now(), agent.agent_id, *ids))
    target = "message:" + ",".join(str(i) for i in ids)
    write_entry(conn, entry(agent, "acknowledge", session_id=session_id, target=target[:200]))
    return ids


async def acknowledge(
    db: Store, agent: Agent, session_id: str, message_ids: list[int]
) -> dict[str, Any]:
    """Acknowledge messages addressed to the caller (metadata `to`). All or nothing.
    Raises InvalidInput (an id not addressed to the caller there), PermissionDenied."""
    agent.require("read", "acknowledge")
    ids = sorted(set(message_ids))
    if not 1 <= len(ids) <= MAX_IDS:
        raise InvalidInput(f"give 1-{MAX_IDS} message_ids; got {len(ids)}.")

    def work(conn: Conn) -> dict[str, Any]:
        params = (agent.agent_id, session_id, *ids, *visible_to(agent))
        mine = {int(r[0]) for r in conn.execute(_select_mine(len(ids)), params).fetchall()}
        stray = [i for i in ids if i not in mine]
        if stray:
            raise InvalidInput(
                f"messages {stray} in {session_id} are not addressed to you (metadata.to "
                f"names {agent.agent_id}); nothing was acknowledged.",
                argument="message_ids",
            )
        stamp_in(conn, agent, session_id, ids)
        return {"session_id": session_id, "acknowledged": ids}

    result: dict[str, Any] = await db.transact(work)
    return result
