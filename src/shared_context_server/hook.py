"""`shared-context-server hook claude-code`: the inbox in front of the model, from Claude
Code's hooks (https://code.claude.com/docs/en/hooks). `hook codex|gemini|cursor` do the
same from those hosts' events, in their answers (hook_hosts.py); described here in
Claude Code's terms.

Claude Code runs the command with the event as JSON on stdin (`hook_event_name`, and
`stop_hook_active` on Stop) and reads JSON from stdout on exit 0:

- SessionStart, UserPromptSubmit: `hookSpecificOutput.additionalContext`, a digest of at
  most 1,500 characters: messages for the agent newest first, then a count per session,
  "N more: call check_inbox". SessionStart shows all the agent has not read; a prompt
  shows only what no digest has mentioned yet, so the model is not told twice.
- Stop: `{"decision": "block", "reason": ...}` once per message for the agent that it has
  not read or not acknowledged, so the agent takes up a hand-off before it stops; never
  when `stop_hook_active` (Claude Code is already continuing because of a Stop hook), so
  it cannot loop.

The digest does not mark messages read: it shows snippets, and check_inbox hands out the
messages themselves; it records what it mentioned (`hinted_id`, `nudged_id`), which
check_inbox ignores. The hook runs on every prompt in a new process: it imports the
standard library, platformdirs and the visibility rule only, never the MCP SDK, and it
must never block a prompt: any failure (no file, a damaged one, no agent id) prints
nothing to stdout, one line to stderr, and exits 0.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys

from shared_context_server import hook_hosts as hosts
from shared_context_server.blackboard import news
from shared_context_server.message_text import name, quoted

# What the hook imports is what every prompt waits for: no pathlib, typing or dataclasses
# at run time (mypy takes any TYPE_CHECKING name as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

    from shared_context_server.blackboard.news import Mark

PROG = "shared-context-server hook"
HOSTS = hosts.HOSTS  # each host's events and answers: hook_hosts.py
MAX_DIGEST_CHARS = 1500
SNIPPET_CHARS = 160
MAX_ROWS = 200  # the newest news read per run; beyond, the digest says "200+"
INBOX_SCHEMA = 6  # migration 6 made inbox_marks
WRITE_WAIT_MS = 50  # the hook gives up recording what it showed rather than hold a prompt
# The server's variables (config.py) and default file (storage/opener.py): modules too heavy to
# import here; a test checks they agree.
ENV_DB = "SHARED_CONTEXT_DB"
ENV_AGENT_ID = "SHARED_CONTEXT_AGENT_ID"
ENV_AGENT_TYPE = "SHARED_CONTEXT_AGENT_TYPE"
ENV_ADMIN = "SHARED_CONTEXT_ADMIN"
APP_NAME = "shared-context-server"
DB_FILENAME = "shared-context.db"


class Skip(Exception):
    """Nothing for the model: the reason goes to stderr as one line."""


class Reader:
    """The agent whose inbox the hook reads (a blackboard.visibility.Reader)."""

    __slots__ = ("agent_id", "agent_type", "auto_claim", "host", "is_admin")

    def __init__(self, agent_id: str, agent_type: str, is_admin: bool) -> None:
        self.agent_id = agent_id
        self.agent_type = agent_type
        self.is_admin = is_admin
        self.host = "claude-code"  # which host's events and output (HOSTS)
        self.auto_claim = False  # an allowed edit also claims its file


def main(argv: Sequence[str]) -> int:
    """Run one hook event; always exit 0, since a hook must never block the user."""
    output = answer(list(argv))
    if output is None and argv and argv[0] in HOSTS:
        output = hosts.nothing(argv[0])
    if output is not None:
        print(json.dumps(output))
    return 0


def answer(argv: list[str]) -> dict[str, Any] | None:
    """run()'s answer, or None with one line on stderr when anything fails."""
    try:
        return run(argv, sys.stdin.read(), os.environ)
    except Skip as reason:
        print(f"{PROG}: {reason}", file=sys.stderr)
    except sqlite3.Error as error:
        print(f"{PROG}: the database cannot be read ({error}); run doctor", file=sys.stderr)
    except Exception as error:  # the hook's boundary: a prompt must go through regardless
        print(f"{PROG}: unexpected {type(error).__name__}: {error}", file=sys.stderr)
    return None


