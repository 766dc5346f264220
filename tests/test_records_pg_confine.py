"""Raw queries on PostgreSQL cannot leave their confinement, whatever the text: on a
superuser's URL and on a CREATEROLE (non-superuser) one, each way out is refused or
harmless, no other agent's row is read, and nothing (a lock, a setting) outlives a call."""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from shared_context_server.blackboard.records import rows
from shared_context_server.blackboard.records.location import RecordsStore
from shared_context_server.blackboard.records.raw_query import execute_raw_query
from shared_context_server.config import ENV_RECORDS_URL, Settings
from shared_context_server.errors import BlackboardError
from shared_context_server.storage.locks import Lock
from shared_context_server.storage.opener import open_records, open_store
from shared_context_server.storage.postgres.allow import read_statement
from shared_context_server.storage.postgres.database import CHANNEL
from shared_context_server.storage.postgres.records import CONFINED_ROLE
from tests.pg_cluster import Cluster
from tests.support import ALICE, connect, create_database, drop_database, ok

SECRET_MESSAGE = "SECRET-MESSAGE-7f3a"
SECRET_MEMORY = "SECRET-MEMORY-7f3a"
SECRET_AGENT = "bob/SECRET-TOKEN-7f3a"
PWNED = Path(f"/tmp/scs-confine-{uuid.uuid4().hex[:8]}")
LEAK = "query_to_xml('select sender, visibility, content from public.messages', true, false, '')"
# Each hides a way out of the confinement behind PostgreSQL's own reading of the text.
ESCAPES = [
    f"SELECT 1 --\r, set_config('role','none',true), {LEAK}\n",
    f"SELECT 1 --\r, {LEAK}\n",
    f"SELECT 1 /* /* */ */, set_config('role','none',true), {LEAK}",
    f"SELECT E'\\'', set_config('role','none',true), {LEAK}",
    f"SELECT U&'\\0041', set_config('role','none',true), {LEAK}",
    f"SELECT $q$ ' $q$, set_config('role','none',true), {LEAK}",
    "SELECT cursor_to_xml('c', 10, true, false, '')",
    "SELECT query_to_xml('select * from public.agent_tokens', true, false, '')",
    "SELECT set_config('role', 'none', false)",
    "SELECT set_config('statement_timeout', '0', false)",
    "SET ROLE NONE",
    "RESET ROLE",
    "SET SESSION AUTHORIZATION DEFAULT",
    "UPDATE pg_settings SET setting = 'none' WHERE name = 'role'",
    "SELECT * FROM public.messages",
    "TABLE public.agent_tokens",
    "SELECT * FROM public.records_login",
    "SELECT * FROM public.memory",
    f"SELECT 1 --\r, pg_advisory_lock({int(Lock.MIGRATION)})\n",
    f"SELECT pg_try_advisory_lock({int(Lock.MIGRATION)})",
    "SELECT pg_advisory_lock(?)",
    "SELECT 1 --\r, pg_terminate_backend(?)\n",
    "SELECT pg_cancel_backend(?)",
    f"SELECT 1 --\r, pg_notify('{CHANNEL}', 's fake')\n",
    "SELECT lo_import('/etc/passwd')",
    f"SELECT lo_export(lo_from_bytea(0, 'x'), '{PWNED}')",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT pg_ls_dir('.')",
    f"COPY (SELECT 1) TO '{PWNED}'",
    "COPY (SELECT content FROM public.messages) TO STDOUT",
    "DO $$ BEGIN PERFORM set_config('role', 'none', true); END $$",
    "CREATE FUNCTION scs_evil() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "CREATE TEMP TABLE scs_evil (a int)",
    "SELECT dblink('dbname=postgres', 'select 1')",
]


def _superuser(pg_cluster: Cluster) -> Iterator[str]:
    name = create_database(pg_cluster)
    yield pg_cluster.url(name)
    drop_database(pg_cluster, name)


