"""Search's candidates on a SQLite file: an FTS5 *trigram* index (migration 4), filled in
batches shortly after commits (`index_pending`), its rarest trigrams weighed in SQL.

Why this design is in blackboard/search.py's docstring (measured: docs/PERFORMANCE.md).
"""

from __future__ import annotations

import math

from shared_context_server.storage.seam import (
    SESSION_SIZE,
    CandidateQuery,
    Conn,
    Row,
    Store,
    newest_sql,
)

POSTINGS_BUDGET = 10_000  # postings weighed per search (sum of the chosen trigrams' counts)
MAX_TRIGRAMS = 48  # bounds the counting of a very long query
# Walking the newest matches of every trigram costs about CANDIDATES / share of the
# index's rows; a session holding less than this share is scored from its own newest
# messages instead.
MIN_WALK_SHARE = 0.1
# Not yet indexed rows scored directly; the indexer runs a fraction of a second behind
# writers, so the tail is short unless no server process has run since a bulk import.
TAIL_SCAN = 5_000
INDEX_BATCH = 1_000

WATERMARK = "SELECT value FROM change_counters WHERE name = 'fts_indexed'"
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


def best_holding(q: CandidateQuery, trigrams: int) -> str:
    """The session's visible messages holding the most weight of that many trigrams, best
    then newest first; parameters: a weight and a phrase per trigram, the session id,
    q.params, the cap. Each match is checked against the session on the (session_id, id)
    index, and only the session's rows are read: looking the matches up by id read every
    matching row, most of them other sessions'."""
    holding = " UNION ALL ".join([HOLDING] * trigrams)
    return (
        f"SELECT {q.columns} FROM (SELECT id, sum(w) AS weight FROM ({holding}) GROUP BY id) h"  # noqa: S608
        " CROSS JOIN messages m INDEXED BY messages_session ON m.session_id = ? AND m.id = h.id"
        f" WHERE {q.condition} ORDER BY h.weight DESC, h.id DESC LIMIT ?"
    )


def newest_matching(q: CandidateQuery) -> str:
    """The newest visible messages holding every trigram of a MATCH; CROSS JOIN keeps the
    MATCH as the outer loop: the planner must not walk the session's messages probing
    the index once per row."""
    return (
        f"SELECT {q.columns} FROM messages_fts f CROSS JOIN messages m"  # noqa: S608
        " ON m.id = f.rowid WHERE messages_fts MATCH ? AND m.session_id = ?"
        f" AND {q.condition} ORDER BY f.rowid DESC LIMIT ?"
    )


def tail_sql(q: CandidateQuery) -> str:
    """The session's visible messages above the index's watermark, newest first."""
    return (
        f"SELECT {q.columns} FROM messages m WHERE m.session_id = ?"  # noqa: S608
        f" AND {q.condition} AND m.id > ? ORDER BY m.id DESC LIMIT ?"
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


def weights(counts: dict[str, int], total: int) -> dict[str, float]:
    """Each trigram's weight: the rarer in the index, the more (bm25's idf)."""
    return {t: math.log(1 + (total - n + 0.5) / (n + 0.5)) for t, n in counts.items()}


async def candidates(db: Store, q: CandidateQuery) -> list[Row]:
    """The messages worth scoring: the indexed ones holding the most weight of the query's
    rarest trigrams, and every visible one above the watermark."""
    filters = (q.session_id, *q.params)
    # The watermark first: rows at or below it are in the index, rows above are the tail.
    # If the indexer moves it meanwhile, a row may come both ways; ids dedupe it.
    # One row each: read on this thread, where each trip to the reading thread costs more
    # (and, on a busy machine, a wait to be scheduled).
    mark = await db.read_one(WATERMARK, small=True)
    indexed = int(mark[0]) if mark else 0
    size_row = await db.read_one(SESSION_SIZE, (q.session_id,), small=True)
    size = int(size_row[0]) if size_row else 0
    if size <= q.direct_scan:
        return await db.read(newest_sql(q), (*filters, q.direct_scan))
    tail = await db.read(tail_sql(q), (*filters, indexed, TAIL_SCAN))
    rows: list[Row] = []
    trigrams = query_trigrams(q.query)
    if trigrams:
        counting = " UNION ALL ".join([COUNT_UP_TO] * len(trigrams))
        cap = POSTINGS_BUDGET + 1
        params = [p for t in trigrams for p in (t, _phrase(t), cap)]
        counts = {r["term"]: r["doc"] for r in await db.read(counting, params) if r["doc"]}
        rare = choose_trigrams(counts, POSTINGS_BUDGET)
        if rare:
            weight = weights(counts, indexed)
            holding = [p for t in rare for p in (weight[t], _phrase(t))]
            rows = await db.read(best_holding(q, len(rare)), (*holding, *filters, q.cap))
        elif counts and size >= MIN_WALK_SHARE * indexed:
            # Every trigram is common: the newest messages holding them all.
            match = " AND ".join(_phrase(t) for t in trigrams if t in counts)
            rows = await db.read(newest_matching(q), (match, *filters, q.cap))
    if not rows:
        rows = await db.read(newest_sql(q), (*filters, q.short_query_scan))
    seen = {row["id"] for row in rows}
    return rows + [row for row in tail if row["id"] not in seen]


async def index_pending(db: Store, batch: int = INDEX_BATCH, at_least: int = 1) -> int:
    """Add committed messages above the watermark to the search index, a batch per short
    transaction, until it has caught up; returns how many. Nothing is done unless about
    `at_least` are pending (ids past the watermark). Safe from any process at any
    time: the watermark is read again under the write lock."""
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
