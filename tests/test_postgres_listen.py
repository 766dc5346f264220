"""LISTEN/NOTIFY on a real server: another process's commit wakes the listener, a rollback
never does, and after PostgreSQL restarts the listener says RESYNC and hears again."""

from __future__ import annotations

import sys
import textwrap

import anyio
import pytest

from shared_context_server.errors import DatabaseBusy
from shared_context_server.storage.postgres.database import PgDatabase
from shared_context_server.storage.postgres.listen import RESYNC, PgListener
from tests.pg_cluster import Cluster

NOTIFY_FROM_ANOTHER_PROCESS = textwrap.dedent(
    """
    import sys, anyio
    from shared_context_server.storage.postgres.database import PgDatabase
    async def main(url):
        db = await PgDatabase.open(url)
        def rolled_back(conn):
            conn.execute("SELECT pg_notify('session_s', 'rolled back')")
            raise RuntimeError
        try:
            await db.transact(rolled_back)
        except RuntimeError:
            pass
        await db.transact(lambda conn: conn.execute("SELECT pg_notify('session_s', 'committed')"))
        await db.close()
    anyio.run(main, sys.argv[1])
    """
)


async def test_a_commit_in_another_process_wakes_the_listener_and_a_rollback_never(
    pg_url: str,
) -> None:
    await (await PgDatabase.open(pg_url)).close()
    listener = PgListener(pg_url, ["session_s"])
    await listener.start()
    await anyio.run_process([sys.executable, "-c", NOTIFY_FROM_ANOTHER_PROCESS, pg_url])
    with anyio.fail_after(30):
        async for note in listener.notes():
            assert note == ("session_s", "committed")
            break
    await listener.close()


def test_channel_names_are_identifiers_only() -> None:
    with pytest.raises(ValueError, match="letters, digits"):
        PgListener("postgresql://x/y", ['a"; DROP TABLE messages; --'])


async def test_after_a_restart_the_listener_resyncs_then_hears_again(
    pg_cluster: Cluster, pg_url: str
) -> None:
    db = await PgDatabase.open(pg_url)
    listener = PgListener(pg_url, ["session_s"])
    await listener.start()
    await anyio.to_thread.run_sync(pg_cluster.pg_ctl, "restart", "-m", "immediate")
    heard: list[tuple[str, str]] = []
    with anyio.fail_after(60):
        async for note in listener.notes():
            heard.append(note)
            if note == RESYNC:
                break
        sent = False
        while not sent:  # the writer's own connection also comes back on its next call
            try:
                await db.transact(
                    lambda conn: conn.execute("SELECT pg_notify('session_s', 'after restart')")
                )
                sent = True
            except DatabaseBusy:
                await anyio.sleep(0.1)
        async for note in listener.notes():
            heard.append(note)
            break
    assert heard[-2:] == [RESYNC, ("session_s", "after restart")]
    await listener.close()
    await db.close()