def parse_args(argv: list[str], environ: Mapping[str, str]) -> tuple[Reader, str]:
    """`claude-code|codex|gemini|cursor [--agent-id ID] [--agent-type T] [--admin] [--db PATH]
    [--auto-claim]`, over the environment like the server. Raises Skip."""
    if not argv or argv[0] not in HOSTS:
        raise Skip(f"usage: {PROG} {'|'.join(HOSTS)} --agent-id ID [--db PATH]")
    flags: dict[str, str] = {"host": argv[0]}
    admin = False
    rest = argv[1:]
    while rest:
        flag = rest.pop(0)
        if flag == "--admin":
            admin = True
        elif flag == "--auto-claim":
            flags[flag] = "1"
        elif flag in ("--agent-id", "--agent-type", "--db") and rest:
            flags[flag] = rest.pop(0)
        else:
            raise Skip(
                f"unknown argument {flag!r}; takes --agent-id, --agent-type, --admin, --db,"
                " --auto-claim"
            )
    agent_id = flags.get("--agent-id") or environ.get(ENV_AGENT_ID)
    if not agent_id:
        raise Skip(f"no agent id: give --agent-id or {ENV_AGENT_ID}, as the MCP entry does")
    if len(agent_id) > 128 or not agent_id.isprintable() or any(c.isspace() for c in agent_id):
        # The server refuses such an id too (identity.check_name); say so, not nothing.
        raise Skip(f"agent id {agent_id!r} is not 1-128 printable characters without spaces")
    agent_type = flags.get("--agent-type") or environ.get(ENV_AGENT_TYPE) or "generic"
    admin = admin or environ.get(ENV_ADMIN, "").strip().lower() in ("1", "true", "yes", "on")
    reader = Reader(agent_id, agent_type, admin)
    reader.host, reader.auto_claim = flags["host"], "--auto-claim" in flags
    return reader, _db_path(flags, environ)


def _db_path(flags: dict[str, str], environ: Mapping[str, str]) -> str:
    """The server's resolve_db_path, on the standard library. Raises Skip for a value that
    looks like a URL of another scheme, as the server refuses it."""
    raw = flags.get("--db") or environ.get(ENV_DB)
    if raw and _is_url(raw):
        scheme, sep, rest = raw.strip().partition("://")
        return scheme.lower() + sep + rest  # libpq knows only the lower-case scheme
    if raw and _looks_like_url(raw):
        # Only on this failure: the opener and its imports cost every prompt otherwise.
        from shared_context_server.errors import InvalidInput
        from shared_context_server.storage.opener import check_db_value

        try:
            check_db_value(raw, "--db" if flags.get("--db") else ENV_DB)
        except InvalidInput as error:
            raise Skip(error.message) from None
    if raw:
        return os.path.expanduser(raw)
    import platformdirs  # only when no --db: the default file's directory

    return os.path.join(platformdirs.user_data_dir(APP_NAME), DB_FILENAME)


def _is_url(raw: str) -> bool:
    return raw.strip().lower().startswith(("postgresql://", "postgres://"))


def _looks_like_url(raw: str) -> bool:
    # storage/opener.looks_like_url, copied: a test checks they agree.
    scheme, colon, _ = raw.strip().partition(":/")
    if not colon or len(scheme) < 2 or not (scheme[0].isascii() and scheme[0].isalpha()):
        return False
    return all(c.isascii() and (c.isalnum() or c in "+.-") for c in scheme)


