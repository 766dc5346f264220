"""Real time: the change poller, the wait_for_messages long poll, session resources, and
notifications in both protocol eras, down to real processes sharing one file."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.subscriptions import ResourcesListChanged, ResourceUpdated
from mcp.shared.exceptions import MCPError

from shared_context_server.blackboard import messages, sessions
from shared_context_server.blackboard.changes import Change, ChangeFeed, wait_for_messages
from shared_context_server.config import ENV_POLL_INTERVAL, Settings, resolve_settings
from shared_context_server.errors import InvalidInput, SessionNotFound
from shared_context_server.storage.opener import open_store
from shared_context_server.storage.seam import Store, Target
from tests.support import (
    ALICE,
    BOB,
    ERAS,
    Inbox,
    connect,
    fails,
    ok,
    poll_until_true,
    server_params,
    spawn,
)

# --------------------------------------------------------------------------- domain


@asynccontextmanager
async def running_feed(db: Store, interval: float = 0.05) -> AsyncIterator[ChangeFeed]:
    """A feed polling `db`'s file, woken by `db`'s own commits, as the server runs it."""
    feed = ChangeFeed(db, interval)
    await feed.start()
    stop = db.on_commit(feed.poke)
    changes: list[Change] = []

    async def record(change: Change) -> None:
        changes.append(change)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(feed.run, record)
            tg.start_soon(db.listen)  # as the server does: PostgreSQL pushes commits here
            yield feed
            tg.cancel_scope.cancel()
    finally:
        stop()


@asynccontextmanager
async def other_process(db: Store) -> AsyncIterator[Store]:
    """Another connection to the same blackboard: to the engine, exactly another process."""
    other = await open_store(getattr(db, "url", None) or db.path)  # type: ignore[attr-defined]
    try:
        yield other
    finally:
        await other.close()


async def until(condition: Any) -> None:
    with anyio.fail_after(10):
        while not condition():
            await anyio.lowlevel.checkpoint()


async def test_long_poll_is_released_by_a_commit_on_another_connection(db: Store) -> None:
    sid = (await sessions.create_session(db, ALICE, "live"))["id"]
    result: list[dict[str, Any]] = []
    async with running_feed(db) as feed, other_process(db) as other:

        async def waiter() -> None:
            result.append(await wait_for_messages(feed, ALICE, sid, after_id=0, timeout_s=30))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await until(lambda: feed.watchers == 1)
                await messages.add_message(other, BOB, sid, "from elsewhere")
    assert [m["content"] for m in result[0]["messages"]] == ["from elsewhere"]


async def test_long_poll_is_woken_at_once_by_this_process_own_commit(db: Store) -> None:
    sid = (await sessions.create_session(db, ALICE, "live"))["id"]
    result: list[dict[str, Any]] = []
    returned = anyio.Event()
    # A 5 s interval: only the commit's own poke can release the waiter within the bound.
    async with running_feed(db, interval=5.0) as feed:

        async def waiter() -> None:
            result.append(await wait_for_messages(feed, ALICE, sid, after_id=0, timeout_s=30))
            returned.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await until(lambda: feed.watchers == 1)
            # The bound covers the waiter's return, not just the post: the next poll, 5 s
            # later, would release it too, so a bound on the post alone cannot fail.
            with anyio.fail_after(2):
                await messages.add_message(db, BOB, sid, "same process")
                await returned.wait()
    assert [m["content"] for m in result[0]["messages"]] == ["same process"]


async def test_long_poll_is_not_released_by_a_message_the_caller_cannot_see(
    db: Store,
) -> None:
    sid = (await sessions.create_session(db, ALICE, "live"))["id"]
    result: list[dict[str, Any]] = []
    async with running_feed(db) as feed, other_process(db) as other:

        async def waiter() -> None:
            result.append(await wait_for_messages(feed, ALICE, sid, after_id=0, timeout_s=30))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await until(lambda: feed.watchers == 1)
                seen = feed.next_change()
                await messages.add_message(other, BOB, sid, "bob's secret", "private")
                await seen.wait()  # the poller saw it; the waiter looked and waits on
                await messages.add_message(other, BOB, sid, "for everyone")
    assert [m["content"] for m in result[0]["messages"]] == ["for everyone"]


async def test_long_poll_returns_nothing_at_timeout_and_stops_watching(db: Store) -> None:
    sid = (await sessions.create_session(db, ALICE, "quiet"))["id"]
    async with running_feed(db) as feed:
        with anyio.fail_after(10):  # a timeout that does not end the wait fails, not hangs
            page = await wait_for_messages(feed, ALICE, sid, after_id=0, timeout_s=0.2)
        assert page == {"messages": [], "has_more": False}
        assert feed.watchers == 0


async def test_long_poll_returns_what_exists_already_even_with_no_time_to_wait(
    db: Store,
) -> None:
    sid = (await sessions.create_session(db, ALICE, "busy"))["id"]
    first = await messages.add_message(db, ALICE, sid, "one")
    await messages.add_message(db, ALICE, sid, "two")
    async with running_feed(db) as feed:
        page = await wait_for_messages(feed, ALICE, sid, first["message_id"], timeout_s=0)
    assert [m["content"] for m in page["messages"]] == ["two"]


async def test_long_poll_on_a_missing_session_fails_at_once(db: Store) -> None:
    async with running_feed(db) as feed:
        with anyio.fail_after(2), pytest.raises(SessionNotFound):
            await wait_for_messages(feed, ALICE, "sess_missing", after_id=0, timeout_s=120)


@pytest.mark.parametrize(("after_id", "timeout_s"), [(-1, 1.0), (0, 120.5), (0, -1.0)])
async def test_long_poll_refuses_arguments_out_of_range(
    db: Store, after_id: int, timeout_s: float
) -> None:
    sid = (await sessions.create_session(db, ALICE, "x"))["id"]
    async with running_feed(db) as feed:
        with pytest.raises(InvalidInput):
            await wait_for_messages(feed, ALICE, sid, after_id, timeout_s)


async def test_a_cancelled_long_poll_ends_at_once_and_stops_watching(db: Store) -> None:
    sid = (await sessions.create_session(db, ALICE, "x"))["id"]
    async with running_feed(db) as feed:
        with anyio.fail_after(2):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_for_messages, feed, ALICE, sid, 0, 120.0)
                await until(lambda: feed.watchers == 1)
                tg.cancel_scope.cancel()
        assert feed.watchers == 0


async def test_poll_tells_messages_from_session_list_changes(db: Store) -> None:
    feed = ChangeFeed(db)
    async with anyio.create_task_group() as tg, other_process(db) as other:
        db.want_news(True)  # PostgreSQL listens only while someone here waits
        tg.start_soon(db.listen)  # PostgreSQL: what the feed reads is what this hears

        async def listening() -> bool:  # RESYNC heard: LISTEN is in place
            return not db.push or await db.data_version() > 0

        with anyio.fail_after(10):
            await poll_until_true(listening)
        await feed.start()

        async def heard(commit: Awaitable[Any]) -> Any:
            """`commit`'s result, once this process's engine has seen it land."""
            before = await db.data_version()
            result = await commit

            async def moved() -> bool:
                return await db.data_version() != before

            with anyio.fail_after(10):
                await poll_until_true(moved)
            return result

        assert await feed.poll() is None  # nothing committed since the baseline
        sid = (await heard(sessions.create_session(other, BOB, "new")))["id"]
        change = await feed.poll()
        assert change is not None and change.sessions_changed and not change.new_messages
        posted = await heard(messages.add_message(other, BOB, sid, "hello"))
        change = await feed.poll()
        assert change is not None and not change.sessions_changed
        assert change.first_id == change.last_id == posted["message_id"]
        await heard(sessions.update_session(other, BOB, sid, status="completed"))
        change = await feed.poll()
        assert change is not None and change.sessions_changed
        await heard(sessions.update_session(other, BOB, sid, status="active"))
        assert await feed.poll() is not None
        # Metadata is not in the resource list: the next change tells only the message.
        await sessions.update_session(other, BOB, sid, metadata={"k": 1})
        posted = await heard(messages.add_message(other, BOB, sid, "again"))
        change = await feed.poll()
        assert change is not None and not change.sessions_changed
        assert change.last_id == posted["message_id"]
        tg.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("flags", "env", "expected"),
    [
        ({}, {}, 0.1),
        ({}, {ENV_POLL_INTERVAL: "0.25"}, 0.25),
        ({"poll_interval": 0.05}, {ENV_POLL_INTERVAL: "0.25"}, 0.05),
    ],
)
def test_poll_interval_comes_from_flag_then_environment(
    flags: dict[str, Any], env: dict[str, str], expected: float
) -> None:
    assert resolve_settings(flags, env).poll_interval == expected


@pytest.mark.parametrize(
    ("flags", "env"),
    [
        ({"poll_interval": 0.0}, {}),
        ({}, {ENV_POLL_INTERVAL: "fast"}),
        ({}, {ENV_POLL_INTERVAL: "60"}),
    ],
)
def test_a_bad_poll_interval_is_refused(flags: dict[str, Any], env: dict[str, str]) -> None:
    with pytest.raises(InvalidInput, match=r"(?i)poll"):
        resolve_settings(flags, env)


# --------------------------------------------------------------------------- in-process MCP


def settings(target: Target, agent: str = "alice", agent_type: str = "reviewer") -> Settings:
    return Settings(
        db_path=target,
        agent_id=agent,
        agent_id_source="flag",
        agent_type=agent_type,
        poll_interval=0.05,
    )


def resource_client(era: str, session: Any) -> Any:
    """The object with list_resources/read_resource for either era."""
    return session.client if era == "discover" else session


@pytest.mark.parametrize("era", ERAS)
async def test_resources_list_active_sessions_and_read_only_visible_messages(
    target: Target, era: str
) -> None:
    async with connect(era, settings(target, "bob")) as bob:
        sid = (await ok(bob, "create_session", purpose="shared"))["session_id"]
        done = (await ok(bob, "create_session", purpose="finished"))["session_id"]
        await ok(bob, "update_session", session_id=done, status="completed")
        await ok(bob, "add_message", session_id=sid, content="hello all")
        await ok(bob, "add_private_note", session_id=sid, content="bob only")
    async with connect(era, settings(target)) as alice:
        client = resource_client(era, alice)
        listed = await client.list_resources()
        assert [(r.uri, r.title) for r in listed.resources] == [(f"session://{sid}", "shared")]
        templates = await client.list_resource_templates()
        assert [t.uri_template for t in templates.resource_templates] == [
            "session://{session_id}",
            "agent://{agent_id}/memory",
        ]
        read = await client.read_resource(f"session://{sid}")
        body = json.loads(read.contents[0].text)
        assert read.contents[0].mime_type == "application/json"
        assert body["session"]["id"] == sid and body["message_count"] == 1
        assert [m["content"] for m in body["messages"]] == ["hello all"]


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("uri", ["session://sess_missing", "memo://x", "session://"])
async def test_reading_a_missing_or_unknown_resource_is_a_clear_error(
    target: Target, era: str, uri: str
) -> None:
    async with connect(era, settings(target)) as s:
        with pytest.raises(MCPError) as raised:
            await resource_client(era, s).read_resource(uri)
    assert raised.value.error.code == types.INVALID_PARAMS
    assert "sess_missing" in raised.value.error.message or "session://{session_id}" in str(
        raised.value.error.message
    )


@pytest.mark.parametrize("era", ERAS)
async def test_the_memory_resource_shows_only_the_callers_own_live_memory(
    target: Target, era: str
) -> None:
    async with connect(era, settings(target, "bob")) as bob:
        await ok(bob, "set_memory", key="bob.secret", value={"plan": 1})
    async with connect(era, settings(target)) as alice:
        await ok(alice, "set_memory", key="todo", value=["a", "b"])
        client = resource_client(era, alice)
        read = await client.read_resource("agent://alice/memory")
        body = json.loads(read.contents[0].text)
        live = [e["key"] for e in body["entries"]]
        assert body["agent_id"] == "alice" and "todo" in live and "bob.secret" not in live
        with pytest.raises(MCPError, match="PERMISSION_DENIED"):
            await client.read_resource("agent://bob/memory")


@pytest.mark.parametrize(
    ("uri", "phrase"),
    [
        ("session://\ud800", "lone surrogate"),
        ("agent://x\udc00/memory", "lone surrogate"),
        ("session://a/b", "not a resource of this server"),
    ],
)
async def test_a_malformed_resource_uri_is_invalid_params_in_every_resource_call(
    target: Target, uri: str, phrase: str
) -> None:
    async with connect("handshake", settings(target)) as s:
        for call in (s.read_resource, s.subscribe_resource, s.unsubscribe_resource):
            with pytest.raises(MCPError) as raised:
                await call(uri)
            assert raised.value.error.code == types.INVALID_PARAMS, call
            assert phrase in raised.value.error.message, call
    async with connect("discover", settings(target)) as s:
        with pytest.raises(MCPError) as raised:
            async with s.client.listen(resource_subscriptions=[uri]):
                pass
        assert raised.value.error.code == types.INVALID_PARAMS
        assert phrase in raised.value.error.message


async def test_subscribing_to_a_missing_session_is_refused(target: Target) -> None:
    async with connect("handshake", settings(target)) as s:
        with pytest.raises(MCPError, match="SESSION_NOT_FOUND"):
            await s.subscribe_resource("session://sess_missing")


async def test_listening_to_a_missing_session_is_refused(target: Target) -> None:
    async with connect("discover", settings(target)) as s:
        with pytest.raises(MCPError, match="SESSION_NOT_FOUND"):
            async with s.client.listen(resource_subscriptions=["session://sess_missing"]):
                pass


@pytest.mark.parametrize("era", ERAS)
async def test_wait_for_messages_tool_returns_nothing_at_timeout_and_checks_input(
    target: Target, era: str
) -> None:
    async with connect(era, settings(target)) as s:
        sid = (await ok(s, "create_session", purpose="quiet"))["session_id"]
        with anyio.fail_after(10):
            result = await s.call_tool(
                "wait_for_messages", {"session_id": sid, "after_id": 0, "timeout_s": 0.1}
            )
        assert result.structured_content == {"messages": [], "has_more": False}
        assert "No new messages" in result.content[0].text
        await fails(
            s, "wait_for_messages", "INVALID_INPUT", session_id=sid, after_id=0, timeout_s=121
        )
        await fails(s, "wait_for_messages", "INVALID_INPUT", session_id=sid)
        await fails(s, "wait_for_messages", "SESSION_NOT_FOUND", session_id="nope", after_id=0)


# --------------------------------------------------------------------------- real processes


def is_updated(uri: str) -> Any:
    return lambda m: isinstance(m, types.ResourceUpdatedNotification) and m.params.uri == uri


def is_list_changed(m: Any) -> bool:
    return isinstance(m, types.ResourceListChangedNotification)


@pytest.mark.processes
async def test_a_subscribed_process_hears_of_another_process_message(target: Target) -> None:
    db, inbox = target, Inbox()
    async with (
        spawn(db, "--agent-id", "alice", message_handler=inbox) as alice,
        spawn(db, "--agent-id", "bob") as bob,
    ):
        sid = (await ok(bob, "create_session", purpose="watch me"))["session_id"]
        await alice.subscribe_resource(f"session://{sid}")
        await ok(bob, "add_message", session_id=sid, content="news")
        await inbox.wait_for(is_updated(f"session://{sid}"))
        body = json.loads((await alice.read_resource(f"session://{sid}")).contents[0].text)
        assert [m["content"] for m in body["messages"]] == ["news"]


@pytest.mark.processes
async def test_a_subscription_never_hears_of_a_message_its_agent_cannot_see(
    target: Target,
) -> None:
    db, inbox = target, Inbox()
    async with (
        spawn(db, "--agent-id", "alice", message_handler=inbox) as alice,
        spawn(db, "--agent-id", "bob") as bob,
    ):
        secret = (await ok(bob, "create_session", purpose="secret"))["session_id"]
        beacon = (await ok(bob, "create_session", purpose="beacon"))["session_id"]
        await alice.subscribe_resource(f"session://{secret}")
        await alice.subscribe_resource(f"session://{beacon}")
        await ok(bob, "add_private_note", session_id=secret, content="bob only")
        await ok(bob, "add_message", session_id=beacon, content="tick")
        await inbox.wait_for(is_updated(f"session://{beacon}"))
        # The poller sends batch after batch in commit order: once the second beacon's
        # notification is here, any about the earlier private note would be here too.
        await ok(bob, "add_message", session_id=beacon, content="tock")
        beacons = is_updated(f"session://{beacon}")
        await inbox.wait_for(lambda _: sum(map(beacons, inbox.items)) >= 2)
        assert not any(map(is_updated(f"session://{secret}"), inbox.items))


@pytest.mark.processes
async def test_session_creation_and_status_change_elsewhere_send_list_changed(
    target: Target,
) -> None:
    db, inbox = target, Inbox()
    async with (
        spawn(db, "--agent-id", "alice", message_handler=inbox) as alice,
        spawn(db, "--agent-id", "bob") as bob,
    ):
        await alice.list_resources()  # a client that lists resources hears the list change
        sid = (await ok(bob, "create_session", purpose="new"))["session_id"]
        await inbox.wait_for(is_list_changed)
        inbox.items.clear()
        await ok(bob, "update_session", session_id=sid, status="completed")
        await inbox.wait_for(is_list_changed)


@pytest.mark.processes
async def test_a_discover_era_listen_hears_messages_and_list_changes_from_another_process(
    target: Target,
) -> None:
    db = target
    async with (
        spawn(db, "--agent-id", "bob") as bob,
        Client(server_params(db, "--agent-id", "alice")) as alice,
    ):
        assert alice.protocol_version == "2026-07-28"
        made = await alice.call_tool("create_session", {"purpose": "listen"})  # tools work too
        assert made.structured_content["created_by"] == "alice"
        sid = made.structured_content["session_id"]
        uri = f"session://{sid}"
        async with alice.listen(resource_subscriptions=[uri], resources_list_changed=True) as sub:
            await ok(bob, "add_private_note", session_id=sid, content="not for alice")
            await ok(bob, "add_message", session_id=sid, content="for alice")
            with anyio.fail_after(10):
                assert await sub.__anext__() == ResourceUpdated(uri=uri)
            await ok(bob, "create_session", purpose="another")
            with anyio.fail_after(10):
                assert await sub.__anext__() == ResourcesListChanged()


@pytest.mark.processes
async def test_a_long_poll_is_released_by_another_process_with_only_what_it_may_see(
    target: Target,
) -> None:
    db = target
    result: list[dict[str, Any]] = []
    async with (
        spawn(db, "--agent-id", "alice") as alice,
        spawn(db, "--agent-id", "bob") as bob,
    ):
        sid = (await ok(alice, "create_session", purpose="poll"))["session_id"]
        start = (await ok(alice, "add_message", session_id=sid, content="start"))["message_id"]

        async def waiter() -> None:
            args = {"session_id": sid, "after_id": start, "timeout_s": 60}
            result.append(await ok(alice, "wait_for_messages", **args))

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await ok(bob, "add_private_note", session_id=sid, content="bob only")
                await ok(bob, "add_message", session_id=sid, content="for everyone")
    assert [m["content"] for m in result[0]["messages"]] == ["for everyone"]
