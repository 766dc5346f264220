"""Who in this process listens for which resources, in both protocol eras, and the cap on
how many.

Kept by session as well as by URI, so that telling subscribers of a commit costs one read
per subscribing agent plus a look-up per session the commit touched: never a pass over
every subscription held (3,000 of them cost 13 ms of CPU per foreign commit that way).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from shared_context_server.blackboard.identity import Agent
from shared_context_server.blackboard.limits import MAX_SUBSCRIPTIONS
from shared_context_server.errors import LimitExceeded

# The session a URI follows (None: messages never change it), from the resource registry.
SessionOf = Callable[[str], str | None]


@dataclass
class Watch:
    """One URI of one session, as one agent follows it."""

    subscribed: bool = False  # handshake era: resources/subscribe
    listens: int = 0  # discover era: open listen streams that name it


class Subscriptions:
    """Handshake-era subscriptions and discover-era listen streams, with the cap."""

    def __init__(self, session_of: SessionOf, limit: int = MAX_SUBSCRIPTIONS) -> None:
        self.limit = limit
        self._session_of = session_of
        self.subscribed: dict[str, Agent] = {}  # URI -> the agent that subscribed
        self.listens: dict[object, tuple[Agent, frozenset[str]]] = {}
        self.held = 0  # subscribed URIs plus the URIs of every open listen stream
        # agent -> session id -> URI -> how it is followed
        self._by_session: dict[Agent, dict[str, dict[str, Watch]]] = {}

    def check_room(self, adding: int) -> None:
        """Raises LimitExceeded unless `adding` more fit under the cap."""
        if self.held + adding > self.limit:
            raise LimitExceeded(
                f"this server process holds {self.held} resource subscriptions and asked for "
                f"{adding} more; the limit is {self.limit} per process. Unsubscribe from "
                "sessions you no longer follow (resources/unsubscribe, or close a listen "
                "stream), or hear of news in all your sessions at once with check_inbox "
                "(wait_s) or wait_for_messages instead of a subscription per session.",
                argument="uri",
                limit=self.limit,
            )

    def subscribe(self, uri: str, agent: Agent) -> bool:
        """Follow `uri` as `agent` (handshake era); True if it was not followed yet.
        Raises LimitExceeded."""
        previous = self.subscribed.get(uri)
        if previous is None:
            self.check_room(1)
            self.held += 1
        else:
            self._follow(previous, uri, subscribed=False)
        self.subscribed[uri] = agent
        self._follow(agent, uri, subscribed=True)
        return previous is None

    def unsubscribe(self, uri: str) -> bool:
        """Stop following `uri` (handshake era); True if it was followed."""
        agent = self.subscribed.pop(uri, None)
        if agent is None:
            return False
        self.held -= 1
        self._follow(agent, uri, subscribed=False)
        return True

    def open_listen(self, key: object, agent: Agent, uris: frozenset[str]) -> None:
        """A listen stream opens (discover era). Raises LimitExceeded."""
        self.check_room(len(uris))
        self.held += len(uris)
        self.listens[key] = (agent, uris)
        for uri in uris:
            self._follow(agent, uri, listens=1)

    def close_listen(self, key: object) -> None:
        agent, uris = self.listens.pop(key)
        self.held -= len(uris)
        for uri in uris:
            self._follow(agent, uri, listens=-1)

    def agents(self) -> Iterator[tuple[Agent, dict[str, dict[str, Watch]]]]:
        """Each agent that follows a session, with what it follows by session id."""
        return iter(self._by_session.items())

    def _follow(
        self, agent: Agent, uri: str, subscribed: bool | None = None, listens: int = 0
    ) -> None:
        """Update the session index for `uri`, dropping entries nothing follows any more."""
        session_id = self._session_of(uri)
        if session_id is None:
            return  # no message changes it: nothing to index
        sessions = self._by_session.setdefault(agent, {})
        uris = sessions.setdefault(session_id, {})
        watch = uris.setdefault(uri, Watch())
        if subscribed is not None:
            watch.subscribed = subscribed
        watch.listens += listens
        if watch.subscribed or watch.listens:
            return
        del uris[uri]
        if not uris:
            del sessions[session_id]
        if not sessions:
            del self._by_session[agent]
