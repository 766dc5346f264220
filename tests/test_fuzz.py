"""Property-based fuzzing of a real server process: every tool's arguments, and raw
protocol lines. Whatever arrives, each call is answered with a documented code and the
server is alive at the end.

One server (core and records toolsets, raw writes on) serves the whole module, over its
raw wire. Runs are bounded by max_examples (the module takes well under a minute); the
seed is random, and hypothesis prints the failing example to reproduce.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from itertools import count
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared_context_server.server.toolsets import tool_list_for
from shared_context_server.storage.seam import Target
from tests.support import ENGINES, INITIALIZE, INITIALIZED, create_database, tool_call

# The codes the README documents for tool errors (INTERNAL_ERROR is a bug, not a code).
DOCUMENTED_CODES = {
    "INVALID_INPUT",
    "LIMIT_EXCEEDED",
    "SESSION_NOT_FOUND",
    "NOT_FOUND",
    "PERMISSION_DENIED",
    "CONFLICT",
    "DATABASE_BUSY",
    "TOKEN_INVALID",
}
# JSON-RPC errors a request may get: parse error, invalid request, unknown method,
# invalid params, and the SDK's own handler failures as the spec numbers them.
PROTOCOL_CODES = {-32700, -32600, -32601, -32602, -32603}
REPLY_TIMEOUT_S = 60.0
FUZZ = settings(
    max_examples=100,
    deadline=None,  # a shared machine: latency is not what is tested here
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SERVER_FLAGS = ["--agent-id", "fuzzer", "--toolsets", "core,records", "--allow-raw-writes"]
TOOLS = tool_list_for(frozenset({"core", "records"}))


class Wire:
    """A server process driven by raw JSON-RPC lines; replies matched by id."""

    def __init__(self, db: Target, flags: list[str] = SERVER_FLAGS) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shared_context_server", "--db", str(db), *flags],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.ids = count(1_000)
        self.inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.stderr: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.request(INITIALIZE)
        self.send(json.dumps(INITIALIZED).encode())

    def _read(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            self.inbox.put(json.loads(line))  # every line the server writes is JSON
        self.inbox.put(None)

    def _drain_stderr(self) -> None:
        assert self.proc.stderr
        self.stderr.extend(self.proc.stderr)

    def send(self, line: bytes) -> None:
        assert self.proc.stdin
        self.proc.stdin.write(line + b"\n")
        self.proc.stdin.flush()

    def replies_until(self, request_id: Any) -> list[dict[str, Any]]:
        """Every message up to and including the answer to `request_id`."""
        seen = []
        while True:
            message = self.inbox.get(timeout=REPLY_TIMEOUT_S)
            assert message is not None, "the server closed its stdout: " + self.log()
            seen.append(message)
            if message.get("id") == request_id and ("result" in message or "error" in message):
                return seen

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        self.send(json.dumps(message).encode())
        return self.replies_until(message["id"])[-1]

    def call(self, tool: str, arguments: Any) -> dict[str, Any]:
        message = tool_call(next(self.ids), tool, {})
        message["params"]["arguments"] = arguments
        return self.request(message)

    def log(self) -> str:
        return b"".join(self.stderr[-20:]).decode(errors="replace")


@pytest.fixture(scope="module", params=ENGINES)
def wire(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Wire]:
    """One server per engine, each with the records toolset."""
    if request.param == "sqlite":
        server = Wire(tmp_path_factory.mktemp("fuzz") / "bb.db")
    else:
        cluster = request.getfixturevalue("pg_cluster")
        url = cluster.url(create_database(cluster, request.getfixturevalue("pg_template")))
        server = Wire(url)
    yield server
    assert server.proc.poll() is None, "the server died: " + server.log()
    alive = server.call("whoami", {})
    assert alive["result"]["structuredContent"]["agent_id"] == "fuzzer"
    assert b"Traceback" not in b"".join(server.stderr), server.log()
    server.proc.kill()
    server.proc.wait()


@pytest.fixture(scope="module")
def known(wire: Wire) -> dict[str, Any]:
    """Real names the strategies mix in, so calls reach past the first check."""
    session = wire.call("create_session", {"purpose": "fuzz"})["result"]["structuredContent"]
    wire.call("create_table", {"table_name": "t", "columns": {"a": "TEXT", "b": "JSON"}})
    message = wire.call("add_message", {"session_id": session["session_id"], "content": "m"})
    token = wire.call("authenticate_agent", {"agent_id": "fuzzer/sub"})
    return {
        "session_id": session["session_id"],
        "message_id": message["result"]["structuredContent"]["message_id"],
        "token": token["result"]["structuredContent"]["token"],
    }


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


EDGE_INTEGERS = st.sampled_from([0, -1, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**30])
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | EDGE_INTEGERS
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(["", " ", "a" * 300, "x\u202ey", "a/", "/", "\x00", "sqlite_master"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
) | st.integers(min_value=30, max_value=120).map(nested)
SQL = st.sampled_from(
    [
        "SELECT * FROM t",
        "SELECT randomblob(2000000000)",
        "SELECT zeroblob(?)",
        "SELECT fts3_tokenizer('simple')",
        "SELECT printf('%.*c', 2000000000, 'x')",
        "SELECT 1 LIMIT 1 OFFSET 99999999999999999999",
        "INSERT INTO t (a) VALUES (?)",
        "DELETE FROM t WHERE a = ?",
        "ATTACH 'x.db' AS x",
        "PRAGMA writable_schema = 1",
        "SELECT * FROM sqlite_master",
        "select 1; select 2",
        "",
    ]
)


def valid_for(name: str, schema: dict[str, Any], known: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A value the tool may well accept: real names, in-range numbers, short text."""
    real = {
        "session_id": known["session_id"],
        "message_id": known["message_id"],
        "parent_message_id": known["message_id"],
        "agent_token": known["token"],
        "table_name": "t",
        "timeout_s": 1,  # never a long wait
        "wait_s": 0,
        "after_id": 0,  # a message exists: a long poll returns at once
    }
    if name in real:
        return st.just(real[name])
    if name == "query":
        return SQL
    kind = schema.get("type")
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if kind in ("integer", "number"):
        return st.integers(schema.get("minimum", 0), schema.get("maximum", 1_000))
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(st.text(ALPHABET, min_size=1, max_size=8), max_size=3)
    if kind == "object":
        return st.dictionaries(st.text(ALPHABET, min_size=1, max_size=8), scalars, max_size=3)
    return st.text(ALPHABET, min_size=1, max_size=20)


