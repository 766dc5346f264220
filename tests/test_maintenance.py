"""Lifecycle maintenance: what a round sweeps, archives and trims (with a controlled clock),
and the lease that keeps it to one process at a time, shown with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from shared_context_server.blackboard import audit, messages, sessions, tokens
from shared_context_server.blackboard.maintenance import Policy, maintain_once
from shared_context_server.clock import iso, now_utc
from shared_context_server.config import Settings, resolve_settings
from shared_context_server.errors import InvalidInput, TokenInvalid
from shared_context_server.storage.opener import open_store
from shared_context_server.storage.seam import Store, Target
from shared_context_server.storage.sqlite.database import Database
from tests.support import ADMIN, ALICE, connect, execute, ok, poll_until_true, rows


async def test_a_round_sweeps_expired_tokens_and_keeps_live_ones(db: Store) -> None:
    short = await tokens.authenticate_agent(db, ALICE, "alice/short", expires_in=60)
    long = await tokens.authenticate_agent(db, ALICE, "alice/long", expires_in=3600)
    later = now_utc() + timedelta(minutes=5)
    done = await maintain_once(db, "me", now=later)
    assert done is not None and done["expired_tokens"] == 1
    with pytest.raises(TokenInvalid, match="not a token"):
        await tokens.resolve_token(db, short["token"], ALICE, now=later)
    assert (
        await tokens.resolve_token(db, long["token"], ALICE, now=later)
    ).agent_id == "alice/long"


async def test_sessions_idle_past_the_age_are_archived_and_audited(db: Store) -> None:
    quiet = await sessions.create_session(db, ALICE, "quiet")
    chatty = await sessions.create_session(db, ALICE, "chatty")
    later = now_utc() + timedelta(days=31)
    # chatty's message is one day old by the clock the round runs with.
    await messages.add_message(db, ALICE, chatty["id"], "still here")
    await db.transact(
        lambda conn: conn.execute(
            "UPDATE messages SET created_at = ? WHERE session_id = ?",
            (iso(later - timedelta(days=1)), chatty["id"]),
        )
    )
    done = await maintain_once(db, "me", Policy(archive_after_days=30), now=later)
    assert done is not None and done["idle_sessions_archived"] == 1
    assert (await sessions.get_session(db, ALICE, quiet["id"]))["session"]["status"] == "archived"
    assert (await sessions.get_session(db, ALICE, chatty["id"]))["session"]["status"] == "active"
    log = await audit.get_audit_log(db, ADMIN, action="auto_archive")
    assert [(e["agent_id"], e["via"], e["session_id"]) for e in log["entries"]] == [
        ("maintenance", "me", quiet["id"])
    ]
    never = await maintain_once(db, "me", Policy(archive_after_days=0), now=later)
    assert never is not None and never["idle_sessions_archived"] == 0


async def test_the_audit_log_is_trimmed_past_its_retention_only(db: Store) -> None:
    for n in range(3):
        await sessions.create_session(db, ALICE, f"s{n}")
    hundred_days_ago = iso(now_utc() - timedelta(days=100))  # for the first two entries
    await db.transact(
        lambda conn: conn.execute("UPDATE audit_log SET ts = ? WHERE id <= 2", (hundred_days_ago,))
    )
    kept = await maintain_once(db, "me", Policy(audit_retention_days=0, archive_after_days=0))
    assert kept is not None and kept["audit_trimmed"] == 0
    done = await maintain_once(db, "me", Policy(audit_retention_days=90, archive_after_days=0))
    assert done is not None and done["audit_trimmed"] == 2
    assert [r[0] for r in await db.read("SELECT id FROM audit_log")] == [3]


async def test_a_large_wal_gets_a_passive_checkpoint(sqlite_db: Database) -> None:
    db = sqlite_db  # SQLite only: PostgreSQL has no WAL file of ours to checkpoint
    s = await sessions.create_session(db, ALICE, "wal")
    for n in range(20):
        await messages.add_message(db, ALICE, s["id"], "x" * 2000 + str(n))
    assert await db.checkpoint_if_large(threshold_bytes=1 << 40) == 0
    assert await db.checkpoint_if_large(threshold_bytes=1) > 0


def test_maintenance_settings_come_from_flags_then_environment(tmp_path: Path) -> None:
    env = {
        "SHARED_CONTEXT_ARCHIVE_AFTER_DAYS": "7",
        "SHARED_CONTEXT_AUDIT_RETENTION_DAYS": "0",
        "SHARED_CONTEXT_TOKEN_TTL": "600",
        "SHARED_CONTEXT_MAINTENANCE_INTERVAL": "5",
    }
    s = resolve_settings({"db": str(tmp_path / "x.db"), "archive_after_days": 3}, env)
    assert (s.archive_after_days, s.audit_retention_days, s.token_ttl_s) == (3, 0, 600)
    assert s.maintenance_interval_s == 5.0
    half = resolve_settings({"db": "x.db", "maintenance_interval": 0.5}, {})
    assert half.maintenance_interval_s == 0.5


@pytest.mark.parametrize(
    ("flags", "env", "says"),
    [
        ({"archive_after_days": -1}, {}, "--archive-after-days / .* from 0 to 36500"),
        ({"archive_after_days": 800000}, {}, "from 0 to 36500"),
        ({"audit_retention_days": 800000}, {}, "--audit-retention-days / .* from 0 to 36500"),
        ({"maintenance_interval": 1e14}, {}, "--maintenance-interval must be 0.1-86400"),
        ({}, {"SHARED_CONTEXT_MAINTENANCE_INTERVAL": "abc"}, "must be a number of seconds"),
        ({}, {"SHARED_CONTEXT_TOKEN_TTL": "99999999"}, "from 1 to 2592000"),
        ({}, {"SHARED_CONTEXT_TOKEN_TTL": "abc"}, "must be a whole number"),
    ],
)
def test_maintenance_settings_out_of_range_are_refused_at_start(
    flags: dict[str, Any], env: dict[str, str], says: str
) -> None:
    with pytest.raises(InvalidInput, match=says):
        resolve_settings({"db": "x.db", **flags}, env)


async def test_a_clean_exit_hands_the_maintenance_lease_on_at_once(target: Target) -> None:
    config = Settings(target, "alice", "flag", maintenance_interval_s=0.1)
    async with connect("handshake", config) as s:
        await ok(s, "whoami")

        async def held() -> bool:
            return await lease_rows(target) == 1

        with anyio.fail_after(10):
            await poll_until_true(held)
    assert await lease_rows(target) == 0


async def lease_rows(target: Target) -> int:
    return int((await rows(target, "SELECT count(*) FROM leases"))[0][0])


# --------------------------------------------------------------------------- real processes


@contextmanager
def maintainers(db: Target, count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Server processes with no client yet (stdin held open), maintaining every second."""
    args = [sys.executable, "-m", "shared_context_server", "--db", str(db)]
    args += ["--maintenance-interval", "1", "--archive-after-days", "1"]
    procs = [
        subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(count)
    ]
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


