"""What the blackboard is done with, one rule per kind of row, for both sweepers: the
servers' maintenance rounds (a batch per round, nothing asked) and the operator's `prune`
(counted first with --dry-run, each batch audited).

A rule is a condition with one `?`, the cutoff. Batches are cut by the engine's row
address (`rowid` on a file, `ctid` on PostgreSQL), so a rule needs no key of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared_context_server.storage.seam import Store


@dataclass(frozen=True)
class Sweep:
    """Rows of `table` where `condition` holds for the cutoff.

    `also` counts rows that go with them (ON DELETE CASCADE): label -> SQL selecting a
    count, which may read the `doomed` CTE of the rows about to go.
    """

    name: str
    table: str
    condition: str
    also: tuple[tuple[str, str], ...] = ()

    def _doomed(self, key: str) -> str:
        return (
            f"WITH doomed AS (SELECT {key} AS doomed_key, * FROM {self.table}"  # noqa: S608
            f" WHERE {self.condition} ORDER BY {key} LIMIT ?) "
        )

    def count_sql(self, key: str) -> list[tuple[str, str]]:
        """(label, SQL) pairs counting the rows a batch of LIMIT ? would remove."""
        own = (self.name, self._doomed(key) + "SELECT count(*) FROM doomed")  # noqa: S608
        return [own, *((label, self._doomed(key) + sql) for label, sql in self.also)]

    def delete_sql(self, key: str) -> str:
        return (
            f"DELETE FROM {self.table} WHERE {key} IN (SELECT {key} FROM {self.table}"  # noqa: S608
            f" WHERE {self.condition} ORDER BY {key} LIMIT ?)"
        )

    async def delete_batch(self, db: Store, cutoff: str, batch: int) -> int:
        """Delete up to `batch` rows in a transaction of their own; returns how many went."""
        sql = self.delete_sql(db.row_key)
        return await db.transact(lambda conn: conn.execute(sql, (cutoff, batch)).rowcount)


ARCHIVED_SESSIONS = Sweep(
    name="archived sessions",
    table="sessions",
    # updated_at is when the session was archived (or last changed since).
    condition="status = 'archived' AND updated_at < ?",
    also=(
        ("messages", "SELECT count(*) FROM messages WHERE session_id IN (SELECT id FROM doomed)"),
    ),
)

# Already invisible to every read: only the rows' space is left to reclaim.
EXPIRED_MEMORY = Sweep(
    name="expired memory entries",
    table="memory",
    condition="expires_at IS NOT NULL AND expires_at <= ?",
)

# Using one already fails; after this it fails as "unknown" rather than "expired".
EXPIRED_TOKENS = Sweep(name="expired tokens", table="agent_tokens", condition="expires_at <= ?")

# The log has no index on ts (an index costs every write its upkeep), but ts grows with
# id: the first id at or past the cutoff bounds a prefix of ids, one short walk.
OLD_AUDIT = Sweep(
    name="audit entries",
    table="audit_log",
    condition=(
        "id < coalesce((SELECT id FROM audit_log WHERE ts >= ? ORDER BY id LIMIT 1),"
        " (SELECT max(id) + 1 FROM audit_log))"
    ),
)