def short_waits(arguments: Any) -> Any:
    """The arguments with any in-range wait cut to a second: a long poll that waits as
    asked is right, and the fuzz is after answers, not after waiting out the clock."""
    if not isinstance(arguments, dict):
        return arguments
    waits = {
        name: 1
        for name in ("timeout_s", "wait_s")
        if type(arguments.get(name)) in (int, float) and 1 < arguments[name] <= 1_000
    }
    return {**arguments, **waits}


def hostile_for(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A value made to break the argument: edges of its type, or another type altogether."""
    kind = schema.get("type")
    if kind in ("integer", "number"):
        edges = EDGE_INTEGERS | st.floats(allow_nan=False, allow_infinity=False)
    elif kind == "string":
        edges = WEIRD_TEXT
    else:
        edges = st.integers(min_value=30, max_value=150).map(nested) | json_values
    return st.one_of(edges, edges, json_values)


ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789_"
WEIRD_TEXT = st.sampled_from(
    [
        "",
        " ",
        "a" * 300,
        "x" * 200_001,
        "x\u202ey",
        "a/",
        "/",
        "a//b",
        "\x00",
        "sqlite_master",
        "-id",
    ]
) | st.text(max_size=40)


@pytest.mark.processes
@pytest.mark.parametrize("tool", TOOLS, ids=lambda tool: tool.name)
def test_every_tool_answers_any_arguments_with_a_documented_code(
    wire: Wire, known: dict[str, Any], tool: Any
) -> None:
    properties = tool.input_schema.get("properties", {})
    required = set(tool.input_schema.get("required", ()))
    valid = {name: valid_for(name, schema, known) for name, schema in properties.items()}
    plausible = st.fixed_dictionaries(
        {name: valid[name] for name in required},
        optional={name: valid[name] for name in valid if name not in required},
    )
    # One argument at a time made hostile, the rest plausible: calls get past the first check.
    mutated = plausible.flatmap(
        lambda base: st.sampled_from(sorted(properties)).flatmap(
            lambda name: hostile_for(properties[name]).map(lambda bad: {**base, name: bad})
        )
    )
    anything = st.one_of(
        plausible,
        mutated,
        mutated,
        st.fixed_dictionaries({}, optional={n: hostile_for(p) for n, p in properties.items()}),
        json_values,
        st.dictionaries(st.text(max_size=10), json_values, max_size=3),
    )

    @FUZZ
    @given(arguments=anything)
    def check(arguments: Any) -> None:
        reply = wire.call(tool.name, short_waits(arguments))
        if "error" in reply:  # arguments that are not an object
            assert reply["error"]["code"] in PROTOCOL_CODES, reply
            return
        result = reply["result"]
        if result.get("isError"):
            assert result["structuredContent"]["code"] in DOCUMENTED_CODES, result
        else:
            assert isinstance(result["structuredContent"], dict), result

    check()


METHODS = [
    "tools/call",
    "tools/list",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "ping",
    "initialize",
    "prompts/list",
    "notifications/cancelled",
    "notifications/initialized",
    "nonsense/method",
]
ids = st.none() | st.integers() | st.floats() | st.text(max_size=10) | st.booleans() | json_values
messages = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2]) | scalars,
        "id": ids,
        "method": st.sampled_from(METHODS) | scalars,
        "params": json_values
        | st.fixed_dictionaries(
            {},
            optional={
                "name": st.text(max_size=12),
                "uri": st.text(max_size=30),
                "arguments": json_values,
            },
        ),
        "result": json_values,
        "error": json_values,
    },
)


def as_line(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


lines = (
    messages.map(as_line)
    | json_values.map(as_line)
    | st.binary(max_size=200).map(lambda b: b.replace(b"\n", b" "))
    | st.text(max_size=200).map(lambda t: t.replace("\n", " ").encode("utf-8", "surrogatepass"))
    | st.integers(min_value=100, max_value=3_000).map(lambda n: b"[" * n + b"]" * n)
    | st.integers(min_value=100, max_value=3_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n)
)


@settings(FUZZ, max_examples=300)
@given(line=lines)
def test_any_line_is_answered_or_ignored_and_the_server_keeps_serving(
    wire: Wire, line: bytes
) -> None:
    wire.send(line)
    sentinel = next(wire.ids)
    wire.send(json.dumps({"jsonrpc": "2.0", "id": sentinel, "method": "ping"}).encode())
    for reply in wire.replies_until(sentinel):
        assert reply.get("jsonrpc") == "2.0", reply
        if "error" in reply and reply.get("id") != sentinel:
            assert reply["error"]["code"] in PROTOCOL_CODES, reply
