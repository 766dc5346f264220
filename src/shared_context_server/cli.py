"""Command line: `serve` (the default) speaks MCP on stdio; `demo` shows three agents at work."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio

from shared_context_server.config import (
    ENV_ADMIN,
    ENV_AGENT_ID,
    ENV_AGENT_TYPE,
    ENV_ALLOW_RAW_WRITES,
    ENV_TOOLSETS,
    resolve_settings,
)
from shared_context_server.errors import BlackboardError, StorageError

PROG = "shared-context-server"

# Subcommand -> one line of help; the README documents each (a test checks).
COMMANDS: dict[str, str] = {
    "serve": "serve MCP over stdio (the default when no subcommand is given)",
    "demo": "watch three agents, three real server processes, share one blackboard",
}


def _serve_flags() -> argparse.ArgumentParser:
    # SUPPRESS: the same flags live on the top-level parser and on `serve`, and a
    # subparser's defaults must not erase a flag given before the subcommand.
    flags = argparse.ArgumentParser(add_help=False)
    s = argparse.SUPPRESS
    flags.add_argument("--db", default=s, metavar="PATH", help="database file")
    flags.add_argument("--agent-id", default=s, help=f"this process's agent ({ENV_AGENT_ID})")
    flags.add_argument("--agent-type", default=s, help=f"agent type ({ENV_AGENT_TYPE})")
    flags.add_argument(
        "--admin", action="store_true", default=s, help=f"admin permission ({ENV_ADMIN}=1)"
    )
    flags.add_argument("--max-content-chars", type=int, default=s, metavar="N")
    flags.add_argument(
        "--toolsets", default=s, metavar="LIST", help=f"core,records ({ENV_TOOLSETS})"
    )
    flags.add_argument(
        "--allow-raw-writes",
        action="store_true",
        default=s,
        help=f"let execute_raw_query change rows ({ENV_ALLOW_RAW_WRITES}=1)",
    )
    flags.add_argument(
        "--log-level", default=s, choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper
    )
    return flags


def build_parser() -> argparse.ArgumentParser:
    flags = _serve_flags()
    parser = argparse.ArgumentParser(
        prog=PROG,
        parents=[flags],
        description="A shared blackboard for AI agents: an MCP server over stdio whose "
        "processes all share one SQLite file.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("serve", parents=[flags], help=COMMANDS["serve"])
    demo = sub.add_parser("demo", help=COMMANDS["demo"])
    demo.add_argument(
        "--db",
        metavar="PATH",
        help="keep the demo's blackboard in this file (default: a temporary one, deleted after)",
    )
    demo.add_argument(
        "--pace", type=float, default=0.5, metavar="SECONDS", help="pause between steps"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "serve"
    try:
        if command == "demo":
            from shared_context_server.demo import run_demo

            db = Path(args.db).expanduser().absolute() if args.db else None
            return int(anyio.run(run_demo, db, args.pace))
        return _serve(vars(args))
    except (StorageError, BlackboardError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _serve(flags: dict[str, object]) -> int:
    settings = resolve_settings(flags)
    logging.basicConfig(
        stream=sys.stderr,
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from shared_context_server.server.app import serve_stdio

    anyio.run(serve_stdio, settings)
    return 0
