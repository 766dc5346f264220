"""A throwaway PostgreSQL cluster for the tests: initdb into a temp dir, pg_ctl on a free port.

initdb refuses to run as root, so under root (CI) the cluster belongs to the `postgres`
user that Debian's package creates. Found via pg_config or Debian's versioned directory.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


class MissingPostgres(RuntimeError):
    """This machine has no PostgreSQL server binaries."""


def _bindir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[4]))
    if not versions:
        raise MissingPostgres(
            "no PostgreSQL binaries (initdb, pg_ctl): install them, e.g. "
            "apt-get install postgresql postgresql-contrib (.ci/run does)"
        )
    return Path(versions[-1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# The tests' server: nothing they check depends on surviving a power cut.
TEST_SETTINGS = "-c fsync=off"
# Every other role logs in by trust; raw queries' confined login, and any login that is a
# member of it, by password (SCRAM), as on a real server.
CONFINED_HBA = (
    "local all shared_context_records,+shared_context_records scram-sha-256\n"
    "host all shared_context_records,+shared_context_records 127.0.0.1/32 scram-sha-256\n"
)


class Cluster:
    """initdb + pg_ctl start; `url(db)` for a database on it; `stop()` removes it all.
    `settings`: extra server options (`-c name=value ...`); `max_connections`: the tests'
    200 by default, PostgreSQL's own default is 100; `cpus`: a CPU list (`taskset -c`, Linux)
    that the postmaster, and so every backend it forks, may run on (default: any)."""

    def __init__(
        self, settings: str = TEST_SETTINGS, max_connections: int = 200, cpus: str | None = None
    ) -> None:
        self.settings = settings
        self.max_connections = max_connections
        self.cpus = cpus
        self.bindir = _bindir()
        self.root = Path(tempfile.mkdtemp(prefix="scs-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            os.chmod(self.root, 0o755)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> Cluster:
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
            "--no-sync",
        )  # fmt: skip
        hba = self.data / "pg_hba.conf"
        hba.write_text(CONFINED_HBA + hba.read_text())
        tries = 3
        while True:
            try:
                self.pg_ctl("start")
                return self
            except subprocess.CalledProcessError:
                tries -= 1
                if not tries:
                    raise
                # The free port was taken before the server bound it: under pytest-xdist
                # each worker starts its own cluster at the same moment.
                self.port = free_port()

    def pg_ctl(self, action: str, *extra: str) -> None:
        """start, stop (-m immediate for a crash) or restart the server."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            f"-c max_connections={self.max_connections} {self.settings}"
        )
        pin = ["taskset", "-c", self.cpus] if self.cpus else []
        self._run(
            *pin, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
            "-w", "-o", options, action, *extra,
        )  # fmt: skip

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def stop(self) -> None:
        try:
            self.pg_ctl("stop", "-m", "fast")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def started(cluster: Cluster) -> Cluster:
    """`cluster`, started; where PostgreSQL's binaries are missing the test is skipped,
    except in CI (`CI` set: .ci/run installs them), where a missing server fails."""
    import pytest  # only the tests need it; the benchmarks import this module too

    try:
        return cluster.start()
    except MissingPostgres as missing:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(missing))
