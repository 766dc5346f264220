"""Claims enforced where the agent edits: `hook claude-code` and `hook codex` as each host
runs them (a new process per event, its JSON on stdin), on both engines, their output
checked against each host's documented PreToolUse shape; and the Stop hook on
acknowledgements."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from shared_context_server import clock, hook_edits
from shared_context_server.blackboard import audit, claim_rules, claims, news, processes
from shared_context_server.blackboard.changes import ChangeFeed
from shared_context_server.blackboard.identity import Agent
from shared_context_server.blackboard.inbox import check_inbox
from shared_context_server.storage.opener import open_store
from shared_context_server.storage.seam import Target
from shared_context_server.storage.sqlite import schema as migrations
from tests.support import ADMIN, ALICE, BOB
from tests.test_hook import STOP_SCHEMA, UNIVERSAL, executable, post, seed

pytestmark = pytest.mark.processes  # real server processes: never quick

# Claude Code's hooks reference (https://code.claude.com/docs/en/hooks), PreToolUse:
# stdin adds `tool_name`, `tool_input` (Edit, Write, MultiEdit: `file_path`; NotebookEdit:
# `notebook_path`) and `tool_use_id`; the answer is `hookSpecificOutput` with
# `permissionDecision` (allow, deny, ask, defer; deny's `permissionDecisionReason` is
# shown to Claude).
CLAUDE_PRE_TOOL_USE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["hookSpecificOutput"],
    "properties": {
        **UNIVERSAL,
        "hookSpecificOutput": {
            "type": "object",
            "additionalProperties": False,
            "required": ["hookEventName", "permissionDecision", "permissionDecisionReason"],
            "properties": {
                "hookEventName": {"const": "PreToolUse"},
                "permissionDecision": {"enum": ["allow", "deny", "ask", "defer"]},
                "permissionDecisionReason": {"type": "string", "minLength": 1},
                "additionalContext": {"type": "string"},
                "updatedInput": {"type": "object"},
            },
        },
    },
}
# Codex's own schema of a PreToolUse command hook's output
# (codex-rs/hooks/schema/generated/pre-tool-use.command.output.schema.json), and its
# input: `tool_name` apply_patch, the patch in `tool_input.command`, `cwd`.
CODEX_PRE_TOOL_USE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "continue": {"type": "boolean"},
        "stopReason": {"type": "string"},
        "suppressOutput": {"type": "boolean"},
        "systemMessage": {"type": "string"},
        "hookSpecificOutput": {
            "type": "object",
            "additionalProperties": False,
            "required": ["hookEventName"],
            "properties": {
                "hookEventName": {
                    "enum": ["PreToolUse", "SessionStart", "UserPromptSubmit", "Stop"]
                },
                "permissionDecision": {"enum": ["allow", "deny", "ask"]},
                "permissionDecisionReason": {"type": "string"},
                "additionalContext": {"type": "string"},
                "updatedInput": {},
            },
        },
    },
}
CLAUDE_TOOLS = {
    "Edit": {"old_string": "a", "new_string": "b"},
    "Write": {"content": "new"},
    "MultiEdit": {"edits": [{"old_string": "a", "new_string": "b"}]},
    "NotebookEdit": {"new_source": "print(1)"},
}


def edit_event(project: Path, tool: str, path: str) -> dict[str, Any]:
    key = "notebook_path" if tool == "NotebookEdit" else "file_path"
    return {
        "session_id": "claude-session",
        "transcript_path": str(project / "t.jsonl"),
        "cwd": str(project),
        "permission_mode": "default",
        "hook_event_name": "PreToolUse",
        "tool_name": tool,
        "tool_input": {key: path, **CLAUDE_TOOLS[tool]},
        "tool_use_id": "toolu_01",
    }


def patch_event(project: Path, *headers: str) -> dict[str, Any]:
    body = "\n".join(["*** Begin Patch", *headers, "@@", "-a", "+b", "*** End Patch"])
    return {
        "session_id": "codex-thread",
        "transcript_path": None,
        "cwd": str(project),
        "hook_event_name": "PreToolUse",
        "model": "gpt-5-codex",
        "permission_mode": "default",
        "tool_name": "apply_patch",
        "tool_input": {"command": body},
        "tool_use_id": "call_1",
    }


def hook(
    host: str, agent_id: str, target: Target, event: dict[str, Any], *flags: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARED_CONTEXT_")}
    return subprocess.run(
        [executable(), "hook", host, "--agent-id", agent_id, "--db", str(target), *flags],
        input=json.dumps(event),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def denial(result: subprocess.CompletedProcess[str], schema: dict[str, Any]) -> str:
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    jsonschema.validate(output, schema)
    assert output["hookSpecificOutput"]["permissionDecision"] == "deny"
    reason: str = output["hookSpecificOutput"]["permissionDecisionReason"]
    return reason


def allowed(result: subprocess.CompletedProcess[str]) -> bool:
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return result.stdout == ""


async def hold(target: Target, agent: Agent, *targets: str, **options: Any) -> dict[str, Any]:
    database = await open_store(target)
    try:
        return await claims.claim(database, agent, list(targets), cwd="/", presence=None, **options)
    finally:
        await database.close()


async def test_claude_code_edits_of_a_claimed_file_are_denied_saying_who_why_until(
    target: Target, tmp_path: Path
) -> None:
    held = await hold(target, ALICE, f"{tmp_path}/src/**", reason="moving the API to v2")
    until = held["granted"][0]["until"]
    for tool in CLAUDE_TOOLS:
        result = hook("claude-code", "bob", target, edit_event(tmp_path, tool, "src/api/x.py"))
        reason = denial(result, CLAUDE_PRE_TOOL_USE)
        assert "alice" in reason and "moving the API to v2" in reason and until in reason
        assert "check_inbox" in reason and '"to": ["alice"]' in reason
    free = hook("claude-code", "bob", target, edit_event(tmp_path, "Edit", "docs/readme.md"))
    assert allowed(free)
    own = hook("claude-code", "alice", target, edit_event(tmp_path, "Write", "src/a.py"))
    assert allowed(own)


async def test_codex_patches_touching_a_claimed_file_are_denied(
    target: Target, tmp_path: Path
) -> None:
    await hold(target, ALICE, f"{tmp_path}/src/auth.py", reason="rotating keys")
    for headers in (
        ("*** Update File: src/auth.py",),
        ("*** Add File: docs/new.md", "*** Delete File: src/auth.py"),
        ("*** Update File: src/old.py", "*** Move to: src/auth.py"),
    ):
        reason = denial(
            hook("codex", "codex", target, patch_event(tmp_path, *headers)), CODEX_PRE_TOOL_USE
        )
        assert f"{tmp_path}/src/auth.py is claimed by agent alice (rotating keys)" in reason
    assert allowed(hook("codex", "codex", target, patch_event(tmp_path, "*** Add File: x.py")))


async def test_a_shared_claim_or_a_symlinked_path_changes_nothing(
    target: Target, tmp_path: Path
) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    await hold(target, ALICE, f"{tmp_path}/real/a.py")
    await hold(target, ALICE, f"{tmp_path}/docs/**", shared=True)
    via_link = hook("claude-code", "bob", target, edit_event(tmp_path, "Edit", "link/a.py"))
    assert "alice" in denial(via_link, CLAUDE_PRE_TOOL_USE)
    assert allowed(hook("claude-code", "bob", target, edit_event(tmp_path, "Edit", "docs/x.md")))


async def test_auto_claim_claims_the_edited_file_and_renews_it(
    target: Target, tmp_path: Path
) -> None:
    await (await open_store(target)).close()  # a board servers have created
    event = edit_event(tmp_path, "Edit", "src/a.py")
    assert allowed(hook("claude-code", "bob", target, event, "--auto-claim"))
    reason = denial(hook("claude-code", "carol", target, event), CLAUDE_PRE_TOOL_USE)
    assert "bob (editing it)" in reason
    database = await open_store(target)
    try:
        first = (await claims.list_claims(database, ADMIN, cwd="/"))["claims"]
        assert allowed(hook("claude-code", "bob", target, event, "--auto-claim"))
        again = (await claims.list_claims(database, ADMIN, cwd="/"))["claims"]
        assert [c["id"] for c in again] == [c["id"] for c in first]
        assert again[0]["until"] >= first[0]["until"]
        log = (await audit.get_audit_log(database, ADMIN, action="claim"))["entries"]
        assert [(e["agent_id"], e["target"]) for e in log] == [("bob", f"{tmp_path}/src/a.py")]
    finally:
        await database.close()


def test_a_broken_board_lets_the_edit_through_with_one_stderr_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_text("not a database")
    result = hook("claude-code", "bob", junk, edit_event(tmp_path, "Edit", "a.py"))
    assert result.returncode == 0 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1


async def test_stop_blocks_once_per_unacknowledged_hand_off(target: Target, tmp_path: Path) -> None:
    sid = await seed(target, (BOB, "alice: take over the migration", {"to": ["alice"]}))
    stop = {"hook_event_name": "Stop", "stop_hook_active": False, "cwd": str(tmp_path)}
    database = await open_store(target)
    try:
        await check_inbox(ChangeFeed(database), ALICE)  # read, not acknowledged
        first = hook("claude-code", "alice", target, stop)
        output = json.loads(first.stdout)
        jsonschema.validate(output, STOP_SCHEMA)
        assert "acknowledge" in output["reason"] and "take over the migration" in output["reason"]
        assert hook("claude-code", "alice", target, stop).stdout == ""  # never twice
        continuing = {**stop, "stop_hook_active": True}
        later = await post(target, sid, BOB, "and the docs", metadata={"to": "alice"})
        assert hook("claude-code", "alice", target, continuing).stdout == ""  # no loop
        await check_inbox(ChangeFeed(database), ALICE, ack=True)  # read and acknowledged
        stamped = await database.read(
            "SELECT acknowledged_at FROM addressed WHERE message_id = ?", (later,)
        )
        assert stamped[0][0] is not None
        assert hook("claude-code", "alice", target, stop).stdout == ""  # acknowledged
    finally:
        await database.close()


def test_the_edit_path_imports_nothing_heavy(tmp_path: Path) -> None:
    # It runs before every edit: the same budget as a prompt (test_hook.py).
    board = tmp_path / "bb.db"
    event = json.dumps(edit_event(tmp_path, "Edit", "a.py"))
    code = (
        "import sys; from shared_context_server import entry; "
        "sys.argv = ['shared-context-server', 'hook', 'claude-code', '--agent-id', 'a', "
        f"'--db', {str(board)!r}]; entry.main(); "
        "print(' '.join(sorted(sys.modules)), file=sys.stderr)"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], input=event, capture_output=True, text=True, timeout=60
    ).stderr.split()
    assert "shared_context_server.hook_edits" in loaded
    heavy = {"mcp", "mcp_types", "pydantic", "anyio", "typing", "pathlib", "socket"}
    assert heavy.isdisjoint(m.split(".")[0] for m in loaded)


def test_the_edit_hook_agrees_with_the_server() -> None:
    assert claim_rules.INSERT_AUDIT == audit.INSERT
    assert {e: processes.stale_after(e) for e in processes.HEARTBEAT_S} == claim_rules.STALE_AFTER
    assert claim_rules.CLAIMS_SCHEMA == news.ACK_SCHEMA
    made = " ".join(migrations.MIGRATIONS[claim_rules.CLAIMS_SCHEMA])
    assert "CREATE TABLE claims" in made and "CREATE TABLE addressed" in made
    assert os.uname().nodename == socket.gethostname()
    for moment in (1_764_892_331.25, 1_764_892_331.000_001, 0.5):
        assert hook_edits._iso(moment) == clock.iso(datetime.fromtimestamp(moment, UTC))
