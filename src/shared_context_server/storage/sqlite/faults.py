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
import logging
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

logger = logging.getLogger(__name__)

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
        "itself is fine: each server writes what the deleted file held back into it when "
        "it notices (at its next write, or heartbeat). Restart the servers using it; "
        f"`{DOCTOR}` lists them.",
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

    def database_changed(self) -> bool:
        """The file at the path is not the database this process opened: deleted,
        replaced, or truncated (the same file, emptied)."""
        now = _identity(self.path)
        if now is None or (self.main is not None and now != self.main):
            return True
        return self.had_header and os.stat(self.path).st_size < 512

    def holds(self, suffix: str) -> bool:
        """The file at `path + suffix` is the very one this process opened. False when
        the filesystem gives no file identity (st_ino 0, some Windows filesystems)."""
        held = self.wal if suffix == "-wal" else self.shm
        return held is not None and held[1] != 0 and _identity(Path(f"{self.path}{suffix}")) == held

    def others(self) -> list[str]:
        """-wal or -shm files at the path that this process did not open: another
        server's, started after ours were deleted."""
        return [
            suffix
            for suffix in ("-wal", "-shm")
            if Path(f"{self.path}{suffix}").exists() and not self.holds(suffix)
        ]


CHECKPOINT_WAIT_MS = 1000


def let_go(identity: FileIdentity, conn: sqlite3.Connection) -> None:
    """After this process found its files changed under it (StorageReplaced), leave
    nothing that would damage the file now at the path; logs what it did.

    `conn` is one of this process's connections, outside a transaction; its handles are
    still on the files as they were opened. If the database itself changed, the WAL is
    written back into the old database through that handle (a copy moved aside stays
    whole; the file now at the path is never touched), and this process's -wal and -shm
    are removed from the path: left beside the new file, SQLite would read the old pages
    through them over it. If only the -wal or -shm went, the database is still ours: the
    WAL is written back into it now, while no other server has started on the path, so
    acknowledged writes outlive a kill of every server. If one has started (a -wal or -shm
    not ours is at the path), writing back would overwrite its commits: only said.
    """
    path = identity.path
    moved_away = identity.database_changed()
    if not moved_away and identity.others():
        logger.error(
            "%s: its -wal or -shm was deleted and another server has since started on the "
            "file; this server's writes not yet copied into the database cannot be without "
            "damaging it, and stay only in the deleted -wal. Stop this server.",
            path,
        )
        return
    truncated = moved_away and identity.main is not None and _identity(path) == identity.main
    written_back = False
    if not truncated:  # an emptied file at the path is the one place not to write pages
        conn.execute(f"PRAGMA busy_timeout = {CHECKPOINT_WAIT_MS}")
        try:
            # FULL, not TRUNCATE: it says how many frames there were.
            busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(FULL)").fetchone()
        except sqlite3.Error as error:
            busy, frames, copied = 1, -1, -1
            logger.warning("%s: writing the WAL back failed: %s", path, error)
        where = "the old database (no longer at the path)" if moved_away else "the database"
        if busy or copied < frames:
            logger.error(
                "%s: only %d of %d WAL frames were written back into %s (a reader held "
                "the rest); they stay in the deleted -wal until this server exits.",
                path,
                max(copied, 0),
                max(frames, 0),
                where,
            )
        else:
            written_back = True
            logger.warning("%s: wrote its WAL (%d frames) back into %s", path, frames, where)
    if not (moved_away or written_back):
        return  # the WAL at the path still holds writes: the next server reads them
    for suffix in ("-wal", "-shm"):
        if identity.holds(suffix):
            try:
                Path(f"{path}{suffix}").unlink()
            except OSError as error:  # Windows removes no open file: it goes at exit
                logger.warning("%s%s is stale and could not be removed: %s", path, suffix, error)


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
