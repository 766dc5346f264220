"""search_context: typo recall, the visibility rule, freshness, fall-backs and bad input, on a
real file and through the tool in both eras."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pytest

from shared_context_server.blackboard import messages, search, sessions
from shared_context_server.clock import utc_now
from shared_context_server.config import Settings
from shared_context_server.errors import InvalidInput, SessionNotFound
from shared_context_server.storage.opener import open_store
from shared_context_server.storage.seam import Conn, Store, Target
from shared_context_server.storage.sqlite import search as sqlite_search
from shared_context_server.storage.sqlite.database import Database
from shared_context_server.storage.sqlite.schema import MIGRATIONS
from tests.corpus import corpus, with_typo
from tests.support import ADMIN, ALICE, BOB, CAROL, ERAS, connect, fails, ok


async def new_session(db: Store) -> str:
    return str((await sessions.create_session(db, ALICE, "search"))["id"])


def ids(found: dict[str, Any]) -> list[int]:
    return [r["message"]["id"] for r in found["results"]]


# Search reads indexed rows through the trigram index and newer rows directly, and scores
# a small session whole: the behaviour must be the same every way.
WAYS = pytest.mark.parametrize("way", ["indexed", "not-yet-indexed", "scored-whole"])


@pytest.fixture(autouse=True)
def direct_scan(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The index's paths, unless a test is run the `scored-whole` way: these sessions are
    small, and a small session is otherwise scored whole."""
    way = getattr(request.node, "callspec", None) and request.node.callspec.params.get("way")
    monkeypatch.setattr(search, "DIRECT_SCAN", 10**9 if way == "scored-whole" else 0)


@WAYS
async def test_a_typo_in_a_distinctive_word_finds_its_message_in_the_top_five(
    db: Store, way: str
) -> None:
    sid = await new_session(db)
    words = corpus(1000)
    posted = await db.transact(lambda conn: plant(conn, sid, [text for _, text in words]))
    if way != "not-yet-indexed":  # PostgreSQL's trigram index is kept at each commit
        assert await db.index_search() == (1000 if db.engine == "sqlite" else 0)
        await db.checkpoint_if_large()  # maintenance's upkeep: PostgreSQL's statistics
    assert await typo_recall_at_five(db, sid, words, posted, random.Random(7), 100) >= 0.95
    # The figure at 10,000 messages: tests/benchmarks/bench_search.py prints it.


PLANT = (
    "INSERT INTO messages (session_id, sender, sender_type, content, visibility, message_type,"
    " created_at) VALUES "
)


def plant(conn: Conn, sid: str, texts: list[str]) -> list[int]:
    """Store public messages from alice in one statement, as add_message would; their ids."""
    row = "(?, 'alice', 'reviewer', ?, 'public', 'message', ?)"
    conn.execute(
        PLANT + ", ".join([row] * len(texts)), [v for t in texts for v in (sid, t, utc_now())]
    )
    found = conn.execute("SELECT id FROM messages WHERE session_id = ? ORDER BY id", (sid,))
    return [int(r[0]) for r in found.fetchall()]


async def typo_recall_at_five(
    db: Store, sid: str, words: Any, posted: list[int], rng: random.Random, n: int
) -> float:
    """The share of `n` messages found in the top five by their keyword with one typo."""
    hits = 0
    for i in rng.sample(range(len(words)), n):
        found = await search.search_context(db, BOB, sid, with_typo(rng, words[i][0]), limit=5)
        hits += posted[i] in ids(found)
    return hits / n


@WAYS
@pytest.mark.parametrize(
    ("visibility", "finders"),
    [("private", {"alice", "root"}), ("agent_only", {"alice", "bob", "root"})],
)
async def test_messages_the_caller_may_not_see_are_never_results(
    db: Store, visibility: str, finders: set[str], way: str
) -> None:
    sid = await new_session(db)
    secret = await messages.add_message(db, ALICE, sid, "the zanzibarite key rotates", visibility)
    if way != "not-yet-indexed":
        await db.index_search()
    for reader in (ALICE, BOB, CAROL, ADMIN):
        found = await search.search_context(db, reader, sid, "zanzibarite", fuzzy_threshold=0)
        assert (secret["message_id"] in ids(found)) == (reader.agent_id in finders)


