"""The PostgreSQL engine against a real server (tests/pg_cluster.py): migrating once under
an advisory lock, refusing a newer schema, message ids in commit order, recovering a lost
connection, and the command line's one-line errors on a URL."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest

from shared_context_server.blackboard.messages import add_message
from shared_context_server.blackboard.sessions import create_session
from shared_context_server.clock import utc_now
from shared_context_server.errors import DatabaseBusy, StorageError
from shared_context_server.storage.postgres.database import PgDatabase
from shared_context_server.storage.postgres.schema import SCHEMA_VERSION
from shared_context_server.storage.postgres.search import trigram_matching
from shared_context_server.storage.postgres.unit import HOT, PgUnit, prepared, to_pyformat
from shared_context_server.storage.seam import Conn, redact
from tests.pg_cluster import Cluster, free_port
from tests.support import ALICE

CLI = [sys.executable, "-m", "shared_context_server"]


def _cli(*args: str, code: str = "") -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", code, *args] if code else [*CLI, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_placeholders_become_pyformat_outside_quoted_text() -> None:
    sql = "SELECT '?', \"a?\" FROM t WHERE x = ? AND y LIKE '%z' AND z % 2 = ?"
    assert to_pyformat(sql) == (
        "SELECT '?', \"a?\" FROM t WHERE x = %s AND y LIKE '%%z' AND z %% 2 = %s"
    )


def test_twenty_processes_starting_on_an_empty_database_migrate_once(pg_url: str) -> None:
    code = textwrap.dedent(
        """
        import sys, anyio
        from shared_context_server.storage.postgres.database import PgDatabase
        async def main():
            db = await PgDatabase.open(sys.argv[1])
            print(await db.schema_version())
            await db.close()
        anyio.run(main)
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, pg_url], stdout=subprocess.PIPE, text=True)
        for _ in range(20)
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0] * 20
    assert outputs == [str(SCHEMA_VERSION)] * 20
    with psycopg.connect(pg_url) as conn:
        history = conn.execute("SELECT version FROM schema_history ORDER BY version").fetchall()
    assert [v for (v,) in history] == list(range(1, SCHEMA_VERSION + 1))


async def test_a_newer_schema_is_refused_with_the_same_message_as_a_file(pg_url: str) -> None:
    db = await PgDatabase.open(pg_url)
    await db.transact(
        lambda conn: conn.execute(
            "INSERT INTO schema_history (version, applied_at, pid, host) VALUES (?, 'x', 1, 'h')",
            (SCHEMA_VERSION + 1,),
        )
    )
    await db.close()
    with pytest.raises(StorageError, match=r"has schema version \d+, newer than this"):
        await PgDatabase.open(pg_url)


POST = (
    "INSERT INTO messages (session_id, sender, sender_type, content, visibility,"
    " message_type, created_at) VALUES (?, 'a', 't', ?, 'public', 'message', 'now') RETURNING id"
)
# What the schema's trigger replaces: an id from the bare sequence, taken at INSERT.
POST_PLAIN = POST.replace("(session_id,", "(id, session_id,").replace(
    "VALUES (?,", "VALUES (nextval('message_ids'), ?,"
)
SESSION = (
    "INSERT INTO sessions (id, purpose, status, created_by, created_at, updated_at)"
    " VALUES (?, 'p', 'active', 'a', 'now', 'now')"
)


def _post(conn: Conn, session: str = "s", text: str = "x", sql: str = POST) -> int:
    row = conn.execute(sql, (session, text)).fetchone()
    assert row is not None
    return int(row[0])