def _createrole(pg_cluster: Cluster) -> Iterator[str]:
    import psycopg

    name = f"cr_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN CREATEROLE")
        conn.execute(f"CREATE DATABASE {name} OWNER {name}")
    yield pg_cluster.url(name).replace("postgres@", f"{name}@")
    drop_database(pg_cluster, name)


@pytest.fixture(params=["superuser", "createrole"])
def server_url(request: pytest.FixtureRequest, pg_cluster: Cluster) -> Iterator[str]:
    """The blackboard's URL: a superuser's, or a non-superuser's that may create roles."""
    make = _superuser if request.param == "superuser" else _createrole
    yield from make(pg_cluster)


@pytest.fixture
async def planted(server_url: str) -> AsyncIterator[str]:
    """Bob's private message, private memory and sub-agent token on the blackboard."""
    bob = Settings(db_path=server_url, agent_id="bob", agent_id_source="flag", admin=True)
    async with connect("2026", bob) as s:
        made = await ok(s, "create_session", purpose="bob's")
        await ok(
            s,
            "add_message",
            session_id=made["session_id"],
            content=SECRET_MESSAGE,
            visibility="private",
        )
        await ok(s, "set_memory", key="plan", value=SECRET_MEMORY)
        await ok(s, "authenticate_agent", agent_id=SECRET_AGENT)
    yield server_url


def _admin(url: str) -> Any:
    """A superuser's connection to the same database, to look from outside."""
    import psycopg

    return psycopg.connect(re.sub(r"://[^@]*@", "://postgres@", url), autocommit=True)


async def test_no_raw_query_leaves_its_confinement(planted: str) -> None:
    url = planted
    victim = _admin(url)
    listener = _admin(url)
    listener.execute(f"LISTEN {CHANNEL}")
    store = RecordsStore.of(await open_records(url, allow_writes=True))
    seen: list[str] = []
    try:
        await rows.create_table(store, ALICE, "notes", {"text": "TEXT"})
        pid = victim.info.backend_pid
        for query in ESCAPES:
            params = [pid] if "?" in query else None
            try:
                seen.append(repr(await execute_raw_query(store, ALICE, query, params)))
            except BlackboardError as error:
                seen.append(error.message)
        leaked = [t for t in seen for s in (SECRET_MESSAGE, SECRET_MEMORY, SECRET_AGENT) if s in t]
        assert leaked == []
        who = await execute_raw_query(store, ALICE, "SELECT current_user, session_user")
        assert who["rows"] == [[CONFINED_ROLE, CONFINED_ROLE]]
        # The raw session is still open: a lock it took would still be held now.
        with _admin(url) as look:
            locks = look.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
            assert locks.fetchone() == (0,)
            stored = look.execute("SELECT password FROM records_login").fetchall()
            objects = look.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()
            functions = look.execute("SELECT count(*) FROM pg_proc WHERE proname = 'scs_evil'")
            assert objects == (0,) and functions.fetchone() == (0,)
        with anyio.fail_after(10):  # a new server still migrates: no lock was left
            await (await open_store(url)).close()
    finally:
        await store.close()
    assert stored and not [t for t in seen for (p,) in stored if p in t]
    assert victim.execute("SELECT 1").fetchone() == (1,)  # not terminated
    assert list(listener.notifies(timeout=0.5, stop_after=1)) == []
    assert not PWNED.exists()
    victim.close()
    listener.close()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("SELECT ?::int + 1", [[2]]),
        ("SELECT '?' || ?::text", [["?1"]]),
        ('SELECT 1 AS "?" -- ?\r, ?::int', [[1, 1]]),
        ("SELECT '100%' AS pct, ?::int /* ? */", [["100%", 1]]),
    ],
)
async def test_a_question_mark_is_a_parameter_only_where_postgresql_reads_an_operator(
    pg_url: str, query: str, expected: list[list[Any]]
) -> None:
    store = RecordsStore.of(await open_records(pg_url))
    try:
        count = query.count("?") - query.count("'?'") - query.count('"?"') - query.count("-- ?")
        count -= query.count("/* ? */")
        result = await execute_raw_query(store, ALICE, query, [1] * count)
        assert result["rows"] == expected
    finally:
        await store.close()


