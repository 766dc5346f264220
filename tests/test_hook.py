"""`hook claude-code` run as Claude Code runs it: a new process per event, the event's JSON
on stdin, the documented environment; its stdout checked against the documented schema."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from shared_context_server import config, hook
from shared_context_server.blackboard import messages, sessions
from shared_context_server.blackboard.identity import Agent
from shared_context_server.errors import InvalidInput
from shared_context_server.storage import opener
from shared_context_server.storage.opener import open_store
from shared_context_server.storage.seam import Target
from tests.support import ALICE, BOB, CAROL

# The facts of Claude Code's hooks reference (https://code.claude.com/docs/en/hooks) that
# this hook relies on, written down so a change on either side fails here.
# Every event's stdin carries these; SessionStart adds `source`, UserPromptSubmit
# `prompt`, Stop `stop_hook_active` (true when Claude Code already continues because of a
# Stop hook).
COMMON_INPUT = {"session_id", "transcript_path", "cwd", "hook_event_name"}
SESSION_START_SOURCES = ("startup", "resume", "clear", "compact")
# Exit 0 with JSON on stdout: the universal fields, `decision`/`reason` (Stop and
# UserPromptSubmit: "block" stops the stop, with `reason` telling Claude what to do), and
# `hookSpecificOutput` whose `additionalContext` is added to the model's context on
# SessionStart and UserPromptSubmit (Claude Code shows at most 10,000 characters).
UNIVERSAL = {
    "continue": {"type": "boolean"},
    "stopReason": {"type": "string"},
    "suppressOutput": {"type": "boolean"},
    "systemMessage": {"type": "string"},
}


def context_schema(event: str) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["hookSpecificOutput"],
        "properties": {
            **UNIVERSAL,
            "hookSpecificOutput": {
                "type": "object",
                "additionalProperties": False,
                "required": ["hookEventName", "additionalContext"],
                "properties": {
                    "hookEventName": {"const": event},
                    "additionalContext": {"type": "string", "maxLength": 10_000},
                },
            },
        },
    }


STOP_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["decision", "reason"],
    "properties": {
        **UNIVERSAL,
        "decision": {"const": "block"},
        "reason": {"type": "string", "minLength": 1},
    },
}


def payload(tmp_path: Path, event: str, **extra: Any) -> dict[str, Any]:
    base = {
        "session_id": "0b8c7f1e-claude-session",
        "transcript_path": str(tmp_path / "transcript.jsonl"),
        "cwd": str(tmp_path),
        "permission_mode": "default",
        "hook_event_name": event,
    }
    if event == "SessionStart":
        base["source"] = "startup"
    if event == "UserPromptSubmit":
        base["prompt"] = "carry on"
    if event == "Stop":
        base["stop_hook_active"] = False
    assert set(base) >= COMMON_INPUT
    return base | extra


def executable() -> str:
    found = Path(sys.executable).parent / "shared-context-server"
    return str(found) if found.is_file() else str(shutil.which("shared-context-server"))


def run_hook(
    tmp_path: Path,
    event: str,
    *args: str,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    **extra: Any,
) -> subprocess.CompletedProcess[str]:
    """The hook as Claude Code runs it: the command, cwd the project, its env variables."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("SHARED_CONTEXT_")}
    env = inherited | {"CLAUDE_PROJECT_DIR": str(tmp_path)} | (env or {})
    text = stdin if stdin is not None else json.dumps(payload(tmp_path, event, **extra))
    return subprocess.run(
        [executable(), "hook", "claude-code", *args],
        input=text,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )


def as_alice(target: Target) -> tuple[str, ...]:
    return ("--agent-id", "alice", "--agent-type", "reviewer", "--db", str(target))


def context_of(result: subprocess.CompletedProcess[str], event: str) -> str:
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    jsonschema.validate(output, context_schema(event))
    text: str = output["hookSpecificOutput"]["additionalContext"]
    return text


async def seed(path: Target, *posts: tuple[Agent, str, dict[str, Any] | None]) -> str:
    """A session alice created, with `posts` in it."""
    database = await open_store(path)
    try:
        sid = (await sessions.create_session(database, ALICE, "ship the release"))["id"]
        for agent, content, metadata in posts:
            await messages.add_message(database, agent, sid, content, metadata=metadata)
        return str(sid)
    finally:
        await database.close()


async def post(path: Target, sid: str, agent: Agent, content: str, **kw: Any) -> int:
    database = await open_store(path)
    try:
        posted = await messages.add_message(database, agent, sid, content, **kw)
        return int(posted["message_id"])
    finally:
        await database.close()


