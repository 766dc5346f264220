"""The hook at edit time: refuse an edit of a file another agent claims (hook.py runs it
on PreToolUse).

PreToolUse, with the host's documented shapes:

- Claude Code (https://code.claude.com/docs/en/hooks): `tool_name` Edit, Write, MultiEdit
  (`tool_input.file_path`) or NotebookEdit (`tool_input.notebook_path`).
- Codex (https://developers.openai.com/codex/hooks): `tool_name` apply_patch, the patch
  text in `tool_input.command`, its files on `*** Add File:`, `*** Update File:`,
  `*** Delete File:` and `*** Move to:` lines, relative to the payload's `cwd`.

Both read the same answer: `hookSpecificOutput` with `hookEventName` "PreToolUse",
`permissionDecision` "deny" and a `permissionDecisionReason` the model reads. An edit
nobody else claims gets no output (the host's normal permission flow). Imports the
standard library and claim_rules only: this runs before every edit.
"""

from __future__ import annotations

import os
import time

from shared_context_server.blackboard import claim_rules as rules

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CLAUDE_EDITS = {"Edit": "file_path", "Write": "file_path", "MultiEdit": "file_path"}
CLAUDE_NOTEBOOK = ("NotebookEdit", "notebook_path")
PATCH_HEADERS = ("*** Add File:", "*** Update File:", "*** Delete File:", "*** Move to:")
_FORMAT = "%Y-%m-%dT%H:%M:%S"  # clock.py's one format, to the second; then microseconds

SELECT_OWN = "SELECT id FROM claims WHERE holder = ? AND target = ?"
RENEW = "UPDATE claims SET renewed_at = ?, expires_at = max(expires_at, ?) WHERE id = ?"


def edited_files(host: str, payload: dict[str, Any]) -> list[str]:
    """The absolute paths a PreToolUse event would write, [] if it is no edit."""
    tool, given = payload.get("tool_name"), payload.get("tool_input")
    given_cwd = payload.get("cwd")
    cwd = given_cwd if isinstance(given_cwd, str) else os.getcwd()
    if not isinstance(given, dict):
        return []
    paths: list[Any] = []
    if host == "claude-code":
        if tool in CLAUDE_EDITS:
            paths = [given.get(CLAUDE_EDITS[tool])]
        elif tool == CLAUDE_NOTEBOOK[0]:
            paths = [given.get(CLAUDE_NOTEBOOK[1])]
    elif isinstance(given.get("command"), str):
        for line in given["command"].splitlines():
            text = line.strip()
            for header in PATCH_HEADERS:
                if text.startswith(header):
                    paths.append(text[len(header) :].strip())
    found = [p for p in paths if isinstance(p, str) and p]
    return [os.path.join(cwd, os.path.expanduser(p)) for p in found]


def _iso(moment: float) -> str:
    """clock.iso of a Unix time, without importing datetime (milliseconds per edit)."""
    seconds, micros = divmod(round(moment * 1_000_000), 1_000_000)
    return time.strftime(_FORMAT, time.gmtime(seconds)) + f".{micros:06d}Z"


def _family(holder: str, agent_id: str) -> bool:
    """The agent itself, its sub-agents, or its parent: one agent at the keyboard."""
    return (
        holder == agent_id or holder.startswith(agent_id + "/") or agent_id.startswith(holder + "/")
    )


def decide(board: Any, agent: Any, files: list[str]) -> dict[str, Any] | None:
    """Deny the edit if another agent holds an exclusive claim covering one of `files`;
    else None, having claimed (or renewed) them for the agent with `--auto-claim`."""
    if board.version < rules.CLAIMS_SCHEMA:
        return None  # a file from before claims: nothing can be claimed in it
    moment = time.time()
    now, until = _iso(moment), _iso(moment + rules.DEFAULT_TTL_S)
    cutoff = _iso(moment - rules.STALE_AFTER[board.engine])
    here = os.uname().nodename  # socket.gethostname(), without importing socket
    targets = [rules.normalise(path, "/") for path in files]

    def held(conn: Any) -> list[tuple[str, Any]]:
        found = []
        for target, kind, base in targets:
            for row in rules.covering(conn, target, kind, base, now, cutoff, here, is_file=True):
                if not row["shared"] and not _family(row["holder"], agent.agent_id):
                    found.append((target, row))
                    break
        return found

    def claim(conn: Any) -> list[tuple[str, Any]]:
        conn.execute(rules.LOCK_CLAIMS)
        found = held(conn)  # again, under the lock: another hook may have just claimed it
        if found:
            return found
        for target, kind, base in targets:
            own = conn.execute(SELECT_OWN, (agent.agent_id, target)).fetchone()
            if own is not None:
                conn.execute(RENEW, (now, until, own[0]))
                continue
            fields = (target, kind, base, agent.agent_id, 0, "editing it", None)
            conn.execute(rules.INSERT_CLAIM, (*fields, None, None, None, None, now, now, until))
            conn.execute(
                rules.INSERT_AUDIT,
                (now, agent.agent_id, None, "claim", None, target, "ok", "auto-claim on edit"),
            )
        return []

    found = held(board.conn)
    if not found and agent.auto_claim:
        found = board.record(claim, busy="the edit goes ahead unclaimed") or []
    if not found:
        return None
    return {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": "deny",
            "permissionDecisionReason": refusal(found),
        }
    }


def refusal(found: list[tuple[str, Any]]) -> str:
    """What the model reads: who holds which file, why, until when, and what to do."""
    lines = []
    for path, row in found:
        why = f" ({row['reason']})" if row["reason"] else ""
        lines.append(f"{path} is claimed by agent {row['holder']}{why} until {row['expires_at']}")
    holder = found[0][1]["holder"]
    return (
        "; ".join(lines)
        + f". Do not edit it now. Work on something else, call check_inbox for news, or ask "
        f'{holder} to release it: add_message with metadata {{"to": ["{holder}"]}}. '
        "list_claims shows every claim."
    )
