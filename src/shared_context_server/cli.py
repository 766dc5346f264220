"""Command line: `serve` (the default) speaks MCP on stdio; the other subcommands are the
operator's tools over the same file. Parsing and printing only: the work is in
`operations/`, the formatting in `terminal.py`."""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import anyio

from shared_context_server.blackboard.changes import DEFAULT_POLL_INTERVAL
from shared_context_server.blackboard.identity import check_name, check_process_id
from shared_context_server.blackboard.limits import DEFAULT_LIMITS
from shared_context_server.blackboard.maintenance import (
    DEFAULT_ARCHIVE_AFTER_DAYS,
    DEFAULT_AUDIT_RETENTION_DAYS,
    DEFAULT_INTERVAL_S,
)
from shared_context_server.blackboard.tokens import DEFAULT_TTL_S
from shared_context_server.config import (
    ENV_ADMIN,
    ENV_AGENT_ID,
    ENV_AGENT_TYPE,
    ENV_ALLOW_RAW_WRITES,
    ENV_ARCHIVE_AFTER,
    ENV_AUDIT_RETENTION,
    ENV_DB,
    ENV_LOG_LEVEL,
    ENV_MAINTENANCE_INTERVAL,
    ENV_MAX_CONTENT,
    ENV_MAX_MEMORY,
    ENV_POLL_INTERVAL,
    ENV_PUSH,
    ENV_STDIO,
    ENV_TOKEN_TTL,
    ENV_TOOLSETS,
    LOG_LEVELS,
    PRUNE_ARCHIVED_AFTER_DAYS,
    PUSH_MODES,
    STDIO_TRANSPORTS,
    resolve_db_path,
    resolve_settings,
)
from shared_context_server.errors import (
    BlackboardError,
    SessionNotFound,
    StorageError,
)
from shared_context_server.hook import HOSTS as HOOK_HOSTS
from shared_context_server.instructions import AGENT_INSTRUCTIONS
from shared_context_server.operations.client_config import CLIENTS, render_config, server_entry
from shared_context_server.storage.opener import default_db_path
from shared_context_server.storage.seam import Target
from shared_context_server.terminal import note

PROG = "shared-context-server"

# Subcommand -> one line of help; the README documents each (a test checks).
COMMANDS: dict[str, str] = {
    "serve": "serve MCP over stdio (the default when no subcommand is given)",
    "demo": "watch three agents, three real server processes, share one blackboard",
    "config": "print the configuration to paste into an MCP client",
    "hook": "the Claude Code, Codex, Gemini CLI and Cursor hooks: the agent's inbox as "
    "context at session start and on a prompt, a nudge when it stops, edits of files others "
    "claim refused (config CLIENT --hooks prints the wiring)",
    "doctor": "check the database file and list the server processes using it",
    "sessions": "list sessions with message counts and last activity",
    "claims": "list the claims agents hold (who, what, why, since, until); --release ID "
    "breaks one, audited as operator",
    "tail": "print a session's messages; --follow keeps printing new ones",
    "export": "write a session as JSON Lines (lossless, re-importable) or a Markdown transcript",
    "import": "load a session from an export, in batches; a rerun continues an interrupted one",
    "backup": "copy the database consistently while agents keep writing",
    "restore": "replace the database with a backup, checked first, with no server using it "
    "(the replaced file is kept beside it)",
    "dashboard": "a live, read-only view of the blackboard in the browser (sessions, "
    "transcripts, who is connected; --admin adds the audit log and memory)",
    "prune": "remove old archived sessions, expired memory and tokens, old audit entries "
    "(--dry-run shows what would go)",
}
CLIENT_NAMES = ("claude-desktop", "claude-code", "cursor", "codex", "gemini", "generic")
STATUSES = ("active", "completed", "archived", "all")


