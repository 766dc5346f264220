"""What a client sends, on the raw wire of a real server process (server/intake.py): every
line answered or served, and requests in flight bounded, on both stdio transports.

Run on a SQLite file only: what is tested here never reaches an engine's differences.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from shared_context_server.server.intake import MAX_IN_FLIGHT, MAX_LINE_DEPTH
from tests.support import INITIALIZE, INITIALIZED, poll_until, tool_call

pytestmark = pytest.mark.processes  # real server processes: never quick

TRANSPORTS = ["auto", "threads"]


def serve(db: Path, lines: list[str], transport: str, answers: int) -> list[dict[str, Any]]:
    """Pipe `lines` into a server and close its input: at once on the loop's transport,
    which answers what it read before exiting; on the SDK's (`threads`), which may drop
    requests still in flight when its input ends, once `answers` replies (messages with
    an id, null included) came back. The messages it wrote."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "shared_context_server", "--db", str(db), "--stdio", transport],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("".join(line + "\n" for line in lines))
    proc.stdin.flush()
    messages: list[dict[str, Any]] = []
    # A server that stops answering but keeps running must fail the test, not hang it.
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    try:
        while transport == "threads" and sum("id" in m for m in messages) < answers:
            line = proc.stdout.readline()
            if not line:
                break
            messages.append(json.loads(line))
        rest, stderr = proc.communicate(timeout=120)  # closes stdin: the client hangs up
    finally:
        watchdog.cancel()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "unexpected" not in stderr, stderr
    return messages + [json.loads(line) for line in rest.splitlines()]


