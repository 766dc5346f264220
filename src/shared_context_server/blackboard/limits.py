"""Size limits on what agents write, and the checks that enforce them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from shared_context_server.errors import InvalidInput, LimitExceeded


@dataclass(frozen=True)
class Limits:
    max_content_chars: int = 100_000
    max_metadata_bytes: int = 16 * 1024
    max_purpose_chars: int = 1_000
    max_memory_bytes: int = 64 * 1024
    # A page of messages stops early (has_more=true) once it holds this many characters
    # of content, so one call never floods the caller's context.
    max_page_chars: int = 200_000


DEFAULT_LIMITS = Limits()

# Shapes of the names agents type. Here rather than in the modules that check them so the
# server's models, the import of a transcript and the command line share one source.
MAX_SESSION_ID_CHARS = 64  # new_session_id() makes 21; imported files keep theirs
MAX_MESSAGE_TYPE_CHARS = 64
MESSAGE_TYPE = re.compile(rf"^[A-Za-z0-9_.:-]{{1,{MAX_MESSAGE_TYPE_CHARS}}}$")
MAX_MEMORY_KEY_CHARS = 255

# Pages: what a caller gets when it names no limit, and the most one page of sessions holds.
DEFAULT_PAGE_LIMIT = 50
MAX_SESSIONS_LIMIT = 200
DEFAULT_SEARCH_LIMIT = 10
# rapidfuzz scores 0-100; below the default, a long message's stray letters match.
FUZZY_SCALE = 100
DEFAULT_FUZZY_THRESHOLD = 60
DEFAULT_WAIT_S = 30  # a long poll's wait when the caller names none
# Resource subscriptions one server process holds: its resources/subscribe URIs and the
# URIs of its open subscriptions/listen streams, together. An agent follows the few
# sessions it works in (check_inbox covers the rest); 3,000 took 57 s to make, and while
# a commit's cost still grew with them, other agents' p99 went from 33 to 190 ms.
MAX_SUBSCRIPTIONS = 100

# How deep objects and arrays may nest in metadata, a memory value or records data (and
# in any tool argument): far more than labels and ids need, and far from the depths where
# parsers and encoders give up (about 200 in pydantic's, 1,000 in Python's).
MAX_JSON_DEPTH = 32
# A NUL character in JSON text: \u0000 after an even number of backslashes.
ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def json_depth(value: Any, stop: int = MAX_JSON_DEPTH) -> int:
    """How deep objects and arrays nest in `value` (a scalar is 0, `{}` is 1), counted
    without recursion and only up to `stop` + 1."""
    deepest = 0
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > stop:
            break
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def check_depth(value: Any, argument: str) -> None:
    """Raises LimitExceeded if `value` nests deeper than MAX_JSON_DEPTH."""
    if isinstance(value, dict | list) and json_depth(value) > MAX_JSON_DEPTH:
        raise LimitExceeded(
            f"{argument} nests objects and arrays more than {MAX_JSON_DEPTH} levels deep; "
            'flatten it (e.g. join nested keys into one: "a.b.c").',
            argument=argument,
            limit=MAX_JSON_DEPTH,
        )


def check_no_nul(value: Any, argument: str) -> None:
    """Raises InvalidInput if a text (or a list of texts) holds a NUL character: PostgreSQL
    cannot store one in text, so neither engine takes it, with the same error."""
    texts = value if isinstance(value, list) else [value]
    if any(isinstance(text, str) and "\x00" in text for text in texts):
        raise InvalidInput(
            f"{argument} holds a NUL character (\\x00), which text may not contain; remove "
            "it, or encode binary data (e.g. as base64) first.",
            argument=argument,
        )


def check_text(value: str, name: str, maximum: int, hint: str) -> str:
    check_no_nul(value, name)
    if len(value) > maximum:
        raise LimitExceeded(
            f"{name} is {len(value):,} characters; the limit is {maximum:,}. {hint}",
            argument=name,
            limit=maximum,
        )
    return value


def encode_json(value: Any, argument: str, max_bytes: int, hint: str) -> str:
    """`value` as compact JSON text for storage. Raises InvalidInput, LimitExceeded."""
    check_depth(value, argument)
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidInput(f"{argument} must be plain JSON: {error}.", argument=argument) from None
    if ESCAPED_NUL.search(text):  # PostgreSQL's JSON functions refuse the whole document
        check_no_nul("\x00", argument)
    size = len(text.encode())
    if size > max_bytes:
        raise LimitExceeded(
            f"{argument} is {size:,} bytes as JSON; the limit is {max_bytes:,}. {hint}",
            argument=argument,
            limit=max_bytes,
        )
    return text


def encode_metadata(metadata: dict[str, Any] | None, limits: Limits) -> str | None:
    """Metadata as compact JSON text for storage, or None. Raises LimitExceeded."""
    if metadata is None:
        return None
    return encode_json(
        metadata,
        "metadata",
        limits.max_metadata_bytes,
        "Keep metadata to small labels and ids; put large data in the message content.",
    )


def decode_metadata(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    value: dict[str, Any] = json.loads(text)
    return value
