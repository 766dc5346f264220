"""Time, in the one format used everywhere: ISO 8601 UTC with microseconds."""

from __future__ import annotations

from datetime import UTC, datetime

_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def utc_now() -> str:
    """Now as `2026-11-22T05:33:12.123456Z`; such strings sort in time order."""
    return datetime.now(UTC).strftime(_FORMAT)


def now_utc() -> datetime:
    """Now as a datetime; functions that compare times take one so tests can pass another."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """`moment` in the one format (it must be timezone-aware)."""
    return moment.astimezone(UTC).strftime(_FORMAT)


def parse(stamp: str) -> datetime:
    """A stored time (the one format) as a timezone-aware datetime."""
    return datetime.strptime(stamp, _FORMAT).replace(tzinfo=UTC)
