"""One cursor format and one way to cut a page, for every paged list.

A cursor is the position of the last row handed out, as URL-safe base64 of a JSON array,
so it is opaque to agents, survives any transport, and holds whatever a list sorts by (a
row number, or a scope and a key). Lists read `limit + 1` rows: the extra one only says
whether there is more.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any, TypeVar

from shared_context_server.errors import InvalidInput

T = TypeVar("T")
MAX_POSITION = 2**63  # row numbers are signed 64-bit on both engines


def encode_cursor(*position: str | int) -> str:
    raw = json.dumps(list(position), ensure_ascii=False, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, shape: Sequence[type], tool: str) -> tuple[Any, ...]:
    """The position inside a cursor `tool` returned, one value per type in `shape`.
    Raises InvalidInput for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = json.loads(raw)
    except (ValueError, TypeError):
        position = None
    if (
        isinstance(position, list)
        and len(position) == len(shape)
        and all(type(value) is kind for value, kind in zip(position, shape, strict=True))
        and all(0 <= value < MAX_POSITION for value in position if isinstance(value, int))
    ):
        return tuple(position)
    raise InvalidInput(
        f"cursor is not one {tool} returned; pass next_cursor unchanged, or omit it to start "
        "from the beginning.",
        argument="cursor",
    )


def cut(rows: Sequence[T], limit: int) -> tuple[list[T], bool]:
    """The first `limit` of `limit + 1` rows read, and whether there were more."""
    return list(rows[:limit]), len(rows) > limit