async def _interleave(pg_url: str, sql: str) -> list[int]:
    """Writer A posts and holds its transaction open while writer B posts; returns the ids
    in the order their transactions committed."""
    first, second = await PgDatabase.open(pg_url), await PgDatabase.open(pg_url)
    await first.transact(lambda conn: conn.execute(SESSION, ("s",)))
    # A's unit blocks, as no real one does: on a worker thread, not the event loop's. B's
    # too: `committed` is the order in which this one event loop hears of the commits, and
    # B's unit on the loop's thread could take the lock and return before the loop hears
    # of A's commit (the ids are in commit order either way).
    first.inline = second.inline = False
    committed: list[int] = []
    b_waits_or_done = threading.Event()

    def writer_a(conn: Conn) -> int:
        a_id = _post(conn, text="a", sql=sql)
        a_posted.set()
        b_waits_or_done.wait(timeout=30)  # hold A's transaction open meanwhile
        return a_id

    async def run_a() -> None:
        committed.append(await first.transact(writer_a))

    async def run_b() -> None:
        committed.append(await second.transact(lambda conn: _post(conn, text="b", sql=sql)))

    a_posted = threading.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_a)
        with anyio.fail_after(30):
            await anyio.to_thread.run_sync(a_posted.wait)
            tg.start_soon(run_b)
            # Until B has either committed or is waiting for A's lock.
            while len(committed) < 1 and not await _waiting_on_a_lock(pg_url):  # noqa: ASYNC110 (polls the server)
                await anyio.sleep(0.01)
        b_waits_or_done.set()
    await first.close()
    await second.close()
    return committed


async def _waiting_on_a_lock(pg_url: str) -> bool:
    async with await psycopg.AsyncConnection.connect(pg_url) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database()"
        )
        row = await cursor.fetchone()
        return bool(row and row[0])


async def test_message_ids_grow_in_commit_order(pg_url: str) -> None:
    committed = await _interleave(pg_url, POST)
    assert committed == sorted(committed)


async def test_the_same_interleaving_breaks_commit_order_with_a_plain_sequence(
    pg_url: str,
) -> None:
    # What the test above guards against: the same sequence without the session's lock
    # lets B commit id 2 before A commits id 1. The triggers are switched off: the id
    # trigger locks even for an explicit id, and the upserts of the same sender's
    # activity and inbox rows would make B wait for A too.
    db = await PgDatabase.open(pg_url)
    await db.transact(lambda conn: conn.execute("ALTER TABLE messages DISABLE TRIGGER USER"))
    await db.close()
    committed = await _interleave(pg_url, POST_PLAIN)
    assert committed != sorted(committed)


async def test_writers_to_other_sessions_do_not_wait_and_no_session_means_no_message(
    pg_url: str,
) -> None:
    first, second = await PgDatabase.open(pg_url), await PgDatabase.open(pg_url)

    def sessions(conn: Conn) -> None:
        for session in ("s", "t"):
            conn.execute(SESSION, (session,))

    await first.transact(sessions)
    first.inline = False  # hold_s blocks
    release = threading.Event()
    held_id: list[int] = []

    def hold_s(conn: Conn) -> None:
        held_id.append(_post(conn, "s"))
        release.wait(timeout=30)

    async with anyio.create_task_group() as tg:
        tg.start_soon(first.transact, hold_s)
        with anyio.fail_after(30):  # s stays locked by `hold_s` meanwhile
            while not held_id:  # noqa: ASYNC110 (a thread fills it)
                await anyio.sleep(0.01)
            assert await second.transact(lambda conn: _post(conn, "t")) == 2
            with pytest.raises(psycopg.errors.ForeignKeyViolation):
                await second.transact(lambda conn: _post(conn, "missing"))
        release.set()
    assert held_id == [1]
    await first.close()
    await second.close()


async def test_a_connection_lost_mid_call_is_database_busy_and_the_next_call_recovers(
    pg_url: str,
) -> None:
    db = await PgDatabase.open(pg_url)
    await db.transact(lambda conn: conn.execute(SESSION, ("s",)))

    def cut_off(conn: Conn) -> None:
        _post(conn)
        (pid,) = conn.execute("SELECT pg_backend_pid()").fetchone()
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        _post(conn)

    with anyio.fail_after(30), pytest.raises(DatabaseBusy, match="nothing of this call was saved"):
        await db.transact(cut_off)
    # A dead connection found before anything ran is replaced without a word: reads, and
    # a unit of work whose BEGIN meets it.
    (pid,) = await db.read_one("SELECT pg_backend_pid()") or (0,)
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with anyio.fail_after(30):
        assert await db.read_one("SELECT count(*) FROM messages") == (0,)
        assert await db.transact(lambda conn: _post(conn)) >= 1
    # And a unit sent whole with its COMMIT (add_message's): not "maybe saved".
    (pid,) = await db.transact(lambda conn: conn.execute("SELECT pg_backend_pid()").fetchone())
    with psycopg.connect(pg_url, autocommit=True) as admin:  # and wait until it is gone
        admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))
    with anyio.fail_after(30):
        session_id = (await create_session(db, ALICE, "after the cut"))["id"]
        await add_message(db, ALICE, session_id, "posted once")
    await db.close()


