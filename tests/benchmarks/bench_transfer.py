"""What export and import cost at size (a report, not a test): time and peak RSS.

Run from the repository root:

    .venv/bin/python tests/benchmarks/bench_transfer.py --messages 20000,200000

For each count, fills a SQLite file with one session of that many messages (about 200
bytes of content each, a third of them replies), then runs the real command line in a
child process: `export SID --admin -o FILE.jsonl` from that file, and `import FILE.jsonl`
into an empty one. Peak RSS is the child's own (os.wait4), so a flat figure across counts
is the claim that both run in constant memory.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

from shared_context_server.storage.opener import open_store

SID = "sess_0123456789abcdef"
TIME = "2026-11-22T05:33:12.123456Z"


def fill(path: Path, count: int) -> None:
    async def migrate() -> None:
        await (await open_store(path)).close()

    anyio.run(migrate)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "INSERT INTO sessions VALUES (?, 'bench', 'active', 'alice', ?, ?, NULL)",
            (SID, TIME, TIME),
        )
        conn.executemany(
            "INSERT INTO messages (id, session_id, sender, sender_type, content, visibility,"
            " message_type, metadata, parent_message_id, created_at)"
            " VALUES (?, ?, ?, 'generic', ?, 'public', 'message', NULL, ?, ?)",
            (
                (
                    i,
                    SID,
                    "alice" if i % 2 else "bob",
                    f"message {i}: " + "lorem ipsum dolor sit amet " * 7,
                    i - 1 if i % 3 == 0 else None,
                    TIME,
                )
                for i in range(1, count + 1)
            ),
        )
    conn.close()


def run(*args: str) -> tuple[float, float]:
    """Seconds and peak RSS in MB of the command line in a child process."""
    started = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "-m", "shared_context_server", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.monotonic() - started
    if status != 0:
        assert child.stderr is not None
        raise SystemExit(f"{args[0]} failed: {child.stderr.read().decode()}")
    return seconds, usage.ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", default="20000,200000", help="counts, comma-separated")
    options = parser.parse_args()
    print(
        f"{'messages':>10} {'file MB':>8} {'export s':>9} {'export MB':>10} "
        f"{'import s':>9} {'import MB':>10}"
    )
    for count in (int(n) for n in options.messages.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            source, target, file = Path(tmp, "a.db"), Path(tmp, "b.db"), Path(tmp, "s.jsonl")
            fill(source, count)
            export_s, export_mb = run(
                "export", SID, "--admin", "--db", str(source), "-o", str(file)
            )
            size = file.stat().st_size / 2**20
            import_s, import_mb = run("import", str(file), "--db", str(target))
            print(
                f"{count:>10,} {size:>8.0f} {export_s:>9.1f} {export_mb:>10.0f} "
                f"{import_s:>9.1f} {import_mb:>10.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
