"""Fixtures and hooks: both engines (real SQLite files, a real PostgreSQL server).

A test that takes `target` or `db` runs once per engine, ids `[sqlite]` and `[postgres]`;
tests about SQLite itself take `sqlite_db` or a tmp_path file instead. The helpers tests
import by name (agents, clients, `ok`/`fails`, ...) are in tests/support.py."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import pytest

from shared_context_server.storage.opener import open_store
from shared_context_server.storage.seam import Store, Target
from shared_context_server.storage.sqlite.database import Database
from tests.pg_cluster import Cluster, started
from tests.support import ENGINES, create_database, drop_database


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Which engine this run of a backend-neutral test uses."""
    return str(request.param)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file migrated once per run (per worker), that each test's file is copied from, as
    PostgreSQL's databases are from `pg_template`: a copy costs a third of a migration."""
    path = tmp_path_factory.mktemp("template") / "bb.db"

    async def migrate() -> None:
        await (await open_store(path)).close()

    anyio.run(migrate)
    return path


@pytest.fixture
def target(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> Target:
    """Where the blackboard lives for this run: a new SQLite file, or a new PostgreSQL
    database (a URL), each at this release's schema."""
    if engine == "sqlite":
        return Path(shutil.copy(request.getfixturevalue("sqlite_template"), tmp_path / "bb.db"))
    return str(request.getfixturevalue("pg_migrated_url"))


@pytest.fixture
def other_target(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> Target:
    """A second, empty blackboard on the same engine (a new file, a new database)."""
    if engine == "sqlite":
        return tmp_path / "other.db"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def db(target: Target) -> AsyncIterator[Store]:
    """The blackboard on each engine in turn, through the one seam the domain uses."""
    store = await open_store(target)
    yield store
    await store.close()


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    """The SQLite engine itself, for tests about the file (WAL, PRAGMAs, locks)."""
    database = await Database.open(tmp_path / "bb.db")
    yield database
    await database.close()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One throwaway PostgreSQL server for the whole run (tests/pg_cluster.py).

    Without PostgreSQL's binaries the PostgreSQL tests are skipped with the reason, so the
    README's test command passes on a machine with only Python; in CI (`CI` set, as
    .ci/run runs, after installing them) a missing server fails instead."""
    cluster = started(Cluster())
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> Iterator[str]:
    """A new, empty database on the test cluster."""
    name = create_database(pg_cluster)
    yield pg_cluster.url(name)
    drop_database(pg_cluster, name)


@pytest.fixture(scope="session")
def pg_template(pg_cluster: Cluster) -> str:
    """A database migrated once per run, that each test's database is copied from: a copy
    costs a file copy where migrating costs every statement of the schema."""
    name = create_database(pg_cluster)

    async def migrate() -> None:
        await (await open_store(pg_cluster.url(name))).close()

    anyio.run(migrate)
    return name


@pytest.fixture
def pg_migrated_url(pg_cluster: Cluster, pg_template: str) -> Iterator[str]:
    """A new database on the test cluster, at this release's schema."""
    name = create_database(pg_cluster, pg_template)
    yield pg_cluster.url(name)
    drop_database(pg_cluster, name)


@pytest.fixture
def make_target(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], Target]:
    """Where a test's blackboard lives on an engine: `make_target("sqlite")` is a file in
    tmp_path, `make_target("postgres")` a fresh database's URL (one per test)."""

    def make(engine: str) -> Target:
        if engine == "sqlite":
            return tmp_path / "bb.db"
        url: str = request.getfixturevalue("pg_url")
        return url

    return make


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `quick` (README "Development": `pytest -m quick`) every test that runs in this
    process on SQLite: not a test marked `processes` (it starts servers, dashboards or a
    browser), not a run on PostgreSQL, not a test of the PostgreSQL cluster itself."""
    for item in items:
        params = getattr(item, "callspec", None)
        on_postgres = params is not None and "postgres" in params.params.values()
        uses_cluster = "pg_cluster" in getattr(item, "fixturenames", ())
        if not (on_postgres or uses_cluster or item.get_closest_marker("processes")):
            item.add_marker(pytest.mark.quick)