async def test_a_cancelled_call_still_ends_its_transaction(pg_url: str) -> None:
    db, other = await PgDatabase.open(pg_url), await PgDatabase.open(pg_url)
    await db.transact(lambda conn: conn.execute(SESSION, ("s",)))

    def slow_post(conn: Conn) -> int:
        message_id = _post(conn)  # takes the session's lock
        conn.execute("SELECT pg_sleep(1)")
        return message_id

    with anyio.move_on_after(0.2):  # the caller gives up; the unit of work runs to COMMIT
        await db.transact(slow_post)
    with anyio.fail_after(20):  # the lock was given back
        assert await other.transact(lambda conn: _post(conn)) == 2
        assert await db.read_one("SELECT 1") == (1,)
    assert [r[0] for r in await db.read("SELECT id FROM messages ORDER BY id")] == [1, 2]
    await db.close()
    await other.close()


async def test_a_server_restart_mid_run_is_survived_without_reopening(
    pg_cluster: Cluster, pg_url: str
) -> None:
    db = await PgDatabase.open(pg_url)
    await anyio.to_thread.run_sync(pg_cluster.pg_ctl, "restart", "-m", "immediate")
    with anyio.fail_after(60):
        with contextlib.suppress(DatabaseBusy):  # the call in flight when it went away
            await db.read_one("SELECT 1")
        assert await db.schema_version() == SCHEMA_VERSION
    await db.close()


def test_doctor_on_a_url_reports_the_server_the_schema_and_tls(pg_url: str) -> None:
    done = _cli("doctor", "--db", pg_url)
    assert done.returncode == 0, done.stderr
    assert "PostgreSQL 1" in done.stdout
    assert f"schema        version {SCHEMA_VERSION}" in done.stdout
    assert "release       shared-context-server " in done.stdout
    assert "not encrypted" in done.stdout


@pytest.mark.parametrize(
    ("make_url", "expected"),
    [
        (lambda c: f"postgresql://nobody@127.0.0.1:{c.port}/postgres", 'role "nobody"'),
        (lambda c: f"postgresql://postgres@127.0.0.1:{c.port}/missing", "create it"),
        (
            lambda c: f"postgresql://postgres@127.0.0.1:{free_port()}/postgres",
            "check the host and port",
        ),
        (lambda c: "postgres://u:secret@[::1:5432/x", "not a valid PostgreSQL URL"),
        (lambda c: f"postgresql://postgres@127.0.0.1:{c.port}", "names no database"),
    ],
)
def test_a_url_that_cannot_be_used_is_one_line_and_exit_2(
    pg_cluster: Cluster, make_url: Any, expected: str
) -> None:
    done = _cli("doctor", "--db", make_url(pg_cluster))
    assert done.returncode == 2
    assert expected in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "secret" not in done.stderr


def test_backup_on_a_url_says_to_use_pg_dump(pg_url: str) -> None:
    done = _cli("backup", "--db", pg_url, "copy.db")
    assert done.returncode == 2
    assert "pg_dump --format=custom" in done.stderr
    assert done.stderr.count("\n") == 1
    # A command to paste: no password, not even hidden (libpq takes it from ~/.pgpass).
    with_password = pg_url.replace("postgres@", "postgres:sekrit@") + "?password=p2&sslmode=prefer"
    done = _cli("restore", "--db", with_password, "copy.db")
    assert done.returncode == 2
    assert f"--dbname='{pg_url}?sslmode=prefer'" in done.stderr
    assert "sekrit" not in done.stderr and "p2" not in done.stderr and "***" not in done.stderr


def test_a_url_without_the_driver_names_the_extra(pg_url: str) -> None:
    code = (
        "import sys; sys.modules['psycopg'] = None; from shared_context_server.cli import main; "
        "sys.exit(main(sys.argv[1:]))"
    )
    done = _cli("doctor", "--db", pg_url, code=code)
    assert done.returncode == 2
    assert "-m pip install 'psycopg[binary]>=3.2,<4'" in done.stderr
    assert done.stderr.count("\n") == 1


