"""What the dashboard costs (a report, not a test).

Run from the repository root (needs Debian's chromium, as the browser tests do):

    .venv/bin/python tests/benchmarks/bench_dashboard.py --messages 10000 --idle 30

Builds a file with one session of `--messages` messages from five agents (replies and
metadata included), starts `shared-context-server dashboard` on it and prints:
- the first screen of that session in a fresh page (navigation to the first message and
  the chart drawn), median of five;
- how soon a message another connection commits appears on the open page, median of ten;
- the dashboard process's CPU over `--idle` seconds with that page open and nothing
  written, and over 10 seconds with no browser connected (percent of one core).
`--screenshot PATH` also saves the transcript of a small review session (for the README).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
from playwright.async_api import Page, async_playwright

from shared_context_server.blackboard.identity import Agent
from shared_context_server.blackboard.messages import add_message
from shared_context_server.blackboard.sessions import create_session
from shared_context_server.clock import iso
from shared_context_server.storage.sqlite.database import Database

sys.path.insert(0, str(Path(__file__).parents[2]))
from tests.dashboard_process import dashboard
from tests.test_dashboard_browser import ARGS, CHROMIUM

AGENTS = [
    Agent("planner", "lead"),
    Agent("coder-1", "coder"),
    Agent("coder-2", "coder"),
    Agent("reviewer", "reviewer"),
    Agent("tester", "tester"),
]
INSERT = (
    "INSERT INTO messages (session_id, sender, sender_type, content, visibility,"
    " message_type, metadata, parent_message_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def big_session(path: Path, count: int) -> str:
    """`count` messages over three hours, written in one transaction (a bulk load)."""
    db = await Database.open(path)
    try:
        sid = (await create_session(db, AGENTS[0], "Port the billing service to the new API"))["id"]
        start = datetime.now(UTC) - timedelta(hours=3)
        rows = []
        for n in range(count):
            agent = AGENTS[(n * 7 + n // 50) % len(AGENTS)]
            parent = n - 3 if n % 6 == 5 else None
            rows.append(
                (
                    sid,
                    agent.agent_id,
                    agent.agent_type,
                    f"step {n}: {agent.agent_id} reports progress on item {n % 97}",
                    "public",
                    "finding" if n % 9 == 0 else "message",
                    f'{{"item": {n % 97}}}' if n % 4 == 0 else None,
                    parent + 2 if parent is not None and parent >= 0 else None,
                    iso(start + timedelta(seconds=3 * 3600 * n / count)),
                )
            )
        async with db.write() as tx:
            await tx.executemany(INSERT, rows)
        await db.index_search()
        return sid
    finally:
        await db.close()


async def review_session(path: Path) -> str:
    """A small, readable session for the README's screenshot."""
    db = await Database.open(path)
    lead, coder, reviewer, tester = AGENTS[0], AGENTS[1], AGENTS[3], AGENTS[4]
    try:
        sid = (await create_session(db, lead, "Review PR #42: retry logic in the payments client"))[
            "id"
        ]
        say = add_message
        plan = await say(
            db,
            lead,
            sid,
            "Plan: reviewer reads the diff, tester runs the "
            "flaky suite 50x, coder-1 answers questions.",
            message_type="plan",
        )
        find = await say(
            db,
            reviewer,
            sid,
            "The retry loop re-sends POST /charge without an idempotency key: "
            "a timeout after the charge succeeded bills the customer twice.",
            message_type="finding",
            metadata={"file": "payments/client.py", "line": 118},
        )
        await say(
            db,
            coder,
            sid,
            "Good catch. Adding an Idempotency-Key header from the "
            "order id; pushing in a few minutes.",
            parent_message_id=find["message_id"],
        )
        await say(
            db,
            tester,
            sid,
            "Flaky suite: 50/50 green on main, 47/50 on the PR (test_retry_backoff times out).",
            message_type="result",
            parent_message_id=plan["message_id"],
            metadata={"runs": 50, "failed": 3},
        )
        await say(
            db,
            reviewer,
            sid,
            "Note to self: check the backoff jitter again after the fix lands.",
            visibility="private",
        )
        await say(
            db,
            coder,
            sid,
            "Fixed both: idempotency key added, backoff capped at 8 s. "
            "<script> tags in logs are escaped now too.",
            message_type="update",
        )
        # Spread over the last hour, as a real review would be, so the chart has a shape.
        start = datetime.now(UTC) - timedelta(minutes=58)
        async with db.write() as tx:
            rows = await tx.fetchall("SELECT id FROM messages WHERE session_id = ?", (sid,))
            for n, row in enumerate(rows):
                when = iso(start + timedelta(minutes=11 * n + 2 * (n % 2)))
                await tx.execute("UPDATE messages SET created_at = ? WHERE id = ?", (when, row[0]))
        return sid
    finally:
        await db.close()


async def first_screen(page: Page, url: str) -> float:
    started = time.perf_counter()
    await page.goto(url)
    await page.wait_for_selector(".msg")
    await page.wait_for_selector(".chart svg")
    return time.perf_counter() - started


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "dash.db"
        sid = await big_session(path, args.messages)
        review = await review_session(path)
        async with (
            dashboard(path, "--admin") as dash,
            async_playwright() as playwright,
        ):
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = await browser.new_page(viewport={"width": 1280, "height": 860})
            await page.goto(dash.url)
            if args.screenshot:
                await page.goto(f"{dash.base}/#/s/{review}")
                await page.wait_for_selector(".chart svg")
                await page.wait_for_timeout(300)
                await page.evaluate("window.scrollTo(0, 0)")
                await page.screenshot(path=args.screenshot)
                print(f"screenshot: {args.screenshot}")
            await page.goto(f"{dash.base}/#/")
            times = []
            for _ in range(5):
                await page.goto("about:blank")
                times.append(await first_screen(page, f"{dash.base}/#/s/{sid}"))
            print(
                f"first screen of a {args.messages:,}-message session: "
                f"median {1000 * statistics.median(times):.0f} ms "
                f"(min {1000 * min(times):.0f}, max {1000 * max(times):.0f})"
            )
            db = await Database.open(path)
            try:
                delays = []
                for n in range(10):
                    text = f"live probe {n}"
                    started = time.perf_counter()
                    await add_message(db, AGENTS[1], sid, text)
                    await page.locator(".msg", has_text=text).wait_for()
                    delays.append(time.perf_counter() - started)
            finally:
                await db.close()
            print(
                f"a commit from another connection on the open page: "
                f"median {1000 * statistics.median(delays):.0f} ms, max {1000 * max(delays):.0f}"
            )
            await anyio.sleep(2)  # let the last refreshes settle
            before, started = cpu_seconds(dash.pid), time.monotonic()
            await anyio.sleep(args.idle)
            used = cpu_seconds(dash.pid) - before
            print(
                f"dashboard CPU, one open page, idle blackboard, {args.idle:.0f} s: "
                f"{100 * used / (time.monotonic() - started):.2f} % of one core"
            )
            await browser.close()
            await anyio.sleep(1)
            before, started = cpu_seconds(dash.pid), time.monotonic()
            await anyio.sleep(10)
            used = cpu_seconds(dash.pid) - before
            print(
                f"dashboard CPU, no browser connected, 10 s: "
                f"{100 * used / (time.monotonic() - started):.2f} % of one core"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--idle", type=float, default=30.0, metavar="SECONDS")
    parser.add_argument("--screenshot", metavar="PATH")
    anyio.run(main, parser.parse_args())
