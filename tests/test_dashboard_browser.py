"""The dashboard in a real browser: headless Chromium (Debian's `chromium`, which .ci/run
installs) driven by Playwright, against a real `dashboard` process while real server
processes post. Screenshots of each view are saved under the test's tmp_path."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import pytest
from playwright.async_api import Browser, Page, Request, async_playwright, expect

from shared_context_server.storage.seam import Target
from tests.dashboard_process import HOSTILE, SECRETS, blackboard, dashboard
from tests.support import ok, spawn

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LIVE_WITHIN_MS = 2000
# The message at the top of the window and where it sits on the screen.
FIRST_VISIBLE = """() => {
  const m = [...document.querySelectorAll('.msg')].find((m) => m.getBoundingClientRect().top > 60);
  return [m.id, Math.round(m.getBoundingClientRect().top)];
}"""

pytestmark = [
    pytest.mark.processes,  # a browser and real dashboard and server processes: never quick
    pytest.mark.skipif(
        shutil.which("chromium") is None,
        reason="needs Debian's chromium (apt-get install chromium; .ci/run installs it)",
    ),
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def open_page(browser: Browser, url: str, scheme: str = "light") -> Page:
    page = await browser.new_page(viewport={"width": 1280, "height": 860}, color_scheme=scheme)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.errors = errors  # type: ignore[attr-defined]
    await page.goto(url)
    return page


async def test_a_message_from_another_process_appears_live_and_a_private_one_never(
    target: Target, browser: Browser
) -> None:
    path = target
    sid = await blackboard(path)
    async with (
        dashboard(path) as dash,
        spawn(path, "--agent-id", "bob", "--agent-type", "reviewer") as bob,
    ):
        page = await open_page(browser, dash.url)
        await page.click("text=review the parser")
        await expect(page.locator(".msg")).to_have_count(2)
        await page.evaluate("window.sameDocument = true")  # gone if the page reloads
        for visibility in ("private", "agent_only", "public"):
            content = f"live from bob, {visibility}"
            await ok(bob, "add_message", session_id=sid, content=content, visibility=visibility)
        await expect(page.locator(".msg").last).to_contain_text(
            "live from bob, public", timeout=LIVE_WITHIN_MS
        )
        assert await page.evaluate("window.sameDocument") is True
        text = await page.locator("main").inner_text()
        assert "live from bob, private" not in text and "live from bob, agent_only" not in text
        assert not any(secret in text for secret in SECRETS)
        assert await page.locator(".msg").count() == 3
        assert page.errors == []  # type: ignore[attr-defined]


async def test_hostile_markup_in_a_message_is_shown_as_text_and_never_runs(
    tmp_path: Path, browser: Browser
) -> None:
    sid = await blackboard(tmp_path / "b.db")
    async with dashboard(tmp_path / "b.db") as dash:
        page = await open_page(browser, dash.url)
        await page.goto(f"{dash.base}/#/s/{sid}")
        hostile = page.locator(".msg .content", has_text="hostile")
        await expect(hostile).to_have_text(HOSTILE)
        assert await hostile.locator("script, img").count() == 0
        assert await page.evaluate("window.pwned") is None
        reply = page.locator(".msg", has_text="hostile").locator(".reply")
        await expect(reply).to_contain_text("#1 alice: finding: overflow")


async def test_the_page_keeps_its_place_while_messages_arrive(
    tmp_path: Path, browser: Browser
) -> None:
    path = tmp_path / "b.db"
    sid = await blackboard(path)
    async with (
        dashboard(path) as dash,
        spawn(path, "--agent-id", "bob", "--agent-type", "reviewer") as bob,
    ):
        for i in range(40):
            await ok(bob, "add_message", session_id=sid, content=f"earlier message {i}")
        page = await open_page(browser, dash.url)
        await page.goto(f"{dash.base}/#/s/{sid}")
        await expect(page.locator(".msg")).to_have_count(42)
        await expect(page.locator("#live")).to_have_class("live on")  # settled, following
        # The page scrolls to the newest once its header and chart are drawn: only then
        # does the reader scroll up (else the page's own scroll lands after the reader's).
        await page.wait_for_function(
            "window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 80"
        )
        await page.evaluate("window.scrollTo(0, 400)")
        before = await page.evaluate(FIRST_VISIBLE)
        await ok(bob, "add_message", session_id=sid, content="arrives while reading")
        await expect(page.locator(".msg").last).to_contain_text(
            "arrives while reading", timeout=LIVE_WITHIN_MS
        )
        assert await page.evaluate(FIRST_VISIBLE) == before  # the same message, same place
        await expect(page.locator("#new-below")).to_be_visible()


async def test_screenshots_of_each_view_as_admin_light_and_dark(
    tmp_path: Path, browser: Browser
) -> None:
    path = tmp_path / "b.db"
    sid = await blackboard(path)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    async with (
        dashboard(path, "--admin") as dash,
        spawn(path, "--agent-id", "bob", "--agent-type", "reviewer", "--admin"),
    ):
        for scheme in ("light", "dark"):
            page = await open_page(browser, dash.url, scheme)
            await expect(page.locator(".session")).to_have_count(1)
            await page.screenshot(path=shots / f"sessions-{scheme}.png")
            await page.goto(f"{dash.base}/#/s/{sid}")
            await expect(page.locator(".msg")).to_have_count(5)  # the admin sees all five
            await expect(page.locator(".chart rect")).to_have_count(4)
            await page.screenshot(path=shots / f"session-{scheme}.png")
        await page.goto(f"{dash.base}/#/processes")
        await expect(page.locator("tbody tr", has_text="bob")).to_have_count(1)
        await page.screenshot(path=shots / "processes.png")
        await page.goto(f"{dash.base}/#/audit")
        await expect(page.locator("tbody tr").first).to_contain_text("set_memory")
        await page.screenshot(path=shots / "audit.png")
        await page.goto(f"{dash.base}/#/memory")
        await expect(page.locator("pre")).to_have_count(0)  # values only when asked
        await page.click("text=show value")
        await expect(page.locator("pre")).to_contain_text("SECRET-memory-value")
        await page.screenshot(path=shots / "memory.png")
        assert page.errors == []  # type: ignore[attr-defined]
    assert len(list(shots.glob("*.png"))) == 7


async def test_the_search_box_finds_a_message_despite_a_typo_and_opens_it(
    tmp_path: Path, browser: Browser
) -> None:
    await blackboard(tmp_path / "b.db")
    async with dashboard(tmp_path / "b.db") as dash:
        page = await open_page(browser, dash.url)
        await page.fill("input[type=search]", "overflw parse_headr")
        result = page.locator(".result").first  # best first
        await expect(result).to_contain_text("finding: overflow in parse_header")
        await result.click()
        await expect(page.locator("#m-1")).to_have_class(re.compile("target"))
        await page.goto(f"{dash.base}/#/")
        await page.fill("input[type=search]", "SECRET note to self")
        await expect(page.locator(".results > *").first).to_be_visible()
        shown = await page.locator(".results").inner_text()
        assert not any(secret in shown for secret in SECRETS)


@asynccontextmanager
async def local_service() -> AsyncIterator[tuple[int, list[str]]]:
    """Another web service on 127.0.0.1, as a user may run beside the dashboard: its port,
    and the head of each request it receives."""
    heads: list[str] = []

    async def answer(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            head = b""
            while b"\r\n\r\n" not in head:
                head += await stream.receive()
            heads.append(head.decode("latin-1"))
            await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, answer)
        yield listener.extra(anyio.abc.SocketAttribute.local_port), heads
        tg.cancel_scope.cancel()


async def test_another_local_service_never_receives_the_cookie_nor_the_token(
    tmp_path: Path, browser: Browser
) -> None:
    await blackboard(tmp_path / "b.db")
    async with dashboard(tmp_path / "b.db", "--admin") as dash, local_service() as (port, heads):
        page = await browser.new_page()
        requests: list[Request] = []
        page.on("request", lambda request: requests.append(request))
        await page.goto(dash.url)
        await expect(page.locator(".session")).to_have_count(1)  # its scripts have run
        assert page.url == f"{dash.base}/"  # the token left the address bar
        (cookie,) = await page.context.cookies()
        await page.evaluate(f"location.href = 'http://127.0.0.1:{port}/'")  # a link followed
        await page.wait_for_url(f"http://127.0.0.1:{port}/")
        await page.goto(f"http://127.0.0.1:{port}/again")  # and typed in
        sent = [str(await r.all_headers()) for r in requests[1:]]  # after the printed URL
    assert len(heads) >= 2 and len(sent) >= 4
    for head in heads:
        assert cookie["name"] not in head and cookie["value"] not in head, head
    assert not any(dash.token in text for text in [*heads, *sent])  # not in a Referer
    assert cookie["domain"] == dash.host and cookie["value"] != dash.token
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"


async def test_claims_and_acknowledgements_show_live(target: Target, browser: Browser) -> None:
    sid = await blackboard(target)
    async with (
        dashboard(target) as dash,
        spawn(target, "--agent-id", "bob", "--agent-type", "reviewer") as bob,
        spawn(target, "--agent-id", "carol", "--agent-type", "writer") as carol,
    ):
        page = await open_page(browser, dash.url)
        await expect(page.locator("#live")).to_have_class(re.compile("on"))  # sessions loaded
        await page.goto(f"{dash.base}/#/claims")
        await expect(page.locator("main")).to_contain_text("Nobody holds a claim")
        await ok(bob, "claim", targets=["/repo/src/**"], reason="parser rewrite")
        row = page.locator("tr[data-claim]")
        await expect(row).to_contain_text("/repo/src/**", timeout=LIVE_WITHIN_MS + 4000)
        await expect(row).to_contain_text("parser rewrite")
        handed = await ok(
            bob, "add_message", session_id=sid, content="carol: docs", metadata={"to": ["carol"]}
        )
        await page.goto(f"{dash.base}/#/s/{sid}")
        acks = page.locator(f'[data-acks="{handed["message_id"]}"]')
        await expect(acks).to_contain_text("awaiting carol")
        await ok(carol, "acknowledge", session_id=sid, message_ids=[handed["message_id"]])
        await expect(acks).to_contain_text("acknowledged by carol", timeout=LIVE_WITHIN_MS + 4000)
        assert page.errors == []  # type: ignore[attr-defined]
