"""Opening an operator's database: an existing file only, never a fresh empty one."""

from __future__ import annotations

from pathlib import Path

from shared_context_server.db import Database
from shared_context_server.errors import NotFound


def require_file(path: Path) -> Path:
    """The absolute path of an existing database file. Raises NotFound."""
    path = path.expanduser().absolute()
    if not path.is_file():
        raise NotFound(
            f"no database at {path}; check --db or SHARED_CONTEXT_DB "
            "(a server creates the file when it first starts)."
        )
    return path


async def open_existing(path: Path) -> Database:
    """Open an existing blackboard (migrating it as any server would).

    Raises NotFound, StorageError.
    """
    return await Database.open(require_file(path))
