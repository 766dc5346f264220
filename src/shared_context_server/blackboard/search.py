"""Fuzzy search over the messages of a session that the caller may see.

Why this design (measured with tests/benchmarks/bench.py --search and bench_scale.py; the
figures are in docs/PERFORMANCE.md):

- Ranking every message with rapidfuzz is exact but linear: a large session costs far
  more than a search's budget, and the history only grows.
- So candidates come from an FTS5 *trigram* index (migration 4). Rows enter it in batches
  shortly after they commit (`index_pending`, run by each writing process and by
  maintenance), because indexing inside every add_message transaction tripled the
  insert's cost. The rows above the index's watermark are read and scored
  directly, so another process's commit is searchable at once; there is no cache.
  Trigrams rather than words because a typo only breaks the two or three trigrams that
  contain it: a message holding the misspelt word still holds most of the query's
  trigrams, so the messages holding the most of them (each weighted by its rarity, as
  bm25's idf) are the candidates.
- Common trigrams ("the", "ser") would make most of the session a candidate. The
  index says how many messages hold each trigram (counted up to the budget, see
  COUNT_UP_TO), so a search uses the rarest trigrams first and stops at a budget of
  postings: the distinctive words of a query decide the candidates and the work per
  search is bounded whatever the size. The budget keeps the most candidates for
  common-word queries at nearly the lowest cost, with the same typo recall.
- The weights are summed in SQL over the chosen trigrams' postings (rowids only), not by
  FTS5's bm25, which reads every match's column sizes to rank it (most of a search's
  time in a large session). A match is kept if the session's (session_id, id) index holds
  it, and only then is its row read: looking matches up by id read every match's row,
  most of them other sessions' (docs/PERFORMANCE.md#scale has the figures).
- When every trigram is common, the candidates are the newest messages holding all of them
  (FTS5 walks rowids backwards and stops at the cap), which is cheap exactly because they
  are common.
- Visibility, session and sender filters are in the SQL that reads the candidates, so a
  message the caller may not see is never one, and the cap counts only visible messages.
- rapidfuzz then scores the few hundred candidates: partial_ratio of the whole query, or for
  several words, each word's best partial match weighted by length (word order and a typo
  per word cost little). WRatio was tried first: it scales partial matches of a short query
  in a long message down to 60 at most, under the default threshold.
- A query with no word of three characters or more has no trigrams: the newest messages
  of the session are scored instead.
- A long message is scored on windows around where the query's words occur (ranking.py):
  scoring 300 messages of 100,000 characters whole took 1-4 s a search.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from typing import Any

import anyio

from shared_context_server.blackboard.identity import VISIBLE_SQL, Agent, visible_to
from shared_context_server.blackboard.limits import (
    DEFAULT_FUZZY_THRESHOLD,
    DEFAULT_SEARCH_LIMIT,
    FUZZY_SCALE,
)
from shared_context_server.blackboard.messages import MESSAGE_COLUMNS, message_dict
from shared_context_server.blackboard.sessions import require_session
from shared_context_server.errors import BlackboardError, DatabaseBusy, InvalidInput
from shared_context_server.store import Conn, Row, Store

logger = logging.getLogger(__name__)

MAX_LIMIT = 100
MAX_QUERY_CHARS = 1_000
CANDIDATES = 200  # rescored by rapidfuzz: comfortably more than MAX_LIMIT
POSTINGS_BUDGET = 10_000  # postings weighed per search (sum of the chosen trigrams' counts)
MAX_TRIGRAMS = 48  # bounds the counting of a very long query
SHORT_QUERY_SCAN = 1_000  # newest messages scored when the query has no trigram
# A session this small is scored whole, without the index: the index's counts are over
# every session, so in a blackboard of 1M messages a common word's trigrams are all "too
# common", and finding a small session's matches meant walking the whole blackboard's
# (225 ms median, 1.2 s p99, for a session of 100 messages). Scoring 500 rows costs less.
DIRECT_SCAN = 500
# Walking the newest matches of every trigram costs about CANDIDATES / share of the
# index's rows; a session holding less than this share is scored from its own newest
# messages instead.
MIN_WALK_SHARE = 0.1
# Not yet indexed rows scored directly; the indexer runs a fraction of a second behind
# writers, so the tail is short unless no server process has run since a bulk import.
TAIL_SCAN = 5_000
INDEX_BATCH = 1_000
INDEX_DELAY = 0.25
# Writers index only once this many rows are pending: with many processes writing, an
# indexing transaction per process per round took enough of the write lock to cut
# throughput by a third. Fewer pending rows wait for maintenance; search reads them anyway.
INDEX_AT_LEAST = 256

WATERMARK = "SELECT value FROM change_counters WHERE name = 'fts_indexed'"
# Every message of the session, whoever may see it (session_activity, migration 7).
SESSION_SIZE = "SELECT coalesce(sum(message_count), 0) FROM session_activity WHERE session_id = ?"
# How far the index lags: ids past the watermark (one read, no write lock).
PENDING = f"SELECT coalesce(max(id), 0) - ({WATERMARK}) FROM messages"  # noqa: S608
INDEX_ROWS = (
    "INSERT INTO messages_fts (rowid, content, sender, metadata)"
    " SELECT id, content, sender, metadata FROM messages WHERE id > ? AND id <= ?"
)
BATCH_END = "SELECT max(id) FROM (SELECT id FROM messages WHERE id > ? ORDER BY id LIMIT ?)"
SET_WATERMARK = "UPDATE change_counters SET value = ? WHERE name = 'fts_indexed'"

# How many messages hold a trigram, counted only up to a cap: fts5vocab's exact count reads
# the trigram's whole posting list, which for a common trigram of a 1M-message index took
# longer than the rest of the search. Past the budget a trigram is never chosen, so
# counting further says nothing. One statement per search: a subquery per trigram.
COUNT_UP_TO = (
    "SELECT ? AS term, (SELECT count(*) FROM (SELECT 1 FROM messages_fts"
    " WHERE messages_fts MATCH ? LIMIT ?)) AS doc"
)
# The messages holding one trigram, each with the trigram's weight; one trip for all of
# them as a UNION ALL (best_holding).
HOLDING = "SELECT rowid AS id, ? AS w FROM messages_fts WHERE messages_fts MATCH ?"
# The session's visible messages holding the most weight of the trigrams, best then newest
# first. Each match is checked against the session on the (session_id, id) index, and only
# the session's rows are read: looking the matches up by id read every matching row, most
# of them other sessions'.
_BEST = (
    f"SELECT {MESSAGE_COLUMNS} FROM (SELECT id, sum(w) AS weight FROM ({{}}) GROUP BY id) h"  # noqa: S608
    " CROSS JOIN messages m INDEXED BY messages_session ON m.session_id = ? AND m.id = h.id"
    f" WHERE (? IS NULL OR m.sender = ?) AND {VISIBLE_SQL}"
    " ORDER BY h.weight DESC, h.id DESC LIMIT ?"
)


def best_holding(trigrams: int) -> str:
    """The query for that many trigrams: a weight and a phrase each, then filters and cap."""
    return _BEST.format(" UNION ALL ".join([HOLDING] * trigrams))


# CROSS JOIN keeps the MATCH as the outer loop: the planner must not walk the session's
# messages probing the index once per row.
NEWEST_MATCHING = (
    f"SELECT {MESSAGE_COLUMNS} FROM messages_fts f CROSS JOIN messages m"  # noqa: S608
    " ON m.id = f.rowid WHERE messages_fts MATCH ? AND m.session_id = ?"
    f" AND (? IS NULL OR m.sender = ?) AND {VISIBLE_SQL}"
    " ORDER BY f.rowid DESC LIMIT ?"
)
NEWEST = (
    f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.session_id = ?"  # noqa: S608
    f" AND (? IS NULL OR m.sender = ?) AND {VISIBLE_SQL} ORDER BY m.id DESC LIMIT ?"
)
TAIL = (
    f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.session_id = ?"  # noqa: S608
    f" AND (? IS NULL OR m.sender = ?) AND {VISIBLE_SQL} AND m.id > ?"
    " ORDER BY m.id DESC LIMIT ?"
)


# PostgreSQL: pg_trgm's GIN index over the text (postgres_schema) finds the messages
# holding a stretch similar to the query (`<%`, word similarity, typos included), the
# most similar first; rapidfuzz then ranks them as on SQLite.
# The text is postgres_schema.SEARCH_TEXT (what ranking scores), qualified: the trigram
# index serves only that exact expression (tests/test_postgres_schema.py).
TRIGRAM_TEXT = "(m.content || ' ' || m.sender || ' ' || coalesce(m.metadata, ''))"
TRIGRAM_MATCHING = (
    f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.session_id = ?"  # noqa: S608
    f" AND (? IS NULL OR m.sender = ?) AND {VISIBLE_SQL} AND ? <% {TRIGRAM_TEXT}"
    f" ORDER BY word_similarity(?, {TRIGRAM_TEXT}) DESC, m.id DESC LIMIT ?"
)


def query_trigrams(query: str) -> list[str]:
    """The distinct trigrams of the query's words, in order (the index folds case too)."""
    seen: dict[str, None] = {}
    for word in query.lower().split():
        for i in range(len(word) - 2):
            seen.setdefault(word[i : i + 3])
    return list(seen)[:MAX_TRIGRAMS]