class _Version(argparse.Action):
    """`--version`: read from the package's metadata only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> NoReturn:
        from shared_context_server.about import package_version

        print(f"{PROG} {package_version()}")
        parser.exit(0)


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line on stderr (exit 2), like every other error here."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message} (--help lists the options)\n")


def _serve_flags() -> _Parser:
    # SUPPRESS: the same flags live on the top-level parser and on `serve`, and a
    # subparser's defaults must not erase a flag given before the subcommand.
    flags = _Parser(add_help=False)
    s = argparse.SUPPRESS
    flags.add_argument(
        "--db",
        default=s,
        metavar="PATH|URL",
        help=f"database file or postgresql:// URL ({ENV_DB}; default {default_db_path()})",
    )
    flags.add_argument(
        "--agent-id",
        default=s,
        help=f"this process's agent ({ENV_AGENT_ID}; default: the client's name)",
    )
    flags.add_argument(
        "--agent-type", default=s, help=f"agent type ({ENV_AGENT_TYPE}; default generic)"
    )
    flags.add_argument(
        "--admin", action="store_true", default=s, help=f"admin permission ({ENV_ADMIN}=1)"
    )
    flags.add_argument(
        "--max-memory-bytes",
        type=int,
        default=s,
        metavar="N",
        help=f"largest memory value as JSON ({ENV_MAX_MEMORY}; "
        f"default {DEFAULT_LIMITS.max_memory_bytes})",
    )
    flags.add_argument(
        "--max-content-chars",
        type=int,
        default=s,
        metavar="N",
        help=f"longest message content ({ENV_MAX_CONTENT}; "
        f"default {DEFAULT_LIMITS.max_content_chars})",
    )
    flags.add_argument(
        "--poll-interval",
        type=float,
        default=s,
        metavar="SECONDS",
        help=f"how often to look for other processes' commits ({ENV_POLL_INTERVAL}; "
        f"default {DEFAULT_POLL_INTERVAL:g})",
    )
    flags.add_argument(
        "--toolsets",
        default=s,
        metavar="LIST",
        help=f"core or minimal (a worker's six tools), plus records ({ENV_TOOLSETS}; default "
        "core; records alone drops the core tools)",
    )
    flags.add_argument(
        "--allow-raw-writes",
        action="store_true",
        default=s,
        help=f"let execute_raw_query change rows ({ENV_ALLOW_RAW_WRITES}=1)",
    )
    for flag, variable, text in (
        (
            "--token-ttl",
            ENV_TOKEN_TTL,
            f"seconds a sub-agent token lives (default {DEFAULT_TTL_S})",
        ),
        (
            "--archive-after-days",
            ENV_ARCHIVE_AFTER,
            f"archive sessions idle N days ({DEFAULT_ARCHIVE_AFTER_DAYS}; 0 never)",
        ),
        (
            "--audit-retention-days",
            ENV_AUDIT_RETENTION,
            f"keep audit N days ({DEFAULT_AUDIT_RETENTION_DAYS}; 0 forever)",
        ),
    ):
        flags.add_argument(flag, type=int, default=s, metavar="N", help=f"{text} ({variable})")
    flags.add_argument(
        "--maintenance-interval",
        type=float,
        default=s,
        metavar="SECONDS",
        help=f"seconds between maintenance rounds ({ENV_MAINTENANCE_INTERVAL}; "
        f"default {DEFAULT_INTERVAL_S:g})",
    )
    flags.add_argument(
        "--stdio",
        default=s,
        choices=STDIO_TRANSPORTS,
        help=f"auto, or threads for the SDK's stdio transport ({ENV_STDIO}; default auto)",
    )
    flags.add_argument(
        "--push",
        default=s,
        choices=PUSH_MODES,
        help=f"push news into the session as Claude Code channel events: channels (for the "
        f"agent) or channels-all (all in its sessions) ({ENV_PUSH}; default off)",
    )
    flags.add_argument(
        "--log-level",
        default=s,
        choices=LOG_LEVELS,
        type=str.upper,
        help=f"stderr log level ({ENV_LOG_LEVEL}; default WARNING)",
    )
    return flags


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 60:
        raise argparse.ArgumentTypeError(f"expected seconds from 0 to 60, got {text!r}")
    return value


def _db_flag() -> _Parser:
    flags = _Parser(add_help=False)
    flags.add_argument(
        "--db",
        default=argparse.SUPPRESS,
        metavar="PATH|URL",
        help=f"database file or postgresql:// URL ({ENV_DB})",
    )
    return flags


def _viewer_flags() -> _Parser:
    flags = _Parser(add_help=False)
    s = argparse.SUPPRESS
    who = flags.add_mutually_exclusive_group()
    who.add_argument("--as", dest="as_agent", default=s, metavar="AGENT", help="see as AGENT sees")
    who.add_argument("--admin", action="store_true", default=s, help="see every message")
    flags.add_argument(
        "--agent-type", default=s, metavar="TYPE", help="AGENT's type (default: its last post's)"
    )
    return flags


def build_parser() -> argparse.ArgumentParser:
    flags, db, viewer = _serve_flags(), _db_flag(), _viewer_flags()
    parser = _Parser(
        prog=PROG,
        parents=[flags],
        description="A shared blackboard for AI agents: an MCP server over stdio whose "
        "processes all share one SQLite file.",
    )
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("serve", parents=[flags], help=COMMANDS["serve"])
    demo = sub.add_parser("demo", help=COMMANDS["demo"])
    demo.add_argument(
        "--db",
        metavar="PATH|URL",
        help="keep the demo's blackboard in this file or PostgreSQL database "
        "(default: a temporary file, deleted after)",
    )
    demo.add_argument(
        "--pace",
        type=_seconds,
        default=0.5,
        metavar="SECONDS",
        help="pause between steps (default 0.5)",
    )

    # `config` takes serve's own flags (the same definitions) and writes those given into
    # the entry it prints, so anything a served process accepts can be configured.
    config = sub.add_parser("config", parents=[flags], help=COMMANDS["config"])
    config.add_argument("client", choices=CLIENT_NAMES, nargs="?")
    config.add_argument(
        "--hooks",
        action="store_true",
        help="the host's own hooks file: claude-code and gemini settings.json, codex "
        "config.toml, cursor hooks.json (inbox; claims at edit time but in Cursor)",
    )
    config.add_argument(
        "--auto-claim",
        action="store_true",
        help="with --hooks: an edit also claims its file for the agent",
    )
    config.add_argument(
        "--instructions",
        action="store_true",
        help="a paragraph for CLAUDE.md or AGENTS.md on working with the blackboard",
    )
    config.add_argument("--name", default="shared-context", help="the server's name in the client")
    config.add_argument(
        "--write",
        action="store_true",
        help="merge it into the client's own file instead of printing it (its other "
        "servers, hooks and settings stay)",
    )
    config.add_argument(
        "--file", type=Path, metavar="PATH", help="with --write: this file, not the client's usual"
    )
    config.add_argument(
        "--local",
        action="store_true",
        help="run this installation's executable, not uvx (for pipx or a clone)",
    )

    doctor = sub.add_parser("doctor", parents=[db], help=COMMANDS["doctor"])
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.add_argument("--quick", action="store_true", help="quick_check instead of integrity")

    sessions = sub.add_parser("sessions", parents=[db, viewer], help=COMMANDS["sessions"])
    sessions.add_argument("--status", choices=STATUSES, default="all", help="(default all)")
    sessions.add_argument("--json", action="store_true", help="machine-readable output")

    claims = sub.add_parser("claims", parents=[db], help=COMMANDS["claims"])
    claims.add_argument("--holder", help="only this agent's claims")
    claims.add_argument("--release", type=int, metavar="ID", help="break claim ID (admin)")
    claims.add_argument("--json", action="store_true", help="machine-readable output")
    tail = sub.add_parser("tail", parents=[db, viewer], help=COMMANDS["tail"])
    tail.add_argument("session_id", metavar="SESSION")
    tail.add_argument("-n", "--lines", type=int, default=20, metavar="N", help="latest N (20)")
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing until Ctrl-C")

    export = sub.add_parser("export", parents=[db, viewer], help=COMMANDS["export"])
    export.add_argument("session_id", metavar="SESSION")
    export.add_argument(
        "--format",
        choices=("jsonl", "json", "markdown"),
        help="jsonl (JSON Lines, any size), json (import reads it up to 32 MB) or markdown;"
        " default: json for -o *.json, markdown for -o *.md, else jsonl",
    )
    export.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    export.add_argument("--force", action="store_true", help="replace FILE if it exists")

    imp = sub.add_parser("import", parents=[db], help=COMMANDS["import"])
    imp.add_argument("file", metavar="FILE", help="a JSON Lines or JSON export ('-' reads stdin)")

    backup = sub.add_parser("backup", parents=[db], help=COMMANDS["backup"])
    backup.add_argument("path", metavar="PATH")
    backup.add_argument("--force", action="store_true", help="replace PATH if it exists")

    restore = sub.add_parser("restore", parents=[db], help=COMMANDS["restore"])
    restore.add_argument("backup", metavar="BACKUP", help="a file `backup` wrote")
    restore.add_argument(
        "--discard-old",
        action="store_true",
        help="do not keep the replaced file as FILE.before-restore-TIME beside it",
    )

    dashboard = sub.add_parser("dashboard", parents=[db, viewer], help=COMMANDS["dashboard"])
    dashboard.add_argument(
        "--host",
        help="address to listen on (default: a random 127.x.y.z of its own, where the system "
        "has one, else 127.0.0.1; this machine only)",
    )
    dashboard.add_argument(
        "--port", type=int, default=0, metavar="N", help="port (default: a free one)"
    )
    dashboard.add_argument("--open", action="store_true", help="open it in the web browser")

    prune = sub.add_parser("prune", parents=[db], help=COMMANDS["prune"])
    prune.add_argument("--dry-run", action="store_true", help="only say what would go")
    prune.add_argument(
        "--archived-older-than",
        type=float,
        default=PRUNE_ARCHIVED_AFTER_DAYS,
        metavar="DAYS",
        help=f"remove archived sessions last changed over DAYS ago ({PRUNE_ARCHIVED_AFTER_DAYS:g})",
    )
    prune.add_argument(
        "--audit-retention-days",
        type=int,
        metavar="N",
        help=f"remove audit entries older than N days ({ENV_AUDIT_RETENTION}, else "
        f"{DEFAULT_AUDIT_RETENTION_DAYS}; "
        "0 keeps them all)",
    )
    hook = sub.add_parser("hook", help=COMMANDS["hook"])
    hook.add_argument("host", choices=HOOK_HOSTS)
    hook.add_argument("--agent-id", help="the agent's id, as in its MCP entry")
    hook.add_argument("--agent-type", help="its type (agent_only messages)")
    hook.add_argument("--admin", action="store_true", help="it reads admin_only messages")
    hook.add_argument(
        "--db", metavar="PATH|URL", help=f"database file or postgresql:// URL ({ENV_DB})"
    )
    hook.add_argument(
        "--auto-claim", action="store_true", help="an allowed edit claims its file (PreToolUse)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["hook"] and not {"-h", "--help"} & set(argv):
        # The hook's own parser: it must never exit non-zero (entry.py skips this module).
        from shared_context_server.hook import main as hook

        return hook(argv[1:])
    args = build_parser().parse_args(argv)
    command = args.command or "serve"
    try:
        if command == "demo":
            from shared_context_server.demo import run_demo

            target = resolve_db_path(args.db) if args.db else None
            if isinstance(target, Path):
                target = target.absolute()
            return int(anyio.run(run_demo, target, args.pace))
        if command == "serve":
            return _serve(vars(args))
        db = resolve_db_path(getattr(args, "db", None))
        if command == "config":
            return _config(args, db)
        # Imported here: serving (every agent's start-up) never pays for the operator tools.
        from shared_context_server.operations.commands import HANDLERS

        return HANDLERS[command](args, db)
    except SessionNotFound as error:
        session_id = error.details.get("session_id")
        return _fail(f"no session {session_id!r} in this database; `{PROG} sessions` lists them.")
    except (StorageError, BlackboardError) as error:
        return _fail(str(error))
    except sqlite3.DatabaseError as error:
        return _fail(f"SQLite says: {error}. `{PROG} doctor` checks the file.")
    except BrokenPipeError:  # `tail ... | head`: the reader left; nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as error:
        where = f": {error.filename}" if error.filename else ""
        return _fail(f"{error.strerror or error}{where}")
    except UnicodeError as error:
        return _fail(f"the text is not valid Unicode ({error}); nothing was written.")
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # the command line's boundary: one line, never a traceback
        return _fail(f"unexpected {type(error).__name__}: {error}. Please report this.")


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def _serve(flags: dict[str, object]) -> int:
    settings = resolve_settings(flags)
    logging.basicConfig(
        stream=sys.stderr,
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from shared_context_server.server.app import serve_stdio

    interactive = sys.stdin.isatty()
    if interactive:  # a person, not a client, started it: say what it is and how to leave
        from shared_context_server.about import package_version

        note(
            f"{PROG} {package_version()}: an MCP server on stdin/stdout, which an MCP client "
            f"starts for each agent (`{PROG} config --help`); to watch agents share it, run "
            f"`{PROG} demo`. Ctrl-C quits."
        )
    try:
        anyio.run(serve_stdio, settings, interactive)
    except* KeyboardInterrupt:  # Ctrl-C before the server was listening for it
        if not interactive:
            raise
    except* (BrokenPipeError, ConnectionResetError):
        # The SDK's transport learns that the client left when a reply cannot be written.
        logging.getLogger(__name__).info("the client closed the connection; stopped")
    return 0


# serve's flags that server_args writes itself (in order, the file made absolute).
_IDENTITY_FLAGS = frozenset({"db", "agent_id", "agent_type", "admin"})


def _other_serve_flags(args: argparse.Namespace) -> list[str]:
    """Every other serve flag given to `config`, written back as `serve` reads it."""
    words: list[str] = []
    for action in _serve_flags()._actions:
        if action.dest in _IDENTITY_FLAGS or not hasattr(args, action.dest):
            continue
        flag = action.option_strings[-1]
        value = getattr(args, action.dest)
        text = f"{value:g}" if isinstance(value, float) else str(value)
        words += [flag] if action.nargs == 0 else [flag, text]
    return words


# Claude Code's channels reference: a channel of one's own is allowed per server, at start.
CHANNELS_NOTE = (
    "channels are a research preview of Claude Code (v2.1.80+): start it with "
    "`claude --dangerously-load-development-channels server:{name}` to hear the pushes"
)


def _config(args: argparse.Namespace, db: Target) -> int:
    agent_id = getattr(args, "agent_id", None)
    agent_type = getattr(args, "agent_type", None)
    if agent_id:
        check_process_id(agent_id, "--agent-id")
    if agent_type:
        check_name(agent_type, "--agent-type")
    # A value the server would refuse at start is refused here, by the same checks.
    resolve_settings({k: v for k, v in vars(args).items() if v is not None}, {})
    extra = _other_serve_flags(args)
    if args.instructions:
        print(textwrap.fill(AGENT_INSTRUCTIONS, width=88))
        note("# paste into CLAUDE.md or AGENTS.md; the server sends the same as instructions")
        return 0
    if args.client is None:
        return _fail(f"config needs a client ({', '.join(CLIENT_NAMES)}) or --instructions.")
    if args.file and not args.write:
        return _fail("--file goes with --write.")
    # Imported here: serving never pays for it.
    from shared_context_server.operations.host_config import HOOKS, HOSTS, render_codex

    explicit_db = db if getattr(args, "db", None) or os.environ.get(ENV_DB) else None
    admin = getattr(args, "admin", False)
    push = getattr(args, "push", None)
    if push and (args.hooks or args.client not in ("claude-code", "generic")):
        return _fail("--push is for claude-code (or generic): other hosts take no channel events.")
    if args.hooks:
        if args.client not in HOOKS:
            return _fail(f"--hooks is for {', '.join(HOOKS)}: other hosts have no such hooks.")
        if not agent_id:
            return _fail("--hooks needs --agent-id: the hook has no client name to go by.")
        if extra:
            return _fail(f"--hooks takes only the identity and --db, not {extra[0]}.")
        if args.auto_claim and args.client == "cursor":
            return _fail("--auto-claim: the Cursor hooks cannot see its edits, so cannot claim.")
        render, where = HOOKS[args.client]
        text = render(agent_id, agent_type, explicit_db, admin, args.local, args.auto_claim)
        if args.write:
            from shared_context_server.operations.config_write import write_hooks

            print(write_hooks(args.client, text, args.file))
            return 0
        print(text)
        note(f"# {where}")
        return 0
    if args.auto_claim:
        return _fail("--auto-claim goes with --hooks.")
    if args.client == "codex":
        text = render_codex(args.name, agent_id, agent_type, explicit_db, admin, args.local, extra)
        where = HOSTS["codex"]
    else:
        text = render_config(
            args.client,
            name=args.name,
            agent_id=agent_id,
            agent_type=agent_type,
            db=explicit_db,
            admin=admin,
            local=args.local,
            extra=extra,
        )
        where = CLIENTS[args.client]
    if args.write:
        from shared_context_server.operations.config_write import write_entry

        entry = server_entry(agent_id, agent_type, explicit_db, admin, args.local, extra)
        print(write_entry(args.client, args.name, entry, text, args.file))
    else:
        print(text)
        note(f"# {args.client}: {where}")
    if push and args.client == "claude-code":
        note(f"# {CHANNELS_NOTE.format(name=args.name)}")
    if not agent_id:
        note(
            "# no --agent-id: the agent will be named after the client, so two agents of "
            "one client would be one; give each its own --agent-id"
        )
    return 0
