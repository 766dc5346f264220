"""PostgreSQL for bench.py: a fresh database per phase on the server of --db, or a throwaway
cluster (--pg-cluster); dropped afterwards. Also the engine-only push figure: NOTIFY at
COMMIT in one process to the LISTEN wake-up in another, without any MCP server between.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO_ROOT = Path(__file__).resolve().parents[2]

# Like SQLite's `synchronous = NORMAL` (what the server sets): a commit does not wait for
# its WAL to reach the disk, and a crash of the machine (not of PostgreSQL) may lose the
# last commits but never corrupts. fsync stays on.
CLUSTER_SETTINGS = "-c synchronous_commit=off"

NOTIFIER = textwrap.dedent(
    """
    import random, sys, time
    import psycopg
    conn = psycopg.connect(sys.argv[1], autocommit=True)
    sys.stdin.readline()  # the listener is listening
    for i in range(int(sys.argv[2])):
        time.sleep(random.uniform(0.01, 0.05))
        with conn.transaction():
            conn.execute("SELECT pg_notify('bench', %s)", (repr(time.time()),))
    conn.close()
    """
)


class PgServer:
    """Databases made for one bench run on the server a URL points at."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        self.tag = f"scs_bench_{os.getpid()}"
        self.made: dict[str, str] = {}
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("SHOW server_version_num").fetchone()
            self.version_num = int(row[0]) if row else 0
            self.settings = {
                name: str(value)
                for name, value in conn.execute(
                    "SELECT name, setting FROM pg_settings WHERE name IN ("
                    "'server_version', 'fsync', 'synchronous_commit', 'shared_buffers',"
                    " 'max_connections')"
                ).fetchall()
            }

    def describe(self) -> str:
        s = self.settings
        return (
            f"PostgreSQL {s.get('server_version', '?')}, fsync={s.get('fsync')}, "
            f"synchronous_commit={s.get('synchronous_commit')}, "
            f"shared_buffers={s.get('shared_buffers')} x 8kB"
        )

    def fresh(self, name: str) -> str:
        """The URL of a new, empty database for `name` (made once per run, then reused)."""
        if name not in self.made:
            import psycopg

            dbname = f"{self.tag}_{re.sub(r'[^a-z0-9]+', '_', name.lower())}"
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}"')
                conn.execute(f'CREATE DATABASE "{dbname}"')
            self.made[name] = with_dbname(self.url, dbname)
        return self.made[name]

    def drop_all(self) -> None:
        import psycopg

        force = " WITH (FORCE)" if self.version_num >= 130000 else ""
        with psycopg.connect(self.url, autocommit=True) as conn:
            for url in self.made.values():
                dbname = urlsplit(url).path.lstrip("/")
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}"{force}')
        self.made.clear()


def with_dbname(url: str, dbname: str) -> str:
    """`url` naming database `dbname` instead (user, password, host, query kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{dbname}"))


def count_rows(url: str, session_id: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM messages WHERE session_id = %s", (session_id,))
        found = row.fetchone()
        return int(found[0]) if found else 0


def start_cluster(cpus: set[int] | None = None) -> Any:
    """A throwaway cluster on 127.0.0.1 (tests/pg_cluster.py) with CLUSTER_SETTINGS, its
    postmaster and every backend on `cpus` if given."""
    sys.path.insert(0, str(REPO_ROOT))
    from tests.pg_cluster import Cluster

    pin = cpu_list(cpus) if cpus else None
    return Cluster(settings=CLUSTER_SETTINGS, cpus=pin).start()


def parse_cpu_list(spec: str) -> set[int]:
    """The CPUs of a list like taskset's: `1`, `0,2`, `2-3`. Raises ValueError."""
    cpus: set[int] = set()
    for part in spec.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise ValueError(f"not a CPU list: {spec!r} (e.g. 1, 0,2 or 2-3)")
        first, last = int(match[1]), int(match[2] or match[1])
        if last < first:
            raise ValueError(f"not a CPU list: {spec!r} ({part.strip()} runs backwards)")
        cpus.update(range(first, last + 1))
    return cpus


def cpu_list(cpus: set[int]) -> str:
    """A compact CPU list: {0, 1, 2, 5} -> `0-2,5`."""
    runs: list[list[int]] = []
    for cpu in sorted(cpus):
        if runs and cpu == runs[-1][1] + 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def split_cpus(spec: str, available: set[int]) -> tuple[set[int], set[int]]:
    """(PostgreSQL's CPUs, the bench's) for --pg-cpus `spec`, out of the CPUs this process
    may run on. Raises ValueError if spec is not a list of those, or takes them all."""
    pg = parse_cpu_list(spec)
    if not pg <= available:
        raise ValueError(
            f"--pg-cpus {spec}: CPU {cpu_list(pg - available)} is not among the CPUs this "
            f"process may use ({cpu_list(available)})"
        )
    rest = available - pg
    if not rest:
        raise ValueError(
            f"--pg-cpus {spec} takes every CPU this process may use ({cpu_list(available)}), "
            "leaving none for the bench and its servers"
        )
    return pg, rest


def push_latency(url: str, notes: int) -> tuple[float, float]:
    """p50/p99 ms from pg_notify's COMMIT in another process to this process's wake-up."""
    import psycopg

    lags: list[float] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("LISTEN bench")
        notifier = subprocess.Popen(
            [sys.executable, "-c", NOTIFIER, url, str(notes)], stdin=subprocess.PIPE, text=True
        )
        assert notifier.stdin is not None
        notifier.stdin.write("go\n")
        notifier.stdin.flush()
        try:
            for note in conn.notifies(timeout=60.0):
                lags.append(time.time() - float(note.payload))
                if len(lags) == notes:
                    break
        finally:
            notifier.stdin.close()
            notifier.wait(timeout=60)
    if len(lags) < 2:
        return float("nan"), float("nan")
    return statistics.median(lags) * 1000.0, statistics.quantiles(lags, n=100)[98] * 1000.0
