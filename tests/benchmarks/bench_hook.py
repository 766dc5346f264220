"""What the host hooks cost on every prompt and every edit (a report, not a test).

Run from the repository root:

    .venv/bin/python tests/benchmarks/bench_hook.py --messages 100000 --claims 10000

Builds a file of `--messages` messages from 20 agents in 200 sessions, where the measured
agent takes part in 20 sessions and has 60 unread messages (6 addressed to it), then runs
the installed `shared-context-server hook claude-code` as Claude Code does (a new process,
the event's JSON on stdin) and prints the wall time of the whole process, p50 and p95:
SessionStart (a digest every time: the worst case), UserPromptSubmit with nothing new
(the common case), Stop, PreToolUse of an Edit (with `--claims` live claims of 20 agents
on the board: a free file, and one another agent claims, denied), and a bare
`python -c pass` for the interpreter's own start; then the same for `hook codex`,
`hook gemini` (SessionStart, BeforeAgent, AfterAgent, BeforeTool of write_file) and
`hook cursor` (sessionStart, stop), each fed its own host's event. p50, p95 and p99.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

from shared_context_server.storage.sqlite.database import Database

INSERT_SESSION = (
    "INSERT INTO sessions (id, purpose, status, created_by, created_at, updated_at)"
    " VALUES (?, ?, 'active', ?, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')"
)
INSERT_MESSAGE = (
    "INSERT INTO messages (session_id, sender, sender_type, content, visibility,"
    " message_type, metadata, created_at)"
    " VALUES (?, ?, 'bench', ?, ?, 'message', ?, '2026-01-01T00:00:00Z')"
)
AGENTS = [f"agent{n}" for n in range(20)]
ME = "agent0"
INSERT_CLAIM = (
    "INSERT INTO claims (target, kind, base, holder, shared, reason, created_at, renewed_at,"
    " expires_at) VALUES (?, ?, ?, ?, 0, 'bench', '2026-01-01T00:00:00.000000Z',"
    " '2099-01-01T00:00:00.000000Z', '2099-01-01T00:00:00.000000Z')"
)
REPO = "/srv/repo"
HOSTS = ("codex", "gemini", "cursor")  # beside claude-code, each fed its own events


def add_claims(path: Path, count: int) -> None:
    """`count` live claims of 20 agents: files and globs across 200 directories of a
    repository, one of them (agent1's) over src/api, where the denied edit lands."""
    rng = random.Random(11)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    rows = [(f"{REPO}/src/api/**", "glob", f"{REPO}/src/api", "agent1")]
    for n in range(count - 1):
        folder = f"{REPO}/pkg{n % 200}/mod{rng.randint(0, 9)}"
        if n % 5 == 0:
            rows.append((f"{folder}/**", "glob", folder, rng.choice(AGENTS[1:])))
        else:
            rows.append((f"{folder}/file{n}.py", "path", f"{folder}/file{n}.py", AGENTS[n % 20]))
    conn.executemany(INSERT_CLAIM, rows)
    conn.execute("COMMIT")
    conn.close()


def build(path: Path, count: int) -> None:
    anyio.run(lambda: _migrate(path))
    rng = random.Random(7)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    sessions = [f"sess_{n:04d}" for n in range(200)]
    for n, sid in enumerate(sessions):
        conn.execute(INSERT_SESSION, (sid, f"task {n}", AGENTS[n % len(AGENTS)]))
    mine = sessions[:20]  # agent0 created 10 of these and posts in all 20
    rows = []
    for n in range(count - 80):
        sid = rng.choice(sessions)
        sender = ME if sid in mine and n % 7 == 0 else rng.choice(AGENTS[1:])
        vis = rng.choice(("public", "public", "public", "private", "agent_only"))
        rows.append((sid, sender, f"message {n} " + "lorem ipsum " * rng.randint(2, 40), vis, None))
    for sid in mine:  # the agent takes part in all 20
        rows.append((sid, ME, "taking part", "public", None))
    conn.executemany(INSERT_MESSAGE, rows)
    # It has read everything so far (check_inbox moved its marks)...
    conn.execute("UPDATE inbox_marks SET seen_id = (SELECT max(id) FROM messages)")
    news = []
    for n in range(60):  # ...and then 60 messages arrive, 6 addressed to it
        meta = json.dumps({"to": [ME]}) if n % 10 == 0 else None
        news.append((mine[n % 20], rng.choice(AGENTS[1:]), f"news {n}", "public", meta))
    conn.executemany(INSERT_MESSAGE, news)
    conn.execute("COMMIT")
    conn.close()


async def _migrate(path: Path) -> None:
    db = await Database.open(path)
    await db.close()


def hook_command(host: str = "claude-code") -> list[str]:
    return [str(Path(sys.executable).parent / "shared-context-server"), "hook", host]


def timed(commands: dict[str, tuple[list[str], str]], runs: int) -> dict[str, list[float]]:
    """Wall ms of each command per run, the commands in a fresh random order each round, so
    the machine's drift and its neighbours' load land on all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    order = list(commands)
    for _ in range(runs):
        random.shuffle(order)
        for name in order:
            argv, stdin = commands[name]
            start = time.perf_counter()
            done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=True)
            times[name].append((time.perf_counter() - start) * 1000)
            assert "Traceback" not in done.stderr, done.stderr
    return times


def report(name: str, times: list[float]) -> None:
    p95 = statistics.quantiles(times, n=20)[-1]
    p99 = statistics.quantiles(times, n=100)[-1]
    print(
        f"{name:<34} p50 {statistics.median(times):6.1f} ms   p95 {p95:6.1f} ms   p99 {p99:6.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--claims", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bb.db"
        build(path, args.messages)
        add_claims(path, args.claims)
        # As in use, where the agents' servers hold the file open: otherwise each hook
        # process is the last connection to close and checkpoints the WAL on its way out.
        held = sqlite3.connect(path)
        held.execute("SELECT count(*) FROM sessions").fetchone()
        os.sync()  # the build's writes reach the disk before anything is timed
        flags = ["--agent-id", ME, "--agent-type", "bench", "--db", str(path)]
        print(
            f"{args.messages:,} messages, {args.claims:,} claims; {args.runs} runs each,"
            " whole process wall time"
        )

        def event(name: str) -> str:
            return json.dumps({"hook_event_name": name, "session_id": "s", "cwd": folder})

        start = subprocess.run(
            hook_command() + flags, input=event("SessionStart"), capture_output=True, text=True
        )
        digest = json.loads(start.stdout)["hookSpecificOutput"]["additionalContext"]
        print(f"SessionStart digest: {len(digest)} characters")
        hook = hook_command() + flags

        def edit(path: str) -> str:
            tool_input = {"file_path": path, "old_string": "a", "new_string": "b"}
            event = {"hook_event_name": "PreToolUse", "session_id": "s", "cwd": REPO}
            return json.dumps(event | {"tool_name": "Edit", "tool_input": tool_input})

        denied = subprocess.run(
            hook, input=edit(f"{REPO}/src/api/v1.py"), capture_output=True, text=True
        )
        assert '"deny"' in denied.stdout, denied.stderr
        codex, gemini, cursor = (hook_command(host) + flags for host in HOSTS)

        def write(path: str) -> str:
            tool_input = {"file_path": path, "content": "x"}
            event = {"hook_event_name": "BeforeTool", "session_id": "s", "cwd": REPO}
            return json.dumps(event | {"tool_name": "write_file", "tool_input": tool_input})

        cursor_stop = {"hook_event_name": "stop", "status": "completed", "loop_count": 0}
        commands = {
            "python -c pass": ([sys.executable, "-c", "pass"], ""),
            "SessionStart (digest each run)": (hook, event("SessionStart")),
            "UserPromptSubmit (nothing new)": (hook, event("UserPromptSubmit")),
            "Stop": (hook, event("Stop")),
            "PreToolUse Edit (free file)": (hook, edit(f"{REPO}/pkg7/mod3/new.py")),
            "PreToolUse Edit (claimed: deny)": (hook, edit(f"{REPO}/src/api/v1.py")),
            "codex SessionStart": (codex, event("SessionStart")),
            "codex UserPromptSubmit": (codex, event("UserPromptSubmit")),
            "codex Stop": (codex, event("Stop")),
            "gemini SessionStart": (gemini, event("SessionStart")),
            "gemini BeforeAgent": (gemini, event("BeforeAgent")),
            "gemini AfterAgent": (gemini, event("AfterAgent")),
            "gemini BeforeTool (claimed: deny)": (gemini, write(f"{REPO}/src/api/v1.py")),
            "cursor sessionStart": (cursor, event("sessionStart")),
            "cursor stop": (cursor, json.dumps(cursor_stop)),
        }
        for name, times in timed(commands, args.runs).items():
            report(name, times)
        held.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
