"""Removing what the blackboard no longer needs. Each kind of data is one PruneRule row.

A rule deletes rows of one table matching a constant condition with one `?`, the cutoff
its `cutoff` function computes from the options. Deletion goes in small batches, each its
own short write transaction, so agents writing meanwhile wait milliseconds, not seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared_context_server.blackboard import audit
from shared_context_server.clock import iso
from shared_context_server.db import Database
from shared_context_server.terminal import counted

BATCH = 200


@dataclass(frozen=True)
class PruneOptions:
    archived_older_than_days: float = 30.0
    audit_retention_days: int = 90  # 0 keeps every audit entry, as in `serve`
    now: datetime | None = None

    def moment(self) -> datetime:
        return self.now or datetime.now(UTC)


@dataclass(frozen=True)
class PruneRule:
    """Rows of `table` (a rowid table) where `condition` holds for the cutoff.

    `also` counts rows that go with them (ON DELETE CASCADE): label -> SQL selecting a
    count, which may read the `doomed` CTE of the rows about to go.
    """

    name: str
    table: str
    condition: str
    cutoff: Callable[[PruneOptions], str]
    also: tuple[tuple[str, str], ...] = ()
    applies: Callable[[PruneOptions], bool] = lambda options: True

    def _doomed(self) -> str:
        return (
            f"WITH doomed AS (SELECT rowid AS doomed_rowid, * FROM {self.table}"  # noqa: S608
            f" WHERE {self.condition} ORDER BY rowid LIMIT ?) "
        )

    def count_sql(self) -> list[tuple[str, str]]:
        """(label, SQL) pairs counting the rows a batch of LIMIT ? would remove."""
        own = (self.name, self._doomed() + "SELECT count(*) FROM doomed")  # noqa: S608
        return [own, *((label, self._doomed() + sql) for label, sql in self.also)]

    def delete_sql(self) -> str:
        return (
            f"DELETE FROM {self.table} WHERE rowid IN (SELECT rowid FROM {self.table}"  # noqa: S608
            f" WHERE {self.condition} ORDER BY rowid LIMIT ?)"
        )


def _archived_cutoff(options: PruneOptions) -> str:
    return iso(options.moment() - timedelta(days=options.archived_older_than_days))


ARCHIVED_SESSIONS = PruneRule(
    name="archived sessions",
    table="sessions",
    # updated_at is when the session was archived (or last changed since).
    condition="status = 'archived' AND updated_at < ?",
    cutoff=_archived_cutoff,
    also=(
        ("messages", "SELECT count(*) FROM messages WHERE session_id IN (SELECT id FROM doomed)"),
    ),
)

EXPIRED_MEMORY = PruneRule(
    name="expired memory entries",
    table="memory",
    # Already invisible to every read; the server's maintenance sweeps them too.
    condition="expires_at IS NOT NULL AND expires_at <= ?",
    cutoff=lambda options: iso(options.moment()),
)

EXPIRED_TOKENS = PruneRule(
    name="expired tokens",
    table="agent_tokens",
    # Using one already fails; after this it fails as "unknown" rather than "expired".
    condition="expires_at <= ?",
    cutoff=lambda options: iso(options.moment()),
)

OLD_AUDIT = PruneRule(
    name="audit entries",
    table="audit_log",
    condition="ts < ?",
    cutoff=lambda options: iso(options.moment() - timedelta(days=options.audit_retention_days)),
    applies=lambda options: options.audit_retention_days > 0,
)

RULES: tuple[PruneRule, ...] = (ARCHIVED_SESSIONS, EXPIRED_MEMORY, EXPIRED_TOKENS, OLD_AUDIT)

Counts = dict[str, int]
Progress = Callable[[Counts], None]


async def _count(db: Database, rule: PruneRule, cutoff: str, limit: int) -> Counts:
    counts: Counts = {}
    for label, sql in rule.count_sql():
        row = await db.fetchone(sql, (cutoff, limit))
        counts[label] = int(row[0]) if row else 0
    return counts


async def prune(
    db: Database,
    options: PruneOptions,
    *,
    dry_run: bool = False,
    rules: tuple[PruneRule, ...] = RULES,
    progress: Progress | None = None,
) -> dict[str, Counts]:
    """What each rule removed (or, with `dry_run`, would remove): rule name -> counts."""
    report: dict[str, Counts] = {}
    for rule in rules:
        if not rule.applies(options):
            continue
        cutoff = rule.cutoff(options)
        if dry_run:
            report[rule.name] = await _count(db, rule, cutoff, -1)  # LIMIT -1: no limit
            continue
        totals: Counts = dict.fromkeys((label for label, _ in rule.count_sql()), 0)
        while True:
            async with db.write() as tx:
                batch: Counts = {}
                for label, sql in rule.count_sql():
                    row = await tx.fetchone(sql, (cutoff, BATCH))
                    batch[label] = int(row[0]) if row else 0
                if not batch[rule.name]:
                    break
                await tx.execute(rule.delete_sql(), (cutoff, BATCH))
                # Deleting history is itself history, logged with the batch it describes.
                removed = ", ".join(counted(n, label) for label, n in batch.items() if n)
                await audit.record(
                    tx, audit.entry(audit.OPERATOR, "prune", target=rule.table, detail=removed)
                )
            for label, n in batch.items():
                totals[label] += n
            if progress:
                progress(totals)
        report[rule.name] = totals
    return report