async def test_an_operator_named_login_runs_raw_queries_by_password(
    pg_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that may not create roles uses the login the DBA made and named by URL
    (SHARED_CONTEXT_RECORDS_URL), which authenticates by password (SCRAM here)."""
    import psycopg

    name = f"plain_{uuid.uuid4().hex[:8]}"
    login = f"raw_{name}"
    with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN NOCREATEROLE")
        conn.execute(f"CREATE DATABASE {name} OWNER {name}")
        conn.execute(
            "DO $$ BEGIN CREATE ROLE shared_context_records;"
            " EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
        conn.execute(f"CREATE ROLE {login} LOGIN PASSWORD 'right' IN ROLE shared_context_records")
    url = pg_cluster.url(name).replace("postgres@", f"{name}@")
    try:
        monkeypatch.setenv(ENV_RECORDS_URL, url.replace(f"{name}@", f"{login}:right@"))
        store = RecordsStore.of(await open_records(url))
        try:
            await rows.create_table(store, ALICE, "notes", {"text": "TEXT"})
            who = await execute_raw_query(store, ALICE, "SELECT session_user, count(*) FROM notes")
            assert who["rows"] == [[login, 0]]
        finally:
            await store.close()
    finally:
        drop_database(pg_cluster, name)


async def test_raw_queries_never_run_as_the_servers_own_login(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_RECORDS_URL, pg_url)
    store = RecordsStore.of(await open_records(pg_url))
    try:
        with pytest.raises(BlackboardError) as info:
            await execute_raw_query(store, ALICE, "SELECT 1")
        assert info.value.code == "PERMISSION_DENIED"
        assert "not the server's postgres" in info.value.message
    finally:
        await store.close()


async def test_a_password_another_database_changed_is_set_again_once(
    pg_url: str, pg_cluster: Cluster
) -> None:
    """The login is one role per cluster: a server of another database on it may have set a
    new password, and this one's stored password then fails: it sets its own again. A
    second server of this database then reads that one, rather than setting another."""
    import psycopg

    first = RecordsStore.of(await open_records(pg_url))
    second = RecordsStore.of(await open_records(pg_url))
    try:
        for store in (first, second):
            assert (await execute_raw_query(store, ALICE, "SELECT 1"))["rows"] == [[1]]
        with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
            conn.execute("ALTER ROLE shared_context_records PASSWORD 'elsewhere'")
        for store in (first, second):
            await store.raw.close()  # the next call logs in again
        assert (await execute_raw_query(first, ALICE, "SELECT 2"))["rows"] == [[2]]
        with _admin(pg_url) as look:
            stored = look.execute("SELECT password FROM records_login").fetchall()
        assert (await execute_raw_query(second, ALICE, "SELECT 3"))["rows"] == [[3]]
        with _admin(pg_url) as look:
            assert look.execute("SELECT password FROM records_login").fetchall() == stored
        await first.raw.close()
        assert (await execute_raw_query(first, ALICE, "SELECT 4"))["rows"] == [[4]]
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("SELECT 1 --\r, pg_advisory_lock(1)\n", "pg_advisory_lock()"),
        ("SELECT pg_catalog.set_config('role', 'none', true)", "set_config()"),
        ("SELECT \"query_to_xml\"('select 1', true, false, '')", "query_to_xml()"),
        ("SELECT public.lower('x')", "public.lower"),
        ("SELECT 1 FROM tasks WHERE title OPERATOR(public.=) 'x'", "public.="),
        ("SELECT * FROM pg_stat_activity", "pg_stat_activity"),
        ("SELECT * FROM information_schema.tables", "information_schema.tables"),
        ("SELECT * INTO copy FROM tasks", "SELECT ... INTO"),
        ("SELECT 1 UNION SELECT * INTO copy FROM tasks", "SELECT ... INTO"),
        ("EXPLAIN ANALYZE SELECT 1", "EXPLAIN"),
        ("MERGE INTO tasks USING tasks t ON true WHEN MATCHED THEN DELETE", "MERGE"),
        ("LISTEN shared_context_changes", "LISTEN"),
        ("SELECT xmlparse(document '<a/>')", "XmlExpr"),
        ("SET ROLE NONE", "SET is not allowed"),
        ("DO $$ BEGIN END $$", "DO is not allowed"),
    ],
)
def test_the_allowlist_names_what_it_refuses(query: str, named: str) -> None:
    with pytest.raises(BlackboardError) as info:
        read_statement(query)
    assert info.value.code == "INVALID_INPUT" and named in info.value.message


@pytest.mark.parametrize(
    "query",
    [
        "WITH done AS (SELECT * FROM tasks WHERE done) SELECT count(*), max(id) FROM done",
        "SELECT lower(title), length(title), now() - interval '1 day', jsonb_build_object('a', 1)",
        "SELECT extract(year FROM now()), substring('abc' FROM 2), trim(both FROM ' x ')",
        "SELECT row_number() OVER (ORDER BY id), coalesce(owner, 'nobody') FROM tasks",
        "INSERT INTO tasks (title) VALUES ('x') ON CONFLICT (id) DO NOTHING RETURNING id",
        "UPDATE records.tasks SET done = true WHERE id IN (SELECT id FROM tasks LIMIT 1)",
        "SELECT $$it's$$, E'\\n', U&'\\0041', 1 /* /* nested */ */",
    ],
)
def test_the_allowlist_takes_ordinary_queries(query: str) -> None:
    read_statement(query)


async def test_a_backslash_means_itself_whatever_the_database_default(pg_url: str) -> None:
    """pglast reads '...' with standard_conforming_strings on; so does every raw query,
    even where a DBA turned it off for the database. Off, the server would read \\' as a
    quote, the string would run on to the next one, and set_config would be called out
    of the allowlist's sight."""
    with _admin(pg_url) as conn:
        conn.execute(
            f'ALTER DATABASE "{pg_url.rsplit("/", 1)[1]}" SET standard_conforming_strings = off'
        )
    store = RecordsStore.of(await open_records(pg_url))
    try:
        sneaky = "SELECT '\\' , 1 --', set_config('role', 'none', true)"
        result = await execute_raw_query(store, ALICE, sneaky)
        assert result["rows"] == [["\\", 1]]
    finally:
        await store.close()


def test_an_allowed_statement_is_parsed_once_and_a_refused_one_every_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The verdict depends on the text alone: an allowed text is kept (immutable), a
    refused one is read again, and so refused again, at every call."""
    from pglast import parser

    parses: list[str] = []
    parse = parser.parse_sql_json

    def counted(sql: str) -> str:
        parses.append(sql)
        return str(parse(sql))

    monkeypatch.setattr(parser, "parse_sql_json", counted)
    allowed = "SELECT owner, count(*) FROM tasks WHERE priority > ? GROUP BY owner -- cached"
    first = read_statement(allowed)
    assert read_statement(allowed) is first and len(parses) == 1
    assert (first.writes, first.tables) == (False, frozenset())
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.writes = True  # type: ignore[misc]
    for _ in range(2):
        with pytest.raises(BlackboardError):
            read_statement("SELECT pg_advisory_lock(1) -- cached")
    assert len(parses) == 3
    written = read_statement("UPDATE tasks SET done = true -- cached")
    assert (written.writes, written.tables) == (True, frozenset({"tasks"}))
