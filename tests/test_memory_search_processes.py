"""Memory and search across real `shared-context-server` processes on one file."""

from __future__ import annotations

import anyio
import pytest

from shared_context_server.storage.seam import Target
from tests.support import fails, ok, spawn

pytestmark = pytest.mark.processes  # real server processes: never quick


async def test_another_agents_process_sees_none_of_alices_memory_and_finds_her_message_at_once(
    target: Target,
) -> None:
    async with (
        spawn(target, "--agent-id", "alice") as alice,
        spawn(target, "--agent-id", "bob") as bob,
    ):
        sid = (await ok(alice, "create_session", purpose="p"))["session_id"]
        await ok(alice, "set_memory", key="plan", value={"step": 1})
        await ok(alice, "set_memory", key="plan", value="local", session_id=sid)
        await fails(bob, "get_memory", "NOT_FOUND", key="plan")
        await fails(bob, "get_memory", "NOT_FOUND", key="plan", session_id=sid)
        assert (await ok(bob, "list_memory", session_id="all"))["entries"] == []
        assert (await ok(bob, "delete_memory", key="plan"))["deleted"] is False
        await ok(bob, "set_memory", key="plan", value="bob's", overwrite=False)
        assert (await ok(alice, "get_memory", key="plan"))["value"] == {"step": 1}
        assert (await ok(bob, "get_memory", key="plan"))["value"] == "bob's"
        found = await ok(bob, "search_context", session_id=sid, query="trellomix")
        assert found["results"] == []
        posted = await ok(alice, "add_message", session_id=sid, content="the trellomix rollout")
        hidden = await ok(alice, "add_private_note", session_id=sid, content="trellomix secret")
        found = await ok(bob, "search_context", session_id=sid, query="trelomix")
        assert [r["message"]["id"] for r in found["results"]] == [posted["message_id"]]
        mine = await ok(alice, "search_context", session_id=sid, query="trelomix")
        assert hidden["message_id"] in [r["message"]["id"] for r in mine["results"]]


async def test_memory_expires_for_every_process_of_the_agent(target: Target) -> None:
    db = target
    async with spawn(db, "--agent-id", "alice") as one, spawn(db, "--agent-id", "alice") as two:
        await ok(one, "set_memory", key="lock", value="mine", expires_in=1)
        assert (await ok(two, "get_memory", key="lock"))["value"] == "mine"
        with anyio.fail_after(10):  # polled: expiry is a time, not an event
            while True:
                if (await two.call_tool("get_memory", {"key": "lock"})).is_error:
                    break
                await anyio.sleep(0.05)
        await fails(two, "get_memory", "NOT_FOUND", key="lock")
        await ok(two, "set_memory", key="lock", value="theirs", overwrite=False)
