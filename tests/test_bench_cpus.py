"""bench.py --pg-cpus: which CPU lists it takes, and that the cluster it pins runs its
backends only there (tests/benchmarks/bench_pg.py, tests/pg_cluster.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import psycopg
import pytest

from tests.benchmarks.bench_pg import split_cpus
from tests.pg_cluster import TEST_SETTINGS, Cluster, started


@pytest.mark.parametrize(
    ("spec", "available", "expected"),
    [
        ("1", {0, 1}, ({1}, {0})),
        ("0", {0, 1, 2, 3}, ({0}, {1, 2, 3})),
        ("2-3", {0, 1, 2, 3}, ({2, 3}, {0, 1})),
        ("0,2", {0, 1, 2, 3}, ({0, 2}, {1, 3})),
    ],
)
def test_pg_cpus_gives_postgres_the_list_and_the_bench_the_rest(
    spec: str, available: set[int], expected: tuple[set[int], set[int]]
) -> None:
    assert split_cpus(spec, available) == expected


@pytest.mark.parametrize(
    ("spec", "available", "says"),
    [
        ("0-1", {0, 1}, "leaving none for the bench"),
        ("1", {1}, "leaving none for the bench"),
        ("4", {0, 1}, "CPU 4 is not among"),
        ("", {0, 1}, "not a CPU list"),
        ("one", {0, 1}, "not a CPU list"),
        ("3-1", {0, 1, 2, 3}, "runs backwards"),
    ],
)
def test_pg_cpus_refuses_a_list_that_leaves_the_bench_no_cpu_or_is_not_one(
    spec: str, available: set[int], says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        split_cpus(spec, available)


def allowed_cpus(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no Cpus_allowed_list for pid {pid}")


@pytest.mark.processes
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="CPU affinity: Linux only")
def test_a_cluster_started_on_a_cpu_runs_its_postmaster_and_backends_only_there() -> None:
    available = os.sched_getaffinity(0)
    if len(available) < 2:
        pytest.skip("one CPU: a pinned backend would look like any other")
    cpu = str(min(available))
    cluster = started(Cluster(TEST_SETTINGS, cpus=cpu))
    try:
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            row = conn.execute("SELECT pg_backend_pid()").fetchone()
            assert row is not None
            # Read while connected: the backend exits with its connection.
            assert allowed_cpus(int(row[0])) == cpu
        postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
        assert allowed_cpus(postmaster) == cpu
    finally:
        cluster.stop()
