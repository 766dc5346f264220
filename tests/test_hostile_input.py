"""Input an attacker would send, through the domain and real MCP sessions: nesting past
the limit, ids that disguise themselves, raw queries that allocate or reach too far."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from shared_context_server.blackboard.identity import Agent, check_name
from shared_context_server.blackboard.limits import MAX_JSON_DEPTH, json_depth
from shared_context_server.blackboard.records import rows
from shared_context_server.blackboard.records.location import RecordsStore
from shared_context_server.blackboard.records.raw_query import execute_raw_query
from shared_context_server.blackboard.tokens import authenticate_agent
from shared_context_server.config import Settings
from shared_context_server.errors import BlackboardError, InvalidInput
from shared_context_server.server.state import client_agent_id
from shared_context_server.storage.opener import open_records
from shared_context_server.storage.seam import Target
from shared_context_server.storage.sqlite.database import Database
from tests.support import ALICE, ENGINES, ERAS, connect, fails, ok, run_cli


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for i in range(depth):
        value = {"k": value} if i % 2 else [value]
    return value


def test_json_depth_counts_objects_and_arrays_without_recursing() -> None:
    assert [json_depth(1), json_depth({}), json_depth([[]]), json_depth({"a": [{"b": 1}]})] == [
        0,
        1,
        2,
        3,
    ]
    assert json_depth(nested(100_000)) == MAX_JSON_DEPTH + 1  # stops counting past the limit


def settings(tmp_path: Path, **more: Any) -> Settings:
    return Settings(db_path=tmp_path / "bb.db", agent_id="alice", agent_id_source="flag", **more)


@pytest.mark.parametrize("era", ERAS)
async def test_metadata_and_values_nested_past_the_limit_are_refused_naming_the_argument(
    tmp_path: Path, era: str
) -> None:
    deep = {"k": nested(MAX_JSON_DEPTH)}  # one level past the limit
    async with connect(era, settings(tmp_path)) as s:
        text = await fails(s, "create_session", "LIMIT_EXCEEDED", purpose="p", metadata=deep)
        assert "metadata" in text and str(MAX_JSON_DEPTH) in text
        sid = (await ok(s, "create_session", purpose="p", metadata=nested(MAX_JSON_DEPTH)))[
            "session_id"
        ]
        text = await fails(s, "add_message", "LIMIT_EXCEEDED", session_id=sid, content="c",
                           metadata=deep)  # fmt: skip
        assert "metadata" in text
        text = await fails(s, "set_memory", "LIMIT_EXCEEDED", key="k", value=nested(100))
        assert "value" in text
        # Deeper still (the raw-wire tests send thousands of levels): the same tool error.
        text = await fails(s, "update_session", "LIMIT_EXCEEDED", session_id=sid,
                           metadata={"k": nested(150)})  # fmt: skip
        assert "metadata" in text


@pytest.mark.parametrize("engine", ENGINES)
async def test_records_data_and_filters_nested_past_the_limit_are_refused(
    engine: str, make_target: Callable[[str], Target]
) -> None:
    store = RecordsStore.of(await open_records(_records_target(make_target(engine))))
    try:
        await rows.create_table(store, ALICE, "t", {"doc": "JSON", "title": "TEXT"})
        with pytest.raises(BlackboardError) as info:
            await rows.insert_record(store, ALICE, "t", {"doc": {"k": nested(MAX_JSON_DEPTH)}})
        assert info.value.code == "LIMIT_EXCEEDED" and "data" in info.value.message
        with pytest.raises(BlackboardError) as info:
            await rows.query_records(store, ALICE, "t", filters={"title": nested(2_000)})
        assert info.value.code == "LIMIT_EXCEEDED" and "filters" in info.value.message
    finally:
        await store.close()


@pytest.mark.parametrize(
    "name",
    [
        "alice\u202eecila",  # right-to-left override: shows as another name
        "ali\u2066ce",  # isolate
        "ali\u200bce",  # zero-width space
        "alice\x85",  # a C1 control character
        "alice/",
        "/reviewer",
        "alice//reviewer",
    ],
)
def test_ids_with_control_or_bidi_characters_or_an_empty_part_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput):
        check_name(name, "agent_id")


async def test_a_sub_agent_with_an_empty_name_or_a_bidi_override_cannot_be_minted(
    db: Database,
) -> None:
    for name in ("alice/", "alice/\u202erev"):
        with pytest.raises(InvalidInput):
            await authenticate_agent(db, ALICE, name)
    assert (await authenticate_agent(db, ALICE, "alice/reviewer"))["agent_id"] == "alice/reviewer"


def test_a_client_name_with_bidi_or_format_characters_becomes_a_plain_id() -> None:
    assert client_agent_id("Claude\u202e Code\u200b/x\x00y") == "Claude-Code-x-y"


def _records_target(target: Target) -> Target:
    return target.with_name("r.db") if isinstance(target, Path) else target


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store(engine: str, make_target: Callable[[str], Target]) -> AsyncIterator[RecordsStore]:
    target = _records_target(make_target(engine))
    records = RecordsStore.of(await open_records(target, seconds=2.0))
    await rows.create_table(records, ALICE, "t", {"title": "TEXT"})
    yield records
    await records.close()


SQLITE_ONLY = pytest.mark.parametrize("engine", ["sqlite"])  # SQLite's own functions


@pytest.mark.parametrize(
    "query",
    [
        "SELECT randomblob(2000000000)",
        "SELECT zeroblob(2000000000)",
        "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r LIMIT 100000)"
        " SELECT group_concat(hex(randomblob(1000))) FROM r",
    ],
)
@SQLITE_ONLY
async def test_raw_queries_cannot_allocate_past_the_value_limit(
    store: RecordsStore, query: str
) -> None:
    with pytest.raises(BlackboardError) as info:
        await execute_raw_query(store, ALICE, query)
    assert info.value.code == "LIMIT_EXCEEDED", info.value.message


@pytest.mark.parametrize(
    "query",
    [
        # many rows of values each under the value limit
        "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r LIMIT 500)"
        " SELECT randomblob(1000000) FROM r",
        # many such values in one row
        "SELECT " + ", ".join(["zeroblob(1000000)"] * 100),
        # more columns than any result needs
        "SELECT " + ", ".join(["1"] * 200),
        # a LIKE pattern whose match time grows with its length, inside one step
        "SELECT hex(zeroblob(500000)) LIKE '%' || hex(zeroblob(5000)) || 'b'",
    ],
)
@SQLITE_ONLY
async def test_raw_queries_cannot_fill_memory_or_time_through_many_values_or_long_patterns(
    store: RecordsStore, query: str
) -> None:
    with anyio.fail_after(10):
        with pytest.raises(BlackboardError) as info:
            await execute_raw_query(store, ALICE, query)
    assert info.value.code == "LIMIT_EXCEEDED", info.value.message


async def test_a_like_filter_longer_than_its_limit_is_refused_by_name(
    store: RecordsStore,
) -> None:
    with pytest.raises(InvalidInput) as info:
        await rows.query_records(store, ALICE, "t", filters={"title": {"like": "%" + "a" * 200}})
    assert "filters.title" in info.value.message
    assert await rows.query_records(store, ALICE, "t", filters={"title": {"like": "%a%"}})


@pytest.mark.parametrize(
    "query",
    [
        "SELECT fts3_tokenizer('simple')",
        "SELECT printf('%.*c', 2000000000, 'x')",
        "SELECT length(format('%2000000000d', 1))",
        "SELECT load_extension('x')",
        "SELECT readfile('/etc/passwd')",
    ],
)
@SQLITE_ONLY
async def test_dangerous_functions_are_refused_by_the_authorizer(
    store: RecordsStore, query: str
) -> None:
    with pytest.raises(BlackboardError) as info:
        await execute_raw_query(store, ALICE, query)
    assert info.value.code in ("INVALID_INPUT", "NOT_FOUND"), info.value.message
    if "load_extension" not in query and "readfile" not in query:
        assert "() is not allowed" in info.value.message


async def test_an_offset_past_64_bits_is_invalid_input_not_an_internal_error(
    store: RecordsStore,
) -> None:
    with pytest.raises(BlackboardError) as info:
        await rows.query_records(store, ALICE, "t", offset=2**64)
    assert info.value.code == "INVALID_INPUT" and "offset" in info.value.message
    with pytest.raises(BlackboardError) as info:
        await execute_raw_query(store, ALICE, "SELECT 1 LIMIT 1 OFFSET 99999999999999999999")
    assert info.value.code == "INVALID_INPUT"


async def test_an_ordinary_raw_query_still_reads_its_rows(store: RecordsStore) -> None:
    await rows.insert_record(store, Agent("alice"), "t", {"title": "x" * 100_000})
    result = await execute_raw_query(store, ALICE, "SELECT length(title), title FROM t")
    assert result["rows"][0][0] == 100_000


# --- import and export on the command line ------------------------------------------------


def export_file(tmp_path: Path, change: Any) -> Path:
    """A minimal valid export, with `change` applied to its JSON document."""
    document: dict[str, Any] = {
        "format": "shared-context-server/session",
        "version": 1,
        "exported_at": "2026-11-22T05:33:12.123456Z",
        "view": "admin",
        "complete": True,
        "session": {
            "id": "sess_0123456789abcdef",
            "purpose": "p",
            "status": "active",
            "created_by": "alice",
            "created_at": "2026-11-22T05:33:12.123456Z",
            "updated_at": "2026-11-22T05:33:12.123456Z",
            "metadata": None,
        },
        "messages": [
            {
                "id": 1,
                "sender": "alice",
                "sender_type": "generic",
                "content": "hello",
                "visibility": "public",
                "message_type": "message",
                "metadata": None,
                "parent_message_id": None,
                "created_at": "2026-11-22T05:33:12.123456Z",
            }
        ],
    }
    text = change(document)
    path = tmp_path / "in.json"
    path.write_text(text if isinstance(text, str) else json.dumps(document))
    return path


def _set(path: str, value: Any) -> Any:
    def change(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = document
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[last] = value

    return change


@pytest.mark.processes
@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        (_set("messages.0.content", "x" * 100_001), "content is 100,001 characters"),
        (_set("session.purpose", "p" * 1_001), "purpose is 1,001 characters"),
        (_set("messages.0.sender", "operator"), "the server's own name"),
        (_set("session.created_by", "maintenance"), "the server's own name"),
        (_set("messages.0.metadata", {"k": nested(40)}), "more than 32 levels"),
        (_set("messages.0.metadata", {"blob": "x" * 20_000}), "metadata is"),
        (_set("messages.0.sender", "alice\u202e"), "bidirectional"),
        (
            lambda d: json.dumps(d).replace(
                '"parent_message_id": null', '"parent_message_id": NaN'
            ),
            "NaN",
        ),
        (lambda d: "[" * 100_000 + "]" * 100_000, "nests too deeply"),
    ],
)
def test_import_refuses_what_a_tool_would_refuse_in_one_line(
    tmp_path: Path, change: Any, phrase: str
) -> None:
    source = export_file(tmp_path, change)
    proc = run_cli("import", str(source), "--db", str(tmp_path / "bb.db"))
    assert_one_line_error(proc, phrase)


@pytest.mark.processes
def test_export_does_not_replace_an_existing_file_or_fifo_without_force(tmp_path: Path) -> None:
    db = tmp_path / "bb.db"
    assert (
        run_cli("import", str(export_file(tmp_path, lambda d: None)), "--db", str(db)).returncode
        == 0
    )
    sid = "sess_0123456789abcdef"
    kept = tmp_path / "kept.json"
    kept.write_text("precious")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for target in (kept, fifo):
        proc = run_cli("export", sid, "--db", str(db), "-o", str(target))
        assert_one_line_error(proc, "already exists; pass --force")
    assert kept.read_text() == "precious" and stat.S_ISFIFO(fifo.lstat().st_mode)
    assert run_cli("export", sid, "--db", str(db), "-o", str(kept), "--force").returncode == 0
    assert json.loads(kept.read_text())["session"]["id"] == sid


def assert_one_line_error(proc: Any, phrase: str) -> None:
    assert proc.returncode == 2, proc
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "unexpected" not in proc.stderr and phrase in proc.stderr, proc.stderr
