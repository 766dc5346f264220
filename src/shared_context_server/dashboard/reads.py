"""Everything the dashboard reads, in one place and through the domain's own functions, so
the visibility rule is the blackboard's and another storage engine needs no second
dashboard: this module holds no SQL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared_context_server.blackboard import audit, claims, memory
from shared_context_server.blackboard.activity import messages_over_time, session_senders
from shared_context_server.blackboard.identity import Agent
from shared_context_server.blackboard.messages import Message, get_context, get_message
from shared_context_server.blackboard.processes import live_processes
from shared_context_server.blackboard.search import search_context
from shared_context_server.blackboard.sessions import StatusFilter, fetch_session
from shared_context_server.errors import NotFound, PermissionDenied
from shared_context_server.operations.watch import (
    count_visible,
    session_overview,
)
from shared_context_server.storage.seam import Store

PAGE = 100  # messages per transcript page: the first screen of a 10,000-message session
LIVE_BATCH = 500  # new messages per live event; the next event carries the rest
SEARCH_SESSIONS = 50  # the most recently active sessions a search across sessions covers
SEARCH_RESULTS = 20  # results a search shows, best first
EXCERPT = 160
TABLE_PAGE = 100  # audit entries or memory keys per page of the admin tables


def _excerpt(message: Message) -> dict[str, Any]:
    content = message["content"]
    short = content if len(content) <= EXCERPT else content[: EXCERPT - 1] + "…"
    return {"id": message["id"], "sender": message["sender"], "excerpt": short}


@dataclass(frozen=True)
class Reader:
    """The blackboard as one viewer sees it (public, an agent, or an admin)."""

    db: Store
    viewer: Agent

    async def data_version(self) -> int:
        """Moves whenever another process commits."""
        return await self.db.data_version()

    async def sessions(self, status: StatusFilter = "all") -> list[dict[str, Any]]:
        """Sessions most recently active first, with the agents the viewer sees posting."""
        rows = await session_overview(self.db, self.viewer, status)
        senders = await session_senders(self.db, self.viewer)
        return [{**row, "agents": senders.get(row["id"], [])} for row in rows]

    async def session(self, session_id: str) -> dict[str, Any]:
        """One session with the number of messages the viewer sees. Raises SessionNotFound."""
        session = await fetch_session(self.db, session_id)
        return {**session, "message_count": await count_visible(self.db, self.viewer, session_id)}

    async def page(self, session_id: str, before_id: int | None = None) -> dict[str, Any]:
        """The latest PAGE visible messages (or those before `before_id`), oldest first, with
        what each reply answers. Raises SessionNotFound, InvalidInput."""
        page = await get_context(
            self.db, self.viewer, session_id=session_id, limit=PAGE, before_id=before_id
        )
        return {**page, "parents": await self._parents(session_id, page["messages"])}

    async def after(self, session_id: str, after_id: int) -> dict[str, Any]:
        """Up to LIVE_BATCH visible messages after `after_id`. Raises SessionNotFound."""
        page = await get_context(
            self.db, self.viewer, session_id=session_id, limit=LIVE_BATCH, after_id=after_id
        )
        return {**page, "parents": await self._parents(session_id, page["messages"])}

    async def _parents(self, session_id: str, messages: list[Message]) -> dict[str, Any]:
        """An excerpt of each message a reply answers, when the viewer may see it."""
        out: dict[str, Any] = {}
        for parent_id in {p for m in messages if (p := m["parent_message_id"]) is not None}:
            try:
                parent = await get_message(
                    self.db, self.viewer, session_id=session_id, message_id=parent_id
                )
            except NotFound:
                continue  # the viewer may not read it: the reply shows only its id
            out[str(parent_id)] = _excerpt(parent)
        return out

    async def activity(self, session_id: str) -> dict[str, Any]:
        return await messages_over_time(self.db, self.viewer, session_id)

    async def search(self, query: str, session_id: str | None = None) -> list[dict[str, Any]]:
        """search_context in one session, or across the most recently active sessions;
        best first. Raises InvalidInput, SessionNotFound."""
        if session_id is not None:
            found = await search_context(
                self.db, self.viewer, session_id=session_id, query=query, limit=SEARCH_RESULTS
            )
            return list(found["results"])
        results: list[dict[str, Any]] = []
        for session in (await session_overview(self.db, self.viewer))[:SEARCH_SESSIONS]:
            if session["message_count"]:
                found = await search_context(self.db, self.viewer, session["id"], query, limit=5)
                results.extend(found["results"])
        results.sort(key=lambda r: (-r["score"], -r["message"]["id"]))
        return results[:SEARCH_RESULTS]

    async def processes(self) -> list[dict[str, Any]]:
        """The live heartbeat rows `doctor` reads; a read-only look deletes nothing."""
        return await live_processes(self.db, forget_stale=False)

    async def claims(self) -> list[dict[str, Any]]:
        """The live claims, by target: who holds what, why, since and until (everyone's
        to see, as list_claims shows them)."""
        return list((await claims.list_claims(self.db, self.viewer, cwd="/"))["claims"])

    def _admin(self, what: str) -> None:
        if not self.viewer.is_admin:
            raise PermissionDenied(f"the {what} is shown with `dashboard --admin` only.")

    async def audit(
        self,
        session_id: str | None,
        agent_id: str | None,
        action: str | None,
        cursor: str | None,
    ) -> dict[str, Any]:
        """A page of the audit log, filtered as get_audit_log filters (admin only)."""
        self._admin("audit log")
        return await audit.get_audit_log(
            self.db,
            self.viewer,
            session_id=session_id,
            agent_id=agent_id,
            action=action,
            limit=TABLE_PAGE,
            cursor=cursor,
        )

    async def memory_keys(self, agent_id: str | None, cursor: str | None) -> dict[str, Any]:
        """Every agent's memory keys without values (admin only)."""
        self._admin("memory")
        return await memory.all_memory_keys(
            self.db, self.viewer, agent_id=agent_id, limit=TABLE_PAGE, cursor=cursor
        )

    async def memory_value(self, agent_id: str, key: str, session_id: str | None) -> dict[str, Any]:
        """One entry with its value, when the operator asks for it (admin only)."""
        self._admin("memory")
        return await memory.any_memory(
            self.db, self.viewer, agent_id=agent_id, key=key, session_id=session_id
        )
