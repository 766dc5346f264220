"""The file on disk: creating it with private permissions, where it is mounted, and why
one cannot be opened."""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
from pathlib import Path

from shared_context_server.errors import StorageError, StorageFull, StorageReadOnly
from shared_context_server.storage.sqlite.faults import storage_fault
from shared_context_server.storage.sqlite.transactions import is_busy

READ_ONLY_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)


def prepare_db_file(path: Path) -> None:
    """Create the file's missing parent directories (0700) and the file itself (0600).

    Directories that already exist are left as they are: `--db ./here.db` must not
    chmod the user's working directory. The file is created before SQLite opens it so it
    never exists with looser permissions; SQLite gives -wal and -shm the same mode.
    """
    missing: list[Path] = []
    parent = path.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)


_NETWORK_FS = {
    "nfs",
    "nfs4",
    "cifs",
    "smbfs",
    "smb3",
    "afs",
    "9p",
    "fuse.sshfs",
    "ceph",
    "glusterfs",
}


def network_filesystem(path: Path) -> str | None:
    """The filesystem type if `path` is on a network filesystem (Linux only), else None.

    WAL needs shared memory between processes on one host; network filesystems break it.
    """
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    target = str(path.resolve())
    best, best_type = "", ""
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount_point, fs_type = fields[1], fields[2]
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > len(best):
            best, best_type = mount_point, fs_type
    return best_type if best_type in _NETWORK_FS else None


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def not_a_file(path: Path) -> str | None:
    """What `path` is when it exists and is not a regular file ("a FIFO (named pipe)"),
    else None. Never opens it: opening a FIFO to read waits for a writer."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    return next((f"it is {kind}" for test, kind in _KINDS if test(mode)), None)


def prepare(path: Path) -> tuple[Path, str | None]:
    """Raises OSError, or sqlite3.Error when SQLite cannot open the file."""
    path = path.expanduser().absolute()
    prepare_db_file(path)
    # Checked here because a failed aiosqlite.connect leaves its worker thread to report
    # into an event loop that may already be closed: a traceback after the error line.
    if (kind := not_a_file(path)) is not None:
        raise OSError(errno.EINVAL, kind, str(path))
    if not os.access(path, os.R_OK | os.W_OK):
        raise PermissionError(errno.EACCES, "no read and write permission", str(path))
    # For the same reason, a regular file SQLite cannot open (/proc/self/mem) fails here,
    # on a plain thread.
    sqlite3.connect(path).close()
    return path, network_filesystem(path)


def unusable(path: Path, error: sqlite3.Error) -> StorageError:
    if isinstance(error, sqlite3.OperationalError) and is_busy(error):
        return StorageError(
            f"{path} stayed locked by another process while opening it; retry, and if it "
            "persists look for a stuck process holding the file."
        )
    fault = storage_fault(path, error)
    if isinstance(fault, StorageFull | StorageReadOnly):
        return StorageError(f"{fault.code}: {fault.message}")
    return StorageError(
        f"{path} cannot be used as a shared-context-server database ({error}). "
        "If it is another program's file or damaged, point --db at a new path."
    )
