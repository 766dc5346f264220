"""`restore BACKUP`: put a backup in place of the file, with no server using it.

The order matters, because the file at the path is more than one file:
1. The backup is copied (SQLite's backup API, so a -wal beside it counts) to a partial file
   in the target's directory and checked there: integrity, a blackboard, a schema this
   release knows. The live file is not touched until this has passed.
2. Restoring refuses while servers use the file (their heartbeat rows, and on Linux any
   process holding it open): their next writes would go to the old file and be lost.
3. The live file's WAL is checkpointed (TRUNCATE) and its write lock held from then on, so
   every acknowledged write is in the main file and none can land in the WAL meanwhile.
4. The main file is copied aside (unless told not to), the checked copy renamed over the
   path (os.replace: atomic), and the old, empty -wal and -shm removed: left beside the
   restored file, SQLite would read the old file's pages through them.
5. The file now at the path is opened and checked again.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared_context_server.blackboard.processes import (
    SELECT_PROCESSES,
    is_live,
    process_dict,
    stale_cutoff,
)
from shared_context_server.errors import Conflict, InvalidInput, NotFound
from shared_context_server.storage.sqlite.database import BUSY_TIMEOUT_MS
from shared_context_server.storage.sqlite.faults import foreign_file, upgrade_message
from shared_context_server.storage.sqlite.schema import SCHEMA_VERSION
from shared_context_server.storage.sqlite.transactions import is_busy

PROG = "shared-context-server"
TABLES = "SELECT name FROM sqlite_master WHERE type = 'table'"
# The backup's heartbeat rows name processes of the time it was made, not of now.
FORGET_PROCESSES = "DELETE FROM server_processes"
COUNTS = "SELECT (SELECT count(*) FROM sessions), (SELECT count(*) FROM messages)"


def _checked_copy(backup: Path, partial: Path) -> dict[str, Any]:
    """Copy `backup` to `partial` and check the copy; its facts. Raises InvalidInput."""
    litter = [p for p in (Path(f"{backup}-wal"), Path(f"{backup}-shm")) if not p.exists()]
    try:
        src = sqlite3.connect(f"{backup.as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as error:
        raise InvalidInput(f"cannot open {backup} as a database ({error}).") from None
    try:
        return _copy(src, partial, backup)
    finally:
        src.close()
        # A read-only connection to a WAL file creates an empty -wal and an -shm, and
        # cannot remove them: the backup is left as it was found.
        for created in litter:
            if created.name.endswith("-shm") or _size(created) == 0:
                created.unlink(missing_ok=True)


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _copy(src: sqlite3.Connection, partial: Path, backup: Path) -> dict[str, Any]:
    with closing(sqlite3.connect(partial, isolation_level=None)) as dst:
        try:
            src.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            src.backup(dst)
            problems = [str(row[0]) for row in dst.execute("PRAGMA integrity_check")]
        except sqlite3.DatabaseError as error:
            problems = [str(error)]
        if problems != ["ok"]:
            raise InvalidInput(
                f"{backup} failed its integrity check ({problems[0]}); nothing was changed. "
                "Restore an older backup."
            )
        version = int(dst.execute("PRAGMA user_version").fetchone()[0])
        app_id = int(dst.execute("PRAGMA application_id").fetchone()[0])
        tables = {str(row[0]) for row in dst.execute(TABLES)}
        refusal = foreign_file(backup, app_id, tables)
        if refusal is not None or "sessions" not in tables:
            raise InvalidInput(
                refusal
                or f"{backup} is not a shared-context-server database; nothing was "
                "changed. Name a file that `backup` wrote."
            )
        if version > SCHEMA_VERSION:
            raise InvalidInput(upgrade_message(backup, version, SCHEMA_VERSION))
        if "server_processes" in tables:
            dst.execute(FORGET_PROCESSES)
        # The mode every server sets: switched here, while nobody else has the file open.
        dst.execute("PRAGMA journal_mode = WAL")
        sessions, messages = dst.execute(COUNTS).fetchone()
    return {"schema_version": version, "sessions": sessions, "messages": messages}


def _live_servers(path: Path) -> list[dict[str, Any]]:
    """The heartbeat rows of servers using `path` now (none if it cannot be read: a
    damaged file is what restore is for)."""
    try:
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            rows = list(conn.execute(SELECT_PROCESSES))
    except sqlite3.Error:
        return []
    cutoff, host = stale_cutoff("sqlite"), socket.gethostname()
    return [process_dict(row) for row in rows if is_live(row, cutoff, host)]


def _openers(path: Path) -> list[int]:
    """Other processes holding the file at `path` (or its -wal, -shm) open: Linux /proc;
    elsewhere none are found, and the heartbeat rows (and, on Windows, the OS refusing to
    replace an open file) have to do."""
    wanted: set[tuple[int, int]] = set()
    for suffix in ("", "-wal", "-shm"):
        try:
            st = os.stat(f"{path}{suffix}")
        except OSError:
            continue
        wanted.add((st.st_dev, st.st_ino))
    found: set[int] = set()
    try:
        pids = [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:
        return []
    for pid in pids:
        if pid == os.getpid():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in wanted:
                found.add(pid)
                break
    return sorted(found)


def _refuse_if_used(path: Path) -> None:
    """Raise Conflict naming the servers (and other processes) using `path`."""
    servers = _live_servers(path)
    named = {int(s["pid"]) for s in servers if s["host"] == socket.gethostname()}
    others = [pid for pid in _openers(path) if pid not in named]
    if not servers and not others:
        return
    who = [
        f"pid {s['pid']} on {s['host']} ({s['agent_id'] or 'agent not known yet'}"
        + (f" via {s['client_name']}" if s["client_name"] else "")
        + ")"
        for s in servers
    ] + [f"pid {pid} (has the file open)" for pid in others]
    raise Conflict(
        f"{len(who)} process(es) are using {path}: {'; '.join(who)}. Restoring under them "
        "would lose what they write next. Close those agents' clients (or end the "
        f"processes), then run restore again; `{PROG} doctor` lists them."
    )


def _side_name(path: Path) -> Path:
    """A free name beside `path` for the file a restore replaces."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    side = path.with_name(f"{path.name}.before-restore-{stamp}")
    n = 1
    while side.exists() or Path(f"{side}-wal").exists():
        n += 1
        side = path.with_name(f"{path.name}.before-restore-{stamp}-{n}")
    return side