async def test_a_unit_of_work_sends_what_it_does_not_read_with_commit(pg_url: str) -> None:
    """A unit that reads an id midway: BEGIN with the INSERT whose id it reads, the next
    statement with COMMIT: two queries, not four."""
    db = await PgDatabase.open(pg_url)
    await db.transact(lambda conn: conn.execute(SESSION, ("s",)))
    trips: list[int] = []

    def post_and_log(conn: Conn) -> int:
        assert isinstance(conn, PgUnit)
        message_id = _post(conn)
        conn.execute("UPDATE sessions SET purpose = ? WHERE id = ?", (f"m{message_id}", "s"))
        trips.append(conn.trips)
        return message_id

    assert await db.transact(post_and_log) == 1
    assert trips == [1]  # the UPDATE went with COMMIT
    assert await db.read_one("SELECT purpose FROM sessions") == ("m1",)
    await db.close()


async def test_add_message_sends_begin_message_audit_entry_and_commit_in_one_query(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session's row lock, which every writer to it waits for, is held over no round
    trip to the poster's process."""
    db = await PgDatabase.open(pg_url)
    session_id = (await create_session(db, ALICE, "one trip"))["id"]
    sent: list[str] = []
    send_held = PgUnit.send_held

    def counted(unit: PgUnit, tail: str = "") -> None:
        sent.append(tail)
        send_held(unit, tail)

    monkeypatch.setattr(PgUnit, "send_held", counted)
    posted = await add_message(db, ALICE, session_id, "hello")
    assert sent == ["COMMIT"]
    logged = await db.read("SELECT target FROM audit_log WHERE action = 'add_message'")
    assert [tuple(row) for row in logged] == [(f"message:{posted['message_id']}",)]
    await db.close()


async def test_a_statement_never_read_still_fails_its_unit_and_nothing_is_saved(
    pg_url: str,
) -> None:
    db = await PgDatabase.open(pg_url)
    await db.transact(lambda conn: conn.execute(SESSION, ("s",)))

    def post_then_fail(conn: Conn) -> None:
        _post(conn)
        conn.execute("INSERT INTO sessions (id) VALUES (?)", ("s",))  # duplicate key, unread

    with pytest.raises(psycopg.errors.IntegrityError):
        await db.transact(post_then_fail)
    assert await db.read_one("SELECT count(*) FROM messages") == (0,)
    assert await db.transact(lambda conn: _post(conn)) >= 1  # the writer is usable again
    await db.close()


async def test_results_read_after_later_statements_are_each_their_own(pg_url: str) -> None:
    db = await PgDatabase.open(pg_url)

    def three(conn: Conn) -> tuple[int, int, list[Any]]:
        made = conn.execute(SESSION, ("a",))
        conn.execute(SESSION, ("b",))
        renamed = conn.execute("UPDATE sessions SET purpose = 'q' WHERE id IN (?, ?)", ("a", "b"))
        listed = conn.execute("SELECT id FROM sessions ORDER BY id")
        return made.rowcount, renamed.rowcount, [tuple(r) for r in listed.fetchall()]

    assert await db.transact(three) == (1, 2, [("a",), ("b",)])
    await db.close()


async def test_upkeep_flushes_the_trigram_index_so_a_large_sessions_search_uses_it(
    pg_migrated_url: str,
) -> None:
    from shared_context_server.blackboard import search, sessions
    from tests.corpus import corpus
    from tests.support import ALICE

    db = await PgDatabase.open(pg_migrated_url)
    try:
        sid = (await sessions.create_session(db, ALICE, "big"))["id"]
        words = corpus(3_000, seed=5)
        row = "(?, 'alice', 'reviewer', ?, 'public', 'message', 'now')"
        insert = (
            "INSERT INTO messages (session_id, sender, sender_type, content, visibility,"
            " message_type, created_at) VALUES "
        )

        def plant(conn: Conn) -> None:
            for start in range(0, len(words), 500):
                chunk = words[start : start + 500]
                values = [v for _, text in chunk for v in (sid, text)]
                conn.execute(insert + ", ".join([row] * len(chunk)), values)

        await db.transact(plant)
        query = words[7][0]
        q = search.candidate_query(ALICE, sid, query, None)
        params = (sid, *q.params, query, query, q.cap)
        # Before upkeep the new rows sit in GIN's pending list, which the planner counts
        # against the index: it scores every row of the session instead.
        assert await db.checkpoint_if_large() > 0
        plan = " ".join(r[0] for r in await db.read("EXPLAIN " + trigram_matching(q), params))
        assert "messages_trigram" in plan
        assert await db.checkpoint_if_large() == 0  # nothing left to flush, no ANALYZE
    finally:
        await db.close()


async def test_a_statement_units_send_again_and_again_is_prepared_once(pg_url: str) -> None:
    """The third time a process sends a statement it is PREPAREd on the connection, and
    sent as EXECUTE from then on: PostgreSQL parses and plans a post once."""
    db = await PgDatabase.open(pg_url)
    session_id = (await create_session(db, ALICE, "prepared"))["id"]
    for n in range(5):
        await add_message(db, ALICE, session_id, f"message {n}")
    prepared = [s for (s,) in await db.read("SELECT statement FROM pg_prepared_statements")]
    assert any("PREPARE scs_" in s and "INSERT INTO messages" in s for s in prepared)
    assert any("INSERT INTO audit_log" in s for s in prepared)
    # Lost from the session (a pooler's DISCARD ALL): the post runs again, once.
    await db.read("DISCARD ALL")
    await add_message(db, ALICE, session_id, "after the discard")
    contents = await db.read("SELECT content FROM messages ORDER BY id")
    assert [c for (c,) in contents] == [*(f"message {n}" for n in range(5)), "after the discard"]
    # A connection that lost them once (a pooler in transaction mode loses them at every
    # turn) prepares nothing more.
    for n in range(5):
        await add_message(db, ALICE, session_id, f"unprepared {n}")
    assert await db.read("SELECT statement FROM pg_prepared_statements") == []
    await db.close()


async def test_a_statement_postgresql_cannot_type_runs_unprepared(pg_url: str) -> None:
    db = await PgDatabase.open(pg_url)
    await db.transact(lambda conn: conn.execute(SESSION, ("s",)))
    untypable = "SELECT count(*) FROM sessions WHERE ? IS NULL OR id = ?"
    typable = "SELECT count(*) FROM sessions WHERE id = ?"

    def both(conn: Conn) -> Any:
        assert conn.execute(typable, ("s",)).fetchone() == (1,)
        return conn.execute(untypable, (None, None)).fetchone()

    for _ in range(5):
        assert await db.transact(both) == (1,)
    statements = await db.read("SELECT statement FROM pg_prepared_statements")
    assert not any("? IS NULL" in s or "$1 IS NULL" in s for (s,) in statements)
    # ... while its neighbour in the same units is prepared: the refusal costs no others.
    assert any("WHERE id = $1" in s for (s,) in statements)
    await db.close()


async def test_a_unit_runs_on_the_event_loops_thread_unless_it_waits_for_a_lock(
    pg_url: str,
) -> None:
    """No hand-off to a worker thread and back for a unit that finds its rows free; one
    that waits past QUICK_LOCK_MS for another process's row lock goes to a worker thread
    and waits there, the event loop free meanwhile."""
    db = await PgDatabase.open(pg_url)
    await db.transact(lambda conn: conn.execute(SESSION, ("s",)))
    here = threading.get_ident()
    threads: list[int] = []

    def post(conn: Conn) -> int:
        threads.append(threading.get_ident())
        return _post(conn)

    await db.transact(post)
    assert threads == [here]
    threads.clear()
    with psycopg.connect(pg_url) as other:  # holds the session's row lock
        other.execute("SELECT 1 FROM sessions WHERE id = 's' FOR UPDATE")
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await anyio.sleep(0.01)
                ticks += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(tick)
            tg.start_soon(db.transact, post)
            await anyio.sleep(0.5)
            assert ticks >= 10  # the loop kept running while the post waited
            other.commit()
            await anyio.sleep(0.2)
            tg.cancel_scope.cancel()
    assert threads[0] == here and threads[-1] != here  # tried here, then on a worker
    assert len(await db.read("SELECT id FROM messages")) == 2
    await db.close()


def test_a_prepare_a_lock_holds_up_waits_briefly_and_is_tried_again(pg_url: str) -> None:
    """A statement that became hot while a migration holds its table is not prepared
    then (PREPARE waits at most PREPARE_LOCK_MS, on the event loop's thread too), the
    connection is left outside any transaction, and the next unit's turn prepares it."""
    sql = "SELECT count(*) FROM plans WHERE id = ?"
    with (
        psycopg.connect(pg_url, autocommit=True, cursor_factory=psycopg.ClientCursor) as conn,
        psycopg.connect(pg_url) as migration,
    ):
        conn.execute("CREATE TABLE plans (id text)")
        ours = prepared(conn)
        for _ in range(HOT):
            ours.note(sql)
        migration.execute("LOCK TABLE plans IN ACCESS EXCLUSIVE MODE")
        began = time.monotonic()
        ours.prepare_wanted(conn)
        assert time.monotonic() - began < 2.0
        assert sql in ours.wanted and sql not in ours.names
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        migration.commit()
        ours.prepare_wanted(conn)
        assert sql in ours.names and not ours.wanted


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://scs:pw@db:5432/scs", "postgresql://scs:***@db:5432/scs"),
        ("postgresql://db/scs?user=scs&password=pw", "postgresql://db/scs?user=scs&password=***"),
        (
            "postgresql://db/scs?sslpassword=k&Password=p&sslmode=require",
            "postgresql://db/scs?sslpassword=***&Password=***&sslmode=require",
        ),
        ("postgresql://scs@db/scs?sslmode=require", "postgresql://scs@db/scs?sslmode=require"),
    ],
)
def test_a_password_in_the_url_or_among_its_parameters_is_never_shown(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_a_command_that_cannot_connect_hides_a_password_given_as_a_parameter() -> None:
    url = f"postgresql://127.0.0.1:{free_port()}/scs?user=scs&password=secretpw"
    done = _cli("doctor", "--db", url)
    assert done.returncode != 0
    assert "secretpw" not in done.stdout + done.stderr
    assert "password=***" in done.stdout + done.stderr


def test_doctor_on_a_url_forgets_a_dead_process_and_a_socket_needs_no_tls(
    pg_cluster: Cluster, pg_url: str
) -> None:
    """A server killed on this host leaves its row; doctor on a URL checks the pid, as on
    a file. Over a Unix socket there is no network to encrypt: no TLS warning."""
    assert _cli("doctor", "--db", pg_url).returncode == 0  # migrated
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO server_processes (host, pid, agent_id, agent_type, client_name,"
            " started_at, last_seen) VALUES (%s, %s, 'ghost', 'generic', NULL, %s, %s)",
            (socket.gethostname(), dead.pid, utc_now(), utc_now()),
        )
    done = _cli("doctor", "--db", pg_url, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["processes"] == []
    with psycopg.connect(pg_url, autocommit=True) as conn:  # one alive, elsewhere
        conn.execute(
            "INSERT INTO server_processes (host, pid, agent_id, agent_type, client_name,"
            " started_at, last_seen) VALUES ('laptop-2', 7, 'reviewer', 'generic', 'codex',"
            " %s, %s)",
            (utc_now(), utc_now()),
        )
    text = _cli("doctor", "--db", pg_url).stdout
    assert "1 live server process on this database" in text
    assert "reviewer/generic via codex on laptop-2" in text
    dbname = pg_url.rsplit("/", 1)[-1]
    over_socket = f"postgresql://postgres@/{dbname}?host={pg_cluster.root}&port={pg_cluster.port}"
    done = _cli("doctor", "--db", over_socket)
    assert done.returncode == 0, done.stderr
    assert "not encrypted" not in done.stdout


def test_an_upper_case_scheme_is_the_same_url(pg_url: str) -> None:
    # libpq reads POSTGRESQL:// as a key=value string ("missing '='"): the scheme is lowered.
    done = _cli("doctor", "--db", "POSTGRESQL" + pg_url.removeprefix("postgresql"))
    assert done.returncode == 0, done.stderr
    assert "PostgreSQL 1" in done.stdout


@pytest.mark.parametrize("example", ["two_agents.py", "multi_agent_pipeline.py"])
def test_the_python_examples_take_a_url_as_a_url(pg_url: str, example: str, tmp_path: Path) -> None:
    script = Path(__file__).parents[1] / "examples" / example
    done = subprocess.run(
        [sys.executable, str(script), pg_url],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.iterdir()) == []  # no file named after the URL
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] >= 3  # type: ignore[index]
