"""Subscriptions a noisy agent cannot multiply: the per-process cap in both protocol eras,
and the work of telling subscribers of a commit, which must not grow with how many
subscriptions a process holds."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import mcp_types as types
import pytest
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.shared.exceptions import MCPError

import shared_context_server
from shared_context_server.blackboard import messages, sessions
from shared_context_server.blackboard.changes import ChangeFeed
from shared_context_server.blackboard.limits import MAX_SUBSCRIPTIONS
from shared_context_server.config import Settings
from shared_context_server.server import resources
from shared_context_server.server.state import AppState
from shared_context_server.server.subscriptions import Subscriptions
from shared_context_server.storage.opener import open_store
from shared_context_server.storage.seam import Change, Store, Target
from tests.support import ALICE, BOB, connect, ok

PACKAGE_DIR = str(Path(shared_context_server.__file__).parent)


def settings(target: Target) -> Settings:
    return Settings(db_path=target, agent_id="alice", agent_id_source="flag", poll_interval=0.05)


async def test_subscribing_past_the_cap_is_refused_with_what_to_do(target: Target) -> None:
    async with connect("handshake", settings(target)) as s:
        for i in range(MAX_SUBSCRIPTIONS):
            sid = (await ok(s, "create_session", purpose=f"s{i}"))["session_id"]
            await s.subscribe_resource(f"session://{sid}")
        await s.subscribe_resource(f"session://{sid}")  # again: not one more
        extra = (await ok(s, "create_session", purpose="one too many"))["session_id"]
        with pytest.raises(MCPError) as refused:
            await s.subscribe_resource(f"session://{extra}")
        assert refused.value.error.code == types.INVALID_PARAMS
        message = refused.value.error.message
        assert message.startswith("LIMIT_EXCEEDED") and f"limit is {MAX_SUBSCRIPTIONS}" in message
        assert "unsubscribe" in message.lower() and "check_inbox" in message
        await s.unsubscribe_resource(f"session://{sid}")
        await s.subscribe_resource(f"session://{extra}")  # room again


async def test_a_listen_stream_past_the_cap_is_refused_before_any_uri_is_read(
    target: Target,
) -> None:
    uris = [f"session://missing{i}" for i in range(MAX_SUBSCRIPTIONS + 1)]
    async with connect("discover", settings(target)) as s:
        with pytest.raises(MCPError, match="LIMIT_EXCEEDED") as refused:
            async with s.client.listen(resource_subscriptions=uris):
                pass
    assert f"limit is {MAX_SUBSCRIPTIONS} per process" in refused.value.error.message


def test_the_cap_counts_both_eras_together_and_frees_room_on_close() -> None:
    held = Subscriptions(resources.session_of, limit=3)
    held.subscribe("session://a", ALICE)
    held.open_listen("stream", ALICE, frozenset({"session://a", "session://b"}))
    with pytest.raises(Exception, match="limit is 3"):
        held.subscribe("session://c", ALICE)
    held.close_listen("stream")
    assert held.subscribe("session://c", ALICE)
    assert [(agent.agent_id, sorted(s)) for agent, s in held.agents()] == [("alice", ["a", "c"])]


class Peer:
    """The handshake-era connection, recording what it was asked to send."""

    def __init__(self) -> None:
        self.updated: list[str] = []

    async def send_resource_updated(self, uri: str) -> None:
        self.updated.append(uri)

    async def send_resource_list_changed(self) -> None:
        pass


@contextmanager
def counting_calls() -> Iterator[list[int]]:
    """How many functions of this package run on this thread inside the block: a count of
    work that does not depend on the machine's speed or load."""
    count = [0]

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_filename.startswith(PACKAGE_DIR):
            count[0] += 1

    sys.setprofile(profile)
    try:
        yield count
    finally:
        sys.setprofile(None)


async def work_per_foreign_commit(db: Store, target: Target, followed: int) -> tuple[int, int]:
    """(store reads, package calls) for telling subscribers of one message committed by
    another process, while this one follows `followed` sessions."""
    ids = [(await sessions.create_session(db, ALICE, f"s{i}"))["id"] for i in range(followed)]
    state = AppState(
        settings=settings(target),
        db=db,
        feed=ChangeFeed(db),
        bus=InMemorySubscriptionBus(),
        subscriptions=Subscriptions(resources.session_of),
        peer=Peer(),  # type: ignore[arg-type]
    )
    for sid in ids:
        state.subscriptions.subscribe(f"session://{sid}", ALICE)
    other = await open_store(target)
    try:
        added = await messages.add_message(other, BOB, ids[-1], "news")
    finally:
        await other.close()
    reads = [0]
    read = db.read

    async def counted(*args: Any, **kwargs: Any) -> Any:
        reads[0] += 1
        return await read(*args, **kwargs)

    change = Change(added["message_id"], added["message_id"], False)
    await resources.notify_change(state, change)  # first-time costs (imports, connections)
    db.read = counted  # type: ignore[method-assign]
    try:
        with counting_calls() as calls:
            await resources.notify_change(
                state, Change(added["message_id"], added["message_id"], False)
            )
    finally:
        db.read = read  # type: ignore[method-assign]
    assert state.peer.updated == [f"session://{ids[-1]}"] * 2  # type: ignore[union-attr]
    return reads[0], calls[0]


async def test_telling_subscribers_of_a_commit_costs_the_same_at_1_and_at_the_cap(
    target: Target,
) -> None:
    first = await open_store(target)
    try:
        at_one = await work_per_foreign_commit(first, target, 1)
        at_cap = await work_per_foreign_commit(first, target, MAX_SUBSCRIPTIONS)
    finally:
        await first.close()
    assert at_one[0] == at_cap[0] == 1  # one read: the sessions with news
    # Equal but for the odd call of a thread hand-off; a pass over the subscriptions would
    # add at least one call per subscription.
    assert at_cap[1] <= at_one[1] + 5, f"calls: {at_one[1]} at 1, {at_cap[1]} at the cap"
