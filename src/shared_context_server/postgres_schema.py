"""The PostgreSQL schema, as numbered migrations recorded in `schema_history`.

The same tables and columns as the SQLite file (migrations.py), written in PostgreSQL's
dialect and numbered on their own: a database starts at the current shape. Append a new
number for every change; never edit one that has shipped. Times stay ISO-8601 text, as in
the file, so rows read the same on both engines.
"""

from __future__ import annotations

SCHEMA_EXISTS = "SELECT to_regclass('schema_history') IS NOT NULL"
SELECT_VERSION = "SELECT max(version) FROM schema_history"

# Message ids come from a sequence, taken only once the writer holds its session's row
# lock, which it keeps until COMMIT. A bare sequence hands out ids at INSERT, so two writers
# can commit out of id order and a reader already past id 10 would never see 9. Under the
# lock, the next writer to the same session takes its id after this one commits: ids grow
# in commit order within every session, which is what paging by after_id and the long poll
# read (tests/test_postgres.py). Writers to different sessions do not wait for each other.
# The CTE locks first; the outer nextval runs only on the row it returns (no row: no
# such session).
NEXT_MESSAGE_ID = (
    "WITH locked AS (SELECT id FROM sessions WHERE id = ? FOR NO KEY UPDATE)"
    " SELECT nextval('message_ids') FROM locked"
)

MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE schema_history (
            version INTEGER NOT NULL,
            applied_at TEXT NOT NULL,
            pid INTEGER NOT NULL,
            host TEXT NOT NULL
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
        "CREATE INDEX sessions_idle ON sessions (updated_at) WHERE status != 'archived'",
        "CREATE TABLE change_counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
        "INSERT INTO change_counters (name, value) VALUES ('sessions', 0)",
        "CREATE SEQUENCE message_ids",
        """CREATE TABLE messages (
            id BIGINT PRIMARY KEY,
            session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            sender TEXT NOT NULL,
            sender_type TEXT NOT NULL,
            content TEXT NOT NULL,
            visibility TEXT NOT NULL
                CHECK (visibility IN ('public', 'private', 'agent_only', 'admin_only')),
            message_type TEXT NOT NULL,
            metadata TEXT,
            parent_message_id BIGINT REFERENCES messages (id),
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX messages_session ON messages (session_id, id)",
        """CREATE TABLE server_processes (
            id BIGSERIAL PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            agent_id TEXT,
            agent_type TEXT NOT NULL,
            client_name TEXT,
            started_at TEXT NOT NULL,
            last_seen TEXT NOT NULL
        )""",
        """CREATE TABLE memory (
            id BIGSERIAL PRIMARY KEY,
            agent_id TEXT NOT NULL,
            session_id TEXT REFERENCES sessions (id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            expires_at TEXT
        )""",
        "CREATE UNIQUE INDEX memory_key ON memory (agent_id, coalesce(session_id, ''), key)",
        "CREATE INDEX memory_expiry ON memory (expires_at) WHERE expires_at IS NOT NULL",
        """CREATE TABLE leases (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            expires_at TEXT NOT NULL
        )""",
        """CREATE TABLE agent_tokens (
            token_hash TEXT PRIMARY KEY,
            agent_id TEXT NOT NULL,
            agent_type TEXT NOT NULL,
            permissions TEXT NOT NULL,
            issued_by TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            revoked_at TEXT
        )""",
        "CREATE INDEX agent_tokens_expiry ON agent_tokens (expires_at)",
        """CREATE TABLE audit_log (
            id BIGSERIAL PRIMARY KEY,
            ts TEXT NOT NULL,
            agent_id TEXT NOT NULL,
            via TEXT,
            action TEXT NOT NULL,
            session_id TEXT,
            target TEXT,
            result TEXT NOT NULL,
            detail TEXT
        )""",
        """CREATE TABLE inbox_marks (
            agent_id TEXT NOT NULL,
            session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            seen_id BIGINT NOT NULL,
            hinted_id BIGINT NOT NULL DEFAULT 0,
            nudged_id BIGINT NOT NULL DEFAULT 0,
            PRIMARY KEY (agent_id, session_id)
        )""",
        "CREATE INDEX inbox_marks_session ON inbox_marks (session_id)",
    ),
}

SCHEMA_VERSION = max(MIGRATIONS)