@pytest.mark.processes
async def test_each_event_answers_in_the_documented_schema(target: Target, tmp_path: Path) -> None:
    sid = await seed(
        target,
        (BOB, "alice: please review auth.py", {"to": ["alice"]}),
        (BOB, "a note to everyone", None),
    )
    start = context_of(run_hook(tmp_path, "SessionStart", *as_alice(target)), "SessionStart")
    assert "please review auth.py" in start and "check_inbox" in start
    await post(target, sid, BOB, "the build is green")
    prompt = context_of(
        run_hook(tmp_path, "UserPromptSubmit", *as_alice(target)), "UserPromptSubmit"
    )
    assert "1 new" in prompt and "please review" not in prompt  # told once already
    stop = run_hook(tmp_path, "Stop", *as_alice(target))
    assert stop.returncode == 0 and stop.stderr == ""
    jsonschema.validate(json.loads(stop.stdout), STOP_SCHEMA)


@pytest.mark.processes
async def test_a_prompt_with_nothing_new_adds_nothing(target: Target, tmp_path: Path) -> None:
    await seed(target, (BOB, "hello", None))
    first = run_hook(tmp_path, "UserPromptSubmit", *as_alice(target))
    assert "hello" in context_of(first, "UserPromptSubmit")
    again = run_hook(tmp_path, "UserPromptSubmit", *as_alice(target))
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")


@pytest.mark.processes
async def test_stop_blocks_once_for_a_hand_off_then_lets_the_agent_stop(
    target: Target, tmp_path: Path
) -> None:
    sid = await seed(target, (BOB, "not for alice", None))
    assert run_hook(tmp_path, "Stop", *as_alice(target)).stdout == ""
    await post(target, sid, BOB, "alice, your turn", metadata={"to": "alice"})
    for n in range(hook.MAX_ROWS + 5):  # chatter after it never hides the hand-off
        await post(target, sid, CAROL, f"chatter {n}")
    blocked = json.loads(run_hook(tmp_path, "Stop", *as_alice(target)).stdout)
    jsonschema.validate(blocked, STOP_SCHEMA)
    assert "alice, your turn" in blocked["reason"] and "check_inbox" in blocked["reason"]
    # Claude Code continues, then stops again with stop_hook_active: the hook lets it.
    active = run_hook(tmp_path, "Stop", *as_alice(target), stop_hook_active=True)
    assert (active.returncode, active.stdout) == (0, "")
    # A later turn's stop: the same unread hand-off does not block a second time.
    assert run_hook(tmp_path, "Stop", *as_alice(target)).stdout == ""


@pytest.mark.processes
async def test_the_digest_is_bounded_newest_hand_off_first(target: Target, tmp_path: Path) -> None:
    long = "x" * 5000
    posts = [(BOB, f"hand-off {n} {long}", {"to": ["alice"]}) for n in range(300)]
    await seed(target, *posts, (CAROL, "public chatter", None))
    text = context_of(run_hook(tmp_path, "SessionStart", *as_alice(target)), "SessionStart")
    assert len(text) <= hook.MAX_DIGEST_CHARS
    lines = text.splitlines()
    assert "hand-off 299" in lines[1] and "hand-off 298" in lines[2]  # newest first
    assert lines[-1].endswith("more: call check_inbox.")


@pytest.mark.processes
@pytest.mark.parametrize(
    ("prepare", "args", "said"),
    [
        ("missing", ("--agent-id", "alice"), "no blackboard"),
        ("damaged", ("--agent-id", "alice"), "cannot be read"),
        ("fine", (), "no agent id"),
        ("fine", ("--agent-id", "bad id"), "not 1-128 printable characters"),
        ("fine", ("--agent-id", "alice", "--bogus"), "unknown argument"),
    ],
)
async def test_a_broken_setup_tells_the_model_nothing_and_stderr_one_line(
    tmp_path: Path, prepare: str, args: tuple[str, ...], said: str
) -> None:
    path = tmp_path / "bb.db"
    if prepare == "damaged":
        path.write_bytes(b"not a database" * 100)
    elif prepare == "fine":
        await seed(path, (BOB, "hello", {"to": "alice"}))
    for event in ("SessionStart", "UserPromptSubmit", "Stop"):
        result = run_hook(tmp_path, event, *args, "--db", str(path))
        assert (result.returncode, result.stdout) == (0, ""), event
        assert len(result.stderr.splitlines()) == 1 and said in result.stderr, result.stderr


@pytest.mark.processes
def test_stdin_that_is_not_an_event_is_ignored_with_one_line(tmp_path: Path) -> None:
    result = run_hook(tmp_path, "", *as_alice(tmp_path), stdin="not json")
    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr.count("\n") == 1


@pytest.mark.processes
async def test_the_hook_reads_the_identity_and_file_from_the_environment(
    target: Target, tmp_path: Path
) -> None:
    await seed(target, (BOB, "via env", None))
    env = {config.ENV_AGENT_ID: "alice", config.ENV_DB: str(target)}
    result = run_hook(tmp_path, "SessionStart", env=env)
    assert "via env" in context_of(result, "SessionStart")