def _phrase(trigram: str) -> str:
    return '"' + trigram.replace('"', '""') + '"'


def choose_trigrams(counts: dict[str, int], budget: int) -> list[str]:
    """The rarest trigrams present in the index whose message counts fit the budget."""
    chosen: list[str] = []
    total = 0
    for trigram in sorted((t for t, n in counts.items() if n), key=lambda t: counts[t]):
        if total + counts[trigram] > budget:
            break
        chosen.append(trigram)
        total += counts[trigram]
    return chosen


async def _candidates(
    db: Store, agent: Agent, session_id: str, query: str, sender: str | None
) -> list[Row]:
    filters = (session_id, sender, sender, *visible_to(agent))
    if db.engine == "postgres":
        size_row = await db.read_one(SESSION_SIZE, (session_id,))
        if size_row is None or int(size_row[0]) <= DIRECT_SCAN:
            return await db.read(NEWEST, (*filters, DIRECT_SCAN))
        similar = await db.read(TRIGRAM_MATCHING, (*filters, query, query, CANDIDATES))
        return similar or await db.read(NEWEST, (*filters, SHORT_QUERY_SCAN))
    # The watermark first: rows at or below it are in the index, rows above are the tail.
    # If the indexer moves it meanwhile, a row may come both ways; ids dedupe it.
    # One row each: read on this thread, where each trip to the reading thread costs more
    # (and, on a busy machine, a wait to be scheduled).
    mark = await db.read_one(WATERMARK, small=True)
    indexed = int(mark[0]) if mark else 0
    size_row = await db.read_one(SESSION_SIZE, (session_id,), small=True)
    size = int(size_row[0]) if size_row else 0
    if size <= DIRECT_SCAN:
        return await db.read(NEWEST, (*filters, DIRECT_SCAN))
    tail = await db.read(TAIL, (*filters, indexed, TAIL_SCAN))
    rows: list[Row] = []
    trigrams = query_trigrams(query)
    if trigrams:
        counting = " UNION ALL ".join([COUNT_UP_TO] * len(trigrams))
        cap = POSTINGS_BUDGET + 1
        params = [p for t in trigrams for p in (t, _phrase(t), cap)]
        counts = {r["term"]: r["doc"] for r in await db.read(counting, params) if r["doc"]}
        rare = choose_trigrams(counts, POSTINGS_BUDGET)
        if rare:
            weight = weights(counts, indexed)
            holding = [p for t in rare for p in (weight[t], _phrase(t))]
            rows = await db.read(best_holding(len(rare)), (*holding, *filters, CANDIDATES))
        elif counts and size >= MIN_WALK_SHARE * indexed:
            # Every trigram is common: the newest messages holding them all.
            match = " AND ".join(_phrase(t) for t in trigrams if t in counts)
            rows = await db.read(NEWEST_MATCHING, (match, *filters, CANDIDATES))
    if not rows:
        rows = await db.read(NEWEST, (*filters, SHORT_QUERY_SCAN))
    seen = {row["id"] for row in rows}
    return rows + [row for row in tail if row["id"] not in seen]


