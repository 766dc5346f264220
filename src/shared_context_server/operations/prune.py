"""Removing what the blackboard no longer needs. Each kind of data is one PruneRule row.

A rule deletes rows of one table matching a constant condition with one `?`, the cutoff
its `cutoff` function computes from the options. Deletion goes in small batches, each its
own short write transaction, so agents writing meanwhile wait milliseconds, not seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from shared_context_server.blackboard import audit
from shared_context_server.clock import iso
from shared_context_server.store import Conn, Store
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

    def _doomed(self, key: str) -> str:
        return (
            f"WITH doomed AS (SELECT {key} AS doomed_key, * FROM {self.table}"  # noqa: S608
            f" WHERE {self.condition} ORDER BY {key} LIMIT ?) "
        )

    def count_sql(self, key: str) -> list[tuple[str, str]]:
        """(label, SQL) pairs counting the rows a batch of LIMIT ? would remove; `key` is
        the engine's row address (ROW_KEY)."""
        own = (self.name, self._doomed(key) + "SELECT count(*) FROM doomed")  # noqa: S608
        return [own, *((label, self._doomed(key) + sql) for label, sql in self.also)]

    def delete_sql(self, key: str) -> str:
        return (
            f"DELETE FROM {self.table} WHERE {key} IN (SELECT {key} FROM {self.table}"  # noqa: S608
            f" WHERE {self.condition} ORDER BY {key} LIMIT ?)"
        )


# Every table's row address, on each engine: batches are cut by it.
ROW_KEY = {"sqlite": "rowid", "postgres": "ctid"}
# A dry run's LIMIT: every row.
NO_LIMIT = 2**62


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


async def _count(db: Store, rule: PruneRule, cutoff: str, limit: int) -> Counts:
    counts: Counts = {}
    for label, sql in rule.count_sql(ROW_KEY[db.engine]):
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
    key = ROW_KEY[db.engine]
    for rule in rules:
        if not rule.applies(options):
            continue
        cutoff = rule.cutoff(options)
        if dry_run:
            report[rule.name] = await _count(db, rule, cutoff, NO_LIMIT)
            continue
        totals: Counts = dict.fromkeys((label for label, _ in rule.count_sql(key)), 0)
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
    for label, sql in rule.count_sql(key):
        row = conn.execute(sql, (cutoff, BATCH)).fetchone()
        batch[label] = int(row[0]) if row else 0
    if batch[rule.name]:
        conn.execute(rule.delete_sql(key), (cutoff, BATCH))
        # Deleting history is itself history, logged with the batch it describes.
        removed = ", ".join(counted(n, label) for label, n in batch.items() if n)
        audit.write_entry(
            conn, audit.entry(audit.OPERATOR, "prune", target=rule.table, detail=removed)
        )
    return batch