@WAYS
async def test_hidden_messages_do_not_crowd_out_visible_ones(db: Store, way: str) -> None:
    sid = await new_session(db)
    for i in range(search.CANDIDATES + 50):
        await messages.add_message(db, ALICE, sid, f"quorvex note {i}", "private")
    visible = await messages.add_message(db, ALICE, sid, "quorvex public note")
    if way != "not-yet-indexed":
        await db.index_search()
    found = await search.search_context(db, BOB, sid, "quorvex")
    assert ids(found) == [visible["message_id"]]


async def test_results_are_best_first_above_the_threshold_within_the_limit(db: Store) -> None:
    sid = await new_session(db)
    exact = await messages.add_message(db, ALICE, sid, "deploy the flumbrix service")
    close = await messages.add_message(db, ALICE, sid, "the flumbrax parser")
    await messages.add_message(db, ALICE, sid, "nothing related at all here")
    found = await search.search_context(db, ALICE, sid, "flumbrix", fuzzy_threshold=70)
    assert ids(found) == [exact["message_id"], close["message_id"]]
    scores = [r["score"] for r in found["results"]]
    assert scores[0] == 100 and 70 <= scores[1] < 100
    one = await search.search_context(db, ALICE, sid, "flumbrix", limit=1)
    assert ids(one) == [exact["message_id"]]