@pytest.mark.processes
def test_the_hook_path_never_imports_the_mcp_sdk_pydantic_or_anyio(tmp_path: Path) -> None:
    # It runs on every prompt: what it imports is what it costs (tests/benchmarks/bench_hook.py).
    code = (
        "import sys; from shared_context_server import entry; "
        "sys.argv = ['shared-context-server', 'hook', 'claude-code', '--agent-id', 'a', "
        f"'--db', {str(tmp_path / 'none.db')!r}]; entry.main(); "
        "print(' '.join(sorted(sys.modules)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], input="{}", capture_output=True, text=True, timeout=60
    ).stdout.split()
    assert "shared_context_server.hook" in loaded
    heavy = {"mcp", "mcp_types", "pydantic", "anyio", "aiosqlite", "argparse", "rapidfuzz"}
    heavy |= {"typing", "pathlib", "dataclasses"}  # milliseconds each, on every prompt
    assert heavy.isdisjoint(m.split(".")[0] for m in loaded)


def test_the_hook_agrees_with_the_server_on_variables_and_default_file() -> None:
    assert (hook.ENV_DB, hook.ENV_AGENT_ID) == (config.ENV_DB, config.ENV_AGENT_ID)
    assert (hook.ENV_AGENT_TYPE, hook.ENV_ADMIN) == (config.ENV_AGENT_TYPE, config.ENV_ADMIN)
    assert hook._db_path({}, {}) == str(opener.default_db_path())


MISTYPED = [
    "postgresql:/scs:secret@db.example:5432/scs",  # one slash
    "postgresql+psycopg://scs:secret@db.example/scs",  # SQLAlchemy's spelling
    "postgresq://scs:secret@db.example/scs",
    "postgres:/scs:sec/ret@db.example/scs",  # a slash in the password too
    "pg://db.example/scs?password=secret",
]


@pytest.mark.parametrize(
    ("value", "looks"),
    [
        *((value, True) for value in MISTYPED),
        ("postgresql://scs@db.example/scs", True),
        ("C:/work/team.db", False),  # a Windows drive is a file path
        ("C:\\work\\team.db", False),
        ("team.db", False),
        ("./ab:/team.db", False),
        ("~/team.db", False),
    ],
)
def test_the_hook_and_the_server_agree_on_what_looks_like_a_url(value: str, looks: bool) -> None:
    assert opener.looks_like_url(value) is looks
    assert hook._looks_like_url(value) is looks


@pytest.mark.parametrize("value", MISTYPED)
def test_a_mistyped_url_is_refused_naming_the_accepted_forms_without_its_password(
    value: str,
) -> None:
    with pytest.raises(InvalidInput) as refused:
        config.resolve_db_path(value, {})
    message = refused.value.message
    assert "postgresql://user@host:5432/dbname" in message and "needs no scheme" in message
    assert "secret" not in message and "sec/ret" not in message and "***" in message
    with pytest.raises(InvalidInput, match=config.ENV_DB):
        config.resolve_db_path(None, {config.ENV_DB: value})
    with pytest.raises(hook.Skip) as skipped:
        hook.parse_args(["claude-code", "--agent-id", "a", "--db", value], {})
    assert str(skipped.value) == message


@pytest.mark.parametrize("scheme", ["POSTGRESQL", "Postgres"])
def test_an_upper_case_scheme_is_a_postgresql_url_in_lower_case(scheme: str) -> None:
    # libpq knows only the lower-case scheme; the others are the same URL (RFC 3986).
    value = f" {scheme}://scs@db.example:5432/scs "
    expected = f"{scheme.lower()}://scs@db.example:5432/scs"
    assert config.resolve_db_path(value, {}) == expected
    assert hook._db_path({"--db": value}, {}) == expected


def test_a_windows_drive_path_stays_a_file() -> None:
    assert config.resolve_db_path("C:/work/team.db", {}) == Path("C:/work/team.db")


@pytest.mark.processes
async def test_the_digest_does_not_mark_messages_read(target: Target, tmp_path: Path) -> None:
    from shared_context_server.blackboard.inbox import check_inbox
    from tests.test_inbox import contents, feed_of

    await seed(target, (BOB, "still unread", None))
    assert "still unread" in context_of(
        run_hook(tmp_path, "SessionStart", *as_alice(target)), "SessionStart"
    )
    database = await open_store(target)
    try:
        async with feed_of(database) as feed:
            assert contents(await check_inbox(feed, ALICE)) == ["still unread"]
    finally:
        await database.close()
    # Read now: a new Claude Code session starts with nothing to add.
    after = run_hook(tmp_path, "SessionStart", *as_alice(target))
    assert (after.returncode, after.stdout) == (0, "")
