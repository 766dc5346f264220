"""check_inbox: what is new for an agent across every session it takes part in.

The marks live in the shared file (blackboard/news.py says which sessions count and which
messages are *for* the agent), so every process of an agent, before and after a restart,
sees one inbox. Taking news reads it and moves the marks in one BEGIN IMMEDIATE
transaction: two processes of one agent never both get a message.
"""

from __future__ import annotations

from typing import Any

import anyio

from shared_context_server.blackboard import acks, news
from shared_context_server.blackboard.changes import MAX_WAIT_S, ChangeFeed
from shared_context_server.blackboard.identity import Agent
from shared_context_server.blackboard.limits import (
    DEFAULT_LIMITS,
    DEFAULT_PAGE_LIMIT,
    Limits,
    decode_metadata,
)
from shared_context_server.errors import InvalidInput
from shared_context_server.storage.seam import Conn, Row, Store

MAX_INBOX_LIMIT = 200
_KEYS = tuple(column.strip().removeprefix("m.") for column in news.COLUMNS.split(","))


def _take(agent: Agent, limit: int, limits: Limits, ack: bool = False) -> Any:
    def work(conn: Conn) -> tuple[list[Row], bool]:
        rows = news.news(conn, agent, limit + 1)
        has_more = len(rows) > limit
        taken: list[Row] = []
        chars = 0
        for row in rows[:limit]:  # a prefix in id order: each session's run stays whole
            chars += len(row["content"])
            if taken and chars > limits.max_page_chars:
                has_more = True
                break
            taken.append(row)
        news.move_marks(
            conn, agent.agent_id, ((r["session_id"], r["id"]) for r in taken), "seen_id"
        )
        if ack:
            mine = [
                int(r["id"])
                for r in taken
                if acks.names(decode_metadata(r["metadata"]), agent.agent_id)
            ]
            acks.stamp_in(conn, agent, None, mine)
        return taken, has_more

    return work


async def _grouped(
    db: Store, agent: Agent, rows: list[Row], has_more: bool, ack: bool
) -> dict[str, Any]:
    """Sessions with messages for the caller first; in each, those messages first: those
    addressed to it and not yet acknowledged, then the rest for it."""
    groups: dict[str, dict[str, Any]] = {}
    flat: list[dict[str, Any]] = []
    purposes = {row["id"]: row["purpose"] for row in rows}
    for row in rows:
        message = dict(zip(_KEYS, row, strict=False))
        message["metadata"] = decode_metadata(message["metadata"])
        message["for_you"] = bool(row["for_you"])
        flat.append(message)
    await acks.attach(db, flat)
    for message in flat:
        group = groups.setdefault(
            message["session_id"],
            {
                "session_id": message["session_id"],
                "purpose": purposes[message["id"]],
                "messages": [],
            },
        )
        group["messages"].append(message)

    def rank(m: dict[str, Any]) -> tuple[bool, bool, int]:
        # Acknowledged by this very call (`ack`) still counts as awaiting: it was news.
        awaiting = agent.agent_id in m.get("unacknowledged", ()) or (
            ack and acks.names(m["metadata"], agent.agent_id)
        )
        return (not awaiting, not m["for_you"], m["id"])

    for group in groups.values():
        group["messages"].sort(key=rank)
    ordered = sorted(groups.values(), key=lambda g: rank(g["messages"][0]))
    return {
        "sessions": ordered,
        "for_you": sum(1 for row in rows if row["for_you"]),
        "has_more": has_more,
    }


async def check_inbox(
    feed: ChangeFeed,
    agent: Agent,
    limit: int = DEFAULT_PAGE_LIMIT,
    wait_s: float = 0.0,
    limits: Limits = DEFAULT_LIMITS,
    ack: bool = False,
) -> dict[str, Any]:
    """News for `agent` since it last checked, once each, and move its marks past them.

    With `wait_s`, a long poll across its sessions: returns as soon as news exists (from
    any process), or empty at the timeout. Holds no lock while it waits; a look that finds
    nothing takes no write lock either. Raises InvalidInput, PermissionDenied.
    """
    agent.require("read", "check_inbox")
    if not 1 <= limit <= MAX_INBOX_LIMIT:
        raise InvalidInput(f"limit must be 1-{MAX_INBOX_LIMIT}; got {limit}.")
    if not 0 <= wait_s <= MAX_WAIT_S:
        raise InvalidInput(f"wait_s must be 0-{MAX_WAIT_S:.0f} seconds; got {wait_s}.")
    db = feed.db
    peek = news.NEWS["seen_id"]
    params = news.news_params(agent)

    async def take() -> tuple[list[Row], bool]:
        if not await db.read(peek, (*params, 1), small=True):
            return [], False
        taken: tuple[list[Row], bool] = await db.transact(_take(agent, limit, limits, ack))
        return taken

    with feed.watching():
        changed = feed.next_change()
        rows, has_more = await take()
        with anyio.move_on_after(wait_s):
            while not rows:
                await changed.wait()
                changed = feed.next_change()
                rows, has_more = await take()
    return await _grouped(db, agent, rows, has_more, ack)
