"""Removing what the blackboard no longer needs: each kind of data is one sweep
(blackboard/sweeps.py, the rules the servers' maintenance uses too) with the cutoff the
options give it. Deletion goes in small batches, each its own short write transaction
with its audit entry, so agents writing meanwhile wait milliseconds, not seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from shared_context_server.blackboard import audit
from shared_context_server.blackboard.maintenance import DEFAULT_AUDIT_RETENTION_DAYS
from shared_context_server.blackboard.sweeps import (
    ARCHIVED_SESSIONS,
    EXPIRED_MEMORY,
    EXPIRED_TOKENS,
    OLD_AUDIT,
    Sweep,
)
from shared_context_server.clock import iso
from shared_context_server.config import PRUNE_ARCHIVED_AFTER_DAYS
from shared_context_server.storage.seam import Conn, Store
from shared_context_server.terminal import counted

BATCH = 200


@dataclass(frozen=True)
class PruneOptions:
    archived_older_than_days: float = PRUNE_ARCHIVED_AFTER_DAYS
    audit_retention_days: int = DEFAULT_AUDIT_RETENTION_DAYS  # 0 keeps every entry, as `serve`
    now: datetime | None = None

    def moment(self) -> datetime:
        return self.now or datetime.now(UTC)


@dataclass(frozen=True)
class PruneRule:
    """A sweep (blackboard/sweeps.py, shared with the servers' maintenance) and the cutoff
    the options give it."""

    sweep: Sweep
    cutoff: Callable[[PruneOptions], str]
    applies: Callable[[PruneOptions], bool] = lambda options: True

    @property
    def name(self) -> str:
        return self.sweep.name


# A dry run's LIMIT: every row.
NO_LIMIT = 2**62


def _archived_cutoff(options: PruneOptions) -> str:
    return iso(options.moment() - timedelta(days=options.archived_older_than_days))


def _now(options: PruneOptions) -> str:
    return iso(options.moment())


def _audit_cutoff(options: PruneOptions) -> str:
    return iso(options.moment() - timedelta(days=options.audit_retention_days))


RULES: tuple[PruneRule, ...] = (
    PruneRule(ARCHIVED_SESSIONS, _archived_cutoff),
    PruneRule(EXPIRED_MEMORY, _now),
    PruneRule(EXPIRED_TOKENS, _now),
    PruneRule(OLD_AUDIT, _audit_cutoff, applies=lambda options: options.audit_retention_days > 0),
)

Counts = dict[str, int]
Progress = Callable[[Counts], None]


async def _count(db: Store, rule: PruneRule, cutoff: str, limit: int) -> Counts:
    counts: Counts = {}
    for label, sql in rule.sweep.count_sql(db.row_key):
        row = await db.read_one(sql, (cutoff, limit))
        counts[label] = int(row[0]) if row else 0
    return counts


async def prune(
    db: Store,
    options: PruneOptions,
    *,
    dry_run: bool = False,
    rules: tuple[PruneRule, ...] = RULES,
    progress: Progress | None = None,
) -> dict[str, Counts]:
    """What each rule removed (or, with `dry_run`, would remove): rule name -> counts."""
    report: dict[str, Counts] = {}
    key = db.row_key
    for rule in rules:
        if not rule.applies(options):
            continue
        cutoff = rule.cutoff(options)
        if dry_run:
            report[rule.name] = await _count(db, rule, cutoff, NO_LIMIT)
            continue
        totals: Counts = dict.fromkeys((label for label, _ in rule.sweep.count_sql(key)), 0)
        while True:
            batch = await db.transact(partial(_prune_batch, rule, key, cutoff))
            if not batch[rule.name]:
                break
            for label, n in batch.items():
                totals[label] += n
            if progress:
                progress(totals)
        report[rule.name] = totals
    return report


def _prune_batch(rule: PruneRule, key: str, cutoff: str, conn: Conn) -> Counts:
    """Count, delete and log one batch of `rule`'s rows; nothing if it found none."""
    batch: Counts = {}
    for label, sql in rule.sweep.count_sql(key):
        row = conn.execute(sql, (cutoff, BATCH)).fetchone()
        batch[label] = int(row[0]) if row else 0
    if batch[rule.name]:
        conn.execute(rule.sweep.delete_sql(key), (cutoff, BATCH))
        # Deleting history is itself history, logged with the batch it describes.
        removed = ", ".join(counted(n, label) for label, n in batch.items() if n)
        audit.write_entry(
            conn, audit.entry(audit.OPERATOR, "prune", target=rule.sweep.table, detail=removed)
        )
    return batch
