"""An online, consistent copy of the file while agents keep writing, verified before it is
given its name."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from shared_context_server.errors import Conflict, InvalidInput
from shared_context_server.operations.opening import require_file
from shared_context_server.storage.sqlite.database import BUSY_TIMEOUT_MS


def backup(source: Path, target: Path, *, force: bool = False) -> dict[str, Any]:
    """Copy `source` to `target` with SQLite's backup API, then check the copy's integrity.

    The copy is made in one step: one read transaction, so it is the file as of a single
    commit, and in WAL mode it never blocks writers (a stepwise copy would restart on every
    commit by another process and might never finish). It is written next to `target`
    (0600) and renamed into place only after `PRAGMA integrity_check` passes, so a failed
    backup leaves nothing behind and never replaces a good file.
    Raises NotFound, Conflict (target exists without `force`), InvalidInput, sqlite3.Error.
    """
    source = require_file(source)
    target = target.expanduser().absolute()
    if target == source:
        raise InvalidInput("the backup path is the database itself; name another file.")
    if target.is_dir():
        raise InvalidInput(f"{target} is a directory; name a file inside it.")
    if target.exists() and not force:
        raise Conflict(f"{target} already exists; pass --force to replace it.")
    if not target.parent.is_dir():
        raise InvalidInput(f"{target.parent} is not a directory; create it first.")
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    fd = os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)
    try:
        src = sqlite3.connect(f"{source.as_uri()}?mode=ro", uri=True)
        dst = sqlite3.connect(partial)
        try:
            src.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            src.backup(dst)
            problems = [row[0] for row in dst.execute("PRAGMA integrity_check")]
            messages = dst.execute("SELECT count(*) FROM messages").fetchone()[0]
            sessions = dst.execute("SELECT count(*) FROM sessions").fetchone()[0]
        finally:
            dst.close()
            src.close()
        if problems != ["ok"]:
            raise InvalidInput(
                f"the copy failed its integrity check ({problems[0]}); the database itself "
                "may be damaged: run `shared-context-server doctor`."
            )
        os.replace(partial, target)
    finally:
        for leftover in (partial, Path(f"{partial}-journal")):
            leftover.unlink(missing_ok=True)
    return {
        "path": str(target),
        "bytes": target.stat().st_size,
        "sessions": sessions,
        "messages": messages,
        "integrity": "ok",
    }
