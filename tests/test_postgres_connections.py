"""How many PostgreSQL connections a server process holds, and what an agent hears when
PostgreSQL has no slot left (storage/postgres/connections.py)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import anyio
import psycopg
import pytest

from shared_context_server.errors import DatabaseBusy, StorageError
from shared_context_server.storage.postgres.database import PgDatabase
from shared_context_server.storage.seam import Change, background, run_in_background
from tests.pg_cluster import TEST_SETTINGS, Cluster, started
from tests.support import poll_until, poll_until_true, run_cli

OURS = (
    "SELECT count(*) FILTER (WHERE left(query, 6) <> 'LISTEN'),"
    " count(*) FILTER (WHERE left(query, 6) = 'LISTEN')"
    " FROM pg_stat_activity WHERE application_name = 'shared-context-server' AND datname = %s"
)


def held(url: str) -> tuple[int, int]:
    """(connections for reads and writes, LISTEN connections) this product holds on the
    database of `url`, seen from a connection of another name."""
    dbname = urlsplit(url).path.lstrip("/")
    with psycopg.connect(url, autocommit=True, application_name="test") as conn:
        row = conn.execute(OURS, (dbname,)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def settles(url: str, expected: tuple[int, int]) -> None:
    with anyio.fail_after(10):
        await poll_until(lambda: held(url) == expected)


@contextlib.asynccontextmanager
async def opened(url: str, idle_s: float, slot_wait_s: float = 5.0) -> AsyncIterator[PgDatabase]:
    """A PgDatabase with its housekeeping (`listen`) running, as a server runs it."""
    db = await PgDatabase.open(url, idle_s=idle_s, slot_wait_s=slot_wait_s)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(db.listen)
            yield db
            tg.cancel_scope.cancel()
    finally:
        await db.close()


async def test_a_process_nobody_calls_lets_its_connection_go_and_the_next_call_reopens_it(
    pg_migrated_url: str,
) -> None:
    async with opened(pg_migrated_url, idle_s=0.3) as db:
        assert held(pg_migrated_url) == (1, 0)
        await settles(pg_migrated_url, (0, 0))
        assert await db.read_one("SELECT count(*) FROM sessions") is not None
        assert held(pg_migrated_url) == (1, 0)
        await db.transact(lambda conn: conn.execute("SELECT 1"))
        assert held(pg_migrated_url) == (1, 0)


async def test_background_work_closes_the_connection_it_had_to_open(
    pg_migrated_url: str,
) -> None:
    async with opened(pg_migrated_url, idle_s=0.3) as db:
        await settles(pg_migrated_url, (0, 0))

        async def beat() -> None:
            run_in_background()
            await db.transact(lambda conn: conn.execute("SELECT 1"))
            assert held(pg_migrated_url) == (0, 0)  # closed as soon as it was done

        async with anyio.create_task_group() as tg:
            tg.start_soon(beat)


async def test_listen_holds_a_connection_only_while_news_is_wanted(pg_migrated_url: str) -> None:
    async with opened(pg_migrated_url, idle_s=0.3) as db:
        await settles(pg_migrated_url, (0, 0))
        db.want_news(True)
        await db.news_ready()
        assert held(pg_migrated_url) == (0, 1)
        db.want_news(False)
        await settles(pg_migrated_url, (0, 0))
        db.want_news(True)  # again: LISTEN is back, and says anything may be news
        await db.news_ready()
        assert held(pg_migrated_url) == (0, 1)
        assert await db.changes() is None  # the first look is the baseline
        await db.transact(
            lambda conn: conn.execute(
                "INSERT INTO sessions (id, purpose, status, created_by, created_at, updated_at)"
                " VALUES ('s1', 'p', 'active', 'a', '2026-01-01', '2026-01-01')"
            )
        )
        found: list[Change] = []

        async def changed() -> bool:
            change = await db.changes()
            found.extend([change] if change else [])
            return bool(found)

        with anyio.fail_after(10):
            await poll_until_true(changed)
        assert found[0].sessions_changed


@pytest.fixture(scope="module")
def tiny_cluster() -> Iterator[Cluster]:
    """A server with four connection slots, none kept for superusers."""
    cluster = Cluster(TEST_SETTINGS + " -c superuser_reserved_connections=0", max_connections=4)
    started(cluster)
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE scs")
    yield cluster
    cluster.stop()


@contextlib.contextmanager
def every_slot_taken(cluster: Cluster, leave: int = 0) -> Iterator[list[psycopg.Connection]]:
    """Hold every free connection slot of `cluster` but `leave`."""
    taken: list[psycopg.Connection] = []
    try:
        with contextlib.suppress(psycopg.OperationalError):
            while True:
                taken.append(psycopg.connect(cluster.url(), autocommit=True))
        for _ in range(min(leave, len(taken))):
            taken.pop().close()
        yield taken
    finally:
        for conn in taken:
            conn.close()


async def test_a_call_refused_a_connection_is_database_busy_naming_the_limit_and_the_fix(
    tiny_cluster: Cluster,
) -> None:
    async with opened(tiny_cluster.url("scs"), idle_s=0.3, slot_wait_s=1.0) as db:
        await settles(tiny_cluster.url("scs"), (0, 0))
        with every_slot_taken(tiny_cluster):
            began = anyio.current_time()
            with pytest.raises(DatabaseBusy) as refused:
                await db.read("SELECT count(*) FROM sessions")
            assert anyio.current_time() - began >= 1.0  # it waited for a slot first
            text = refused.value.message
            assert "too many clients" in text
            assert "max_connections" in text
            assert "pooler" in text
        # Still serving: the next call, with a slot free, succeeds.
        assert await db.read_one("SELECT count(*) FROM sessions") is not None


async def test_a_call_refused_a_slot_waits_for_one_another_process_frees(
    tiny_cluster: Cluster,
) -> None:
    """A crowd holds slots for moments (heartbeats, start-ups): a call waits them out."""
    async with opened(tiny_cluster.url("scs"), idle_s=0.3, slot_wait_s=10.0) as db:
        await settles(tiny_cluster.url("scs"), (0, 0))
        with every_slot_taken(tiny_cluster) as taken:

            async def free_one() -> None:
                await anyio.sleep(1.0)
                taken.pop().close()

            async with anyio.create_task_group() as tg:
                tg.start_soon(free_one)
                began = anyio.current_time()
                assert await db.read_one("SELECT count(*) FROM sessions") is not None
                assert anyio.current_time() - began >= 0.9


async def test_background_work_refused_a_slot_does_not_wait(tiny_cluster: Cluster) -> None:
    async with opened(tiny_cluster.url("scs"), idle_s=0.3, slot_wait_s=10.0) as db:
        await settles(tiny_cluster.url("scs"), (0, 0))
        with every_slot_taken(tiny_cluster):
            began = anyio.current_time()
            with background(), pytest.raises(DatabaseBusy):
                await db.try_transact(lambda conn: conn.execute("SELECT 1"))
            assert anyio.current_time() - began < 2.0


async def test_start_up_refused_every_slot_waits_then_says_why_in_one_line(
    tiny_cluster: Cluster,
) -> None:
    with every_slot_taken(tiny_cluster), pytest.raises(StorageError) as refused:
        await PgDatabase.open(tiny_cluster.url("scs"))
    assert "max_connections" in str(refused.value)
    with every_slot_taken(tiny_cluster, leave=1):
        await (await PgDatabase.open(tiny_cluster.url("scs"))).close()


def test_a_server_started_with_no_slot_free_exits_2_naming_max_connections(
    tiny_cluster: Cluster,
) -> None:
    with every_slot_taken(tiny_cluster):
        done = subprocess.run(
            [sys.executable, "-m", "shared_context_server", "--db", tiny_cluster.url("scs")],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert "max_connections" in done.stderr
    assert "Traceback" not in done.stderr


def test_doctor_shows_the_connections_this_product_holds_against_max_connections(
    tiny_cluster: Cluster,
) -> None:
    done = run_cli("doctor", "--db", tiny_cluster.url("scs"))
    assert done.returncode == 0, done.stderr
    assert "connections" in done.stdout
    assert "of max_connections 4" in done.stdout
