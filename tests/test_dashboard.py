"""The dashboard over raw HTTP, as a browser (or a hostile page) would reach it: a real
`dashboard` process on a real file, and what each response holds for each viewer."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest

from shared_context_server.blackboard import memory
from shared_context_server.blackboard.activity import messages_over_time
from shared_context_server.dashboard.live import Changes
from shared_context_server.errors import PermissionDenied
from shared_context_server.storage.opener import open_store
from shared_context_server.storage.seam import Store, Target
from tests.dashboard_process import SECRETS, blackboard, dashboard
from tests.support import ADMIN, ALICE, BOB, ok, spawn

VIEWS = {  # dashboard flags -> the secrets that viewer may read
    (): set(),
    ("--as", "bob"): {"SECRET-agent-only"},  # bob is a reviewer: agent_only of reviewers
    ("--as", "alice"): {"SECRET-private", "SECRET-agent-only"},
    ("--admin",): set(SECRETS),
}


async def first_event(client: httpx.AsyncClient, path: str) -> dict[str, Any]:
    """The first `change` event of a live stream."""
    async with client.stream("GET", path) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                data: dict[str, Any] = json.loads(line[5:])
                return data
    raise AssertionError("the stream ended without an event")


@pytest.mark.processes
@pytest.mark.parametrize(("flags", "readable"), list(VIEWS.items()))
async def test_every_response_holds_only_what_the_viewer_may_read(
    target: Target, flags: tuple[str, ...], readable: set[str]
) -> None:
    sid = await blackboard(target)
    async with dashboard(target, *flags) as dash, dash.client() as client:
        bodies = []
        for path in (
            "/api/sessions",
            f"/api/sessions/{sid}",
            f"/api/sessions/{sid}/messages",
            f"/api/sessions/{sid}/activity",
            f"/api/search?q=SECRET&session={sid}",
            "/api/search?q=SECRET",
        ):
            response = await client.get(path)
            assert response.status_code == 200, (path, response.text)
            bodies.append(response.text)
        bodies.append(json.dumps(await first_event(client, f"/api/events?session={sid}")))
    for secret in SECRETS:
        shown = [body for body in bodies if secret in body]
        assert bool(shown) == (secret in readable), (secret, flags)
    counts = json.loads(bodies[1])["message_count"]
    assert counts == 2 + len(readable)  # the finding and carol's reply, for everyone


@pytest.mark.processes
async def test_a_message_from_another_process_streams_to_the_page_but_a_private_one_never(
    target: Target,
) -> None:
    path = target
    sid = await blackboard(path)
    async with (
        dashboard(path) as dash,
        dash.client() as client,
        spawn(path, "--agent-id", "bob", "--agent-type", "reviewer") as bob,
        client.stream("GET", f"/api/events?session={sid}&after=5") as stream,
    ):
        seen: list[dict[str, Any]] = []
        lines = stream.aiter_lines()
        with anyio.fail_after(30):
            async for line in lines:  # the stream's opening event: nothing after id 5
                if line.startswith("data:"):
                    assert json.loads(line[5:])["messages"] == []
                    break
            for visibility in ("private", "agent_only", "public"):
                content = f"from bob, {visibility}"
                await ok(bob, "add_message", session_id=sid, content=content, visibility=visibility)
            async for line in lines:
                if line.startswith("data:"):
                    seen += json.loads(line[5:]).get("messages", [])
                    if any(m["visibility"] == "public" for m in seen):
                        break
    assert [m["content"] for m in seen] == ["from bob, public"]


@pytest.mark.processes
async def test_without_the_token_or_under_another_host_nothing_is_served(target: Target) -> None:
    sid = await blackboard(target)
    async with dashboard(target, "--admin") as dash:
        async with httpx.AsyncClient(base_url=dash.base) as stranger:
            paths = ("/", "/api/sessions", f"/api/sessions/{sid}/messages", "/api/events")
            for path in (*paths, "/static/app.js"):
                for query in ("", "?token=wrong"):
                    response = await stranger.get(path + query)
                    assert response.status_code == 403, path
                    assert "finding" not in response.text
            rebound = await stranger.get(
                f"/api/sessions?token={dash.token}", headers={"Host": f"evil.example:{dash.port}"}
            )
            assert rebound.status_code == 400
            # Another local app's malformed cookie on 127.0.0.1 does not hide ours.
            name, value = dash.cookie
            mixed = {"Cookie": f'other="x; junk; {name}={value}'}
            assert (await stranger.get("/api/sessions", headers=mixed)).status_code == 200
        async with dash.client() as client:
            assert (await client.get("/api/sessions")).status_code == 200
            other_site = await client.get(
                "/api/sessions", headers={"Origin": "https://evil.example"}
            )
            assert other_site.status_code == 403
            assert (await client.post("/api/sessions")).status_code == 405


@pytest.mark.processes
async def test_responses_carry_a_strict_csp_and_no_cors(tmp_path: Path) -> None:
    sid = await blackboard(tmp_path / "b.db")
    async with dashboard(tmp_path / "b.db") as dash, dash.client() as client:
        for path in ("/", f"/api/sessions/{sid}/messages", "/static/app.js"):
            response = await client.get(path, headers={"Origin": dash.base})
            csp = response.headers["content-security-policy"]
            assert "default-src 'none'" in csp and "script-src 'self'" in csp
            assert "unsafe" not in csp
            assert response.headers["x-frame-options"] == "DENY"
            assert not any(h.startswith("access-control-") for h in response.headers)
        page = (await client.get("/")).text
        assert "<script>" not in page and " on" not in page.split("<body>")[1].split(">")[0]


@pytest.mark.processes
async def test_audit_log_and_memory_are_for_admin_only_and_values_only_on_request(
    target: Target,
) -> None:
    await blackboard(target)
    async with dashboard(target, "--as", "alice") as dash, dash.client() as client:
        for path in ("/api/audit", "/api/memory", "/api/memory/value?agent_id=alice&key=plan"):
            response = await client.get(path)
            assert response.status_code == 403 and response.json()["code"] == "PERMISSION_DENIED"
    async with dashboard(target, "--admin") as dash, dash.client() as client:
        audit = (await client.get("/api/audit?agent_id=bob")).json()
        assert {e["agent_id"] for e in audit["entries"]} == {"bob"}
        keys = await client.get("/api/memory")
        assert keys.json()["entries"][0]["key"] == "plan"
        assert "SECRET-memory-value" not in keys.text
        value = await client.get("/api/memory/value?agent_id=alice&key=plan")
        assert value.json()["value"] == {"step": "SECRET-memory-value"}


@pytest.mark.processes
async def test_mistakes_are_coded_json_errors(target: Target) -> None:
    await blackboard(target)
    async with dashboard(target) as dash, dash.client() as client:
        missing = await client.get("/api/sessions/sess_nope/messages")
        assert (missing.status_code, missing.json()["code"]) == (404, "SESSION_NOT_FOUND")
        assert (await client.get("/api/sessions?status=completed")).json() == []
        bad = await client.get("/api/sessions?status=sleeping")
        assert (bad.status_code, bad.json()["code"]) == (400, "INVALID_INPUT")
        assert (await client.get("/api/events?session=sess_nope")).status_code == 404


def _files(path: Path) -> str:
    digest = hashlib.sha256()
    for part in (path, Path(f"{path}-wal")):
        digest.update(part.read_bytes() if part.exists() else b"")
    return digest.hexdigest()


@pytest.mark.processes
async def test_the_dashboard_writes_nothing_to_the_blackboard(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    sid = await blackboard(path)
    before = _files(path)
    async with dashboard(path, "--admin") as dash, dash.client() as client:
        for page in ("/api/sessions", f"/api/sessions/{sid}/messages", "/api/processes"):
            assert (await client.get(page)).status_code == 200
        assert (await client.get("/api/audit")).status_code == 200
        await first_event(client, f"/api/events?session={sid}")
    assert _files(path) == before


@pytest.mark.processes
def test_a_missing_file_or_a_taken_port_is_one_line(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "shared_context_server", "dashboard"]
    missing = subprocess.run(
        [*command, "--db", str(tmp_path / "none.db")], capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 2 and "no database at" in missing.stderr
    assert not (tmp_path / "none.db").exists()
    with __import__("socket").socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = subprocess.run(
            [*command, "--db", str(tmp_path / "none.db"), "--host", "127.0.0.1", "--port", port],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert busy.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in busy.stderr
    assert busy.stderr.count("\n") == 1


@pytest.mark.processes
async def test_listening_beyond_this_machine_warns(tmp_path: Path) -> None:
    await blackboard(tmp_path / "b.db")
    command = [sys.executable, "-m", "shared_context_server", "dashboard"]
    async with await anyio.open_process(
        [*command, "--db", str(tmp_path / "b.db"), "--host", "0.0.0.0"]
    ) as process:
        assert process.stderr is not None
        text = ""
        with anyio.fail_after(30):
            while "warning" not in text:
                text += (await process.stderr.receive()).decode()
        process.terminate()
    assert "not only this machine" in text


async def test_changes_look_at_the_file_only_while_someone_listens() -> None:
    versions = iter(range(1_000_000))

    async def version() -> int:
        return next(versions) // 3  # "commits" every third look

    changes = Changes(version, interval=0.005)
    async with anyio.create_task_group() as tg:
        tg.start_soon(changes.run)
        await anyio.sleep(0.1)
        assert changes.looks == 0  # nobody listens: not one statement
        async with changes.listening():
            with anyio.fail_after(10):
                assert await changes.wait(0) == 1
                assert await changes.wait(1) == 2
        looks = changes.looks
        await anyio.sleep(0.1)
        assert changes.looks <= looks + 1  # at most the look already under way
        changes.stop()
        assert await changes.wait(2) is None
        tg.cancel_scope.cancel()


async def test_messages_over_time_counts_what_the_viewer_sees_per_agent(target: Target) -> None:
    sid = await blackboard(target)
    db = await open_store(target)
    try:
        public = await messages_over_time(db, BOB.__class__("x", "nobody"), sid)
        admin = await messages_over_time(db, ADMIN, sid)
        bob = await messages_over_time(db, BOB, sid)
    finally:
        await db.close()
    totals = {a["agent"]: sum(a["counts"]) for a in public["agents"]}
    assert totals == {"alice": 1, "carol": 1}
    assert {a["agent"]: sum(a["counts"]) for a in admin["agents"]} == {
        "alice": 2,
        "bob": 1,
        "carol": 1,
        "root": 1,
    }
    assert {a["agent"] for a in bob["agents"]} == {"alice", "bob", "carol"}


async def test_only_an_admin_lists_every_agents_memory_keys_page_by_page(db: Store) -> None:
    for agent, key in ((ALICE, "a1"), (ALICE, "a2"), (BOB, "b1")):
        await memory.set_memory(db, agent, key, 1)
    with pytest.raises(PermissionDenied):
        await memory.all_memory_keys(db, ALICE)
    first = await memory.all_memory_keys(db, ADMIN, limit=2)
    rest = await memory.all_memory_keys(db, ADMIN, limit=2, cursor=first["next_cursor"])
    pairs = [(e["agent_id"], e["key"]) for e in first["entries"] + rest["entries"]]
    assert pairs == [("alice", "a1"), ("alice", "a2"), ("bob", "b1")]
    assert rest["next_cursor"] is None
    assert (await memory.any_memory(db, ADMIN, "bob", "b1"))["value"] == 1


async def test_the_page_shows_claims_and_who_acknowledged_a_hand_off_live(target: Target) -> None:
    from shared_context_server.blackboard import acks, claims, messages, sessions

    database = await open_store(target)
    try:
        sid = (await sessions.create_session(database, ALICE, "hand-offs"))["id"]
        posted = await messages.add_message(
            database, ALICE, sid, "bob: take the parser", metadata={"to": ["bob"]}
        )
        await claims.claim(
            database, ALICE, ["/repo/src/**"], cwd="/", presence=None, reason="parser rewrite"
        )
    finally:
        await database.close()
    async with dashboard(target) as dash, dash.client() as client:
        (claim,) = (await client.get("/api/claims")).json()
        assert (claim["holder"], claim["target"], claim["reason"]) == (
            "alice",
            "/repo/src/**",
            "parser rewrite",
        )
        assert {"since", "until"} <= set(claim)
        (message,) = (await client.get(f"/api/sessions/{sid}/messages")).json()["messages"]
        assert message["unacknowledged"] == ["bob"] and message["acknowledged"] == {}
        database = await open_store(target)
        try:
            await acks.acknowledge(database, BOB, sid, [posted["message_id"]])
        finally:
            await database.close()
        (message,) = (await client.get(f"/api/sessions/{sid}/messages")).json()["messages"]
        assert list(message["acknowledged"]) == ["bob"] and message["unacknowledged"] == []
