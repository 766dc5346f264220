"""The visibility rule on every read path, for every kind of caller, across real processes.

alice and bob share a type, carol has another, root is an admin, and alice/helper is a
sub-agent alice minted a token for. The helper acts through carol's process, so a pass
shows the token's identity wins over the process it comes through.
"""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types
import pytest

from shared_context_server.storage.seam import Target
from tests.support import Inbox, ok, spawn

pytestmark = pytest.mark.processes  # real server processes: never quick

AGENTS = {
    "alice": ["--agent-id", "alice", "--agent-type", "reviewer"],
    "bob": ["--agent-id", "bob", "--agent-type", "reviewer"],
    "carol": ["--agent-id", "carol", "--agent-type", "writer"],
    "root": ["--agent-id", "root", "--agent-type", "operator", "--admin"],
}
HELPER = "alice/helper"
TYPES = {"alice": "reviewer", "bob": "reviewer", "carol": "writer", "root": "operator"}
TYPES[HELPER] = "reviewer"
VISIBILITIES = ("public", "private", "agent_only", "admin_only")


def may_read(reader: str, sender: str, visibility: str) -> bool:
    """The rule, restated independently of the product's SQL."""
    if reader == "root" or visibility == "public":
        return True
    if visibility == "private":
        return reader == sender
    if visibility == "agent_only":
        return TYPES[reader] == TYPES[sender]
    return False  # admin_only, reader not admin


class Caller:
    """A process, or a sub-agent's token used through one."""

    def __init__(self, session: Any, token: str | None = None) -> None:
        self.session, self.token = session, token

    async def ok(self, tool: str, **arguments: Any) -> dict[str, Any]:
        if self.token is not None:
            arguments["agent_token"] = self.token
        return await ok(self.session, tool, **arguments)

    async def call(self, tool: str, **arguments: Any) -> Any:
        if self.token is not None:
            arguments["agent_token"] = self.token
        return await self.session.call_tool(tool, arguments)


async def seen_by(caller: Caller, sid: str, posted: dict[int, tuple[str, str]]) -> dict[str, Any]:
    """What `caller` sees of the session on each read path that takes a token."""
    context = await caller.ok("get_context", session_id=sid, limit=500)
    found = await caller.ok("search_context", session_id=sid, query="matrix", limit=100)
    waited = await caller.ok("wait_for_messages", session_id=sid, after_id=0, timeout_s=0)
    detail = await caller.ok("get_session", session_id=sid)
    one_by_one = set()
    for message_id in posted:
        result = await caller.call("get_message", session_id=sid, message_id=message_id)
        if not result.is_error:
            one_by_one.add(message_id)
        else:
            assert result.structured_content["code"] == "NOT_FOUND"
    return {
        "get_context": {m["id"] for m in context["messages"]},
        "search_context": {r["message"]["id"] for r in found["results"]},
        "wait_for_messages": {m["id"] for m in waited["messages"]},
        "get_message": one_by_one,
        "get_session count": detail["message_count"],
        "get_session participants": set(detail["participants"]),
    }


