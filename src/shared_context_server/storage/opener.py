"""The opener: which engine a target names, and opening it. The only module that chooses.

A `--db` value that starts with postgresql:// or postgres:// (any case) names a PostgreSQL
database; another value that looks like a URL (a mistyped scheme) is refused; anything else
is a SQLite file. Each engine is imported only when opened, so serving a
file never loads PostgreSQL's driver or engine (tests/test_startup.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from shared_context_server.errors import InvalidInput
from shared_context_server.storage.seam import Store, Target, redact
from shared_context_server.storage.seam.records import (
    MAX_RAW_ROWS,
    RAW_QUERY_SECONDS,
    RecordsBackend,
)

APP_NAME = "shared-context-server"
DB_FILENAME = "shared-context.db"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def default_db_path() -> Path:
    """The per-user database file shared by every server process of this user."""
    return Path(platformdirs.user_data_dir(APP_NAME)) / DB_FILENAME


def is_postgres_url(raw: str | os.PathLike[str] | None) -> bool:
    """Whether a --db value names a PostgreSQL database rather than a SQLite file."""
    return isinstance(raw, str) and raw.strip().lower().startswith(POSTGRES_SCHEMES)


def looks_like_url(raw: str) -> bool:
    """Whether `raw` starts like a URL: a scheme of two or more characters, then ":/".
    One letter is a Windows drive (C:/, C:\\), a file path. hook.py keeps a copy."""
    scheme, colon, _ = raw.strip().partition(":/")
    if not colon or len(scheme) < 2 or not (scheme[0].isascii() and scheme[0].isalpha()):
        return False
    return all(c.isascii() and (c.isalnum() or c in "+.-") for c in scheme)


def postgres_url(raw: str) -> str:
    """A PostgreSQL URL with its scheme in lower case: schemes are case-insensitive, but
    libpq takes POSTGRESQL:// for a key=value string and fails on it."""
    scheme, sep, rest = raw.strip().partition("://")
    return scheme.lower() + sep + rest


def check_db_value(raw: str, source: str = "--db") -> None:
    """Refuse a --db value that looks like a URL but is not a PostgreSQL one: a mistyped
    scheme (postgresql:/ with one slash, postgresql+psycopg://) must not quietly become
    a file named after the URL, password and all. Raises InvalidInput."""
    if looks_like_url(raw) and not is_postgres_url(raw):
        raise InvalidInput(
            f"{source} {redact(raw.strip())!r} is neither a PostgreSQL URL nor a file path: "
            "a database URL is postgresql://user@host:5432/dbname (or postgres://), and a "
            "file path needs no scheme."
        )


def shown(target: Target) -> str:
    """Where the blackboard is, for people: a path, or a URL without its password."""
    return redact(str(target)) if is_postgres_url(target) else str(target)


async def open_store(target: Target, *, migrate: bool = True) -> Store:
    """The blackboard at `target`, migrated unless `migrate` is False. Each engine is
    imported only when used: serving a file never loads PostgreSQL's driver or engine.
    Raises StorageError."""
    if is_postgres_url(target):
        from shared_context_server.storage.postgres.database import PgDatabase

        return await PgDatabase.open(postgres_url(str(target)), migrate=migrate)
    from shared_context_server.storage.sqlite.database import Database

    return await Database.open(Path(target), migrate=migrate)


async def open_records(
    where: Store | Target,
    *,
    allow_writes: bool = False,
    seconds: float = RAW_QUERY_SECONDS,
    max_rows: int = MAX_RAW_ROWS,
) -> RecordsBackend:
    """The shared tables (records toolset) of an open blackboard, or of the one at a
    target (then closing them closes it): on a file, the records file beside it; on
    PostgreSQL, the database's records schema. Raises StorageError."""
    if isinstance(where, str | os.PathLike):
        target: Target = where if isinstance(where, str) else Path(where)
        return await _records_at(
            target, allow_writes=allow_writes, seconds=seconds, max_rows=max_rows
        )
    if where.engine == "postgres":
        from shared_context_server.storage.postgres.database import PgDatabase
        from shared_context_server.storage.postgres.tables import open_schema

        assert isinstance(where, PgDatabase)
        return await open_schema(
            where, owns_db=False, allow_writes=allow_writes, seconds=seconds, max_rows=max_rows
        )
    from shared_context_server.storage.sqlite.records import open_file, records_path

    return await open_file(
        records_path(Path(where.where)),
        allow_writes=allow_writes,
        seconds=seconds,
        max_rows=max_rows,
    )


async def _records_at(
    target: Target, *, allow_writes: bool, seconds: float, max_rows: int
) -> RecordsBackend:
    if is_postgres_url(target):
        from shared_context_server.storage.postgres.database import PgDatabase
        from shared_context_server.storage.postgres.tables import open_schema

        db = await PgDatabase.open(str(target).strip())
        return await open_schema(
            db, owns_db=True, allow_writes=allow_writes, seconds=seconds, max_rows=max_rows
        )
    from shared_context_server.storage.sqlite.records import open_file

    return await open_file(
        Path(target), allow_writes=allow_writes, seconds=seconds, max_rows=max_rows
    )