async def plant_idle_sessions(db: Target, names: list[str]) -> None:
    old = iso(now_utc() - timedelta(days=2))
    for name in names:
        await execute(
            db,
            "INSERT INTO sessions (id, purpose, status, created_by, created_at, updated_at)"
            " VALUES (?, 'idle', 'active', 'x', ?, ?)",
            (name, old, old),
        )


async def archivers(db: Target) -> list[tuple[str, str]]:
    """(session, holder) of every auto-archive entry so far."""
    found = await rows(
        db, "SELECT session_id, via FROM audit_log WHERE action = 'auto_archive' ORDER BY id"
    )
    return [(s, v) for s, v in found]


async def wait_until_archived(db: Target, count: int) -> list[tuple[str, str]]:
    async def enough() -> bool:
        return len(await archivers(db)) >= count

    with anyio.fail_after(20):
        await poll_until_true(enough)
    return await archivers(db)


@pytest.mark.processes
async def test_two_processes_share_maintenance_and_a_killed_holder_is_replaced(
    target: Target,
) -> None:
    db = target
    await (await open_store(db)).close()  # the schema exists before sessions are planted
    first_batch = [f"old{n}" for n in range(5)]
    await plant_idle_sessions(db, first_batch)
    with maintainers(db, 2) as procs:
        await wait_until_archived(db, 5)
        # Both processes run a round every second; more idle sessions, a round apart, are
        # all archived by the same one: the lease holder.
        for n in range(4):
            await plant_idle_sessions(db, [f"more{n}"])
            await wait_until_archived(db, 6 + n)
        found = await archivers(db)
        assert sorted(s for s, _ in found) == sorted(
            [*first_batch, *(f"more{n}" for n in range(4))]
        )
        holders = {holder for _, holder in found}
        assert len(holders) == 1
        (holder,) = holders
        pid = int(holder.split(":")[1])
        assert pid in {p.pid for p in procs}
        os.kill(pid, signal.SIGKILL)  # no clean exit: its lease must run out (3 rounds)
        await plant_idle_sessions(db, ["late"])
        found = await wait_until_archived(db, 10)
        assert found[-1][0] == "late" and found[-1][1] != holder
        survivor = int(found[-1][1].split(":")[1])
        assert survivor != pid and survivor in {p.pid for p in procs}
        assert len(await archivers(db)) == 10  # nothing was archived twice
