"""The dashboard in a real browser: headless Chromium (Debian's `chromium`, which .ci/run
installs) driven by Playwright, against a real `dashboard` process while real server
processes post. Screenshots of each view are saved under the test's tmp_path."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from shared_context_server.store import Target
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