class Blackboard:
    """The hook's connection: `conn` reads; `record(work)` runs work(conn) in a short
    transaction, or skips it when the database is busy (a repeat is harmless, a held
    prompt is not)."""

    def __init__(self, path: str) -> None:
        self._pg: Any = None
        self.version = news.ACK_SCHEMA  # PostgreSQL: migrated by the first server
        self.engine = "postgres" if _is_url(path) else "sqlite"
        if _is_url(path):
            self._open_postgres(path)
        else:
            self.conn: Any = connect(path)
            self.conn.row_factory = sqlite3.Row  # by position too, as news reads them
            self.version = self.conn.execute("PRAGMA user_version").fetchone()[0]

    def _open_postgres(self, url: str) -> None:
        # Imported only for a URL: a file's hook never loads the driver.
        from shared_context_server.errors import StorageError
        from shared_context_server.storage.postgres.connect import connect_sync
        from shared_context_server.storage.postgres.unit import PgConn

        try:
            self._pg = connect_sync(url)
        except StorageError as error:
            raise Skip(str(error)) from None
        self._pg.execute(f"SET lock_timeout = {WRITE_WAIT_MS}")
        self.conn = PgConn(self._pg)

    def record(self, work: Any, busy: str = "this digest may be repeated") -> Any:
        """work(conn)'s result, or None when the database is too busy to wait for."""
        if self._pg is not None:
            import psycopg

            try:
                with self._pg.transaction():
                    return work(self.conn)
            except psycopg.errors.LockNotAvailable:
                print(f"{PROG}: the database is busy; {busy}", file=sys.stderr)
            return None
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            print(f"{PROG}: the file is busy; {busy}", file=sys.stderr)
            return None
        try:
            result = work(self.conn)
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        return result

    def close(self) -> None:
        (self._pg or self.conn).close()


def connect(path: str) -> sqlite3.Connection:
    """The file, never created (checked first: a file: URI would cost pathlib or urllib).
    Raises Skip, sqlite3.Error."""
    if not os.path.isfile(path):
        raise Skip(f"no blackboard at {path}; start a server once, or pass its --db")
    conn = sqlite3.connect(path, isolation_level=None, timeout=0)
    conn.execute(f"PRAGMA busy_timeout = {WRITE_WAIT_MS}")
    conn.execute("PRAGMA synchronous = NORMAL")  # as the server: no fsync per commit in WAL
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version < INBOX_SCHEMA:
        raise Skip(f"{path} predates the inbox; start a server once to upgrade it")
    return conn


def run(argv: list[str], stdin: str, environ: Mapping[str, str]) -> dict[str, Any] | None:
    """The JSON to print for the event on `stdin`, or None. Raises Skip, sqlite3.Error."""
    try:
        payload = json.loads(stdin)
    except ValueError:
        raise Skip("stdin is not the JSON of a hook event") from None
    if not isinstance(payload, dict):
        raise Skip("stdin is not the JSON of a hook event")
    event = payload.get("hook_event_name")
    agent, path = parse_args(argv, environ)
    kind = hosts.kind(agent.host, event)
    if kind == hosts.EDIT:
        from shared_context_server import hook_edits as edits  # edits only

        files = hosts.edited_files(agent.host, payload)
        if not files:
            return None  # not an edit: nothing to decide
        board = Blackboard(path)
        try:
            return hosts.deny(agent.host, edits.decide(board, agent, files))
        finally:
            board.close()
    if kind is None:
        return None  # another event wired to this command: nothing to add
    if kind == hosts.STOP and hosts.continuing(agent.host, payload):
        return None  # already continuing because of a stop hook: let the agent stop
    board = Blackboard(path)
    try:
        if kind == hosts.STOP:
            stop = _stop(board, agent)
            return stop and hosts.stop(agent.host, stop["reason"])
        mark: Mark = "seen_id" if kind == hosts.START else "hinted_id"
        rows = news.brief_news(board.conn, agent, MAX_ROWS, mark)
        pending = _unacknowledged(board, agent, 5, fresh=False)
        if not rows and not pending:
            return None
        if rows:
            _record(board, agent, rows, "hinted_id")
        context = digest(agent.agent_id, rows, {p[0] for p in pending})
        return hosts.context(agent.host, str(event), context)
    finally:
        board.close()


