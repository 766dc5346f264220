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
    # A counter that moves whenever the list of sessions changes (one is created, deleted,
    # renamed or changes status), so the change poller reads one row instead of scanning
    # sessions to learn whether to send resources/list_changed. Triggers keep it exact
    # whichever process or code path writes.
    3: (
        "CREATE TABLE change_counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        "INSERT INTO change_counters (name, value) VALUES ('sessions', 0)",
        """CREATE TRIGGER sessions_count_insert AFTER INSERT ON sessions BEGIN
            UPDATE change_counters SET value = value + 1 WHERE name = 'sessions';
        END""",
        """CREATE TRIGGER sessions_count_delete AFTER DELETE ON sessions BEGIN
            UPDATE change_counters SET value = value + 1 WHERE name = 'sessions';
        END""",
        """CREATE TRIGGER sessions_count_update AFTER UPDATE OF status, purpose ON sessions
        WHEN OLD.status IS NOT NEW.status OR OLD.purpose IS NOT NEW.purpose BEGIN
            UPDATE change_counters SET value = value + 1 WHERE name = 'sessions';
        END""",
    ),
    # Memory, the maintenance lease, and the search index.
    4: (
        # session_id NULL = the agent's global memory. The unique index treats NULL as ''
        # so a global key cannot exist twice (NULLs are distinct in a plain unique index).
        """CREATE TABLE memory (
            id INTEGER PRIMARY KEY,
            agent_id TEXT NOT NULL,
            session_id TEXT REFERENCES sessions (id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            expires_at TEXT
        )""",
        "CREATE UNIQUE INDEX memory_key ON memory (agent_id, ifnull(session_id, ''), key)",
        "CREATE INDEX memory_expiry ON memory (expires_at) WHERE expires_at IS NOT NULL",
        # One row per background job: whoever holds it unexpired does the job (lease.py).
        """CREATE TABLE leases (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            expires_at TEXT NOT NULL
        )""",
        # Trigram index over what search_context ranks (why: blackboard/search.py). External
        # content: the text lives once, in messages. Rows are indexed in batches after
        # their commit, not by a trigger inside it: an FTS5 insert per transaction cost
        # several times the message insert itself (docs/PERFORMANCE.md, Search).
        # 'fts_indexed' is the highest id indexed; search scores the few newer rows
        # directly, so it is always fresh.
        """CREATE VIRTUAL TABLE messages_fts USING fts5(
            content, sender, metadata,
            content='messages', content_rowid='id', tokenize='trigram'
        )""",
        # How many messages hold each trigram: lets a search skip the common ones.
        "CREATE VIRTUAL TABLE messages_fts_terms USING fts5vocab(messages_fts, row)",
        "INSERT INTO change_counters (name, value) VALUES ('fts_indexed', 0)",
        # Only indexed rows may be deleted from the index (external content would corrupt).
        """CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
        WHEN old.id <= (SELECT value FROM change_counters WHERE name = 'fts_indexed') BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, content, sender, metadata)
            VALUES ('delete', old.id, old.content, old.sender, old.metadata);
        END""",
        """CREATE TRIGGER messages_fts_update AFTER UPDATE ON messages
        WHEN old.id <= (SELECT value FROM change_counters WHERE name = 'fts_indexed') BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, content, sender, metadata)
            VALUES ('delete', old.id, old.content, old.sender, old.metadata);
            INSERT INTO messages_fts (rowid, content, sender, metadata)
            VALUES (new.id, new.content, new.sender, new.metadata);
        END""",
        # Backfill the messages written before this migration.
        "INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')",
        """UPDATE change_counters SET value = (SELECT coalesce(max(id), 0) FROM messages)
        WHERE name = 'fts_indexed'""",
    ),
    # Sub-agent tokens and the audit trail.
    5: (
        # Only a hash of each token is kept: a copy of the file does not hand out identities.
        # Revoked rows stay until they expire, so using one says "revoked", not "unknown".
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
        # Maintenance finds idle sessions with a read on this index (a short walk, not a
        # scan of every session), then re-checks only those under the write lock.
        "CREATE INDEX sessions_idle ON sessions (updated_at) WHERE status != 'archived'",
        # One row per mutation, authentication event or refused call, written in the same
        # transaction as the change it describes. `via`: the process agent a token was
        # used through. `result`: 'ok' or the error code. `ts` is taken under the write
        # lock, so it grows with `id` and retention trims a prefix of ids. No secondary
        # index: every add_message writes an entry, and two indexes made it measurably
        # slower (docs/PERFORMANCE.md, The audit log); get_audit_log walks ids newest
        # first instead.
        """CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY,
            ts TEXT NOT NULL,
            agent_id TEXT NOT NULL,
            via TEXT,
            action TEXT NOT NULL,
            session_id TEXT,
            target TEXT,
            result TEXT NOT NULL,
            detail TEXT
        )""",
    ),
    # The inbox (blackboard/news.py): per agent and session, up to which message id the
    # agent has been shown news (`seen_id`, moved by check_inbox), hinted at by the Claude
    # Code hook's digest (`hinted_id`) and nudged about by its Stop hook (`nudged_id`).
    # A row means the agent takes part in the session. Triggers add rows on every path
    # that writes (tools, import): the creator (nothing seen yet), a sender (its own post
    # is not news to it; and when nothing else arrived since its mark, the mark moves past
    # it), and each agent named in a message's metadata `to` (from that message on).
    6: (
        """CREATE TABLE inbox_marks (
            agent_id TEXT NOT NULL,
            session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            seen_id INTEGER NOT NULL,
            hinted_id INTEGER NOT NULL DEFAULT 0,
            nudged_id INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (agent_id, session_id)
        ) WITHOUT ROWID""",
        # Deleting a session cascades here: without this index each delete scans the table.
        "CREATE INDEX inbox_marks_session ON inbox_marks (session_id)",
        """CREATE TRIGGER inbox_creator AFTER INSERT ON sessions BEGIN
            INSERT OR IGNORE INTO inbox_marks (agent_id, session_id, seen_id)
            VALUES (new.created_by, new.id, 0);
        END""",
        """CREATE TRIGGER inbox_sender AFTER INSERT ON messages BEGIN
            INSERT INTO inbox_marks (agent_id, session_id, seen_id)
            VALUES (new.sender, new.session_id, new.id)
            ON CONFLICT (agent_id, session_id) DO UPDATE SET seen_id = excluded.seen_id
            WHERE NOT EXISTS (SELECT 1 FROM messages o WHERE o.session_id = excluded.session_id
                AND o.id > inbox_marks.seen_id AND o.id < excluded.seen_id);
            INSERT OR IGNORE INTO inbox_marks (agent_id, session_id, seen_id)
            SELECT t.value, new.session_id, new.id - 1
            FROM json_each(coalesce(new.metadata, '{}'), '$.to') AS t
            WHERE t.type = 'text' AND t.value != new.sender;
        END""",
        # Files from older releases: what exists is old news to everyone who took part.
        """INSERT OR IGNORE INTO inbox_marks (agent_id, session_id, seen_id)
        SELECT m.sender, m.session_id, max(m.id) FROM messages m GROUP BY m.sender, m.session_id""",
        """INSERT OR IGNORE INTO inbox_marks (agent_id, session_id, seen_id)
        SELECT s.created_by, s.id, coalesce((SELECT max(m.id) FROM messages m
            WHERE m.session_id = s.id), 0) FROM sessions s""",
    ),
    # What get_session and the `sessions` overview count, kept per (session, sender,
    # sender_type, visibility): those four decide who may see a message, so summing the
    # groups a reader may see is exact, and it costs the few groups of a session instead
    # of a walk over all its messages, which grew with the session (docs/PERFORMANCE.md,
    # Scale). The insert
    # trigger adds one primary-key upsert to add_message.
    7: (
        """CREATE TABLE session_activity (
            session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            sender TEXT NOT NULL,
            sender_type TEXT NOT NULL,
            visibility TEXT NOT NULL,
            message_count INTEGER NOT NULL,
            last_message_at TEXT NOT NULL,
            PRIMARY KEY (session_id, sender, sender_type, visibility)
        ) WITHOUT ROWID""",
        """CREATE TRIGGER session_activity_insert AFTER INSERT ON messages BEGIN
            INSERT INTO session_activity VALUES
                (new.session_id, new.sender, new.sender_type, new.visibility, 1, new.created_at)
            ON CONFLICT (session_id, sender, sender_type, visibility) DO UPDATE SET
                message_count = message_count + 1,
                last_message_at = max(last_message_at, excluded.last_message_at);
        END""",
        # A group's last time is not recomputed when a message goes: messages leave only
        # with their session (whose groups go with it) or by prune of whole sessions.
        """CREATE TRIGGER session_activity_delete AFTER DELETE ON messages BEGIN
            UPDATE session_activity SET message_count = message_count - 1
            WHERE session_id = old.session_id AND sender = old.sender
                AND sender_type = old.sender_type AND visibility = old.visibility;
            DELETE FROM session_activity
            WHERE session_id = old.session_id AND sender = old.sender
                AND sender_type = old.sender_type AND visibility = old.visibility
                AND message_count <= 0;
        END""",
        """INSERT INTO session_activity
            SELECT session_id, sender, sender_type, visibility, count(*), max(created_at)
            FROM messages GROUP BY session_id, sender, sender_type, visibility""",
        # get_context(sender=...) pages down this instead of walking the whole session.
        "CREATE INDEX messages_sender ON messages (session_id, sender, id)",
    ),
    # list_sessions of one status pages down (status, rowid): walking every session newest
    # first for the few still active costs the whole history once most are archived.
    8: ("CREATE INDEX sessions_listing ON sessions (status)",),
    # What `import` has written, so that a rerun of an interrupted import continues where
    # it stopped instead of adding the same messages again: one row per file (keyed by a
    # hash of its header), and each message's id in the file beside the id it was given.
    9: (
        """CREATE TABLE imports (
            key TEXT PRIMARY KEY,
            session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            messages INTEGER NOT NULL DEFAULT 0,
            dropped_links INTEGER NOT NULL DEFAULT 0,
            started_at TEXT NOT NULL,
            finished_at TEXT
        )""",
        "CREATE INDEX imports_session ON imports (session_id)",
        """CREATE TABLE imported_messages (
            session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            original_id INTEGER NOT NULL,
            message_id INTEGER NOT NULL,
            PRIMARY KEY (session_id, original_id)
        ) WITHOUT ROWID""",
    ),
    # Claims and acknowledged hand-offs (blackboard/claims.py, blackboard/acks.py).
    10: (
        # One row per target an agent holds. `base`: the target's literal directory part
        # (the path itself; a glob's segments before its first wildcard; a task key), the
        # index a conflict check walks. `host`/`pid`: the server process it lives with
        # (NULL: any live process of the holder, for the hook's auto-claims); `process`:
        # that process's run, whose clean exit releases it; `token_hash`: a sub-agent's
        # token, whose revocation ends it.
        """CREATE TABLE claims (
            id INTEGER PRIMARY KEY,
            target TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('path', 'glob', 'task')),
            base TEXT NOT NULL,
            holder TEXT NOT NULL,
            shared INTEGER NOT NULL DEFAULT 0,
            reason TEXT,
            session_id TEXT,
            host TEXT,
            pid INTEGER,
            process TEXT,
            token_hash TEXT,
            created_at TEXT NOT NULL,
            renewed_at TEXT NOT NULL,
            expires_at TEXT NOT NULL
        )""",
        "CREATE INDEX claims_base ON claims (base)",
        "CREATE INDEX claims_holder ON claims (holder, target)",
        # Claim writers update this row first: on PostgreSQL its row lock serialises them
        # (SQLite's BEGIN IMMEDIATE already does), and its value tells watchers of a change.
        "INSERT INTO change_counters (name, value) VALUES ('claims', 0)",
        # Each agent a message's metadata `to` names, with when it acknowledged it (NULL:
        # not yet) and whether the Stop hook has nudged it about it.
        """CREATE TABLE addressed (
            message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
            agent_id TEXT NOT NULL,
            session_id TEXT NOT NULL,
            acknowledged_at TEXT,
            nudged INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (message_id, agent_id)
        ) WITHOUT ROWID""",
        "CREATE INDEX addressed_waiting ON addressed (agent_id) WHERE acknowledged_at IS NULL",
        """CREATE TRIGGER addressed_insert AFTER INSERT ON messages
        WHEN json_valid(new.metadata) AND json_type(new.metadata, '$.to') IS NOT NULL BEGIN
            INSERT OR IGNORE INTO addressed (message_id, agent_id, session_id)
            SELECT new.id, t.value, new.session_id
            FROM json_each(new.metadata, '$.to') AS t
            WHERE t.type = 'text' AND t.value != new.sender;
        END""",
        # Older hand-offs: listed as unacknowledged, never nudged about.
        """INSERT OR IGNORE INTO addressed (message_id, agent_id, session_id, nudged)
        SELECT m.id, t.value, m.session_id, 1 FROM messages m,
            json_each(coalesce(m.metadata, '{}'), '$.to') AS t
        WHERE t.type = 'text' AND t.value != m.sender""",
    ),
}

SCHEMA_VERSION = max(MIGRATIONS)
