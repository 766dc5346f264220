"""The operator's subcommands (doctor, sessions, tail, export, import, backup, restore,
prune):
each takes the parsed arguments and the database path and returns the exit status.

Kept apart from cli.py so that serving, which every agent's client starts, does not import
them.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from shared_context_server.blackboard.audit import OPERATOR
from shared_context_server.blackboard.identity import Agent
from shared_context_server.blackboard.sessions import fetch_session
from shared_context_server.config import audit_retention
from shared_context_server.errors import BlackboardError, Conflict, InvalidInput
from shared_context_server.message_text import one_line
from shared_context_server.operations.backup import backup
from shared_context_server.operations.doctor import diagnose
from shared_context_server.operations.import_read import MAX_JSON_BYTES, ExportReader, open_input
from shared_context_server.operations.import_write import import_messages
from shared_context_server.operations.opening import open_existing
from shared_context_server.operations.prune import PruneOptions, prune
from shared_context_server.operations.restore import restore
from shared_context_server.operations.transfer import (
    Exported,
    export_session,
    form_for,
    partial_file,
)
from shared_context_server.operations.viewers import ADMIN_VIEWER, choose_viewer, describe
from shared_context_server.operations.watch import follow, latest_messages, session_overview
from shared_context_server.storage.opener import is_postgres_url, open_store, shown
from shared_context_server.storage.seam import Store, Target, passwordless
from shared_context_server.storage.sqlite.schema import SCHEMA_VERSION
from shared_context_server.terminal import (
    MessagePrinter,
    Progress,
    claims_table,
    counted,
    doctor_report,
    note,
    prune_report,
    sessions_table,
    size_text,
)


def _doctor(args: argparse.Namespace, db: Target) -> int:
    if is_postgres_url(db):
        from shared_context_server.operations import postgres_commands

        data = anyio.run(postgres_commands.diagnose, str(db))
        print(json.dumps(data, indent=2) if args.json else postgres_commands.report(data))
        return 0
    data = anyio.run(partial(diagnose, Path(db).absolute(), quick=args.quick))
    print(json.dumps(data, indent=2) if args.json else doctor_report(data))
    return 0 if data["ok"] else 1


async def _viewer(database: Store, args: argparse.Namespace) -> Agent:
    return await choose_viewer(
        database,
        getattr(args, "as_agent", None),
        getattr(args, "agent_type", None),
        getattr(args, "admin", False),
    )


def _sessions(args: argparse.Namespace, db: Target) -> int:
    async def run() -> tuple[Agent, list[dict[str, Any]]]:
        database = await open_existing(db)
        try:
            viewer = await _viewer(database, args)
            return viewer, await session_overview(database, viewer, args.status)
        finally:
            await database.close()

    viewer, rows = anyio.run(run)
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    elif rows:
        print(sessions_table(rows))
        if viewer is not ADMIN_VIEWER:  # as tail and export say: the counts are a view
            note(f"MSGS counts {describe(viewer)}")
    else:
        note(f"no {'' if args.status == 'all' else args.status + ' '}sessions in {shown(db)}")
    return 0


def _claims(args: argparse.Namespace, db: Target) -> int:
    from shared_context_server.blackboard import claims

    async def run() -> dict[str, Any]:
        database = await open_existing(db)
        try:
            if args.release is not None:
                return await claims.break_claim(database, args.release)
            return await claims.list_claims(database, OPERATOR, cwd=os.getcwd(), holder=args.holder)
        finally:
            await database.close()

    data = anyio.run(run)
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    elif args.release is not None:
        (gone,) = data["released"]
        print(f"released claim {gone['id']} on {gone['target']}, held by {gone['holder']}")
    elif data["claims"]:
        print(claims_table(data["claims"]))
    else:
        note(f"no claims in {shown(db)}")
    return 0


def _tail(args: argparse.Namespace, db: Target) -> int:
    if args.lines < 0:
        raise InvalidInput("-n must be 0 or more.")

    async def run() -> None:
        database = await open_existing(db)
        try:
            viewer = await _viewer(database, args)
            session = await fetch_session(database, args.session_id)
            printer = MessagePrinter()
            # The header goes where the lines go: a saved or piped transcript keeps it.
            printer.header(f"{session['id']} [{session['status']}] {one_line(session['purpose'])}")
            printer.header(f"showing {describe(viewer)}")
            latest = await latest_messages(database, viewer, args.session_id, args.lines or 1)
            for message in latest if args.lines else []:
                printer.print(message)
            if args.follow:
                after = latest[-1]["id"] if latest else 0
                await _follow(database, viewer, args.session_id, after, printer)
        finally:
            await database.close()

    anyio.run(run)
    return 0


async def _follow(
    database: Store, viewer: Agent, session_id: str, after: int, printer: MessagePrinter
) -> None:
    """Print new messages until Ctrl-C (or SIGTERM), then return quietly."""
    async with anyio.create_task_group() as tg:

        async def stop_on_signal() -> None:
            try:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        tg.cancel_scope.cancel()
            except NotImplementedError:
                # Windows' event loop takes no signal handlers: Ctrl-C arrives as
                # KeyboardInterrupt instead, which main() turns into exit 130.
                return

        tg.start_soon(stop_on_signal)
        database.want_news(True)  # PostgreSQL's commits are heard, not looked for
        tg.start_soon(database.listen)
        async for message in follow(database, viewer, session_id, after):
            printer.print(message)


def _export(args: argparse.Namespace, db: Target) -> int:
    if args.output is not None:  # checked first: a bad path fails before any work
        wanted = Path(args.output).expanduser().absolute()
        if wanted.is_dir():
            raise InvalidInput(f"-o {wanted} is a directory; name a file inside it.")
        if not wanted.parent.is_dir():
            raise InvalidInput(f"{wanted.parent} is not a directory; create it first.")
        if os.path.lexists(wanted) and not args.force:
            # A file, a FIFO, a device or a link: replaced only when asked, as `backup` does.
            raise Conflict(f"{wanted} already exists; pass --force to replace it.")
    form = form_for(args.output, args.format)
    progress = Progress("exported messages")

    async def run(write: Callable[[str], object]) -> Exported:
        database = await open_existing(db)
        try:
            viewer = await _viewer(database, args)
            return await export_session(
                database, viewer, args.session_id, write, form, progress.update
            )
        finally:
            await database.close()

    if args.output is None:
        exported = anyio.run(run, sys.stdout.write)
        progress.finish()
    else:
        target = Path(args.output).expanduser().absolute()
        with partial_file(target) as out:
            exported = anyio.run(run, out.write)
        progress.finish()
    if not exported.complete:
        view = (
            "public messages"
            if exported.view == "public"
            else "what " + exported.view.removeprefix("agent:") + " can see"
        )
        note(f"note: this export holds only {view}; --admin exports every message.")
    if args.output is not None:
        size = target.stat().st_size
        note(f"exported {counted(exported.messages, 'messages')} of {args.session_id} to {target}")
        if form == "json" and size > MAX_JSON_BYTES:
            note(
                f"note: at {size_text(size)} this JSON is larger than import reads whole "
                f"({size_text(MAX_JSON_BYTES)}); export as JSON Lines (--format jsonl) to "
                "import it."
            )
    return 0


def _import(args: argparse.Namespace, db: Target) -> int:
    stream, source = open_input(args.file)
    with stream:
        checking = Progress("checked messages")
        total = 0
        try:
            reader = ExportReader(stream, source)
            for total, _ in enumerate(reader.messages(), 1):  # every line, before any write
                if total % 1000 == 0:
                    checking.update(total)
        except InvalidInput as error:
            raise InvalidInput(error.message.rstrip(".") + "; nothing was written.") from None
        finally:
            checking.finish()
        reader.rewind()
        progress = Progress("imported messages")
        written = 0

        def advance(done: int) -> None:
            nonlocal written
            written = done
            progress.update(done, total)

        async def run() -> dict[str, Any]:
            database = await open_store(db)
            try:
                return await import_messages(
                    database,
                    reader.header,
                    reader.messages(),
                    advance,
                )
            finally:
                await database.close()

        rerun = "run the same import again to continue from there"
        try:
            result = anyio.run(run)
        except BlackboardError as error:  # busy, a full disk; or the file changed meanwhile
            progress.finish()
            kept = f"{counted(written, 'messages')} were written and kept; " if written else ""
            raise type(error)(
                f"{error.message.rstrip('.')}; {kept}{rerun}.", **error.details
            ) from None
        except KeyboardInterrupt:
            progress.finish()
            note(f"interrupted after {counted(written, 'messages')}; {rerun}.")
            raise
        progress.finish()
    _report_import(result, db)
    return 0


def _report_import(result: dict[str, Any], db: Target) -> None:
    session_id = result["session_id"]
    if result["already_imported"]:
        print(
            f"this file was imported before, as session {session_id} "
            f"({counted(result['messages'], 'messages')}) in {shown(db)}: nothing added"
        )
        return
    resumed = " (continuing an interrupted import)" if result["resumed"] else ""
    print(
        f"imported session {session_id}: {counted(result['messages'], 'messages')} "
        f"into {shown(db)}{resumed}"
    )
    if session_id != result["original_session_id"]:
        print(
            f"session {result['original_session_id']} already exists there, so the import "
            f"got the new id {session_id}"
        )
    if result["dropped_reply_links"]:
        print(
            f"{counted(result['dropped_reply_links'], 'reply-to links')} pointed at messages "
            "the file does not hold (a narrower export): dropped"
        )
    if not result["complete"]:
        print(f"the file was exported with the '{result['view']}' view: not every message")


def _backup(args: argparse.Namespace, db: Target) -> int:
    if is_postgres_url(db):
        raise InvalidInput(
            "backup copies a SQLite file; back up PostgreSQL with its own tool: "
            f"pg_dump --format=custom --file=FILE '{passwordless(str(db))}' (the password "
            "from ~/.pgpass or PGPASSWORD)."
        )
    db = Path(db)
    started = time.monotonic()
    size = db.stat().st_size if db.is_file() else 0
    if size > 50_000_000:
        note(f"copying {size_text(size)} from {db} ...")
    result = backup(db, Path(args.path), force=args.force)
    print(
        f"backed up {db} to {result['path']}: {counted(result['sessions'], 'sessions')}, "
        f"{counted(result['messages'], 'messages')}, {size_text(result['bytes'])}, integrity ok "
        f"({time.monotonic() - started:.1f} s)"
    )
    return 0


def _restore(args: argparse.Namespace, db: Target) -> int:
    if is_postgres_url(db):
        raise InvalidInput(
            "restore replaces a SQLite file; restore PostgreSQL with its own tool: "
            f"pg_restore --clean --if-exists --dbname='{passwordless(str(db))}' FILE (the "
            "password from ~/.pgpass or PGPASSWORD)."
        )
    result = restore(Path(args.backup), Path(db), keep=not args.discard_old)
    print(
        f"restored {result['path']} from {result['backup']}: "
        f"{counted(result['sessions'], 'sessions')}, {counted(result['messages'], 'messages')}"
        f", schema version {result['schema_version']}, integrity ok"
    )
    if result["kept"]:
        wal = " (with its -wal, which could not be written back)" if result["kept_wal"] else ""
        print(f"the file it replaced is kept as {result['kept']}{wal}; delete it when done")
    else:
        print("the file it replaced was discarded (--discard-old)")
    if result["schema_version"] < SCHEMA_VERSION:
        print(f"the next server to start migrates it to schema version {SCHEMA_VERSION}")
    print("agents' servers started from now on use the restored file")
    return 0


def _prune(args: argparse.Namespace, db: Target) -> int:
    if not 0 <= args.archived_older_than < 1e6:
        raise InvalidInput("--archived-older-than must be a number of days from 0 to 999999.")
    retention = audit_retention({"audit_retention_days": args.audit_retention_days})
    progress = Progress("pruned")
    options = PruneOptions(
        archived_older_than_days=args.archived_older_than, audit_retention_days=retention
    )

    async def run() -> dict[str, dict[str, int]]:
        database = await open_existing(db)
        try:
            return await prune(
                database,
                options,
                dry_run=args.dry_run,
                progress=lambda counts: progress.update(sum(counts.values())),
            )
        finally:
            await database.close()

    report = anyio.run(run)
    progress.finish()
    print(prune_report(report, args.dry_run))
    return 0


def _dashboard(args: argparse.Namespace, db: Target) -> int:
    # Imported here: the web stack loads only for this command.
    from shared_context_server.dashboard.command import run_dashboard

    return run_dashboard(args, db)


HANDLERS: dict[str, Callable[[argparse.Namespace, Target], int]] = {
    "doctor": _doctor,
    "sessions": _sessions,
    "claims": _claims,
    "tail": _tail,
    "export": _export,
    "import": _import,
    "backup": _backup,
    "restore": _restore,
    "prune": _prune,
    "dashboard": _dashboard,
}
