"""Search's candidates on PostgreSQL: pg_trgm's GIN index over the text (schema.py) finds
the messages holding a stretch similar to the query (`<%`, word similarity, typos
included), the most similar first; rapidfuzz then ranks them as on SQLite. Writes index
themselves (the GIN index is kept in each writing transaction)."""

from __future__ import annotations

from shared_context_server.storage.seam import SESSION_SIZE, CandidateQuery, Row, Store, newest_sql

# The text is schema.SEARCH_TEXT (what ranking scores), qualified: the trigram index
# serves only that exact expression (tests/test_postgres_schema.py).
TRIGRAM_TEXT = "(m.content || ' ' || m.sender || ' ' || coalesce(m.metadata, ''))"


def trigram_matching(q: CandidateQuery) -> str:
    """The session's visible messages similar to the query, most similar first;
    parameters: the session id, q.params, the query twice, the cap."""
    return (
        f"SELECT {q.columns} FROM messages m WHERE m.session_id = ?"  # noqa: S608
        f" AND {q.condition} AND ? <% {TRIGRAM_TEXT}"
        f" ORDER BY word_similarity(?, {TRIGRAM_TEXT}) DESC, m.id DESC LIMIT ?"
    )


async def candidates(db: Store, q: CandidateQuery) -> list[Row]:
    """A small session's newest messages; else those the trigram index finds similar, or
    the newest when it finds none."""
    filters = (q.session_id, *q.params)
    size_row = await db.read_one(SESSION_SIZE, (q.session_id,))
    if size_row is None or int(size_row[0]) <= q.direct_scan:
        return await db.read(newest_sql(q), (*filters, q.direct_scan))
    similar = await db.read(trigram_matching(q), (*filters, q.query, q.query, q.cap))
    return similar or await db.read(newest_sql(q), (*filters, q.short_query_scan))