def by_id(messages: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {m["id"]: m for m in messages if m.get("id") is not None}


def deep_call(request_id: int, depth: int) -> str:
    """A create_session call whose metadata nests `depth` objects (written by hand: the
    standard library's encoder recurses)."""
    metadata = '{"k":' * depth + "1" + "}" * depth
    arguments = '{"purpose":"deep","metadata":' + metadata + "}"
    params = '{"name":"create_session","arguments":' + arguments + "}"
    return (
        '{"jsonrpc":"2.0","id":'
        + str(request_id)
        + ',"method":"tools/call","params":'
        + params
        + "}"
    )


def start(db: Path, transport: str = "auto", text: bool = False) -> subprocess.Popen[Any]:
    return subprocess.Popen(
        [sys.executable, "-m", "shared_context_server", "--db", str(db), "--stdio", transport],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=text,
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_lines_nested_past_any_parser_are_answered_and_the_requests_around_them_served(
    tmp_path: Path, transport: str
) -> None:
    lines = [json.dumps(INITIALIZE), json.dumps(INITIALIZED)]
    lines += [json.dumps(tool_call(2, "whoami", {}))]
    lines += ["[" * 1_500 + "]" * 1_500, '{"a":' * 1_500 + "1" + "}" * 1_500]
    lines += [deep_call(3, 5_000)]
    lines += [json.dumps(tool_call(4, "whoami", {}))]
    replies = serve(tmp_path / "bb.db", lines, transport, answers=6)
    errors = [m["error"] for m in replies if m.get("id") is None]
    assert [e["code"] for e in errors] == [-32700] * 3
    assert f"the limit is {MAX_LINE_DEPTH}" in errors[0]["message"]
    answered = by_id(replies)
    assert sorted(answered) == [1, 2, 4]
    assert answered[4]["result"]["isError"] is False


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_metadata_nested_hundreds_of_levels_is_a_tool_error_naming_metadata(
    tmp_path: Path, transport: str
) -> None:
    lines = [json.dumps(INITIALIZE), json.dumps(INITIALIZED)]
    lines += [deep_call(2, 300)]
    result = by_id(serve(tmp_path / "bb.db", lines, transport, answers=2))[2]["result"]
    assert result["isError"] is True
    assert result["structuredContent"]["code"] == "LIMIT_EXCEEDED"
    assert "metadata nests" in result["structuredContent"]["message"]


def test_requests_whose_id_is_null_a_float_or_an_object_get_invalid_request(
    tmp_path: Path,
) -> None:
    lines = [json.dumps(INITIALIZE), json.dumps(INITIALIZED)]
    for request_id in (None, 1.5, {"a": 1}, [2], True):
        lines.append(json.dumps({**tool_call(0, "whoami", {}), "id": request_id}))
    lines += [json.dumps(tool_call(9, "whoami", {}))]
    replies = serve(tmp_path / "bb.db", lines, "auto", answers=7)
    errors = [m for m in replies if "error" in m]
    assert [(e["id"], e["error"]["code"]) for e in errors] == [(None, -32600)] * 5
    assert "id must be a string or an integer, not null" in errors[0]["error"]["message"]
    assert sorted(by_id(replies)) == [1, 9]


# A lone surrogate: json.dumps writes it as the escape "\ud800", valid JSON but no UTF-8.
LONE = "\ud800"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_lone_surrogates_anywhere_in_a_request_are_answered_and_the_server_carries_on(
    tmp_path: Path, transport: str
) -> None:
    lines = [json.dumps(INITIALIZE), json.dumps(INITIALIZED)]
    lines += [json.dumps({"jsonrpc": "2.0", "id": 2, "method": LONE})]
    lines += [json.dumps({**tool_call(0, "whoami", {}), "id": "a" + LONE})]
    lines += [json.dumps(tool_call(3, LONE, {}))]
    metadata = {LONE: [LONE, {"k": "x" + LONE}]}
    lines += [json.dumps(tool_call(4, "create_session", {"purpose": LONE, "metadata": metadata}))]
    lines += [json.dumps(tool_call(5, "whoami", {}))]
    replies = serve(tmp_path / "bb.db", lines, transport, answers=6)
    answered = by_id(replies)
    assert sorted(answered) == [1, 2, 3, 4, 5]
    assert answered[2]["error"]["code"] == -32601
    assert "Unknown tool: '\ufffd'" in answered[3]["error"]["message"]
    assert answered[4]["result"]["structuredContent"]["purpose"] == "\ufffd"
    assert answered[5]["result"]["isError"] is False
    [refused] = [m["error"] for m in replies if "id" in m and m["id"] is None]
    assert refused["code"] == -32600 and "lone surrogate" in refused["message"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_reply_holding_the_servers_own_non_utf8_path_is_written(
    tmp_path: Path, transport: str
) -> None:
    # A file name of bytes that are not UTF-8 decodes to a lone surrogate (surrogateescape),
    # and whoami shows the database's path.
    db = tmp_path / os.fsdecode(b"caf\xe9.db")
    lines = [json.dumps(INITIALIZE), json.dumps(INITIALIZED)]
    lines += [json.dumps(tool_call(2, "whoami", {}))]
    result = by_id(serve(db, lines, transport, answers=2))[2]["result"]
    assert result["isError"] is False and "caf\ufffd.db" in result["content"][0]["text"]


# What a 2026-era request carries instead of a handshake.
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


@pytest.mark.parametrize("era", ["handshake", "discover"])
def test_a_session_uri_holding_a_lone_surrogate_is_invalid_params_on_the_wire(
    tmp_path: Path, era: str
) -> None:
    # The mcp client cannot even send one (it puts the URI in a header); a raw client can.
    # Read as U+FFFD, the URI names a session that cannot exist (in-process, where nothing
    # is read as U+FFFD, test_realtime checks the surrogate itself, unsubscribe included).
    methods = ["resources/read"]
    lines = [json.dumps(INITIALIZE), json.dumps(INITIALIZED)] if era == "handshake" else []
    params: dict[str, Any] = {"uri": "session://" + LONE}
    if era == "handshake":
        methods += ["resources/subscribe"]
    else:
        params["_meta"] = MODERN_META
    for request_id, method in enumerate(methods, start=2):
        lines.append(
            json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        )
    answered = by_id(serve(tmp_path / "bb.db", lines, "auto", answers=0))
    for request_id in range(2, 2 + len(methods)):
        assert answered[request_id]["error"]["code"] == -32602, answered
        assert "SESSION_NOT_FOUND: no session '\ufffd'" in answered[request_id]["error"]["message"]


def unread_bytes(fd: int) -> int:
    """Bytes written into a pipe and not yet read by the other end (POSIX's FIONREAD)."""
    fcntl = pytest.importorskip("fcntl")
    termios = pytest.importorskip("termios")
    buffer = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, buffer)
    return int.from_bytes(buffer, sys.byteorder)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_client_that_reads_no_replies_is_stopped_at_its_pipe_not_in_server_memory(
    tmp_path: Path, transport: str
) -> None:
    # 20,000 calls of 1 KB: 20 MB, which an unbounded server reads in whole. A bounded one
    # stops reading once its requests in flight are stuck behind unread replies.
    pad = {"_meta": {"pad": "x" * 1_000}}
    calls = [
        json.dumps({**tool_call(100 + i, "whoami", {}), "params": {"name": "whoami", **pad}})
        for i in range(20_000)
    ]
    proc = start(tmp_path / "bb.db", transport)
    assert proc.stdin and proc.stdout
    proc.stdin.write((json.dumps(INITIALIZE) + "\n" + json.dumps(INITIALIZED) + "\n").encode())
    proc.stdin.flush()
    sent = [0]

    def write() -> None:
        for line in calls:
            proc.stdin.write(line.encode() + b"\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
            sent[0] += 1

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        # The server stops reading: its stdin pipe fills up and the writer waits.
        with anyio.fail_after(60):
            await poll_until(lambda: unread_bytes(proc.stdin.fileno()) > 32_000)  # type: ignore[union-attr]
        assert writer.is_alive() and sent[0] < 5_000
        # A client that reads again gets every answer.
        answered = set()
        with anyio.fail_after(120):
            while len(answered) < 20_001:
                line = await anyio.to_thread.run_sync(proc.stdout.readline)
                answered.add(json.loads(line)["id"])
        assert answered == {1, *range(100, 20_100)}
    finally:
        proc.kill()
        proc.wait()


def cancel(request_id: int) -> str:
    params = {"requestId": request_id}
    return json.dumps({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": params})


async def test_cancelled_requests_free_their_place_in_flight(tmp_path: Path) -> None:
    proc = start(tmp_path / "bb.db", text=True)
    assert proc.stdin and proc.stdout
    stdin, stdout = proc.stdin, proc.stdout

    def send(lines: list[str]) -> None:
        stdin.write("".join(line + "\n" for line in lines))
        stdin.flush()

    async def next_reply() -> dict[str, Any]:
        with anyio.fail_after(60):
            line = await anyio.to_thread.run_sync(stdout.readline, abandon_on_cancel=True)
        reply: dict[str, Any] = json.loads(line)
        return reply

    try:
        send([json.dumps(INITIALIZE), json.dumps(INITIALIZED)])
        send([json.dumps(tool_call(2, "create_session", {"purpose": "p"}))])
        while (reply := await next_reply())["id"] != 2:
            pass
        session = reply["result"]["structuredContent"]["session_id"]
        # Twice as many long polls (120 s each) as fit in flight, each batch cancelled:
        # if a cancelled poll kept its place, the server would stop reading for minutes.
        polls = MAX_IN_FLIGHT - 4
        wait = {"session_id": session, "after_id": 0, "timeout_s": 120}
        for first in (100, 100 + polls):
            send(
                [json.dumps(tool_call(first + i, "wait_for_messages", wait)) for i in range(polls)]
            )
            send([cancel(first + i) for i in range(polls)])
        send([json.dumps(tool_call(3, "whoami", {}))])
        while "id" not in (reply := await next_reply()):
            pass  # a notification
        assert reply["id"] == 3, reply  # a cancelled request is never answered
        assert reply["result"]["isError"] is False
    finally:
        proc.kill()
        proc.wait()
