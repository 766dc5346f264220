"""`doctor`: is this file a healthy blackboard, and who is using it?

Inspection never changes a damaged or unusual file: the file's header and a read-only
connection answer everything. Only a healthy file (WAL, intact, current schema) is opened
for writing, to delete the heartbeat rows of processes that died without cleaning up.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import stat
import sys
from pathlib import Path
from typing import Any

import anyio

from shared_context_server.about import UPGRADE, package_version
from shared_context_server.blackboard.processes import (
    SELECT_PROCESSES,
    is_live,
    live_processes,
    process_dict,
    stale_cutoff,
)
from shared_context_server.storage.sqlite.database import BUSY_TIMEOUT_MS, Database
from shared_context_server.storage.sqlite.files import network_filesystem, not_a_file
from shared_context_server.storage.sqlite.migrate import WAL_SIZE_LIMIT
from shared_context_server.storage.sqlite.schema import SCHEMA_VERSION

HEADER = b"SQLite format 3\x00"
# Under this much free space SQLite cannot be relied on to commit (decimal units, as the
# sizes doctor and backup print).
FULL_BELOW = 1_000_000
LOW_BELOW = 100_000_000
TABLES = "SELECT name FROM sqlite_master WHERE type = 'table'"
# `--quick` still runs the full integrity_check on a file this small (well under a second):
# quick_check never compares an index with its table, so it passes a file whose indexes
# are damaged, and a verdict of "ok" must mean the full check passed.
QUICK_FULL_BELOW = 100_000_000


class Report:
    """What doctor found: facts, problems (non-zero exit) and warnings, each with a fix."""

    def __init__(self, path: Path) -> None:
        self.data: dict[str, Any] = {
            "path": str(path),
            "package_version": package_version(),
            "expected_schema_version": SCHEMA_VERSION,
            "exists": path.is_file(),
            "problems": [],
            "warnings": [],
        }

    def problem(self, what: str, fix: str) -> None:
        self.data["problems"].append({"problem": what, "fix": fix})

    def warning(self, what: str, fix: str) -> None:
        self.data["warnings"].append({"warning": what, "fix": fix})

    @property
    def healthy(self) -> bool:
        return not self.data["problems"]


def _free_space(report: Report, path: Path) -> None:
    free = shutil.disk_usage(path.parent).free
    report.data["free_bytes"] = free
    if free < FULL_BELOW:
        report.problem(
            f"the disk holding the file is full ({free:,} bytes free): every write fails "
            "with STORAGE_FULL.",
            f"free space on the filesystem of {path.parent} (`df -h '{path.parent}'`)",
        )
    elif free < LOW_BELOW:
        report.warning(
            f"the disk holding the file is nearly full ({free / 1e6:.0f} MB free).",
            "free some space before writes start failing with STORAGE_FULL",
        )


def _holders(path: Path) -> list[dict[str, Any]]:
    """Processes holding an open file that was at `path` (or its -wal, -shm) but is no
    longer the file there: deleted, replaced or moved while they ran, or the database
    truncated under them (Linux /proc)."""
    names = {str(path) + suffix: suffix for suffix in ("", "-wal", "-shm")}
    found: list[dict[str, Any]] = []
    try:
        pids = [entry for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:
        return found
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}").removesuffix(" (deleted)")
                if target not in names:
                    continue
                held = os.stat(f"{fd_dir}/{fd}")
            except OSError:
                continue
            try:
                now = os.stat(target)
                current: tuple[int, int] | None = (now.st_dev, now.st_ino)
            except OSError:
                current = None
            if current != (held.st_dev, held.st_ino):
                what = "deleted" if current is None else "replaced"
                found.append({"pid": int(pid), "file": target, "what": what})
            elif not names[target] and held.st_size < 512:
                found.append({"pid": int(pid), "file": target, "what": "truncated"})
    return list({(h["pid"], h["file"]): h for h in found}.values())


def _stale_holders(report: Report, path: Path) -> None:
    holders = _holders(path)
    report.data["stale_holders"] = holders
    if holders:
        pids = sorted({h["pid"] for h in holders})
        files = sorted({f"{h['file']} ({h['what']})" for h in holders})
        report.problem(
            f"process(es) {', '.join(map(str, pids))} still hold a file that is no longer at "
            f"this path: {'; '.join(files)}. Their servers refuse writes (STORAGE_REPLACED).",
            "if the -wal or -shm was deleted, the database is fine (each server writes the "
            "deleted -wal back when it notices): restart the servers using it; if the "
            "database itself was deleted or replaced, restart those agents' servers to use "
            "the file now at the path (what they wrote before the change is only in the old "
            "file); to put a backup in place, use `shared-context-server restore`",
        )


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _permissions(report: Report, path: Path) -> None:
    if sys.platform == "win32":
        # Windows has no permission bits: st_mode only mirrors the read-only attribute,
        # so every file would look open to all. Access is the profile folder's ACL.
        report.data["permissions"] = {}
        return
    modes: dict[str, str] = {}
    for suffix in ("", "-wal", "-shm"):
        part = Path(f"{path}{suffix}")
        if part.exists():
            mode = stat.S_IMODE(part.stat().st_mode)
            modes["file" + suffix] = f"{mode:04o}"
            if mode & 0o077:
                report.problem(
                    f"{part} is readable or writable by other users (mode {mode:04o}).",
                    f"chmod 600 '{part}'",
                )
    directory = path.parent
    mode = stat.S_IMODE(directory.stat().st_mode)
    modes["directory"] = f"{mode:04o}"
    if mode & 0o022 and not mode & stat.S_ISVTX:
        report.problem(
            f"{directory} is writable by other users (mode {mode:04o}): they could replace "
            "the database.",
            f"chmod go-w '{directory}', or move the database (--db) to a private directory",
        )
    report.data["permissions"] = modes


def _header(report: Report, path: Path) -> bool:
    """Journal mode from the file header (bytes 18-19: 2 = WAL); False if not SQLite."""
    try:
        with path.open("rb") as f:
            header = f.read(100)
    except OSError as error:  # /proc/self/mem, a disk failing
        report.data["journal_mode"] = None
        report.problem(
            f"the file cannot be read ({error.strerror or error}).",
            "point --db at the database file; if it is the right one, check the disk",
        )
        return False
    if not header:
        report.data["journal_mode"] = None
        report.warning(
            "the file is empty: no server has initialised it yet.",
            "start any agent's server on it (or `shared-context-server demo --db FILE`)",
        )
        return False
    if not header.startswith(HEADER) or len(header) < 100:
        report.data["journal_mode"] = None
        report.problem(
            "the file is not an SQLite database, or its header is damaged.",
            "restore it from a backup (`shared-context-server restore BACKUP`) or point "
            "--db at the right file",
        )
        return False
    wal = header[18] == 2 and header[19] == 2
    report.data["journal_mode"] = "wal" if wal else "rollback"
    if not wal:
        report.problem(
            "the file is not in WAL mode (its journal mode is a rollback journal): it was "
            "made or changed by another tool, and processes sharing it will block each other.",
            "with every process closed, run `sqlite3 FILE 'PRAGMA journal_mode=WAL'` (a "
            "server also switches it when it next opens the file); if it stays in rollback "
            "mode, the filesystem lacks shared memory: move the file to a local disk",
        )
    return True


def _inspect(report: Report, path: Path, quick: bool) -> list[sqlite3.Row]:
    """Integrity, schema and counts over a read-only connection; the heartbeat rows."""
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        partial = quick and _size(path) >= QUICK_FULL_BELOW
        check = "quick_check" if partial else "integrity_check"
        try:
            results = [str(row[0]) for row in conn.execute(f"PRAGMA {check}")]
        except sqlite3.DatabaseError as error:
            results = [str(error)]
        report.data["integrity"] = (
            ("quick_check ok" if partial else "ok") if results == ["ok"] else results[:10]
        )
        if partial and results == ["ok"]:
            report.warning(
                "quick_check found no damaged page, but it does not compare indexes with "
                "their tables, so the file is not known to be intact.",
                "run doctor without --quick for the full integrity check",
            )
        if results != ["ok"]:
            report.problem(
                f"the integrity check failed: {results[0]}",
                "stop the agents, then restore the newest backup (`shared-context-server "
                "restore BACKUP`); to salvage what is left, "
                "`sqlite3 FILE .recover | sqlite3 NEW.db` and import sessions from NEW.db",
            )
            return []
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        report.data["schema_version"] = version
        tables = {row[0] for row in conn.execute(TABLES)}
        if version > SCHEMA_VERSION:
            report.problem(
                f"schema version {version} is newer than this release understands "
                f"({SCHEMA_VERSION}).",
                UPGRADE,
            )
        elif "sessions" not in tables:
            if tables:
                report.problem(
                    "this SQLite file is not a shared-context-server database.",
                    "point --db or SHARED_CONTEXT_DB at the blackboard file",
                )
            return []
        elif version < SCHEMA_VERSION:
            report.warning(
                f"schema version {version}; this release uses {SCHEMA_VERSION}.",
                "nothing to do: the next server to start migrates the file",
            )
        for table in ("sessions", "messages"):
            if table in tables:
                # Table names from the constant tuple above.
                count = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
                report.data[table] = int(count[0])
        if "server_processes" not in tables:
            return []
        return list(conn.execute(SELECT_PROCESSES))
    except sqlite3.DatabaseError as error:
        report.problem(
            f"SQLite cannot read the file: {error}.",
            "restore it from a backup, or salvage with `sqlite3 FILE .recover`",
        )
        return []
    finally:
        conn.close()


def inspect(path: Path, quick: bool = False) -> tuple[Report, list[sqlite3.Row]]:
    """Everything that can be learnt without writing: the report and the heartbeat rows."""
    report = Report(path)
    data = report.data
    _stale_holders(report, path)
    if path.parent.is_dir():
        _free_space(report, path)
    if (kind := not_a_file(path)) is not None:
        report.problem(
            f"{path} is not a database file: {kind}.",
            "point --db / SHARED_CONTEXT_DB at the database file",
        )
        return report, []
    if not data["exists"]:
        report.problem(
            f"no database at {path}.",
            "check --db / SHARED_CONTEXT_DB; a server creates the file when it first starts",
        )
        return report, []
    data["size_bytes"] = _size(path)
    data["wal_bytes"] = _size(Path(f"{path}-wal"))
    data["shm_bytes"] = _size(Path(f"{path}-shm"))
    fs_type = network_filesystem(path)
    data["network_filesystem"] = fs_type
    if fs_type:
        report.problem(
            f"the file is on a network filesystem ({fs_type}); SQLite WAL needs a local disk "
            "and can corrupt or miss data there.",
            "move the database to a local disk (--db or SHARED_CONTEXT_DB)",
        )
    if data["wal_bytes"] > WAL_SIZE_LIMIT:
        report.warning(
            f"the WAL file is {data['wal_bytes'] / 1e6:.0f} MB: a long-lived read is "
            "holding back checkpoints.",
            "it shrinks once every server has closed the file; restart stuck agents",
        )
    if not _header(report, path):
        return report, []
    rows = _inspect(report, path, quick)
    if "sessions" in data:
        # Only for a file known to be a blackboard: advice to chmod some other file (a
        # mistyped --db) could do harm.
        _permissions(report, path)
    return report, rows


async def diagnose(path: Path, *, quick: bool = False) -> dict[str, Any]:
    """Everything doctor reports about the file at `path` (absolute); `ok` is False on any
    problem."""
    report, rows = await anyio.to_thread.run_sync(inspect, path, quick)
    data = report.data
    host, cutoff = socket.gethostname(), stale_cutoff("sqlite")
    data["processes"] = [process_dict(r) for r in rows if is_live(r, cutoff, host)]
    if rows and report.healthy and data.get("schema_version") == SCHEMA_VERSION:
        db = await Database.open(path, migrate=False)
        try:  # forgets the rows of processes that died without cleaning up
            data["processes"] = await live_processes(db)
        finally:
            await db.close()
    data["ok"] = report.healthy
    return data