def _stop(board: Blackboard, agent: Reader) -> dict[str, Any] | None:
    waiting = news.addressed_news(board.conn, agent, MAX_ROWS)
    pending = _unacknowledged(board, agent, MAX_ROWS, fresh=True)
    if not waiting and not pending:
        return None
    if waiting:
        _record(board, agent, waiting, "nudged_id")
    if pending:
        board.record(
            lambda conn: news.mark_nudged(conn, agent.agent_id, [p[0] for p in pending]),
            busy="this nudge may be repeated",
        )
        latest = pending[0]
        reason = (
            f"{len(pending)} message(s) addressed to you on the shared blackboard wait for "
            f"your acknowledgement, the latest #{latest[0]} from {name(latest[2])} in "
            f"{name(latest[1])}: {_snippet(latest[3])}. Read them (check_inbox), act on them, "
            "acknowledge them (acknowledge, or check_inbox with ack), then finish."
        )
    else:
        latest = waiting[0]
        reason = (
            f"{len(waiting)} message(s) addressed to you on the shared blackboard wait "
            f"unread, the latest from {name(latest[2])} in {name(latest[1])}: "
            f"{_snippet(latest[3])}. "
            "Call check_inbox, act on them, then finish."
        )
    return {"decision": "block", "reason": reason[:MAX_DIGEST_CHARS]}


def _unacknowledged(board: Blackboard, agent: Reader, limit: int, *, fresh: bool) -> list[Any]:
    if board.version < news.ACK_SCHEMA:
        return []  # a file from before acknowledgements
    return news.unacknowledged(board.conn, agent, limit, fresh=fresh)


def _record(board: Blackboard, agent: Reader, rows: list[Any], mark: Mark) -> None:
    """Remember what was mentioned."""
    shown = [(row[1], row[0]) for row in rows]

    def work(conn: Any) -> None:
        news.move_marks(conn, agent.agent_id, shown, mark)
        if mark == "nudged_id":  # a nudge mentions them too
            news.move_marks(conn, agent.agent_id, shown, "hinted_id")

    board.record(work)


def _snippet(content: str, most: int = SNIPPET_CHARS) -> str:
    """One quoted line: whitespace runs (line breaks too) made one space, then every
    control escaped, so no content starts a line of the digest."""
    text = " ".join(content.split())
    return quoted(text if len(text) <= most else text[: most - 1] + "…")


def digest(agent_id: str, rows: list[Any], awaiting: set[int] | None = None) -> str:
    """At most MAX_DIGEST_CHARS: hand-offs awaiting the agent's acknowledgement that it
    has already read, then messages for the agent newest first (marked when they await
    it), then the rest counted per session, then how many did not fit."""
    awaiting = awaiting or set()
    total = f"{len(rows)}+" if len(rows) >= MAX_ROWS else str(len(rows))
    for_you = [row for row in rows if row[4]]
    head = (
        f"Shared blackboard: {total} new message(s) for {agent_id}"
        + (f", {len(for_you)} addressed to you" if for_you else "")
        + ". Call check_inbox to read them."
    )
    if not rows:
        head = "Shared blackboard: nothing new."
    lines = [head]
    earlier = sorted(awaiting - {row[0] for row in rows}, reverse=True)
    if earlier:
        lines.append(
            "Awaiting your acknowledgement (acknowledge, or check_inbox with ack): "
            + ", ".join(f"#{i}" for i in earlier)
        )
    shown = 0
    budget = MAX_DIGEST_CHARS - 60  # room for the closing "N more" line
    for row in for_you:
        mark = "for you, acknowledge it" if row[0] in awaiting else "for you"
        line = f"- {mark}: #{row[0]} from {name(row[2])} in {name(row[1])}: {_snippet(row[3])}"
        if sum(len(x) + 1 for x in lines) + len(line) > budget:
            break
        lines.append(line)
        shown += 1
    sessions: dict[str, list[Any]] = {}
    for row in rows:
        if not row[4]:
            sessions.setdefault(row[1], []).append(row)
    for session_id, group in sessions.items():  # the session with the newest news first
        senders = ", ".join(dict.fromkeys(name(row[2]) for row in group))
        purpose = _snippet(group[0][5], 60)
        latest = group[0]
        line = (
            f"- {name(session_id)} {purpose}: {len(group)} new from {senders}; "
            f"latest #{latest[0]} {name(latest[2])}: {_snippet(latest[3], 100)}"
        )
        if sum(len(x) + 1 for x in lines) + len(line) > budget:
            break
        lines.append(line)
        shown += len(group)
    if shown < len(rows):
        plus = "+" if len(rows) >= MAX_ROWS else ""
        lines.append(f"{len(rows) - shown}{plus} more: call check_inbox.")
    return "\n".join(lines)[:MAX_DIGEST_CHARS]
