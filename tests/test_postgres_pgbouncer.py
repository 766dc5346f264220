"""Agents through PgBouncer in session mode, the pooler route docs/POSTGRES.md describes:
calls, LISTEN and a long poll woken by another agent's post all pass through a real
PgBouncer (Debian's package) that this test starts on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import psycopg
import pytest

from shared_context_server.blackboard.messages import add_message
from shared_context_server.blackboard.sessions import create_session
from shared_context_server.storage.postgres.database import PgDatabase
from tests.pg_cluster import Cluster, free_port
from tests.support import ALICE, ok, poll_until, spawn

POOL_SIZE = 4


class PgBouncer:
    """pgbouncer -d with its config, auth file, pid and log in a temp dir (as the
    `postgres` user under root: PgBouncer refuses to run as root)."""

    def __init__(self, cluster: Cluster, dbname: str, mode: str = "session") -> None:
        self.root = Path(tempfile.mkdtemp(prefix="scs-pgbouncer-"))
        self.cluster, self.dbname, self.mode = cluster, dbname, mode
        self.port = free_port()
        (self.root / "users.txt").write_text('"postgres" ""\n')
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]

    def _configure(self) -> Path:
        ini = self.root / "pgbouncer.ini"
        ini.write_text(
            f"[databases]\n{self.dbname} = host=127.0.0.1 port={self.cluster.port}"
            f" dbname={self.dbname}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.root / 'users.txt'}\n"
            f"pool_mode = {self.mode}\ndefault_pool_size = {POOL_SIZE}\nmax_client_conn = 200\n"
            f"pidfile = {self.root / 'pgbouncer.pid'}\nlogfile = {self.root / 'log'}\n"
        )
        if self._as:
            for path in self.root.iterdir():
                shutil.chown(path, "postgres")
        return ini

    def start(self) -> PgBouncer:
        """Started and accepting connections. `-d` returns before the daemon listens, and
        under xdist another worker can take the free port first: each try waits for the
        port, and a bind that failed is tried again on another port."""
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        for _ in range(3):
            ini = self._configure()
            subprocess.run(
                [*self._as, binary, "-d", str(ini)], check=True, capture_output=True, timeout=30
            )
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", self.port), timeout=1.0),
                ):
                    if self.running():  # not some other process on a port taken first
                        return self
                time.sleep(0.05)
            self.stop(remove=False)
            self.port = free_port()
        log = self.root / "log"
        raise RuntimeError(f"pgbouncer never listened: {log.read_text() if log.exists() else ''}")

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def running(self) -> bool:
        pid = self.root / "pgbouncer.pid"
        try:
            os.kill(int(pid.read_text().strip()), 0)
        except (OSError, ValueError):
            return False
        return True

    def stop(self, remove: bool = True) -> None:
        pid = self.root / "pgbouncer.pid"
        if pid.exists():
            subprocess.run(["kill", pid.read_text().strip()], check=False)
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def bouncer(pg_cluster: Cluster, pg_migrated_url: str) -> Iterator[str]:
    """A URL through PgBouncer (session pooling) to a migrated database."""
    if not (shutil.which("pgbouncer") or Path("/usr/sbin/pgbouncer").exists()):
        if os.environ.get("CI"):
            raise RuntimeError("no pgbouncer: apt-get install pgbouncer (.ci/run does)")
        pytest.skip("no pgbouncer: apt-get install pgbouncer")
    dbname = pg_migrated_url.rsplit("/", 1)[-1]
    pooler = PgBouncer(pg_cluster, dbname).start()
    try:
        yield pooler.url(dbname)
    finally:
        pooler.stop()


def server_connections(direct_url: str, where: str = "true") -> int:
    """This product's connections PostgreSQL itself sees on the database."""
    dbname = direct_url.rsplit("/", 1)[-1]
    with psycopg.connect(direct_url, autocommit=True, application_name="test") as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"  # noqa: S608
            f" AND application_name = 'shared-context-server' AND {where}",
            (dbname,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def listening(direct_url: str) -> int:
    return server_connections(direct_url, "left(query, 6) = 'LISTEN'")


async def test_agents_through_pgbouncer_in_session_mode_call_and_are_woken_by_news(
    bouncer: str, pg_migrated_url: str
) -> None:
    async with (
        spawn(bouncer, "--agent-id", "poster") as poster,
        spawn(bouncer, "--agent-id", "waiter") as waiter,
        spawn(bouncer, "--agent-id", "reader") as reader,
    ):
        session_id = (await ok(poster, "create_session", purpose="pooled"))["session_id"]
        await ok(reader, "get_session", session_id=session_id)
        woken: list[str] = []

        async def wait() -> None:
            page = await ok(waiter, "wait_for_messages", session_id=session_id, after_id=0,
                            timeout_s=60)  # fmt: skip
            woken.extend(m["content"] for m in page["messages"])

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            with anyio.fail_after(30):  # the waiter's LISTEN, through PgBouncer
                await poll_until(lambda: listening(pg_migrated_url) == 1)
            await ok(poster, "add_message", session_id=session_id, content="via the pooler")
        assert woken == ["via the pooler"]
        # PgBouncer holds the server connections: never more than its pool.
        assert 0 < server_connections(pg_migrated_url) <= POOL_SIZE


async def test_through_pgbouncer_in_transaction_mode_calls_still_work(
    pg_cluster: Cluster, pg_migrated_url: str
) -> None:
    """Transaction mode is not supported (news needs a session), but calls must not fail
    for it: a statement PREPAREd on one server connection is missing on the next, and the
    connection that meets that once prepares nothing more."""
    if not (shutil.which("pgbouncer") or Path("/usr/sbin/pgbouncer").exists()):
        pytest.skip("no pgbouncer: apt-get install pgbouncer")
    dbname = pg_migrated_url.rsplit("/", 1)[-1]
    pooler = PgBouncer(pg_cluster, dbname, mode="transaction").start()
    stores = [await PgDatabase.open(pooler.url(dbname)) for _ in range(POOL_SIZE + 2)]
    try:
        session_id = (await create_session(stores[0], ALICE, "pooled"))["id"]

        async def post(db: PgDatabase, n: int) -> None:
            for i in range(15):
                await add_message(db, ALICE, session_id, f"{n}-{i}")

        async with anyio.create_task_group() as tg:
            for n, db in enumerate(stores):
                tg.start_soon(post, db, n)
        count = await stores[0].read_one(
            "SELECT count(*) FROM messages WHERE session_id = ?", (session_id,)
        )
        assert count is not None and int(count[0]) == 15 * len(stores)
    finally:
        for db in stores:
            await db.close()
        pooler.stop()
