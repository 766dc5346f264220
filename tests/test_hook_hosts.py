"""`hook codex`, `hook gemini` and `hook cursor` as each host runs them: a new process per
event, the host's documented event JSON on stdin, on both engines; every answer checked
against the host's published schema (Codex's, vendored in tests/schemas/codex) or, where
none is published, a structural schema written from the host's reference."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from shared_context_server.storage.seam import Target
from tests.support import ALICE, BOB, run_cli
from tests.test_hook import executable, payload, post, seed
from tests.test_hook_claims import hold, hook

pytestmark = pytest.mark.processes  # real server processes: never quick

SCHEMAS = Path(__file__).parent / "schemas"


def codex_schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / "codex" / f"{name}.schema.json").read_text())
    return loaded


# Gemini CLI (https://geminicli.com/docs/hooks/reference): every event's stdin has
# session_id, transcript_path, cwd, hook_event_name, timestamp; SessionStart adds `source`,
# BeforeAgent `prompt`, AfterAgent `prompt`, `prompt_response`, `stop_hook_active`,
# BeforeTool `tool_name`, `tool_input`. Output: the common fields, `decision` ("deny",
# alias "block") with `reason`, and `hookSpecificOutput` ({hookEventName, additionalContext}
# on SessionStart and BeforeAgent; packages/core/src/hooks/types.ts). No JSON schema is
# published, so this one is written from those two.
GEMINI_COMMON = {
    "continue": {"type": "boolean"},
    "stopReason": {"type": "string"},
    "suppressOutput": {"type": "boolean"},
    "systemMessage": {"type": "string"},
    "decision": {"enum": ["ask", "block", "deny", "approve", "allow"]},
    "reason": {"type": "string"},
}


def gemini_context_schema(event: str) -> dict[str, Any]:
    specific = {
        "type": "object",
        "additionalProperties": False,
        "required": ["hookEventName", "additionalContext"],
        "properties": {
            "hookEventName": {"const": event},
            "additionalContext": {"type": "string", "minLength": 1},
        },
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["hookSpecificOutput"],
        "properties": {**GEMINI_COMMON, "hookSpecificOutput": specific},
    }


GEMINI_DENY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["decision", "reason"],
    "properties": {**GEMINI_COMMON, "decision": {"const": "deny"}, "reason": {"minLength": 1}},
}
# Cursor (https://cursor.com/docs/hooks): every event's stdin has conversation_id,
# generation_id, model, hook_event_name, cursor_version, workspace_roots, user_email,
# transcript_path; sessionStart adds session_id, is_background_agent, composer_mode and
# answers {env, additional_context, continue, user_message}; stop adds status ("completed",
# "aborted", "error") and loop_count and answers {followup_message}. No schema published.
CURSOR_SESSION_START = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "env": {"type": "object", "additionalProperties": {"type": "string"}},
        "additional_context": {"type": "string"},
        "continue": {"type": "boolean"},
        "user_message": {"type": "string"},
    },
}
CURSOR_STOP = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"followup_message": {"type": "string", "minLength": 1}},
}


def codex_event(project: Path, event: str, **extra: Any) -> dict[str, Any]:
    base = {
        "session_id": "codex-thread",
        "transcript_path": None,
        "cwd": str(project),
        "hook_event_name": event,
        "model": "gpt-5-codex",
        "permission_mode": "default",
    }
    if event == "SessionStart":
        base["source"] = "startup"
    if event == "UserPromptSubmit":
        base |= {"turn_id": "turn-1", "prompt": "carry on"}
    if event == "Stop":
        base |= {"turn_id": "turn-1", "stop_hook_active": False, "last_assistant_message": None}
    return base | extra


def gemini_event(project: Path, event: str, **extra: Any) -> dict[str, Any]:
    base = {
        "session_id": "gemini-session",
        "transcript_path": str(project / "chat.json"),
        "cwd": str(project),
        "hook_event_name": event,
        "timestamp": "2026-12-04T23:00:00.000Z",
    }
    if event == "SessionStart":
        base["source"] = "startup"
    if event == "BeforeAgent":
        base["prompt"] = "carry on"
    if event == "AfterAgent":
        base |= {"prompt": "carry on", "prompt_response": "done", "stop_hook_active": False}
    return base | extra


def cursor_event(project: Path, event: str, **extra: Any) -> dict[str, Any]:
    base = {
        "conversation_id": "conv-1",
        "generation_id": "gen-1",
        "model": "claude-sonnet-4",
        "hook_event_name": event,
        "cursor_version": "2.1.0",
        "workspace_roots": [str(project)],
        "user_email": None,
        "transcript_path": None,
    }
    if event == "sessionStart":
        base |= {"session_id": "conv-1", "is_background_agent": False, "composer_mode": "agent"}
    if event == "stop":
        base |= {"status": "completed", "loop_count": 0}
    return base | extra


def answer(result: subprocess.CompletedProcess[str], schema: dict[str, Any]) -> dict[str, Any]:
    assert result.returncode == 0 and result.stderr == "", result.stderr
    output: dict[str, Any] = json.loads(result.stdout)
    jsonschema.validate(output, schema)
    return output


def empty(result: subprocess.CompletedProcess[str]) -> bool:
    """Gemini CLI's and Cursor's nothing-to-say: `{}`, their allow."""
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return json.loads(result.stdout) == {}


async def test_codex_gets_the_inbox_in_its_published_schemas(
    target: Target, tmp_path: Path
) -> None:
    await seed(target, (BOB, "alice: please review auth.py", {"to": ["alice"]}))
    start = hook("codex", "alice", target, codex_event(tmp_path, "SessionStart"))
    output = answer(start, codex_schema("session-start.command.output"))
    assert "please review auth.py" in output["hookSpecificOutput"]["additionalContext"]
    prompt = hook("codex", "alice", target, codex_event(tmp_path, "UserPromptSubmit"))
    said = answer(prompt, codex_schema("user-prompt-submit.command.output"))
    text = said["hookSpecificOutput"]["additionalContext"]
    assert "nothing new" in text and "acknowledgement" in text  # told once, awaiting ack
    stop = codex_event(tmp_path, "Stop")
    jsonschema.validate(stop, codex_schema("stop.command.input"))
    blocked = answer(hook("codex", "alice", target, stop), codex_schema("stop.command.output"))
    assert blocked["decision"] == "block" and "check_inbox" in blocked["reason"]
    assert hook("codex", "alice", target, stop).stdout == ""  # once per message
    await seed(target, (BOB, "alice: and the docs", {"to": ["alice"]}))
    active = codex_event(tmp_path, "Stop", stop_hook_active=True)
    assert hook("codex", "alice", target, active).stdout == ""  # never loops
    prompt = hook("codex", "alice", target, codex_event(tmp_path, "UserPromptSubmit"))
    output = answer(prompt, codex_schema("user-prompt-submit.command.output"))
    assert "and the docs" in output["hookSpecificOutput"]["additionalContext"]


async def test_every_host_is_told_the_same_digest_at_session_start(
    target: Target, tmp_path: Path
) -> None:
    await seed(
        target,
        (BOB, "alice: please review auth.py", {"to": ["alice"]}),
        (BOB, "a note to everyone", None),
    )
    told = {
        "claude-code": json.loads(
            hook("claude-code", "alice", target, payload(tmp_path, "SessionStart")).stdout
        )["hookSpecificOutput"]["additionalContext"],
        "codex": json.loads(
            hook("codex", "alice", target, codex_event(tmp_path, "SessionStart")).stdout
        )["hookSpecificOutput"]["additionalContext"],
        "gemini": answer(
            hook("gemini", "alice", target, gemini_event(tmp_path, "SessionStart")),
            gemini_context_schema("SessionStart"),
        )["hookSpecificOutput"]["additionalContext"],
        "cursor": answer(
            hook("cursor", "alice", target, cursor_event(tmp_path, "sessionStart")),
            CURSOR_SESSION_START,
        )["additional_context"],
    }
    assert len(set(told.values())) == 1, told
    assert "please review auth.py" in told["cursor"] and len(told["cursor"]) <= 1500


async def test_gemini_adds_news_before_the_agent_and_retries_once_per_hand_off(
    target: Target, tmp_path: Path
) -> None:
    sid = await seed(target)
    assert empty(hook("gemini", "alice", target, gemini_event(tmp_path, "BeforeAgent")))
    await seed(target, (BOB, "alice: take over the migration", {"to": ["alice"]}))
    before = hook("gemini", "alice", target, gemini_event(tmp_path, "BeforeAgent"))
    context = answer(before, gemini_context_schema("BeforeAgent"))
    assert "take over the migration" in context["hookSpecificOutput"]["additionalContext"]
    after = gemini_event(tmp_path, "AfterAgent")
    retry = answer(hook("gemini", "alice", target, after), GEMINI_DENY)
    assert "take over the migration" in retry["reason"] and "check_inbox" in retry["reason"]
    assert empty(hook("gemini", "alice", target, after))  # once per message
    await post(target, sid, BOB, "and the docs", metadata={"to": ["alice"]})
    retrying = gemini_event(tmp_path, "AfterAgent", stop_hook_active=True)
    assert empty(hook("gemini", "alice", target, retrying))  # never loops


async def test_gemini_edits_of_a_claimed_file_are_denied_to_the_agent(
    target: Target, tmp_path: Path
) -> None:
    await hold(target, ALICE, f"{tmp_path}/src/**", reason="moving the API to v2")
    for tool, args in (
        ("write_file", {"file_path": f"{tmp_path}/src/api.py", "content": "x"}),
        ("replace", {"file_path": f"{tmp_path}/src/a.py", "old_string": "a", "new_string": "b"}),
    ):
        event = gemini_event(tmp_path, "BeforeTool", tool_name=tool, tool_input=args)
        denied = answer(hook("gemini", "bob", target, event), GEMINI_DENY)
        assert "claimed by agent alice (moving the API to v2)" in denied["reason"]
    read = {"tool_name": "read_file", "tool_input": {"path": f"{tmp_path}/src/a.py"}}
    assert empty(hook("gemini", "bob", target, gemini_event(tmp_path, "BeforeTool", **read)))
    free = {"tool_name": "write_file", "tool_input": {"file_path": "docs/x.md", "content": "x"}}
    event = gemini_event(tmp_path, "BeforeTool", **free)
    assert empty(hook("gemini", "bob", target, event, "--auto-claim"))
    denied = answer(hook("gemini", "carol", target, event), GEMINI_DENY)
    assert f"{tmp_path}/docs/x.md is claimed by agent bob (editing it)" in denied["reason"]


async def test_cursor_follows_up_once_per_hand_off_and_never_loops(
    target: Target, tmp_path: Path
) -> None:
    await seed(target, (BOB, "alice: take over the migration", {"to": ["alice"]}))
    for looping in ({"loop_count": 1}, {"status": "aborted"}):
        assert empty(hook("cursor", "alice", target, cursor_event(tmp_path, "stop", **looping)))
    stop = cursor_event(tmp_path, "stop")
    followup = answer(hook("cursor", "alice", target, stop), CURSOR_STOP)
    assert "take over the migration" in followup["followup_message"]
    assert empty(hook("cursor", "alice", target, stop))  # once per message


@pytest.mark.parametrize(
    ("host", "event"),
    [("gemini", gemini_event), ("gemini", None), ("cursor", cursor_event)],
)
def test_a_broken_setup_answers_allow_with_one_stderr_line(
    host: str, event: Any, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.db"
    junk.write_text("not a database")
    name = "SessionStart" if host == "gemini" else "sessionStart"
    stdin = json.dumps(event(tmp_path, name)) if event else "not json"
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [*shlex.split(_hook_command(host)), "--db", str(junk)],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0 and json.loads(result.stdout) == {}
    assert len(result.stderr.strip().splitlines()) == 1


def _hook_command(host: str) -> str:
    return shlex.join([executable(), "hook", host, "--agent-id", "alice"])


async def test_config_hooks_prints_each_hosts_own_file_with_the_mcp_entrys_identity(
    target: Target, tmp_path: Path
) -> None:
    flags = ("--agent-id", "alice", "--agent-type", "reviewer", "--db", str(target), "--local")
    entry = json.loads(run_cli("config", "gemini", *flags, clean_env=True).stdout)
    server = entry["mcpServers"]["shared-context"]
    gemini = json.loads(run_cli("config", "gemini", "--hooks", *flags, clean_env=True).stdout)
    assert set(gemini["hooks"]) == {"SessionStart", "BeforeAgent", "AfterAgent", "BeforeTool"}
    assert gemini["hooks"]["BeforeTool"][0]["matcher"] == "write_file|replace"
    cursor = json.loads(run_cli("config", "cursor", "--hooks", *flags, clean_env=True).stdout)
    assert cursor["version"] == 1 and set(cursor["hooks"]) == {"sessionStart", "stop"}
    handlers = [g["hooks"][0] for groups in gemini["hooks"].values() for g in groups]
    for handler in handlers:  # Gemini CLI: type command, timeout in milliseconds
        assert handler["type"] == "command" and handler["timeout"] == 10_000
    handlers += [h for hs in cursor["hooks"].values() for h in hs]
    for handler in handlers:
        command = shlex.split(handler["command"])
        assert command[0] == server["command"] and command[1] == "hook"
        assert command[3:] == server["args"]
    await seed(target, (BOB, "alice: wired", {"to": ["alice"]}))
    ran = as_host_runs(
        cursor["hooks"]["sessionStart"][0]["command"], cursor_event(tmp_path, "sessionStart")
    )
    assert "alice: wired" in answer(ran, CURSOR_SESSION_START)["additional_context"]


def as_host_runs(command: str, event: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """A command hook as the host runs it: the command line, the event's JSON on stdin."""
    return subprocess.run(
        shlex.split(command), input=json.dumps(event), capture_output=True, text=True, timeout=60
    )
