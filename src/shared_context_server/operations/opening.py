"""Opening an operator's database: an existing file (never a fresh empty one) or a URL."""

from __future__ import annotations

from pathlib import Path

from shared_context_server.errors import NotFound, StorageError
from shared_context_server.storage.opener import is_postgres_url, open_store
from shared_context_server.storage.seam import Store, Target
from shared_context_server.storage.sqlite.files import not_a_file


def require_file(path: Path) -> Path:
    """The absolute path of an existing database file. Raises StorageError, NotFound."""
    path = path.expanduser().absolute()
    if (kind := not_a_file(path)) is not None:
        raise StorageError(
            f"cannot use {path} as the database file: {kind}. "
            "Point --db (or SHARED_CONTEXT_DB) at the database file."
        )
    if not path.is_file():
        raise NotFound(
            f"no database at {path}; check --db or SHARED_CONTEXT_DB "
            "(a server creates the file when it first starts)."
        )
    return path


async def open_existing(target: Target, *, migrate: bool = True) -> Store:
    """Open an existing blackboard file, or a PostgreSQL database (migrating either as any
    server would, unless `migrate` is False). Raises NotFound, StorageError."""
    existing = target if is_postgres_url(target) else require_file(Path(target))
    return await open_store(existing, migrate=migrate)
