"""bench.py --pg-cpus: which CPU lists it takes, and that the cluster it pins runs its
backends only there (tests/benchmarks/bench_pg.py, tests/pg_cluster.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import psycopg
import pytest

from tests.pg_cluster import TEST_SETTINGS, Cluster, MissingPostgres


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
    try:
        cluster = Cluster(TEST_SETTINGS, cpus=cpu).start()
    except MissingPostgres as missing:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(missing))
    try:
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
        assert allowed_cpus(int(row[0])) == cpu
        assert allowed_cpus(postmaster) == cpu
    finally:
        cluster.stop()
