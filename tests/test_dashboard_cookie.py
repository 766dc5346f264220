"""The dashboard's cookie is worth nothing away from its own process: not the token, nor
anything computed from it; on a loopback address of the run's own; and the token itself
never shows again after the first visit, in a response or in the log."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

import anyio
import httpx2 as httpx
import pytest
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from shared_context_server.dashboard import command
from shared_context_server.dashboard.guard import Guard
from tests.dashboard_process import blackboard, dashboard

pytestmark = pytest.mark.processes  # real server processes: never quick

TOKEN = "the-printed-token"


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("the dashboard")(scope, receive, send)


def guarded() -> httpx.AsyncClient:
    """A client of one Guard (one dashboard process) whose token is TOKEN."""
    transport = httpx.ASGITransport(app=Guard(hello, TOKEN, "127.0.0.1", 8000))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000")


async def test_the_cookie_is_this_processs_own_and_no_function_of_the_token() -> None:
    async with guarded() as one, guarded() as other:
        cookies = [
            (await client.get(f"/?token={TOKEN}")).cookies["scs_dashboard_8000"]
            for client in (one, other)
        ]
        assert TOKEN not in cookies[0] and TOKEN not in cookies[1]
        assert cookies[0] != cookies[1]  # the same token, two processes: two values
        assert (await one.get("/")).text == "the dashboard"
        other.cookies.set("scs_dashboard_8000", cookies[0])
        assert (await other.get("/")).status_code == 403  # one's cookie opens nothing else


async def test_a_cookie_holding_the_token_or_another_dashboards_value_is_refused(
    tmp_path: Path,
) -> None:
    await blackboard(tmp_path / "b.db")
    async with (
        dashboard(tmp_path / "b.db", "--admin") as dash,
        dashboard(tmp_path / "b.db", "--admin") as other,
    ):
        name = dash.cookie[0]
        for value in (dash.token, other.cookie[1], ""):
            async with httpx.AsyncClient(base_url=dash.base, cookies={name: value}) as stranger:
                for path in ("/", "/api/sessions", "/api/audit"):
                    assert (await stranger.get(path)).status_code == 403, (value, path)
        async with dash.client() as client:
            assert (await client.get("/api/audit")).status_code == 200


async def test_the_cookie_is_httponly_strict_on_this_host_only_and_ends_with_the_browser(
    tmp_path: Path,
) -> None:
    await blackboard(tmp_path / "b.db")
    async with dashboard(tmp_path / "b.db") as dash, httpx.AsyncClient() as browser:
        first = await browser.get(dash.url)
        assert first.status_code == 303 and first.headers["location"] == "/"
        value, *attributes = first.headers["set-cookie"].split("; ")
        assert value == "=".join(dash.cookie) and dash.token not in value
        assert sorted(attributes) == ["HttpOnly", "Path=/", "SameSite=Strict"]  # no Domain
        assert first.headers["referrer-policy"] == "no-referrer"
        page = await browser.get(dash.base + "/")  # the cookie alone now opens it
        assert page.status_code == 200 and '<script src="/static/app.js"' in page.text


@pytest.mark.skipif(sys.platform != "linux", reason="Linux routes all of 127/8 to lo")
async def test_each_dashboard_listens_on_a_loopback_address_of_its_own(tmp_path: Path) -> None:
    await blackboard(tmp_path / "b.db")
    async with (
        dashboard(tmp_path / "b.db") as dash,
        dashboard(tmp_path / "b.db") as other,
    ):
        assert ipaddress.ip_address(dash.host).is_loopback and dash.host != "127.0.0.1"
        assert dash.host != other.host
        async with dash.client() as client:
            assert (await client.get("/api/sessions")).status_code == 200
            for name in ("127.0.0.1", "localhost", other.host):  # other names, refused
                headers = {"Host": f"{name}:{dash.port}"}
                assert (await client.get("/api/sessions", headers=headers)).status_code == 400


def test_without_an_address_of_its_own_it_says_so_and_takes_127_0_0_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # 192.0.2.1 (TEST-NET) is on no interface: binding it fails as 127.0.0.2 does on macOS.
    monkeypatch.setattr(command, "own_loopback", lambda: "192.0.2.1")
    with command.bind_own_loopback(0) as sock:
        assert sock.getsockname()[0] == "127.0.0.1"
    assert "no loopback address but 127.0.0.1" in capsys.readouterr().err


async def test_no_response_nor_log_line_holds_the_token_after_the_first_visit(
    tmp_path: Path,
) -> None:
    sid = await blackboard(tmp_path / "b.db")
    async with dashboard(tmp_path / "b.db", "--admin") as dash:
        token = dash.token
        async with dash.client() as client, httpx.AsyncClient(base_url=dash.base) as stranger:
            responses = [await client.get(dash.url)]  # the printed URL, visited again
            for path in ("/", "/static/app.js", "/api/meta", f"/api/sessions/{sid}/messages"):
                responses.append(await client.get(path, headers={"Referer": dash.url}))
            for path in (f"/api/sessions?token={token}", "/nowhere", f"/?token={token}x"):
                responses.append(await stranger.get(path))
            responses.append(await stranger.get(dash.url, headers={"Host": "evil.example"}))
            for response in responses:
                assert token not in str(response.headers) + response.text, response.url
            # A request uvicorn cannot parse, with the token in it: its warning must not echo it.
            stream = await anyio.connect_tcp(dash.host, dash.port)
            async with stream:
                await stream.send(f"GET /?token={token} HTTP/1.1\r\nno colon\r\n\r\n".encode())
                with anyio.fail_after(10):
                    assert token.encode() not in await stream.receive()
    log = dash.stderr.decode()
    assert "dashboard of" in log  # the log was read
    assert token not in log
