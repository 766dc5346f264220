"""The schema, as numbered migrations. `PRAGMA user_version` records the applied number.

Append a new number for every change; never edit one that has shipped, because files
created by older releases are migrated from where they stand.
"""

from __future__ import annotations

MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE schema_history (
            version INTEGER NOT NULL,
            applied_at TEXT NOT NULL,
            pid INTEGER NOT NULL
        )""",
        """CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            purpose TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('active', 'completed', 'archived')),
            created_by TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            metadata TEXT
        )""",
        "CREATE INDEX sessions_status ON sessions (status, created_at)",
        # AUTOINCREMENT: an id is never reused, so `after_id` paging stays correct
        # even if rows are deleted later.
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            sender TEXT NOT NULL,
            sender_type TEXT NOT NULL,
            content TEXT NOT NULL,
            visibility TEXT NOT NULL
                CHECK (visibility IN ('public', 'private', 'agent_only', 'admin_only')),
            message_type TEXT NOT NULL,
            metadata TEXT,
            parent_message_id INTEGER REFERENCES messages (id),
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX messages_session ON messages (session_id, id)",
    ),
    # Live server processes, for `doctor`: each process keeps its own row fresh and
    # deletes it on a clean exit; rows whose process stopped refreshing are stale.
    2: (
        """CREATE TABLE server_processes (
            id INTEGER PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            agent_id TEXT,
            agent_type TEXT NOT NULL,
            client_name TEXT,
            started_at TEXT NOT NULL,
            last_seen TEXT NOT NULL
        )""",
    ),
}

SCHEMA_VERSION = max(MIGRATIONS)
