"""Size limits on what agents write, and the checks that enforce them."""

from __future__ import annotations

import json
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


def check_text(value: str, name: str, maximum: int, hint: str) -> str:
    if len(value) > maximum:
        raise LimitExceeded(
            f"{name} is {len(value):,} characters; the limit is {maximum:,}. {hint}",
            argument=name,
            limit=maximum,
        )
    return value


def encode_json(value: Any, argument: str, max_bytes: int, hint: str) -> str:
    """`value` as compact JSON text for storage. Raises InvalidInput, LimitExceeded."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidInput(f"{argument} must be plain JSON: {error}.", argument=argument) from None
    except RecursionError:
        raise InvalidInput(
            f"{argument} is nested too deeply; flatten it.", argument=argument
        ) from None
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