async def test_search_time_is_the_milliseconds_between_start_and_end(
    db: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = await new_session(db)
    await messages.add_message(db, ALICE, sid, "deploy the flumbrix service")
    readings = iter([100.0, 100.0375])  # the clock as the search starts, and as it ends
    monkeypatch.setattr(search, "time", SimpleNamespace(perf_counter=lambda: next(readings)))
    found = await search.search_context(db, ALICE, sid, "flumbrix")
    assert found["search_time_ms"] == 37.5


async def test_sender_and_metadata_text_are_searched_and_sender_filters(db: Store) -> None:
    sid = await new_session(db)
    tagged = await messages.add_message(db, ALICE, sid, "see ticket", metadata={"jira": "OPS-4711"})
    by_bob = await messages.add_message(db, BOB, sid, "a finding about the cache")
    assert ids(await search.search_context(db, ALICE, sid, "ops-4711")) == [tagged["message_id"]]
    assert by_bob["message_id"] in ids(await search.search_context(db, ALICE, sid, "bob"))
    only_alice = await search.search_context(db, ALICE, sid, "cache", sender="alice")
    assert by_bob["message_id"] not in ids(only_alice)


async def test_a_query_shorter_than_a_trigram_still_matches(db: Store) -> None:
    sid = await new_session(db)
    hit = await messages.add_message(db, ALICE, sid, "move to k8s now")
    await messages.add_message(db, ALICE, sid, "unrelated words")
    found = await search.search_context(db, ALICE, sid, "k8", fuzzy_threshold=90)
    assert ids(found) == [hit["message_id"]]


async def test_a_query_of_only_common_trigrams_finds_the_newest_holding_them_all(
    db: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = await new_session(db)
    older = await messages.add_message(db, ALICE, sid, "the server timeout again")
    newer = await messages.add_message(db, ALICE, sid, "server timeout on the worker")
    await messages.add_message(db, ALICE, sid, "nothing to see")
    await db.index_search()
    monkeypatch.setattr(sqlite_search, "POSTINGS_BUDGET", 0)  # every trigram counts as common
    found = await search.search_context(db, ALICE, sid, "server timeout", fuzzy_threshold=90)
    assert ids(found) == [newer["message_id"], older["message_id"]]


async def test_common_trigrams_in_a_session_with_a_small_share_of_the_index_still_match(
    db: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    busy = await new_session(db)
    for i in range(60):
        await messages.add_message(db, ALICE, busy, f"server timeout number {i}")
    sid = await new_session(db)
    older = await messages.add_message(db, ALICE, sid, "the server timeout again")
    newer = await messages.add_message(db, ALICE, sid, "server timeout on the worker")
    await messages.add_message(db, ALICE, sid, "nothing to see")
    await db.index_search()
    monkeypatch.setattr(sqlite_search, "POSTINGS_BUDGET", 0)  # every trigram counts as common
    monkeypatch.setattr(sqlite_search, "MIN_WALK_SHARE", 0.5)  # 3 of 63 rows: its own newest
    found = await search.search_context(db, ALICE, sid, "server timeout", fuzzy_threshold=90)
    assert ids(found) == [newer["message_id"], older["message_id"]]


async def test_only_the_rarest_trigrams_within_the_budget_are_used() -> None:
    counts = {"the": 900, "qzx": 3, "zxv": 5, "abs": 0, "ser": 400}
    assert sqlite_search.choose_trigrams(counts, 10) == ["qzx", "zxv"]
    assert sqlite_search.choose_trigrams(counts, 500) == ["qzx", "zxv", "ser"]
    assert sqlite_search.choose_trigrams(counts, 2) == []


async def test_a_message_written_through_another_handle_is_searchable_at_once(
    target: Target,
) -> None:
    writer, reader = await open_store(target), await open_store(target)
    try:
        sid = await new_session(writer)
        assert ids(await search.search_context(reader, ALICE, sid, "plovinex")) == []
        posted = await messages.add_message(writer, ALICE, sid, "plovinex is ready")
        assert ids(await search.search_context(reader, ALICE, sid, "plovinex")) == [
            posted["message_id"]
        ]
    finally:
        await writer.close()
        await reader.close()


async def test_two_handles_indexing_at_once_index_each_message_once(tmp_path: Path) -> None:
    # SQLite only: the FTS5 index is filled in batches; PostgreSQL's is kept at each commit.
    one, two = await Database.open(tmp_path / "bb.db"), await Database.open(tmp_path / "bb.db")
    try:
        sid = await new_session(one)
        for i in range(2_500):
            await messages.add_message(one, ALICE, sid, f"entry {i} of the ledger")
        async with anyio.create_task_group() as tg:
            counts: list[int] = []

            async def index(db: Store) -> None:
                counts.append(await db.index_search(batch=300))

            tg.start_soon(index, one)
            tg.start_soon(index, two)
        assert sum(counts) == 2_500
        # FTS5's own check that the index matches the messages table exactly.
        await one.transact(
            lambda c: c.execute(
                "INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')"
            )
        )
    finally:
        await one.close()
        await two.close()


async def test_deleting_indexed_and_unindexed_messages_keeps_the_index_whole(db: Store) -> None:
    sid = await new_session(db)
    for i in range(10):
        await messages.add_message(db, ALICE, sid, f"indexed {i}")
    await db.index_search()
    for i in range(10):
        await messages.add_message(db, ALICE, sid, f"pending {i}")
    await db.transact(lambda c: c.execute("DELETE FROM sessions WHERE id = ?", (sid,)))
    if db.engine == "sqlite":  # FTS5's own check; PostgreSQL's GIN index is kept by itself
        await db.transact(
            lambda c: c.execute(
                "INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')"
            )
        )
    assert await db.index_search() == 0


async def test_messages_stored_before_the_index_existed_are_searchable(tmp_path: Path) -> None:
    # SQLite only: a file from before migration 4; PostgreSQL's schema starts with its index.
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for statement in MIGRATIONS[1]:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO sessions VALUES"
        " ('s1', 'p', 'active', 'alice', '2026-01-01', '2026-01-01', NULL)"
    )
    conn.execute(
        "INSERT INTO messages (session_id, sender, sender_type, content, visibility,"
        " message_type, created_at) VALUES ('s1', 'alice', 'reviewer', 'the grommetix plan',"
        " 'public', 'message', '2026-01-01')"
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    db = await Database.open(path)
    try:
        assert ids(await search.search_context(db, ALICE, "s1", "gromettix")) == [1]
    finally:
        await db.close()


@pytest.mark.parametrize(
    "arguments",
    [{"limit": 0}, {"limit": 101}, {"fuzzy_threshold": 101}, {"fuzzy_threshold": -1}],
)
async def test_out_of_range_arguments_are_refused(db: Store, arguments: dict[str, Any]) -> None:
    sid = await new_session(db)
    with pytest.raises(InvalidInput):
        await search.search_context(db, ALICE, sid, "x", **arguments)


@pytest.mark.parametrize("query", ["", "   ", "?!-", "x" * 1001])
async def test_empty_or_oversized_queries_are_refused(db: Store, query: str) -> None:
    sid = await new_session(db)
    with pytest.raises(InvalidInput, match="query"):
        await search.search_context(db, ALICE, sid, query)


async def test_searching_a_missing_session_says_so(db: Store) -> None:
    with pytest.raises(SessionNotFound):
        await search.search_context(db, ALICE, "sess_missing", "anything")


def settings(target: Target) -> Settings:
    return Settings(db_path=target, agent_id="alice", agent_id_source="flag", agent_type="reviewer")


@pytest.mark.parametrize("era", ERAS)
async def test_search_context_tool_finds_a_misspelt_word(target: Target, era: str) -> None:
    async with connect(era, settings(target)) as s:
        sid = (await ok(s, "create_session", purpose="p"))["session_id"]
        posted = await ok(s, "add_message", session_id=sid, content="rollback the vexomari patch")
        await ok(s, "add_message", session_id=sid, content="lunch at noon")
        found = await ok(s, "search_context", session_id=sid, query="vexomary")
        assert [r["message"]["id"] for r in found["results"]] == [posted["message_id"]]
        assert found["results"][0]["score"] >= 80
        text = await s.call_tool("search_context", {"session_id": sid, "query": "vexomary"})
        took = text.structured_content["search_time_ms"]
        assert text.content[0].text.startswith(f"1 match ({took} ms)")
        assert "vexomari" in text.content[0].text


@pytest.mark.parametrize("era", ERAS)
async def test_search_context_tool_fails_with_stable_codes(target: Target, era: str) -> None:
    async with connect(era, settings(target)) as s:
        sid = (await ok(s, "create_session", purpose="p"))["session_id"]
        await fails(s, "search_context", "SESSION_NOT_FOUND", session_id="sess_x", query="q")
        await fails(s, "search_context", "INVALID_INPUT", session_id=sid, query="q", limit=101)
        await fails(s, "search_context", "INVALID_INPUT", session_id=sid, query="")
        await fails(s, "search_context", "INVALID_INPUT", session_id=sid, query="?!")
        await fails(
            s, "search_context", "INVALID_INPUT", session_id=sid, query="q", fuzzy_threshold=150
        )


def long_text(rng: random.Random, word: str, chars: int) -> str:
    """`chars` characters of common words, with `word` somewhere past the middle."""
    from tests.corpus import COMMON

    filler = " ".join(rng.choice(COMMON) for _ in range(chars // 3))[: chars - len(word) - 2]
    cut = filler.index(" ", rng.randrange(len(filler) // 2, len(filler) - 20))
    return f"{filler[:cut]} {word} {filler[cut:]}"


@WAYS
async def test_a_long_message_is_scored_on_windows_yet_found_by_a_typo(
    db: Store, way: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared_context_server.blackboard import ranking

    rng = random.Random(3)
    sid = await new_session(db)
    words = [word for word, _ in corpus(6, seed=3)]
    posted = [
        (await messages.add_message(db, ALICE, sid, long_text(rng, word, 99_900)))["message_id"]
        for word in words
    ]
    if way != "not-yet-indexed":
        await db.index_search()
    read: list[int] = []
    real = ranking.fuzz.partial_ratio

    def partial_ratio(query: str, text: str) -> float:
        read.append(len(text))
        return real(query, text)

    monkeypatch.setattr(ranking.fuzz, "partial_ratio", partial_ratio)
    query = with_typo(rng, words[4])
    found = await search.search_context(db, ALICE, sid, query, limit=3)
    assert ids(found)[0] == posted[4]
    # The scorer never read a whole 100,000-character text, only windows of it (and the
    # sender, "alice").
    assert read and max(read) < 10_000
    assert max(read) <= ranking.most_scored(ranking.default_process(query)) + len(" alice ")