async def test_every_read_path_shows_each_caller_exactly_what_the_rule_allows(
    target: Target,
) -> None:
    db = target
    async with (
        spawn(db, *AGENTS["alice"]) as alice,
        spawn(db, *AGENTS["bob"]) as bob,
        spawn(db, *AGENTS["carol"]) as carol,
        spawn(db, *AGENTS["root"]) as root,
    ):
        token = (await ok(alice, "authenticate_agent", agent_id=HELPER))["token"]
        callers = {
            "alice": Caller(alice),
            "bob": Caller(bob),
            "carol": Caller(carol),
            "root": Caller(root),
            HELPER: Caller(carol, token),
        }
        sid = (await callers["alice"].ok("create_session", purpose="matrix"))["session_id"]
        posted: dict[int, tuple[str, str]] = {}
        for sender, caller in callers.items():
            for vis in VISIBILITIES:
                if vis == "admin_only" and sender != "root":
                    continue
                r = await caller.ok(
                    "add_message", session_id=sid, content=f"matrix {sender} {vis}", visibility=vis
                )
                posted[r["message_id"]] = (sender, vis)

        for reader, caller in callers.items():
            expected = {i for i, (snd, vis) in posted.items() if may_read(reader, snd, vis)}
            seen = await seen_by(caller, sid, posted)
            assert seen == {
                "get_context": expected,
                "search_context": expected,
                "wait_for_messages": expected,
                "get_message": expected,
                "get_session count": len(expected),
                "get_session participants": {posted[i][0] for i in expected},
            }, reader
            for vis in VISIBILITIES:  # the visibility filter narrows the same rule
                filtered = await caller.ok("get_context", session_id=sid, visibility=vis)
                assert {m["id"] for m in filtered["messages"]} == {
                    i for i in expected if posted[i][1] == vis
                }, (reader, vis)
            if caller.token is None:  # a resource URI carries no token: process agents only
                resource = await caller.session.read_resource(f"session://{sid}")
                body = json.loads(resource.contents[0].text)
                assert {m["id"] for m in body["messages"]} == expected, reader

            # Audit: each agent its own entries; the admin everyone's.
            log = await caller.ok("get_audit_log", session_id=sid, limit=200)
            actors = {e["agent_id"] for e in log["entries"]}
            family = {name for name in callers if name == reader or name.startswith(reader + "/")}
            assert actors == (set(callers) if reader == "root" else family), reader

        helper_log = await callers[HELPER].ok("get_audit_log", action="add_message")
        assert {(e["agent_id"], e["via"]) for e in helper_log["entries"]} == {(HELPER, "carol")}


async def test_notifications_reach_only_agents_who_may_see_the_commit(target: Target) -> None:
    """One session per (sender, visibility); every process subscribes to all of them, then a
    public beacon, committed last, tells when every earlier notification has been sent."""
    db = target
    inboxes = {name: Inbox() for name in AGENTS}
    async with (
        spawn(db, *AGENTS["alice"], message_handler=inboxes["alice"]) as alice,
        spawn(db, *AGENTS["bob"], message_handler=inboxes["bob"]) as bob,
        spawn(db, *AGENTS["carol"], message_handler=inboxes["carol"]) as carol,
        spawn(db, *AGENTS["root"], message_handler=inboxes["root"]) as root,
    ):
        procs = {"alice": alice, "bob": bob, "carol": carol, "root": root}
        token = (await ok(alice, "authenticate_agent", agent_id=HELPER))["token"]
        senders = {name: Caller(s) for name, s in procs.items()} | {HELPER: Caller(bob, token)}
        cases: dict[str, tuple[str, str]] = {}
        for sender in senders:
            for vis in VISIBILITIES:
                if vis == "admin_only" and sender != "root":
                    continue
                sid = (await ok(root, "create_session", purpose=f"{sender} {vis}"))["session_id"]
                cases[sid] = (sender, vis)
        beacon = (await ok(root, "create_session", purpose="beacon"))["session_id"]

        def is_beacon(m: Any) -> bool:
            return (
                isinstance(m, types.ResourceUpdatedNotification)
                and m.params.uri == f"session://{beacon}"
            )

        for s in procs.values():
            for sid in [*cases, beacon]:
                await s.subscribe_resource(f"session://{sid}")
        for sid, (sender, vis) in cases.items():
            await senders[sender].ok("add_message", session_id=sid, content="x", visibility=vis)
        await ok(root, "add_message", session_id=beacon, content="done")
        for inbox in inboxes.values():
            await inbox.wait_for(is_beacon)
        # A batch's notifications go out in URI order, not commit order, so the first
        # beacon may lead its batch; a second beacon, committed after every process heard
        # the first, comes in a later batch, after all of the first one.
        await ok(root, "add_message", session_id=beacon, content="done again")
        for reader, inbox in inboxes.items():

            def both_beacons(_: Any, inbox: Inbox = inbox) -> bool:
                return sum(map(is_beacon, inbox.items)) >= 2

            await inbox.wait_for(both_beacons)
            heard = {
                m.params.uri.removeprefix("session://")
                for m in inbox.items
                if isinstance(m, types.ResourceUpdatedNotification)
            }
            expected = {sid for sid, (snd, vis) in cases.items() if may_read(reader, snd, vis)}
            assert heard - {beacon} == expected, reader
