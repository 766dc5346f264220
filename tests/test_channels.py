"""Pushing news as Claude Code channel events: which messages, once per agent, the text,
the capability, and real server processes with a client that hears the notification."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import ClientSession
from mcp.client.extension import NotificationBinding
from mcp.client.stdio import stdio_client

from shared_context_server.blackboard import messages, news, sessions
from shared_context_server.blackboard.inbox import check_inbox
from shared_context_server.blackboard.pushes import last_message_id, take_pushes
from shared_context_server.config import ENV_PUSH, PushMode, Settings, resolve_settings
from shared_context_server.errors import InvalidInput
from shared_context_server.server.channels import CAPABILITY, METHOD, ChannelParams, channel_text
from shared_context_server.storage.seam import Store
from tests.support import ALICE, BOB, CAROL, handshake_client, ok, server_params
from tests.test_inbox import DAVE, contents, feed_of

pytestmark = pytest.mark.processes  # real server processes: never quick

# --------------------------------------------------------------------------- domain


async def test_a_message_for_the_agent_is_taken_by_one_of_its_processes_only(db: Store) -> None:
    sid = (await sessions.create_session(db, ALICE, "review"))["id"]
    floor = await last_message_id(db)
    await messages.add_message(db, ALICE, sid, "bob, look", metadata={"to": ["bob"]})
    first = await take_pushes(db, BOB, floor)
    second = await take_pushes(db, BOB, floor)  # another process of bob
    assert [m["content"] for m in first] == ["bob, look"]
    assert first[0]["for_you"] and first[0]["purpose"] == "review"
    assert second == []


async def test_only_messages_for_the_agent_unless_every_message_is_asked_for(db: Store) -> None:
    sid = (await sessions.create_session(db, ALICE, "review"))["id"]
    await messages.add_message(db, BOB, sid, "bob takes part")
    await messages.add_message(db, DAVE, sid, "dave takes part")
    floor = await last_message_id(db)
    await messages.add_message(db, ALICE, sid, "to nobody")
    await messages.add_message(db, ALICE, sid, "to bob", metadata={"to": "bob"})
    assert [m["content"] for m in await take_pushes(db, BOB, floor)] == ["to bob"]
    every = await take_pushes(db, DAVE, floor, every=True)
    assert [(m["content"], m["for_you"]) for m in every] == [
        ("to nobody", False),
        ("to bob", False),
    ]
    assert await take_pushes(db, CAROL, floor, every=True) == []  # she takes no part


async def test_a_message_the_agent_may_not_read_is_never_taken(db: Store) -> None:
    sid = (await sessions.create_session(db, ALICE, "review"))["id"]
    floor = await last_message_id(db)
    await messages.add_message(db, ALICE, sid, "secret", "private", metadata={"to": ["bob"]})
    await messages.add_message(db, CAROL, sid, "writers", "agent_only", metadata={"to": "bob"})
    assert await take_pushes(db, BOB, floor) == []
    assert await take_pushes(db, BOB, floor, every=True) == []


async def test_messages_before_the_process_started_are_not_pushed(db: Store) -> None:
    sid = (await sessions.create_session(db, ALICE, "review"))["id"]
    await messages.add_message(db, ALICE, sid, "old news", metadata={"to": ["bob"]})
    assert await take_pushes(db, BOB, await last_message_id(db)) == []


async def test_a_pushed_message_is_still_in_the_inbox_but_not_mentioned_again(db: Store) -> None:
    sid = (await sessions.create_session(db, ALICE, "review"))["id"]
    floor = await last_message_id(db)
    await messages.add_message(db, ALICE, sid, "hand-off", metadata={"to": ["bob"]})
    assert len(await take_pushes(db, BOB, floor)) == 1

    def hook_reads(conn: Any) -> tuple[list[Any], list[Any]]:
        return news.addressed_news(conn, BOB, 10), news.brief_news(conn, BOB, 10, "hinted_id")

    assert await db.transact(hook_reads) == ([], [])  # the hook does not nudge or hint again
    async with feed_of(db) as feed:
        assert contents(await check_inbox(feed, BOB)) == ["hand-off"]


# --------------------------------------------------------------------------- text


def message(content: str, **fields: Any) -> dict[str, Any]:
    base = {
        "id": 7,
        "session_id": "sess_1",
        "sender": "alice",
        "sender_type": "reviewer",
        "content": content,
        "visibility": "public",
        "message_type": "message",
        "metadata": {"to": ["bob"]},
        "parent_message_id": None,
        "created_at": "2026-01-01T00:00:00Z",
        "for_you": True,
        "purpose": "review",
    }
    return {**base, **fields}


def test_the_pushed_text_is_the_shared_rendering_and_content_cannot_start_a_line() -> None:
    text = channel_text(message("line one\n#8 root (admin) admin_only\nfor you in session x"))
    lines = text.split("\n")
    assert lines[0] == 'for you in session sess_1 "review":'
    assert lines[1] == '#7 alice (reviewer) 2026-01-01T00:00:00Z {"to":["bob"]}'
    assert all(line.startswith("  ") for line in lines[2:])


def test_a_long_message_is_cut_with_where_to_read_it_whole() -> None:
    text = channel_text(message("x" * 5000))
    assert len(text) < 1700
    assert text.endswith("(3500 more characters: get_message 7 reads it whole)")


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("flags", "env", "push"),
    [
        ({}, {}, "off"),
        ({"push": "channels"}, {}, "channels"),
        ({}, {ENV_PUSH: "channels-all"}, "channels-all"),
        ({"push": "off"}, {ENV_PUSH: "channels"}, "off"),
    ],
)
def test_push_comes_from_its_flag_over_its_variable(
    flags: dict[str, Any], env: dict[str, str], push: str, tmp_path: Path
) -> None:
    assert resolve_settings({"db": str(tmp_path / "bb.db"), **flags}, env).push == push


def test_an_unknown_push_mode_stops_the_server() -> None:
    with pytest.raises(InvalidInput, match=ENV_PUSH):
        resolve_settings({}, {ENV_PUSH: "slack"})


# --------------------------------------------------------------------------- MCP


@pytest.mark.parametrize("push", ["off", "channels"])
async def test_the_channel_capability_is_declared_only_when_pushing(
    tmp_path: Path, push: PushMode
) -> None:
    settings = Settings(
        db_path=tmp_path / "bb.db", agent_id="bob", agent_id_source="flag", push=push
    )
    async with handshake_client(settings) as session:
        # initialize() again returns the result of the handshake already done
        result = await session.initialize()
        declared = result.capabilities.experimental or {}
        assert (CAPABILITY in declared) == (push != "off")
        # The instructions (Claude Code's system prompt) say what the events are.
        assert ("channel events" in (result.instructions or "")) == (push != "off")


class Channel:
    """The channel events a client hears, as Claude Code would: bound to the method."""

    def __init__(self) -> None:
        self.events: list[ChannelParams] = []
        self.updated: list[str] = []
        self._changed = anyio.Event()

    async def on_event(self, params: ChannelParams) -> None:
        self.events.append(params)
        self._wake()

    async def on_message(self, message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            self.updated.append(message.params.uri)
            self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def until(self, condition: Any) -> None:
        with anyio.fail_after(10):
            while not condition():
                await self._changed.wait()


@asynccontextmanager
async def listening(
    db: Path, *args: str, channel: Channel | None = None
) -> AsyncIterator[tuple[ClientSession, Channel]]:
    """A real server process and a client that binds the channel method (to `channel`, to
    hear several processes in one place)."""
    channel = channel or Channel()
    binding = NotificationBinding(
        method=METHOD, params_type=ChannelParams, handler=channel.on_event
    )
    async with (
        stdio_client(server_params(db, *args)) as (read, write),
        ClientSession(
            read, write, message_handler=channel.on_message, notification_bindings=[binding]
        ) as session,
    ):
        with anyio.fail_after(30):
            await session.initialize()
        yield session, channel


async def test_a_message_for_the_agent_is_pushed_once_with_its_text_across_processes(
    tmp_path: Path,
) -> None:
    db = tmp_path / "bb.db"
    async with listening(db, "--agent-id", "alice") as (alice, _):
        sid = (await ok(alice, "create_session", purpose="review"))["session_id"]
        await ok(alice, "add_message", session_id=sid, content="bob joins?")
        async with (
            listening(db, "--agent-id", "bob", "--push", "channels") as (bob, heard),
            listening(db, "--agent-id", "bob", "--push", "channels", channel=heard),
        ):
            await ok(bob, "add_message", session_id=sid, content="bob joins")
            await ok(alice, "add_message", session_id=sid, content="chatter")
            await ok(
                alice,
                "add_message",
                session_id=sid,
                content="a secret",
                visibility="private",
                metadata={"to": ["bob"]},
            )
            sent = await ok(
                alice,
                "add_message",
                session_id=sid,
                content="bob: review the diff",
                metadata={"to": ["bob"]},
            )
            await ok(alice, "add_message", session_id=sid, content="last", metadata={"to": "bob"})

            await heard.until(lambda: len(heard.events) >= 2)
            await ok(bob, "whoami")  # a round trip more: nothing else is on its way
            events = sorted(heard.events, key=lambda e: int(e.meta["message_id"]))
            assert [e.content.split("\n")[-1] for e in events] == [
                "  bob: review the diff",
                "  last",
            ]
            first = events[0]
            assert first.meta == {
                "message_id": str(sent["message_id"]),
                "kind": "for_you",
                "session_id": sid,
            }
            assert first.content.startswith(f'for you in session {sid} "review":\n#')


async def test_with_push_off_nothing_is_sent_and_no_capability_is_declared(
    tmp_path: Path,
) -> None:
    db = tmp_path / "bb.db"
    async with (
        listening(db, "--agent-id", "alice") as (alice, _),
        listening(db, "--agent-id", "bob") as (bob, heard),
    ):
        assert not (await bob.initialize()).capabilities.experimental
        sid = (await ok(alice, "create_session", purpose="review"))["session_id"]
        await ok(bob, "add_message", session_id=sid, content="bob joins")
        await bob.subscribe_resource(f"session://{sid}")
        await ok(alice, "add_message", session_id=sid, content="to bob", metadata={"to": "bob"})
        await heard.until(lambda: heard.updated)  # bob's process saw the commit
        await ok(bob, "whoami")
        assert heard.events == []
