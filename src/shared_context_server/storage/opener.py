"""The opener: which engine a target names, and opening it. The only module that chooses.

A `--db` value that starts with postgresql:// or postgres:// names a PostgreSQL database;
anything else is a SQLite file. Each engine is imported only when opened, so serving a
file never loads PostgreSQL's driver or engine (tests/test_startup.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from shared_context_server.storage.seam import Store, Target, redact

APP_NAME = "shared-context-server"
DB_FILENAME = "shared-context.db"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def default_db_path() -> Path:
    """The per-user database file shared by every server process of this user."""
    return Path(platformdirs.user_data_dir(APP_NAME)) / DB_FILENAME


def is_postgres_url(raw: str | os.PathLike[str] | None) -> bool:
    """Whether a --db value names a PostgreSQL database rather than a SQLite file."""
    return isinstance(raw, str) and raw.strip().lower().startswith(POSTGRES_SCHEMES)


def shown(target: Target) -> str:
    """Where the blackboard is, for people: a path, or a URL without its password."""
    return redact(str(target)) if is_postgres_url(target) else str(target)


async def open_store(target: Target, *, migrate: bool = True) -> Store:
    """The blackboard at `target`, migrated unless `migrate` is False. Each engine is
    imported only when used: serving a file never loads PostgreSQL's driver or engine.
    Raises StorageError."""
    if is_postgres_url(target):
        from shared_context_server.storage.postgres.database import PgDatabase

        return await PgDatabase.open(str(target).strip(), migrate=migrate)
    from shared_context_server.storage.sqlite.database import Database

    return await Database.open(Path(target), migrate=migrate)