def weights(counts: dict[str, int], total: int) -> dict[str, float]:
    """Each trigram's weight: the rarer in the index, the more (bm25's idf)."""
    return {t: math.log(1 + (total - n + 0.5) / (n + 0.5)) for t, n in counts.items()}


async def index_pending(db: Store, batch: int = INDEX_BATCH, at_least: int = 1) -> int:
    """Add committed messages above the watermark to the search index, a batch per short
    transaction, until it has caught up; returns how many. Nothing is done unless about
    `at_least` are pending (ids past the watermark). Safe from any process at any
    time: the watermark is read again under the write lock."""
    if db.engine != "sqlite":
        return 0  # PostgreSQL keeps its trigram index inside each writing transaction
    total = 0
    while True:
        pending = await db.read_one(PENDING, small=True)
        if int(pending[0] if pending else 0) < at_least:
            return total  # the common case: one quick read, no write lock

        def index(conn: Conn) -> int | None:
            if int(conn.execute(PENDING).fetchone()[0]) < at_least:
                # Another process indexed them while this one queued for the lock: with
                # many writers, every indexer that saw the same backlog used to follow
                # with a transaction of its own for the few rows committed since.
                return None
            start = int(conn.execute(WATERMARK).fetchone()[0])
            end = conn.execute(BATCH_END, (start, batch)).fetchone()[0]
            if end is None:
                return None  # another process indexed them first
            added = conn.execute(INDEX_ROWS, (start, end)).rowcount
            conn.execute(SET_WATERMARK, (end,))
            return max(added, 0)

        added = await db.transact(index)
        total += added or 0
        if added is None or added < batch:
            # Caught up with what existed: rows committed since wait for the next round,
            # or a busy writer would keep the indexer chasing it one row at a time.
            return total


