"""Agent memory: domain functions on a real file, the tools in both eras, and the lease that
lets one process at a time sweep expired entries."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from shared_context_server.blackboard import memory, sessions
from shared_context_server.blackboard.lease import acquire_lease, lease_holder, release_lease
from shared_context_server.blackboard.limits import Limits
from shared_context_server.blackboard.maintenance import maintain_once
from shared_context_server.config import Settings, resolve_settings
from shared_context_server.errors import (
    Conflict,
    InvalidInput,
    LimitExceeded,
    NotFound,
    SessionNotFound,
)
from shared_context_server.storage.opener import open_store
from shared_context_server.storage.seam import Store, Target
from tests.support import ALICE, BOB, ERAS, connect, fails, ok, poll_until_true

YEAR = 365 * 24 * 3600
PAST = datetime.now(UTC) - timedelta(hours=1)  # a clock an hour behind: entries expire "now"


async def _is(count: Awaitable[int], expected: int) -> bool:
    return await count == expected


async def rows_in_memory_table(db: Store) -> int:
    row = await db.read_one("SELECT count(*) FROM memory")
    return int(row[0]) if row else 0


@pytest.mark.parametrize("value", [{"plan": [1, 2]}, [1, "two"], "text", 3.5, 0, True, None])
async def test_any_json_value_round_trips(db: Store, value: Any) -> None:
    stored = await memory.set_memory(db, ALICE, "k", value)
    assert stored["scope"] == "global" and stored["expires_at"] is None
    got = await memory.get_memory(db, ALICE, "k")
    assert got["value"] == value and got["scope"] == "global" and got["session_id"] is None


async def test_global_and_session_scopes_hold_separate_values(db: Store) -> None:
    sid = (await sessions.create_session(db, ALICE, "review"))["id"]
    await memory.set_memory(db, ALICE, "plan", "global plan")
    stored = await memory.set_memory(db, ALICE, "plan", "session plan", session_id=sid)
    assert stored["scope"] == "session" and stored["session_id"] == sid
    assert (await memory.get_memory(db, ALICE, "plan"))["value"] == "global plan"
    assert (await memory.get_memory(db, ALICE, "plan", sid))["value"] == "session plan"
    await memory.delete_memory(db, ALICE, "plan", sid)
    assert (await memory.get_memory(db, ALICE, "plan"))["value"] == "global plan"


async def test_session_scoped_memory_needs_an_existing_session(db: Store) -> None:
    with pytest.raises(SessionNotFound):
        await memory.set_memory(db, ALICE, "k", 1, session_id="sess_missing")
    with pytest.raises(SessionNotFound):
        await memory.get_memory(db, ALICE, "k", "sess_missing")
    with pytest.raises(SessionNotFound):
        await memory.list_memory(db, ALICE, "sess_missing")


async def test_memory_is_private_to_its_agent(db: Store) -> None:
    sid = (await sessions.create_session(db, ALICE, "review"))["id"]
    await memory.set_memory(db, ALICE, "secret", "alice's")
    await memory.set_memory(db, ALICE, "secret", "alice's too", session_id=sid)
    with pytest.raises(NotFound):
        await memory.get_memory(db, BOB, "secret")
    assert (await memory.list_memory(db, BOB, "all"))["entries"] == []
    assert (await memory.memory_snapshot(db, BOB))["entries"] == []
    assert (await memory.delete_memory(db, BOB, "secret"))["deleted"] is False
    await memory.set_memory(db, BOB, "secret", "bob's", overwrite=False)
    assert (await memory.get_memory(db, ALICE, "secret"))["value"] == "alice's"
    assert (await memory.get_memory(db, BOB, "secret"))["value"] == "bob's"


async def test_overwrite_false_refuses_a_live_entry_but_replaces_an_expired_one(
    db: Store,
) -> None:
    await memory.set_memory(db, ALICE, "k", "old")
    with pytest.raises(Conflict, match="overwrite=true"):
        await memory.set_memory(db, ALICE, "k", "new", overwrite=False)
    assert (await memory.get_memory(db, ALICE, "k"))["value"] == "old"
    await memory.set_memory(db, ALICE, "gone", "old", expires_in=1, now=PAST)
    await memory.set_memory(db, ALICE, "gone", "new", overwrite=False)
    got = await memory.get_memory(db, ALICE, "gone")
    assert got["value"] == "new" and got["expires_at"] is None


async def test_replacing_a_live_entry_keeps_its_created_at(db: Store) -> None:
    await memory.set_memory(db, ALICE, "k", 1, now=PAST)
    await memory.set_memory(db, ALICE, "k", 2)
    got = await memory.get_memory(db, ALICE, "k")
    assert got["value"] == 2 and got["created_at"] < got["updated_at"]


async def test_an_expired_entry_is_invisible_at_once_on_every_read(db: Store) -> None:
    sid = (await sessions.create_session(db, ALICE, "review"))["id"]
    await memory.set_memory(db, ALICE, "k", "v", expires_in=60)
    await memory.set_memory(db, ALICE, "s", "v", session_id=sid, expires_in=60)
    later = datetime.now(UTC) + timedelta(seconds=61)
    with pytest.raises(NotFound, match="expired"):
        await memory.get_memory(db, ALICE, "k", now=later)
    assert (await memory.list_memory(db, ALICE, "all", now=later))["entries"] == []
    assert (await memory.memory_snapshot(db, ALICE, now=later))["entries"] == []
    assert (await memory.delete_memory(db, ALICE, "k", now=later))["deleted"] is False
    # Still visible before it expires, and no read deleted the rows: the sweeper does.
    assert (await memory.get_memory(db, ALICE, "k"))["value"] == "v"
    assert await rows_in_memory_table(db) == 2


async def test_expiry_is_one_second_to_one_year(db: Store) -> None:
    for refused in (0, -5, YEAR + 1):
        with pytest.raises(InvalidInput, match="expires_in"):
            await memory.set_memory(db, ALICE, "k", 1, expires_in=refused)
    assert (await memory.set_memory(db, ALICE, "k", 1, expires_in=1))["expires_at"]
    stored = await memory.set_memory(db, ALICE, "k", 1, expires_in=YEAR)
    assert stored["expires_at"][:4] == str(datetime.now(UTC).year + 1)


@pytest.mark.parametrize("key", ["", "has space", "tab\there", "new\nline", "k" * 256])
async def test_bad_keys_are_refused(db: Store, key: str) -> None:
    with pytest.raises(InvalidInput, match="key must be"):
        await memory.set_memory(db, ALICE, key, 1)


async def test_a_value_over_the_limit_is_refused_and_the_limit_is_configurable(
    db: Store,
) -> None:
    await memory.set_memory(db, ALICE, "k" * 255, "x" * 60_000)
    with pytest.raises(LimitExceeded, match="65,536"):
        await memory.set_memory(db, ALICE, "big", "x" * 70_000)
    with pytest.raises(LimitExceeded, match="100"):
        await memory.set_memory(db, ALICE, "k", "x" * 200, limits=Limits(max_memory_bytes=100))


async def test_list_memory_pages_by_prefix_across_scopes(db: Store) -> None:
    sid = (await sessions.create_session(db, ALICE, "review"))["id"]
    for i in range(5):
        await memory.set_memory(db, ALICE, f"task/{i}", i)
        await memory.set_memory(db, ALICE, f"task/{i}", i, session_id=sid)
    await memory.set_memory(db, ALICE, "other", "x")
    seen: list[tuple[str | None, str]] = []
    cursor = None
    while True:
        page = await memory.list_memory(db, ALICE, "all", prefix="task/", limit=3, cursor=cursor)
        seen += [(e["session_id"], e["key"]) for e in page["entries"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [(None, f"task/{i}") for i in range(5)] + [(sid, f"task/{i}") for i in range(5)]
    only_global = await memory.list_memory(db, ALICE)
    assert [e["key"] for e in only_global["entries"]] == ["other"] + [f"task/{i}" for i in range(5)]
    only_session = await memory.list_memory(db, ALICE, sid)
    assert {e["scope"] for e in only_session["entries"]} == {"session"}
    assert only_session["entries"][0]["size"] == 1


async def test_list_memory_refuses_a_cursor_it_did_not_make(db: Store) -> None:
    with pytest.raises(InvalidInput, match="cursor"):
        await memory.list_memory(db, ALICE, cursor="not-a-cursor")


async def test_snapshot_holds_all_live_memory_with_values(db: Store) -> None:
    sid = (await sessions.create_session(db, ALICE, "review"))["id"]
    await memory.set_memory(db, ALICE, "a", {"x": 1})
    await memory.set_memory(db, ALICE, "b", [2], session_id=sid)
    await memory.set_memory(db, ALICE, "c", 3, expires_in=1, now=PAST)
    snap = await memory.memory_snapshot(db, ALICE)
    assert snap["agent_id"] == "alice" and snap["truncated"] is False
    assert [(e["key"], e["value"], e["scope"]) for e in snap["entries"]] == [
        ("a", {"x": 1}, "global"),
        ("b", [2], "session"),
    ]
    assert (await memory.memory_snapshot(db, ALICE, limit=1))["truncated"] is True


async def test_sweep_deletes_only_expired_entries(db: Store) -> None:
    for i in range(1203):  # more than two sweep batches
        await memory.set_memory(db, ALICE, f"old{i}", i, expires_in=1, now=PAST)
    await memory.set_memory(db, ALICE, "kept", 1, expires_in=3600)
    await memory.set_memory(db, ALICE, "forever", 1)
    assert await memory.sweep_expired_memory(db) == 1203
    assert await rows_in_memory_table(db) == 2


async def test_two_handles_racing_for_a_lease_get_exactly_one_holder(target: Target) -> None:
    first, second = await open_store(target), await open_store(target)
    won: dict[str, bool] = {}

    async def take(db: Store, holder: str) -> None:
        won[holder] = await acquire_lease(db, "job", holder, 60)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(take, first, "one")
            tg.start_soon(take, second, "two")
        assert sorted(won.values()) == [False, True]
        (winner,) = [h for h, w in won.items() if w]
        loser = "two" if winner == "one" else "one"
        assert await acquire_lease(first, "job", winner, 60)  # the holder renews
        assert not await acquire_lease(second, "job", loser, 60)
        # A holder that stopped renewing is replaced once its lease has expired.
        later = datetime.now(UTC) + timedelta(seconds=61)
        assert await acquire_lease(second, "job", loser, 60, now=later)
        assert (await lease_holder(first, "job") or ("", ""))[0] == loser
        assert not await release_lease(first, "job", winner)
        assert await release_lease(second, "job", loser)
        assert await acquire_lease(first, "job", winner, 60)
    finally:
        await first.close()
        await second.close()


async def test_of_two_processes_maintaining_at_once_only_one_sweeps(target: Target) -> None:
    first, second = await open_store(target), await open_store(target)
    try:
        for i in range(10):
            await memory.set_memory(first, ALICE, f"k{i}", i, expires_in=1, now=PAST)
        results: list[dict[str, int] | None] = []

        async def maintain(db: Store, holder: str) -> None:
            results.append(await maintain_once(db, holder))

        async with anyio.create_task_group() as tg:
            tg.start_soon(maintain, first, "one")
            tg.start_soon(maintain, second, "two")
        assert sorted(results, key=str)[0] is None  # the other process had the lease
        done = sorted(results, key=str)[1]
        assert done is not None and done["expired_memory"] == 10
        assert await rows_in_memory_table(first) == 0
    finally:
        await first.close()
        await second.close()


async def test_the_server_sweeps_expired_memory_in_the_background(target: Target) -> None:
    config = settings(target, maintenance_interval_s=0.05)
    async with connect("handshake", config) as session:
        await ok(session, "set_memory", key="kept", value=1)
        db = await open_store(config.db_path)
        try:
            await memory.set_memory(db, ALICE, "stale", 1, expires_in=1, now=PAST)
            with anyio.fail_after(10):
                await poll_until_true(lambda: _is(rows_in_memory_table(db), 1))
        finally:
            await db.close()
        await ok(session, "get_memory", key="kept")


def test_the_value_limit_comes_from_the_flag_else_the_environment(tmp_path: Path) -> None:
    env = {"SHARED_CONTEXT_DB": str(tmp_path / "x.db"), "SHARED_CONTEXT_MAX_MEMORY_BYTES": "500"}
    assert resolve_settings({}, env).limits.max_memory_bytes == 500
    assert resolve_settings({"max_memory_bytes": 700}, env).limits.max_memory_bytes == 700
    assert resolve_settings({}, {}).limits.max_memory_bytes == 64 * 1024
    with pytest.raises(InvalidInput, match="SHARED_CONTEXT_MAX_MEMORY_BYTES"):
        resolve_settings({}, {"SHARED_CONTEXT_MAX_MEMORY_BYTES": "lots"})
    with pytest.raises(InvalidInput, match="--max-memory-bytes"):
        resolve_settings({"max_memory_bytes": 0}, {})


def settings(target: Target, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "db_path": target,
        "agent_id": "alice",
        "agent_id_source": "flag",
        "agent_type": "reviewer",
    }
    return Settings(**(base | overrides))


@pytest.mark.parametrize("era", ERAS)
async def test_memory_tools_round_trip(target: Target, era: str) -> None:
    async with connect(era, settings(target)) as s:
        sid = (await ok(s, "create_session", purpose="p"))["session_id"]
        stored = await ok(s, "set_memory", key="plan", value={"steps": [1, 2]}, expires_in=3600)
        assert stored["scope"] == "global" and stored["expires_at"] is not None
        await ok(s, "set_memory", key="plan", value="in session", session_id=sid)
        got = await ok(s, "get_memory", key="plan")
        assert got["value"] == {"steps": [1, 2]}
        assert (await ok(s, "get_memory", key="plan", session_id=sid))["value"] == "in session"
        listed = await ok(s, "list_memory", session_id="all")
        assert [(e["key"], e["scope"]) for e in listed["entries"]] == [
            ("plan", "global"),
            ("plan", "session"),
        ]
        assert (await ok(s, "delete_memory", key="plan"))["deleted"] is True
        assert (await ok(s, "delete_memory", key="plan"))["deleted"] is False
        result = await s.call_tool("get_memory", {"key": "plan", "session_id": sid})
        assert "in session" in result.content[0].text


@pytest.mark.parametrize("era", ERAS)
async def test_memory_tools_fail_with_stable_codes(target: Target, era: str) -> None:
    config = settings(target, limits=Limits(max_memory_bytes=100))
    async with connect(era, config) as s:
        await ok(s, "set_memory", key="k", value=1)
        await fails(s, "set_memory", "CONFLICT", key="k", value=2, overwrite=False)
        await fails(s, "get_memory", "NOT_FOUND", key="missing")
        await fails(s, "set_memory", "SESSION_NOT_FOUND", key="k", value=1, session_id="sess_x")
        await fails(s, "set_memory", "INVALID_INPUT", key="k", value=1, expires_in=YEAR + 1)
        await fails(s, "set_memory", "INVALID_INPUT", key="k", value=1, expires_in=0)
        await fails(s, "set_memory", "INVALID_INPUT", key="a b", value=1)
        await fails(s, "set_memory", "INVALID_INPUT", key="k")  # value is required
        await fails(s, "set_memory", "LIMIT_EXCEEDED", key="k", value="x" * 200)
        await fails(s, "list_memory", "INVALID_INPUT", cursor="bogus")
        await fails(s, "delete_memory", "INVALID_INPUT", key="k", extra=1)


@pytest.mark.parametrize("era", ERAS)
async def test_an_expired_entry_is_not_found_through_the_tools(target: Target, era: str) -> None:
    config = settings(target)
    async with connect(era, config) as s:
        await ok(s, "whoami")  # the server has migrated the file
        db = await open_store(config.db_path)
        try:
            await memory.set_memory(db, ALICE, "stale", 1, expires_in=1, now=PAST)
        finally:
            await db.close()
        await fails(s, "get_memory", "NOT_FOUND", key="stale")
        assert (await ok(s, "list_memory"))["entries"] == []
        await ok(s, "set_memory", key="stale", value=2, overwrite=False)
