"""Pushing news into the session of a host that accepts it: Claude Code's channels.

Claude Code documents the contract (https://code.claude.com/docs/en/channels-reference):
a server that declares the experimental capability `claude/channel` may send
`notifications/claude/channel` with `params` `{"content": str, "meta": {str: str}}`, and
the host puts the content before the model as a `<channel>` event, the meta entries as
its attributes. Only with `--push`: otherwise the capability is not declared and nothing
is sent.

Handshake era only: the notification goes through the connection captured at
`notifications/initialized` (server/resources.py), as resource updates do.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from typing import Any, Literal, cast

import anyio
import mcp_types as types
from mcp.server.session import ServerSession
from pydantic import BaseModel

from shared_context_server.blackboard.pushes import BATCH, last_message_id, take_pushes
from shared_context_server.errors import BlackboardError
from shared_context_server.message_text import body, header, name, one_line, quoted
from shared_context_server.server.state import AppState

logger = logging.getLogger(__name__)

CAPABILITY = "claude/channel"
METHOD = "notifications/claude/channel"
# What the model is told of a message in a push; the rest is a get_message away.
PUSH_CHARS = 1_500
PURPOSE_CHARS = 80
# A meta value becomes an attribute of the host's tag: only ids the server makes.
_PLAIN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

INSTRUCTIONS = (
    " Messages from other agents on the blackboard also arrive by themselves as channel"
    " events from this server: a line saying where, the message's header line, then its"
    " content indented; get_message reads one whole."
)


class ChannelParams(BaseModel):
    content: str
    meta: dict[str, str]


class ChannelNotification(BaseModel):
    method: Literal["notifications/claude/channel"] = "notifications/claude/channel"
    params: ChannelParams


def experimental_capabilities(push: str) -> dict[str, dict[str, Any]] | None:
    """What the initialize result declares under `experimental`: the channel, if pushing."""
    return {CAPABILITY: {}} if push != "off" else None


def channel_text(message: dict[str, Any]) -> str:
    """A compact text of `message`: where it is, then the shared rendering (a header line,
    the content indented), cut at PUSH_CHARS of content. Only these lines start at column
    0, so no content can pass for another message or for this server's own words."""
    why = "for you" if message["for_you"] else "new"
    purpose = one_line(message["purpose"] or "")
    if len(purpose) > PURPOSE_CHARS:
        purpose = purpose[: PURPOSE_CHARS - 1] + "…"
    where = f"{why} in session {name(message['session_id'])} {quoted(purpose)}:"
    content = message["content"]
    text = f"{where}\n{header(message)}\n{body(content[:PUSH_CHARS])}"
    if len(content) > PUSH_CHARS:
        more = len(content) - PUSH_CHARS
        text += f"\n({more} more characters: get_message {message['id']} reads it whole)"
    return text


def channel_notification(message: dict[str, Any]) -> ChannelNotification:
    meta = {"message_id": str(message["id"]), "kind": "for_you" if message["for_you"] else "news"}
    if _PLAIN_ID.fullmatch(message["session_id"]):
        meta["session_id"] = message["session_id"]
    return ChannelNotification(params=ChannelParams(content=channel_text(message), meta=meta))


async def send(peer: ServerSession, message: dict[str, Any]) -> None:
    # The SDK's ServerNotification union has no arm for a host's own method; its
    # send_notification only serialises the model (method and params) onto the wire.
    notification = cast(types.ServerNotification, channel_notification(message))
    await peer.send_notification(notification)


async def push_news(state: AppState) -> None:
    """Until cancelled: push every message for this process's agent (with
    `--push channels-all`, every message in its sessions) that commits after the process
    started, in any process, once per agent; never one it may not read."""
    every = state.settings.push == "channels-all"
    db, feed = state.db, state.feed
    try:
        floor = await last_message_id(db)
    except BlackboardError as error:
        logger.warning("push: no baseline (%s); nothing will be pushed", error.message)
        return
    feed.watch()
    try:
        changed = feed.next_change()
        while True:
            await changed.wait()
            changed = feed.next_change()
            peer = state.peer
            if peer is None:
                continue  # no handshake yet: the next change takes these too
            agent = state.agent_for(peer)
            try:
                while True:
                    messages = await take_pushes(db, agent, floor, every=every)
                    for message in messages:
                        await send(peer, message)
                    if len(messages) < BATCH:
                        break
            except (BlackboardError, sqlite3.Error) as error:
                logger.warning("push failed; trying again at the next change: %s", error)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                logger.info("push: the client left")
                return
    finally:
        feed.unwatch()
