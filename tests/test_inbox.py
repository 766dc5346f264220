"""The inbox: check_inbox in the domain, over MCP, and across real server processes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from shared_context_server.blackboard import messages, sessions
from shared_context_server.blackboard.changes import ChangeFeed
from shared_context_server.blackboard.identity import Agent
from shared_context_server.blackboard.inbox import check_inbox
from shared_context_server.errors import InvalidInput
from shared_context_server.storage.opener import open_store
from shared_context_server.storage.seam import Store, Target
from shared_context_server.storage.sqlite.database import Database
from tests.support import ALICE, BOB, CAROL, fails, ok, poll_until, spawn

DAVE = Agent("dave", "reviewer")


@asynccontextmanager
async def feed_of(db: Store) -> AsyncIterator[ChangeFeed]:
    feed = ChangeFeed(db, 0.05)
    await feed.start()
    stop = db.on_commit(feed.poke)

    async def ignore(change: Any) -> None:
        return None

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(feed.run, ignore)
            tg.start_soon(db.listen)  # as the server does: PostgreSQL pushes commits here
            yield feed
            tg.cancel_scope.cancel()
    finally:
        stop()


def contents(inbox: dict[str, Any]) -> list[str]:
    return [m["content"] for group in inbox["sessions"] for m in group["messages"]]


async def test_news_reaches_each_participant_once_and_never_its_own_posts(db: Store) -> None:
    sid = (await sessions.create_session(db, ALICE, "review"))["id"]
    await messages.add_message(db, BOB, sid, "bob joins")
    await messages.add_message(db, ALICE, sid, "alice answers")
    async with feed_of(db) as feed:
        assert contents(await check_inbox(feed, ALICE)) == ["bob joins"]
        assert contents(await check_inbox(feed, ALICE)) == []
        # Bob joined by posting: his own post is not news, alice's answer is.
        assert contents(await check_inbox(feed, BOB)) == ["alice answers"]


async def test_replies_and_messages_addressed_by_to_come_first_and_are_flagged(
    db: Store,
) -> None:
    sid = (await sessions.create_session(db, ALICE, "hand-offs"))["id"]
    other = (await sessions.create_session(db, BOB, "elsewhere"))["id"]
    mine = (await messages.add_message(db, ALICE, sid, "my finding"))["message_id"]
    await messages.add_message(db, BOB, sid, "chatter")
    await messages.add_message(db, BOB, sid, "re: finding", parent_message_id=mine)
    # Named in `to` in a session alice never joined: that makes her take part from here on.
    await messages.add_message(db, BOB, other, "alice, take this", metadata={"to": ["alice"]})
    await messages.add_message(db, BOB, sid, "@alice in content is not an address")
    async with feed_of(db) as feed:
        inbox = await check_inbox(feed, ALICE)
    assert inbox["for_you"] == 2
    # A hand-off awaiting alice's acknowledgement first, then replies, then the rest.
    first, second = inbox["sessions"]
    assert first["session_id"] == other and first["messages"][0]["for_you"]
    assert first["messages"][0]["unacknowledged"] == ["alice"]
    assert [m["content"] for m in second["messages"]] == [
        "re: finding",
        "chatter",
        "@alice in content is not an address",
    ]
    assert [m["for_you"] for m in second["messages"]] == [True, False, False]


async def test_a_private_message_of_another_agent_never_reaches_the_inbox(db: Store) -> None:
    sid = (await sessions.create_session(db, ALICE, "secrets"))["id"]
    await messages.add_message(db, BOB, sid, "bob's note", "private", metadata={"to": "alice"})
    await messages.add_message(db, CAROL, sid, "writers only", "agent_only")
    async with feed_of(db) as feed:
        assert (await check_inbox(feed, ALICE))["sessions"] == []
        await messages.add_message(db, BOB, sid, "public")
        assert contents(await check_inbox(feed, ALICE)) == ["public"]


async def test_a_sub_agent_has_its_own_inbox(db: Store) -> None:
    sub = Agent("alice/reviewer", "reviewer")
    sid = (await sessions.create_session(db, ALICE, "team"))["id"]
    await messages.add_message(db, sub, sid, "sub-agent reporting")
    await messages.add_message(db, BOB, sid, "for the sub-agent", metadata={"to": [sub.agent_id]})
    async with feed_of(db) as feed:
        assert contents(await check_inbox(feed, sub)) == ["for the sub-agent"]
        parent = await check_inbox(feed, ALICE)
    assert contents(parent) == ["sub-agent reporting", "for the sub-agent"]
    assert not any(m["for_you"] for g in parent["sessions"] for m in g["messages"])


async def test_a_capped_inbox_says_has_more_and_hands_out_the_rest_next(db: Store) -> None:
    sid = (await sessions.create_session(db, ALICE, "busy"))["id"]
    for n in range(5):
        await messages.add_message(db, BOB, sid, f"m{n}")
    async with feed_of(db) as feed:
        first = await check_inbox(feed, ALICE, limit=3)
        rest = await check_inbox(feed, ALICE, limit=3)
    assert (contents(first), first["has_more"]) == (["m0", "m1", "m2"], True)
    assert (contents(rest), rest["has_more"]) == (["m3", "m4"], False)


async def test_the_inbox_long_poll_wakes_on_another_connection_commit(
    db: Store, target: Target
) -> None:
    sid = (await sessions.create_session(db, ALICE, "wait"))["id"]
    other = await open_store(target)
    result: list[dict[str, Any]] = []
    try:
        async with feed_of(db) as feed:

            async def waiter() -> None:
                result.append(await check_inbox(feed, ALICE, wait_s=60))

            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(waiter)
                    await poll_until(lambda: feed.watchers > 0)
                    await messages.add_message(other, DAVE, sid, "late news")
    finally:
        await other.close()
    assert contents(result[0]) == ["late news"]


@pytest.mark.parametrize(("limit", "wait_s"), [(0, 0), (201, 0), (10, -1), (10, 121)])
async def test_check_inbox_refuses_arguments_out_of_range(
    db: Store, limit: int, wait_s: float
) -> None:
    async with feed_of(db) as feed:
        with pytest.raises(InvalidInput):
            await check_inbox(feed, ALICE, limit=limit, wait_s=wait_s)


# --------------------------------------------------------------------- real processes


@pytest.mark.processes
async def test_news_is_handed_out_once_across_restarts_and_second_processes(
    tmp_path: Path,
) -> None:
    db = tmp_path / "bb.db"
    async with spawn(db, "--agent-id", "alice") as alice:
        sid = (await ok(alice, "create_session", purpose="relay"))["session_id"]
    async with spawn(db, "--agent-id", "bob") as bob, spawn(db, "--agent-id", "carol") as carol:
        await ok(bob, "add_message", session_id=sid, content="first", metadata={"to": ["alice"]})
        await ok(carol, "add_private_note", session_id=sid, content="carol's own")
    async with spawn(db, "--agent-id", "alice") as alice, spawn(db, "--agent-id", "alice") as twin:
        got = await ok(alice, "check_inbox")
        assert contents(got) == ["first"] and got["for_you"] == 1
        assert contents(await ok(twin, "check_inbox")) == []
        async with spawn(db, "--agent-id", "bob") as bob:
            await ok(bob, "add_message", session_id=sid, content="second")
        assert contents(await ok(twin, "check_inbox")) == ["second"]
        assert contents(await ok(alice, "check_inbox")) == []
        await fails(alice, "check_inbox", "INVALID_INPUT", limit=500)


@pytest.mark.processes
async def test_the_inbox_long_poll_returns_soon_after_another_process_commits(
    tmp_path: Path,
) -> None:
    db = tmp_path / "bb.db"
    async with spawn(db, "--agent-id", "alice") as alice, spawn(db, "--agent-id", "bob") as bob:
        sid = (await ok(alice, "create_session", purpose="latency"))["session_id"]
        returned = anyio.Event()

        async def waiter() -> None:
            got = await ok(alice, "check_inbox", wait_s=60)
            returned.set()
            assert contents(got) == ["ping"]

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await anyio.sleep(0.5)  # let the long poll start waiting first
                await ok(bob, "add_message", session_id=sid, content="ping")
                # The wait is bounded, not timed: the poll must answer within 200 ms of
                # bob's commit (poll interval 0.1 s), or this scope fails.
                with anyio.fail_after(0.2):
                    await returned.wait()


async def test_a_file_from_before_the_inbox_upgrades_with_its_history_as_old_news(
    tmp_path: Path,
) -> None:
    import sqlite3

    from shared_context_server.storage.sqlite.schema import MIGRATIONS

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for version in range(1, 6):
        for statement in MIGRATIONS[version]:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 5")
    conn.execute(
        "INSERT INTO sessions VALUES ('sess_old', 'before', 'active', 'alice', 't', 't', NULL)"
    )
    insert = (
        "INSERT INTO messages (session_id, sender, sender_type, content, visibility,"
        " message_type, created_at) VALUES ('sess_old', ?, 'reviewer', ?, 'public', 'message', 't')"
    )
    conn.execute(insert, ("bob", "old news"))
    conn.close()
    db = await Database.open(path)
    try:
        async with feed_of(db) as feed:
            assert contents(await check_inbox(feed, ALICE)) == []
            assert contents(await check_inbox(feed, BOB)) == []
            await messages.add_message(db, BOB, "sess_old", "after the upgrade")
            assert contents(await check_inbox(feed, ALICE)) == ["after the upgrade"]
    finally:
        await db.close()


@pytest.mark.processes
async def test_a_sub_agent_acting_by_token_reads_its_own_inbox_in_any_process(
    tmp_path: Path,
) -> None:
    db = tmp_path / "bb.db"
    async with spawn(db, "--agent-id", "alice") as alice, spawn(db, "--agent-id", "bob") as bob:
        token = (await ok(alice, "authenticate_agent", agent_id="alice/rev"))["token"]
        sid = (await ok(bob, "create_session", purpose="review"))["session_id"]
        await ok(
            bob, "add_message", session_id=sid, content="rev: go", metadata={"to": "alice/rev"}
        )
        assert contents(await ok(alice, "check_inbox")) == []  # the parent is not addressed
        # The token works through any process: here bob's, as the sub-agent.
        got = await ok(bob, "check_inbox", agent_token=token)
        assert contents(got) == ["rev: go"] and got["for_you"] == 1
        assert contents(await ok(alice, "check_inbox", agent_token=token)) == []
