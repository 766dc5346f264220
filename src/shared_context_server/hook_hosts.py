"""Each host's hook events and answers, for hook.py: which of its events is a session
start, a prompt, a stop or an edit, and the JSON it reads back.

From each host's own reference:

- Claude Code (https://code.claude.com/docs/en/hooks) and Codex
  (https://developers.openai.com/codex/hooks, schemas in openai/codex
  codex-rs/hooks/schema/generated): SessionStart and UserPromptSubmit take
  `hookSpecificOutput.additionalContext`; Stop takes `{"decision": "block", "reason"}`
  and says `stop_hook_active`; PreToolUse takes `hookSpecificOutput.permissionDecision`.
- Gemini CLI (https://geminicli.com/docs/hooks/reference): SessionStart and BeforeAgent
  (after a prompt) take `hookSpecificOutput.additionalContext`; AfterAgent takes
  `{"decision": "deny", "reason"}`, the reason becoming the next prompt, and says
  `stop_hook_active`; BeforeTool takes `{"decision": "deny", "reason"}`, the reason sent
  to the agent. Its file edits are `write_file` and `replace`, both `tool_input.file_path`
  (https://geminicli.com/docs/tools/file-system).
- Cursor (https://cursor.com/docs/hooks): sessionStart takes `additional_context`; stop
  takes `followup_message`, sent as the next user message, and says `loop_count` (the
  follow-ups already sent) and `status`. beforeSubmitPrompt can only refuse a prompt,
  not add to it; and its preToolUse does not document the Write tool's input, so the
  hook neither adds a digest at a prompt nor guards Cursor's edits.

Gemini CLI and Cursor parse stdout as JSON after every exit 0: with nothing to say the
hook prints `{}`, their empty (allow) answer. Standard library only: this runs per prompt.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

START, PROMPT, STOP, EDIT = "start", "prompt", "stop", "edit"
_CLAUDE = {"SessionStart": START, "UserPromptSubmit": PROMPT, "Stop": STOP, "PreToolUse": EDIT}
# Each host's event names the hook answers, and what each is to it.
EVENTS: dict[str, dict[str, str]] = {
    "claude-code": _CLAUDE,
    "codex": _CLAUDE,
    "gemini": {
        "SessionStart": START,
        "BeforeAgent": PROMPT,
        "AfterAgent": STOP,
        "BeforeTool": EDIT,
    },
    "cursor": {"sessionStart": START, "stop": STOP},
}
HOSTS = tuple(EVENTS)
GEMINI_EDITS = ("write_file", "replace")  # both take tool_input.file_path
SILENT_AS_EMPTY_JSON = ("gemini", "cursor")


def kind(host: str, event: Any) -> str | None:
    """START, PROMPT, STOP or EDIT for the host's event name; None for any other."""
    return EVENTS[host].get(event) if isinstance(event, str) else None


def nothing(host: str) -> dict[str, Any] | None:
    """What to print when the hook has nothing to say: `{}` for a host that parses
    stdout as JSON on exit 0, else nothing at all."""
    return {} if host in SILENT_AS_EMPTY_JSON else None


def continuing(host: str, payload: dict[str, Any]) -> bool:
    """True when the host is already going on because of a stop hook (or the user
    stopped it): the hook must then let it stop, so it can never loop."""
    if host == "cursor":
        return bool(payload.get("loop_count")) or payload.get("status") != "completed"
    return bool(payload.get("stop_hook_active"))


def context(host: str, event: str, text: str) -> dict[str, Any]:
    """Text for the model's context on a session start or a prompt."""
    if host == "cursor":
        return {"additional_context": text}
    return {"hookSpecificOutput": {"hookEventName": event, "additionalContext": text}}


def stop(host: str, reason: str) -> dict[str, Any]:
    """Keep the agent from stopping, telling it why."""
    if host == "cursor":
        return {"followup_message": reason}
    return {"decision": "deny" if host == "gemini" else "block", "reason": reason}


def deny(host: str, answer: dict[str, Any] | None) -> dict[str, Any] | None:
    """hook_edits' PreToolUse answer (Claude Code's and Codex's shape) in the host's own."""
    if answer is None or host != "gemini":
        return answer
    return {"decision": "deny", "reason": answer["hookSpecificOutput"]["permissionDecisionReason"]}


def edited_files(host: str, payload: dict[str, Any]) -> list[str]:
    """The absolute paths the host's edit event would write, [] if it is no edit."""
    if host != "gemini":
        from shared_context_server import hook_edits  # Claude Code's and Codex's tools

        return hook_edits.edited_files(host, payload)
    given, cwd = payload.get("tool_input"), payload.get("cwd")
    if payload.get("tool_name") not in GEMINI_EDITS or not isinstance(given, dict):
        return []
    path = given.get("file_path")
    if not isinstance(path, str) or not path:
        return []
    base = cwd if isinstance(cwd, str) else os.getcwd()
    return [os.path.join(base, os.path.expanduser(path))]
