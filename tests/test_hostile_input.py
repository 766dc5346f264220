"""Input an attacker would send, through the domain and real MCP sessions: nesting past
the limit, ids that disguise themselves, raw queries that allocate or reach too far."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shared_context_server.blackboard.identity import Agent, check_name
from shared_context_server.blackboard.limits import MAX_JSON_DEPTH, json_depth
from shared_context_server.blackboard.records import raw, rows
from shared_context_server.blackboard.records.store import RecordsStore
from shared_context_server.blackboard.tokens import authenticate_agent
from shared_context_server.config import Settings
from shared_context_server.db import Database
from shared_context_server.errors import BlackboardError, InvalidInput
from shared_context_server.server.state import client_agent_id
from tests.conftest import ALICE, ERAS, connect, fails, ok


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


async def test_records_data_and_filters_nested_past_the_limit_are_refused(tmp_path: Path) -> None:
    store = await RecordsStore.open(tmp_path / "r.db")
    try:
        async with store.db.write() as tx:
            await rows.make_table(tx, "t", {"doc": "JSON", "title": "TEXT"}, None)
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


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RecordsStore]:
    records = await RecordsStore.open(tmp_path / "r.db", raw_query_seconds=2.0)
    async with records.db.write() as tx:
        await rows.make_table(tx, "t", {"title": "TEXT"}, None)
    yield records
    await records.close()


@pytest.mark.parametrize(
    "query",
    [
        "SELECT randomblob(2000000000)",
        "SELECT zeroblob(2000000000)",
        "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r LIMIT 100000)"
        " SELECT group_concat(hex(randomblob(1000))) FROM r",
    ],
)
async def test_raw_queries_cannot_allocate_past_the_value_limit(
    store: RecordsStore, query: str
) -> None:
    with pytest.raises(BlackboardError) as info:
        await raw.execute_raw_query(store, ALICE, query)
    assert info.value.code == "LIMIT_EXCEEDED", info.value.message


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
async def test_dangerous_functions_are_refused_by_the_authorizer(
    store: RecordsStore, query: str
) -> None:
    with pytest.raises(BlackboardError) as info:
        await raw.execute_raw_query(store, ALICE, query)
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
        await raw.execute_raw_query(store, ALICE, "SELECT 1 LIMIT 1 OFFSET 99999999999999999999")
    assert info.value.code == "INVALID_INPUT"


async def test_an_ordinary_raw_query_still_reads_its_rows(store: RecordsStore) -> None:
    await rows.insert_record(store, Agent("alice"), "t", {"title": "x" * 100_000})
    result = await raw.execute_raw_query(store, ALICE, "SELECT length(title), title FROM t")
    assert result["rows"][0][0] == 100_000
