"""The stdio transport, on the raw wire of a real server process (server/stdio.py).

Run on a SQLite file only: what is tested here never reaches an engine's differences.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from shared_context_server.server.stdio import MAX_LINE_BYTES
from tests.support import INITIALIZE, INITIALIZED, ok, spawn, tool_call

pytestmark = pytest.mark.processes  # real server processes: never quick


def popen(db: Path, **env: str) -> subprocess.Popen[str]:
    """A server with its stdin, stdout and stderr piped to this test."""
    return subprocess.Popen(
        [sys.executable, "-m", "shared_context_server", "--db", str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def serve(db: Path, lines: list[str], **env: str) -> tuple[list[dict[str, Any]], str]:
    """Pipe `lines` into a server and close its input at once, as `printf ... |` does;
    the JSON-RPC messages it wrote, and its stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "shared_context_server", "--db", str(db)],
        input="".join(line + "\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env},
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()], proc.stderr


def by_id(messages: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {m["id"]: m for m in messages if "id" in m}


def test_requests_piped_in_are_all_answered_before_the_server_exits(tmp_path: Path) -> None:
    # The input ends before the server has even started: every request read is still
    # answered (the SDK's loop would cancel them as the input ends).
    lines = [json.dumps(INITIALIZE), json.dumps(INITIALIZED)]
    lines += [json.dumps(tool_call(10 + i, "whoami", {})) for i in range(5)]
    replies, _ = serve(tmp_path / "bb.db", lines)
    answered = by_id(replies)
    assert sorted(answered) == [1, 10, 11, 12, 13, 14]
    assert answered[14]["result"]["structuredContent"]["agent_id"] == "raw"


def test_a_line_that_is_not_json_rpc_gets_a_json_rpc_error_and_the_server_carries_on(
    tmp_path: Path,
) -> None:
    lines = [
        json.dumps(INITIALIZE),
        "this is not json",
        "",
        json.dumps({"id": 7, "question": "json, but not JSON-RPC"}),
        "[1, 2]",
        json.dumps(INITIALIZED),
        json.dumps(tool_call(2, "whoami", {})),
    ]
    replies, stderr = serve(tmp_path / "bb.db", lines)
    errors = [m for m in replies if "error" in m]
    assert [(e["id"], e["error"]["code"]) for e in errors] == [
        (None, -32700),
        (7, -32600),
        (None, -32600),
    ]
    assert "one JSON-RPC message" in errors[0]["error"]["message"]
    assert by_id(replies)[2]["result"]["isError"] is False
    assert "not a JSON-RPC message" in stderr


def test_a_line_past_the_limit_is_refused_whole_and_the_next_one_served(tmp_path: Path) -> None:
    huge = tool_call(2, "add_message", {"session_id": "x", "content": "y" * (MAX_LINE_BYTES + 10)})
    lines = [json.dumps(INITIALIZE), json.dumps(INITIALIZED), json.dumps(huge)]
    lines += [json.dumps(tool_call(3, "whoami", {}))]
    replies, _ = serve(tmp_path / "bb.db", lines)
    errors = [m for m in replies if "error" in m]
    assert len(errors) == 1 and errors[0]["id"] is None  # one error for the whole line
    assert "longer than 67,108,864 bytes" in errors[0]["error"]["message"]
    assert sorted(m["id"] for m in replies if m.get("id") is not None) == [1, 3]


def test_the_sdk_transport_can_be_asked_for_and_serves_the_same_calls(tmp_path: Path) -> None:
    lines = [json.dumps(INITIALIZE), "not json", json.dumps(INITIALIZED)]
    lines += [json.dumps(tool_call(2, "create_session", {"purpose": "threads"}))]
    proc = popen(tmp_path / "bb.db", SHARED_CONTEXT_STDIO="threads")
    assert proc.stdin and proc.stdout
    proc.stdin.write("".join(line + "\n" for line in lines))
    proc.stdin.flush()
    replies = []
    while 2 not in by_id(replies):
        replies.append(json.loads(proc.stdout.readline()))
    proc.communicate(timeout=60)
    # The SDK's reader passes a bad line on as an error; the server answers it all the same.
    assert [(m["id"], m["error"]["code"]) for m in replies if "error" in m] == [(None, -32700)]
    assert by_id(replies)[2]["result"]["structuredContent"]["purpose"] == "threads"


async def test_requests_and_replies_larger_than_a_pipe_buffer_cross_intact(
    tmp_path: Path,
) -> None:
    # A pipe holds 64 KiB: these lines are several times that both ways, so reading
    # spans many chunks and writing waits for the client to drain the pipe.
    content = 'a "quoted" \\ line\n' * 5_000  # 95,000 characters, escaped on the wire
    async with spawn(tmp_path / "bb.db", "--agent-id", "big") as client:
        sid = (await ok(client, "create_session", purpose="big"))["session_id"]
        for _ in range(2):  # a page holds up to 200,000 characters of content
            await ok(client, "add_message", session_id=sid, content=content)
        page = await ok(client, "get_context", session_id=sid)
        assert [m["content"] for m in page["messages"]] == [content] * 2


@pytest.mark.parametrize("transport", ["auto", "threads"])
def test_a_client_that_stops_reading_ends_the_server_cleanly(
    tmp_path: Path, transport: str
) -> None:
    proc = popen(tmp_path / "bb.db", SHARED_CONTEXT_STDIO=transport)
    assert proc.stdin and proc.stdout and proc.stderr
    proc.stdout.close()  # gone before the first reply
    proc.stdin.write(json.dumps(INITIALIZE) + "\n" + json.dumps(INITIALIZED) + "\n")
    proc.stdin.write(json.dumps(tool_call(2, "create_session", {"purpose": "unread"})) + "\n")
    proc.stdin.flush()
    if transport == "threads":
        # The SDK's transport reads stdin on a thread that nothing can interrupt: it
        # stops when the client closes that too, as a client that leaves does.
        proc.stdin.close()
    assert proc.wait(timeout=60) == 0  # it noticed, and stopped, without being told
    stderr = proc.stderr.read()
    assert "Traceback" not in stderr and "error" not in stderr
    if not proc.stdin.closed:
        proc.stdin.close()


def test_a_client_that_closes_the_servers_stdout_and_waits_ends_the_server(
    tmp_path: Path,
) -> None:
    proc = popen(tmp_path / "bb.db")
    assert proc.stdin and proc.stdout
    proc.stdin.write(json.dumps(INITIALIZE) + "\n")
    proc.stdin.flush()
    assert json.loads(proc.stdout.readline())["id"] == 1
    proc.stdout.close()  # and stdin stays open, with nothing more sent
    assert proc.wait(timeout=60) == 0
    proc.stdin.close()


def test_requests_piped_in_with_replies_going_to_a_file_are_all_answered(
    tmp_path: Path,
) -> None:
    # `printf ... | shared-context-server > replies`: stdout is no pipe, and the input
    # ends before the server has started.
    lines = [json.dumps(INITIALIZE), json.dumps(INITIALIZED)]
    lines += [json.dumps(tool_call(10 + i, "whoami", {})) for i in range(5)]
    replies_file = tmp_path / "replies.jsonl"
    with replies_file.open("w") as out:
        subprocess.run(
            [sys.executable, "-m", "shared_context_server", "--db", str(tmp_path / "bb.db")],
            input="".join(line + "\n" for line in lines),
            stdout=out,
            text=True,
            timeout=60,
            check=True,
        )
    replies = [json.loads(line) for line in replies_file.read_text().splitlines()]
    assert sorted(by_id(replies)) == [1, 10, 11, 12, 13, 14]


def test_one_socket_for_stdin_and_stdout_is_served(tmp_path: Path) -> None:
    # socat EXEC, inetd: the requests arrive on the socket the replies leave by.
    ours, theirs = socket.socketpair()
    with ours, theirs:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shared_context_server", "--db", str(tmp_path / "bb.db")],
            stdin=theirs,
            stdout=theirs,
            stderr=subprocess.PIPE,
        )
        theirs.close()
        replies = ours.makefile("rb")
        ours.sendall((json.dumps(INITIALIZE) + "\n").encode())
        assert json.loads(replies.readline())["id"] == 1
        # A request that arrives once the server is serving, not one waiting at its start.
        later = [INITIALIZED, tool_call(2, "whoami", {})]
        ours.sendall("".join(json.dumps(m) + "\n" for m in later).encode())
        assert json.loads(replies.readline())["result"]["isError"] is False
        ours.shutdown(socket.SHUT_WR)
        assert proc.wait(timeout=60) == 0


STRAY = textwrap.dedent(
    """
    import os, anyio, mcp_types as types
    from mcp.shared.message import SessionMessage
    from shared_context_server.server.stdio import stdio_streams

    async def main():
        async with stdio_streams() as (incoming, outgoing):
            print("stray print", flush=True)
            os.write(1, b"stray write to fd 1\\n")
            request = (await incoming.receive()).message
            reply = types.JSONRPCResponse(jsonrpc="2.0", id=request.id, result={})
            await outgoing.send(SessionMessage(reply))
            await outgoing.aclose()
        print("after serving", flush=True)

    anyio.run(main)
    """
)


@pytest.mark.parametrize("transport", ["loop", "threads"])
def test_stray_output_goes_to_stderr_while_serving(transport: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", STRAY],
        input='{"jsonrpc": "2.0", "id": 5, "method": "ping"}\n',
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SHARED_CONTEXT_STDIO": transport},
    )
    assert proc.returncode == 0, proc.stderr
    reply, after = proc.stdout.splitlines()
    assert json.loads(reply) == {"jsonrpc": "2.0", "id": 5, "result": {}}
    assert after == "after serving"  # stdout is the wire again once serving ends
    assert "stray print" in proc.stderr and "stray write to fd 1" in proc.stderr