async def search_context(
    db: Store,
    agent: Agent,
    session_id: str,
    query: str,
    fuzzy_threshold: float = DEFAULT_FUZZY_THRESHOLD,
    limit: int = DEFAULT_SEARCH_LIMIT,
    sender: str | None = None,
) -> dict[str, Any]:
    """The visible messages that best match `query`, best first, with scores 0-100.

    Raises SessionNotFound, InvalidInput.
    """
    # Imported at the first search, not at start-up, which every agent's client waits for.
    from shared_context_server.blackboard.ranking import default_process, score_row

    started = time.perf_counter()
    agent.require("read", "search_context")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be 1-{MAX_LIMIT}; got {limit}.", argument="limit")
    if not 0 <= fuzzy_threshold <= FUZZY_SCALE:
        raise InvalidInput(
            f"fuzzy_threshold must be 0-{FUZZY_SCALE}; got {fuzzy_threshold}.",
            argument="fuzzy_threshold",
        )
    processed = default_process(query)
    if not processed:
        raise InvalidInput("query has no letters or digits; say what to look for.")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidInput(
            f"query is {len(query):,} characters; keep it under {MAX_QUERY_CHARS:,} "
            "(a few distinctive words work best).",
            argument="query",
        )
    await require_session(db, session_id)
    scored = []
    for row in await _candidates(db, agent, session_id, query, sender):
        value = score_row(processed, row)
        if value >= fuzzy_threshold:
            scored.append((value, row))
    scored.sort(key=lambda pair: (-pair[0], -pair[1]["id"]))
    return {
        "results": [
            {"message": message_dict(row), "score": round(value, 1)}
            for value, row in scored[:limit]
        ],
        "search_time_ms": round((time.perf_counter() - started) * 1000, 2),
    }


class Indexer:
    """Keeps the search index a fraction of a second behind this process's own writes.

    Woken by each commit, it waits INDEX_DELAY so a burst of messages becomes one batch,
    then indexes what is pending (any process's rows) once INDEX_AT_LEAST are; the
    maintenance round indexes the rest. Until then search reads the rows directly, so
    waiting never hides a message."""

    def __init__(self, db: Store, delay: float = INDEX_DELAY) -> None:
        self._db = db
        self._delay = delay
        self._wanted = anyio.Event()

    def poke(self) -> None:
        self._wanted.set()

    async def run(self) -> None:
        while True:
            await self._wanted.wait()
            await anyio.sleep(self._delay)
            self._wanted = anyio.Event()
            try:
                await index_pending(self._db, at_least=INDEX_AT_LEAST)
            except DatabaseBusy:
                logger.info("search indexing waited out the write lock; next commit retries")
            except BlackboardError as error:  # the file or disk failed: said at the next call
                logger.warning("search indexing failed: %s", error.message)
            except sqlite3.Error:
                logger.exception("search indexing failed; maintenance retries it")
