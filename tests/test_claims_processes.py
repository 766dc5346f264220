"""Claims between real server processes, on both engines: racing claimers leave one
holder per target, and a claim lives exactly as long as the process it was made through."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from shared_context_server.blackboard import audit, claim_rules
from shared_context_server.storage.opener import open_store
from shared_context_server.storage.seam import Target
from tests.support import ADMIN, INITIALIZE, INITIALIZED, ok, run_cli, spawn, tool_call
from tests.test_hook_claims import CLAUDE_PRE_TOOL_USE, allowed, denial, edit_event, hook

pytestmark = pytest.mark.processes  # real server processes: never quick

CLAIMERS = 20
GROUPS = 50  # each a file and a glob over its directory: 100 targets, overlapping in pairs
CHUNK = 10


def targets(root: Path) -> list[str]:
    return [f"{root}/m{i}/f.py" for i in range(GROUPS)] + [f"{root}/m{i}/**" for i in range(GROUPS)]


async def test_twenty_processes_racing_for_overlapping_targets_leave_one_holder_each(
    target: Target, tmp_path: Path
) -> None:
    await (await open_store(target)).close()  # migrated once, before the race
    errors: list[str] = []
    done: list[int] = []
    all_claimed, may_exit = anyio.Event(), anyio.Event()

    async def claimer(n: int) -> None:
        wanted = targets(tmp_path)
        random.Random(n).shuffle(wanted)
        async with spawn(target, "--agent-id", f"agent-{n:02d}") as session:
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start : start + CHUNK]
                result = await session.call_tool("claim", {"targets": chunk, "partial": True})
                if result.is_error:
                    errors.append(result.content[0].text)
            done.append(n)
            if len(done) == CLAIMERS:
                all_claimed.set()
            await may_exit.wait()  # alive, so their claims stand while the board is read

    with anyio.fail_after(300):
        async with anyio.create_task_group() as tg:
            for n in range(CLAIMERS):
                tg.start_soon(claimer, n)
            await all_claimed.wait()
            database = await open_store(target)
            try:
                rows = await database.read("SELECT target, holder FROM claims")
            finally:
                await database.close()
            may_exit.set()
    assert errors == []
    holders: dict[int, set[str]] = {}
    for claimed, holder in rows:
        holders.setdefault(int(claimed.split("/m")[-1].split("/")[0]), set()).add(holder)
    assert {group: len(h) for group, h in holders.items()} == dict.fromkeys(range(GROUPS), 1)
    # Over time too: in commit order, no claim ever overlapped another holder's.
    database = await open_store(target)
    try:
        log = await audit_entries(database)
    finally:
        await database.close()
    held: dict[str, str] = {}
    for action, agent_id, claimed in log:
        if action == "claim":
            for other, holder in held.items():
                overlap = claim_rules.overlaps(claimed, kind(claimed), other, kind(other))
                assert holder == agent_id or not overlap, (claimed, agent_id, other, holder)
            held[claimed] = agent_id
        else:
            held.pop(claimed, None)
    assert held == {}  # every process exited cleanly and released what it held


def kind(target: str) -> str:
    return "glob" if target.endswith("**") else "path"


async def audit_entries(database: Any) -> list[tuple[str, str, str]]:
    entries: list[tuple[str, str, str]] = []
    cursor = None
    while True:
        page = await audit.get_audit_log(database, ADMIN, limit=200, cursor=cursor)
        entries += [
            (e["action"], e["agent_id"], e["target"])
            for e in page["entries"]
            if e["action"] in ("claim", "release")
        ]
        cursor = page["next_cursor"]
        if cursor is None:
            return entries[::-1]


def serve(target: Target, agent_id: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shared_context_server",
            "--db",
            str(target),
            "--agent-id",
            agent_id,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def call(proc: subprocess.Popen[str], *requests: dict[str, Any]) -> dict[str, Any]:
    """Send requests; the answer to the last one."""
    assert proc.stdin and proc.stdout
    for request in requests:
        proc.stdin.write(json.dumps(request) + "\n")
    proc.stdin.flush()
    wanted = requests[-1]["id"]
    while True:
        line = json.loads(proc.stdout.readline())
        if line.get("id") == wanted:
            return line


async def test_a_killed_holder_blocks_nobody_and_a_clean_exit_releases(
    target: Target, tmp_path: Path
) -> None:
    await (await open_store(target)).close()
    edit = edit_event(tmp_path, "Edit", "src/a.py")
    proc = serve(target, "alice")
    try:
        claim = tool_call(2, "claim", {"targets": [f"{tmp_path}/src/**"], "reason": "v2"})
        answer = call(proc, INITIALIZE, INITIALIZED, claim)
        assert answer["result"]["structuredContent"]["granted"]
        assert "alice (v2)" in denial(hook("claude-code", "bob", target, edit), CLAUDE_PRE_TOOL_USE)
    finally:
        proc.kill()  # kill -9: no cleanup; the heartbeat row stays behind
        proc.wait()
    assert allowed(hook("claude-code", "bob", target, edit))  # same host: the pid is gone
    # A clean exit releases what the process held, audited in its name.
    async with spawn(target, "--agent-id", "carol") as session:
        await ok(session, "claim", targets=[f"{tmp_path}/docs/**"], reason="docs")
        listed = await ok(session, "list_claims")
        assert [c["holder"] for c in listed["claims"]] == ["carol"]
    assert allowed(hook("claude-code", "bob", target, edit_event(tmp_path, "Edit", "docs/x.md")))
    database = await open_store(target)
    try:
        log = (await audit.get_audit_log(database, ADMIN, action="release"))["entries"]
        assert (log[0]["agent_id"], log[0]["detail"]) == ("carol", "its server process ended")
    finally:
        await database.close()


async def test_the_claims_command_lists_and_breaks_a_claim_as_operator(
    target: Target, tmp_path: Path
) -> None:
    async with spawn(target, "--agent-id", "alice") as alice:
        held = await ok(alice, "claim", targets=[f"{tmp_path}/src/**"], reason="stuck agent")
        claim_id = held["granted"][0]["id"]
        listed = run_cli("claims", "--db", str(target))
        assert listed.returncode == 0, listed.stderr
        assert "alice" in listed.stdout and "stuck agent" in listed.stdout
        broken = run_cli("claims", "--db", str(target), "--release", str(claim_id))
        assert broken.returncode == 0, broken.stderr
        assert f"released claim {claim_id}" in broken.stdout and "alice" in broken.stdout
        assert (await ok(alice, "list_claims"))["claims"] == []
        again = run_cli("claims", "--db", str(target), "--release", str(claim_id))
        assert again.returncode == 2 and "no claim" in again.stderr
    database = await open_store(target)
    try:
        log = (await audit.get_audit_log(database, ADMIN, action="break_claim"))["entries"]
        assert [(e["agent_id"], e["detail"]) for e in log] == [("operator", "held by alice")]
    finally:
        await database.close()


async def test_a_sub_agents_claim_ends_with_its_token(target: Target, tmp_path: Path) -> None:
    edit = edit_event(tmp_path, "Edit", "src/a.py")
    async with spawn(target, "--agent-id", "alice") as alice:
        token = (await ok(alice, "authenticate_agent", agent_id="alice/helper"))["token"]
        await ok(alice, "claim", targets=[f"{tmp_path}/src/**"], agent_token=token)
        assert "alice/helper" in denial(
            hook("claude-code", "bob", target, edit), CLAUDE_PRE_TOOL_USE
        )
        assert allowed(hook("claude-code", "alice", target, edit))  # its parent may edit
        await ok(alice, "revoke_token", token=token)
        assert allowed(hook("claude-code", "bob", target, edit))
