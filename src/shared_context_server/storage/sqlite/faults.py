"""What can go wrong with the file under a running server, named so an agent can act on it.

SQLite reports a full disk, a read-only file or a damaged page as an OperationalError or
DatabaseError; left alone each would reach the agent as "internal error, retry". Here each
becomes its own code with what to do. And a file replaced, deleted or truncated under a
running server (or its -wal or -shm deleted) goes unnoticed by SQLite in WAL mode: commits
keep landing in a file nobody else can see. `FileIdentity` notices, at every write, with a
few `stat` calls against what was open when the file was opened.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from shared_context_server.about import UPGRADE
from shared_context_server.errors import (
    BlackboardError,
    SchemaTooNew,
    StorageDamaged,
    StorageFull,
    StorageReadOnly,
    StorageReplaced,
)

# Written into the header of every file this release creates or migrates ("SCtx").
APPLICATION_ID = 0x53437478
# Tables every blackboard has had since its first schema version.
BLACKBOARD_TABLES = frozenset({"schema_history", "sessions", "messages"})
DOCTOR = "shared-context-server doctor"


def upgrade_message(path: Path, version: int, known: int) -> str:
    """The one message for a file migrated by a newer release (at start-up and later)."""
    return (
        f"{path} has schema version {version}, newer than this shared-context-server "
        f"understands ({known}). Upgrade it ({UPGRADE}) or point --db at another file."
    )


def newer_schema(path: Path, version: int, known: int) -> SchemaTooNew:
    return SchemaTooNew(upgrade_message(path, version, known), database_path=str(path))


def _code(error: sqlite3.Error) -> int:
    return int(getattr(error, "sqlite_errorcode", 0) or 0)


def storage_fault(path: Path, error: sqlite3.Error) -> BlackboardError | None:
    """The coded error for a fault of the file or the disk; None for any other error
    (a constraint, a busy lock, a bad statement), which its caller handles as before."""
    code = _code(error)
    primary = code & 0xFF
    where = {"database_path": str(path)}
    if primary == sqlite3.SQLITE_FULL or (
        primary == sqlite3.SQLITE_IOERR and "full" in str(error).lower()
    ):
        return StorageFull(
            f"the disk holding {path} is full: nothing was saved. Free some space on it "
            f"(`{DOCTOR}` shows how much is left), then retry the call.",
            **where,
        )
    if code == getattr(sqlite3, "SQLITE_READONLY_DBMOVED", 1032):
        return replaced(path, "deleted or moved")
    if primary == sqlite3.SQLITE_READONLY:
        return StorageReadOnly(
            f"{path} (or its directory) is read-only: nothing was saved. Give the user "
            "running the server write permission on the file, its -wal and -shm files and "
            f"the directory (`{DOCTOR}` shows them), or point --db at a writable file.",
            **where,
        )
    if primary == sqlite3.SQLITE_CANTOPEN:
        if not os.access(path.parent, os.W_OK):
            return StorageReadOnly(
                f"{path.parent} is read-only, so SQLite cannot create the files it needs "
                "beside the database. Make the directory writable, or point --db elsewhere.",
                **where,
            )
        return StorageDamaged(
            f"SQLite cannot open a file of {path} ({error}): run `{DOCTOR}`.", **where
        )
    if primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_IOERR):
        return StorageDamaged(
            f"{path} cannot be read or written reliably ({error}): run `{DOCTOR}`; it "
            "says whether the file is damaged and how to restore or salvage it.",
            **where,
        )
    return None


def replaced(path: Path, what: str) -> StorageReplaced:
    return StorageReplaced(
        f"{path} was {what} while this server had it open, so its writes would go to a "
        "file no other process sees; it refuses them. Restart this agent's server to use "
        f"the file now at the path, and run `{DOCTOR}`: it lists processes still holding "
        "the old file.",
        database_path=str(path),
    )


def wal_deleted(path: Path, which: str) -> StorageReplaced:
    return StorageReplaced(
        f"{path}{which} was deleted while servers were using the database, so new writes "
        "would not reach other processes; this server refuses them. The database file "
        "itself is fine: stop every server using it (the last one to exit writes back "
        f"what the deleted file held), then start them again. `{DOCTOR}` lists them.",
        database_path=str(path),
    )


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


@dataclass
class FileIdentity:
    """The database, -wal and -shm files as they were when this process opened them."""

    path: Path
    main: tuple[int, int] | None
    wal: tuple[int, int] | None
    shm: tuple[int, int] | None
    had_header: bool

    @classmethod
    def of(cls, path: Path) -> FileIdentity:
        """Record the files now (after the connection has opened the WAL)."""
        try:
            had_header = os.stat(path).st_size >= 512
        except FileNotFoundError:
            had_header = False
        return cls(
            path,
            _identity(path),
            _identity(Path(f"{path}-wal")),
            _identity(Path(f"{path}-shm")),
            had_header,
        )

    def check(self) -> None:
        """Raise StorageReplaced if a file this process holds is no longer at its path.

        Cheap (three stat calls), so it runs inside every write transaction.
        """
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise replaced(self.path, "deleted") from None
        except OSError as error:
            if error.errno == errno.ENOENT:
                raise replaced(self.path, "deleted") from None
            raise
        if self.main is not None and (st.st_dev, st.st_ino) != self.main:
            raise replaced(self.path, "replaced by another file")
        if self.had_header and st.st_size < 512:
            raise replaced(self.path, "truncated")
        for suffix, held in (("-wal", self.wal), ("-shm", self.shm)):
            if held is not None and _identity(Path(f"{self.path}{suffix}")) != held:
                raise wal_deleted(self.path, suffix)


def foreign_file(path: Path, application_id: int, tables: set[str]) -> str | None:
    """Why the file must not be migrated into a blackboard, or None if it may be.

    A new (empty) file, a file this release marked, or a blackboard of an earlier release
    (recognised by its tables) may be; any other SQLite file belongs to someone else.
    """
    if application_id == APPLICATION_ID or (application_id == 0 and not tables):
        return None
    if application_id == 0 and tables >= BLACKBOARD_TABLES:
        return None
    shown = ", ".join(sorted(tables)[:5]) or "none"
    return (
        f"{path} is an SQLite database of another program (application id "
        f"{application_id}, tables: {shown}); shared-context-server will not change it. "
        "Point --db (or SHARED_CONTEXT_DB) at a new path, or at your blackboard file."
    )
