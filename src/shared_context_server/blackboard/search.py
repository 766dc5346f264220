"""Fuzzy search over the messages of a session that the caller may see.

Why this design (measured with tests/benchmarks/bench.py --search and bench_scale.py; the
figures are in docs/PERFORMANCE.md):

- Ranking every message with rapidfuzz is exact but linear: a large session costs far
  more than a search's budget, and the history only grows.
- So candidates come from the engine's index (storage/sqlite/search.py and
  storage/postgres/search.py; the rest of this list is the file's): an FTS5 *trigram*
  index (migration 4). Rows enter it in batches shortly after they commit
  (`Store.index_search`, run by each writing process and by maintenance), because
  indexing inside every add_message transaction tripled the insert's cost. The rows
  above the index's watermark are read and scored directly, so another process's
  commit is searchable at once; there is no cache.
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
from shared_context_server.storage.seam import CandidateQuery, Store

logger = logging.getLogger(__name__)

MAX_LIMIT = 100
MAX_QUERY_CHARS = 1_000
CANDIDATES = 200  # rescored by rapidfuzz: comfortably more than MAX_LIMIT
SHORT_QUERY_SCAN = 1_000  # newest messages scored when the query has no trigram
# A session this small is scored whole, without the index: the index's counts are over
# every session, so in a blackboard of 1M messages a common word's trigrams are all "too
# common", and finding a small session's matches meant walking the whole blackboard's
# (225 ms median, 1.2 s p99, for a session of 100 messages). Scoring 500 rows costs less.
DIRECT_SCAN = 500
INDEX_DELAY = 0.25
# Writers index only once this many rows are pending: with many processes writing, an
# indexing transaction per process per round took enough of the write lock to cut
# throughput by a third. Fewer pending rows wait for maintenance; search reads them anyway.
INDEX_AT_LEAST = 256


def candidate_query(
    agent: Agent, session_id: str, query: str, sender: str | None
) -> CandidateQuery:
    """What the engine is asked for: the session's messages this reader may see (by
    `sender` too, if given) worth scoring for `query`."""
    return CandidateQuery(
        session_id=session_id,
        query=query,
        columns=MESSAGE_COLUMNS,
        condition=f"(? IS NULL OR m.sender = ?) AND {VISIBLE_SQL}",
        params=(sender, sender, *visible_to(agent)),
        cap=CANDIDATES,
        direct_scan=DIRECT_SCAN,
        short_query_scan=SHORT_QUERY_SCAN,
    )


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
    for row in await db.search_candidates(candidate_query(agent, session_id, query, sender)):
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
                await self._db.index_search(at_least=INDEX_AT_LEAST)
            except DatabaseBusy:
                logger.info("search indexing waited out the write lock; next commit retries")
            except BlackboardError as error:  # the file or disk failed: said at the next call
                logger.warning("search indexing failed: %s", error.message)
            except self._db.errors:
                logger.exception("search indexing failed; maintenance retries it")
