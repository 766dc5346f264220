"""Every advisory lock key the PostgreSQL engine takes, in one registry, so that no two
locks ever share a number (and a raw query's allowlist knows what to keep out of reach)."""

from __future__ import annotations

from enum import IntEnum


class Lock(IntEnum):
    """Keys of `pg_advisory_xact_lock`, all in the blackboard's database."""

    # The schema: processes starting together migrate one after another.
    MIGRATION = 0x5C5_0001
    # An import's explicit message ids moving the id sequence past them.
    IMPORT_IDS = 0x5C5_0002
    # Making the records schema and the confined role (the records toolset).
    RECORDS_SETUP = 0x5C5_0003
