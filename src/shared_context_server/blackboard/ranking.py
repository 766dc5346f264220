"""Scoring search candidates with rapidfuzz (search.py finds the candidates)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rapidfuzz import fuzz, utils

if TYPE_CHECKING:
    from shared_context_server.storage.seam import Row

default_process = utils.default_process


def score(query: str, text: str) -> float:
    """0-100: how well `text` contains the query (both already through default_process)."""
    words = query.split()
    whole = fuzz.partial_ratio(query, text)
    if len(words) < 2:
        return whole
    weight = sum(len(w) for w in words)
    each = sum(len(w) * fuzz.partial_ratio(w, text) for w in words) / weight
    return max(whole, each)


def searchable(row: Row) -> str:
    """A message row's text as search sees it: content, sender and metadata, processed."""
    return default_process(f"{row['content']} {row['sender']} {row['metadata'] or ''}")