def _swap(partial: Path, path: Path, keep: bool) -> Path | None:
    """Checkpoint the live file, hold its write lock, copy it aside (if `keep`), put
    `partial` at `path` and remove the old -wal and -shm. The side copy's path, if any.

    A file too damaged to checkpoint keeps its WAL beside the side copy (and without
    `keep` is refused): the WAL may hold the only copy of acknowledged writes.
    Raises Conflict if another process still reads or writes the file.
    """
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        damaged: sqlite3.DatabaseError | None = None
        try:
            busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            # From here no other process can commit: what the WAL holds stays what it is.
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            if not is_busy(error):
                raise
            busy, frames, copied = 1, 0, 0
        except sqlite3.DatabaseError as error:  # not a database any more, or malformed
            damaged, busy, frames, copied = error, 0, 0, 0
        wal_bytes = _size(wal)
        if busy or (wal_bytes and damaged is None):
            raise Conflict(
                f"{path} is still in use: its WAL could not be emptied ({wal_bytes:,} bytes, "
                f"{max(frames - copied, 0)} frames not checkpointed). Nothing was changed; "
                "stop the process using it and run restore again."
            )
        if wal_bytes and not keep:
            raise Conflict(
                f"{path} is damaged ({damaged}) and its WAL ({wal_bytes:,} bytes) cannot be "
                "written back, so it may hold acknowledged writes; nothing was changed. "
                "Run restore without --discard-old to keep both aside."
            )
        side = _side_name(path) if keep else None
        if side is not None:
            # Complete on its own when the WAL is empty and nobody can write; else the WAL
            # goes with it, under the name SQLite looks for.
            shutil.copyfile(path, side)
            os.chmod(side, 0o600)
            if wal_bytes:
                shutil.copyfile(wal, f"{side}-wal")
                os.chmod(f"{side}-wal", 0o600)
        if os.name == "nt":  # Windows replaces no open file: let go of it first
            conn.close()
        os.replace(partial, path)
        for leftover in (wal, shm):  # the old file's: empty, or kept beside the side copy
            leftover.unlink(missing_ok=True)
        return side
    finally:
        conn.close()  # on the old file: SQLite sees it moved and writes nothing back


def restore(backup: Path, target: Path, *, keep: bool = True) -> dict[str, Any]:
    """Replace the database at `target` with a checked copy of `backup` (see the module
    docstring for the order). Raises NotFound, InvalidInput, Conflict, sqlite3.Error."""
    backup = backup.expanduser().absolute()
    target = target.expanduser().absolute()
    if not backup.is_file():
        raise NotFound(f"no backup at {backup}; name the file `backup` wrote.")
    if backup == target:
        raise InvalidInput("the backup is the database itself; name the backup file.")
    if not target.parent.is_dir():
        raise InvalidInput(f"{target.parent} is not a directory; create it first.")
    partial = target.with_name(f".{target.name}.{os.getpid()}.restoring")
    fd = os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)
    try:
        facts = _checked_copy(backup, partial)
        side = None
        if target.exists():
            _refuse_if_used(target)
            side = _swap(partial, target, keep)
        else:
            os.replace(partial, target)
    finally:
        for leftover in ("", "-journal", "-wal", "-shm"):
            Path(f"{partial}{leftover}").unlink(missing_ok=True)
    # Read and write, as a server opens it: the last to close removes -wal and -shm.
    with closing(sqlite3.connect(target)) as conn:
        check = [str(row[0]) for row in conn.execute("PRAGMA quick_check")]
        counts = conn.execute(COUNTS).fetchone()
    if check != ["ok"] or tuple(counts) != (facts["sessions"], facts["messages"]):
        raise InvalidInput(
            f"{target} did not read back as the backup ({check[0]}); "
            + (f"the file it replaced is {side}." if side else "restore again.")
        )
    return {
        "path": str(target),
        "backup": str(backup),
        "kept": str(side) if side else None,
        "kept_wal": side is not None and Path(f"{side}-wal").exists(),
        **facts,
    }
