"""Scoring search candidates with rapidfuzz (search.py finds the candidates).

partial_ratio slides the query along the whole text: about 0.4 ms per call on 100,000
characters, several calls a candidate, so a session of 300 such messages took 1-4 s a
search. A long text is therefore scored on windows of it around where the query's words
occur (`excerpt`): the fuzzy work per candidate is bounded by the query, not the text.
Finding the windows is a plain substring search (str.find, about 60 us per 100,000
characters on a quiet machine), at most two per query word and MAX_PIECES in all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rapidfuzz import fuzz, utils

if TYPE_CHECKING:
    from shared_context_server.storage.seam import Row

default_process = utils.default_process

# A text this short is scored whole, exactly as before windows (every message of the
# recall benchmarks is): windows only ever apply to long texts.
WHOLE_TEXT_CHARS = 2_000
# Pieces of the query looked for in a long text, longest words first (the most
# distinctive): a word shorter than SHORT_WORD as itself; a longer one as its first and its
# last (n - 1) // 2 letters, of which one edit (a substitution, deletion, insertion or
# swap of neighbours) always leaves one whole.
MAX_PIECES = 8
SHORT_WORD = 7
# Characters kept on each side of a window beyond the query's own length.
PAD = 16


def score(query: str, text: str) -> float:
    """0-100: how well `text` contains the query (both already through default_process)."""
    words = query.split()
    whole = fuzz.partial_ratio(query, text)
    if len(words) < 2:
        return whole
    weight = sum(len(w) for w in words)
    each = sum(len(w) * fuzz.partial_ratio(w, text) for w in words) / weight
    return max(whole, each)


def pieces(query: str) -> list[str]:
    """What to look for in a long text to find where the query may match."""
    found: dict[str, None] = {}
    for word in sorted(query.split(), key=len, reverse=True):
        if len(word) < SHORT_WORD:
            found.setdefault(word)
        else:
            half = (len(word) - 1) // 2
            found.setdefault(word[:half])
            found.setdefault(word[-half:])
    return list(found)[:MAX_PIECES]


def most_scored(query: str) -> int:
    """The most characters of a message's content that `score_row` gives `score` for this
    query, however long the content: a window per piece, each a piece (at most the query)
    and its reach on both sides. The sender and metadata come on top, whole."""
    return max(WHOLE_TEXT_CHARS, MAX_PIECES * (3 * len(query) + 2 * PAD + 1))


def excerpt(query: str, text: str) -> str:
    """What `score` reads of `text` (unprocessed): all of it when short; else, processed,
    the windows around the first place each piece of the (processed) query occurs, each
    reaching the query's length plus PAD either side, merged and joined by spaces. A long
    text holding no piece is scored on its start."""
    if len(text) <= WHOLE_TEXT_CHARS:
        return default_process(text)
    lowered = text.lower()  # default_process folds case too; positions stay comparable
    reach = len(query) + PAD
    spans: list[tuple[int, int]] = []
    for piece in pieces(query):
        at = lowered.find(piece)
        if at >= 0:
            spans.append((max(0, at - reach), at + len(piece) + reach))
    if not spans:
        spans.append((0, 2 * reach))
    spans.sort()
    merged = [spans[0]]
    for start, end in spans[1:]:
        if start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return default_process(" ".join(lowered[start:end] for start, end in merged))


def score_row(query: str, row: Row) -> float:
    """0-100: how well the row's text as search sees it (content, sender and metadata, as
    postgres_schema.SEARCH_TEXT) contains the (processed) query. Only a long content is
    cut to windows: the rest is small (metadata is at most 16 KB)."""
    content: str = row["content"]
    rest = f"{row['sender']} {row['metadata'] or ''}"
    if len(content) + len(rest) < WHOLE_TEXT_CHARS:
        return score(query, default_process(f"{content} {rest}"))
    return score(query, f"{excerpt(query, content)} {default_process(rest)}")
