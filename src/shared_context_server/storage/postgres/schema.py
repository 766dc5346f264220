"""The PostgreSQL schema, as numbered migrations recorded in `schema_history`.

The same tables, columns, indexes and trigger behaviour as the SQLite file at its schema 10
(sqlite/schema.py; migrations 2 and 3 here add SQLite's 9 and 10), numbered on their own:
a database starts at the current shape. Append a new number for every change; never edit
one that has shipped. Times stay ISO-8601 text,
and every text column is `COLLATE "C"` (byte order, as SQLite's BINARY), so rows read,
compare and sort the same on both engines.

The domain's statements are written once and run unchanged on both engines (the engine
only rewrites `?` and `CROSS JOIN`), so what PostgreSQL lacks of SQLite's dialect is made
here rather than in a second copy of each statement: SQLite's `max(a, b)`, `ifnull`,
`json_group_array` and `json_each(json, path)` as SQL functions, a `rowid` column on
sessions, message ids assigned by a trigger (in commit order, see MESSAGE_ID), and the
NOTIFY that tells every process of a change whichever path wrote it. Search uses pg_trgm
instead of FTS5.
"""

from __future__ import annotations

from shared_context_server.storage.locks import Lock

SCHEMA_EXISTS = "SELECT to_regclass('schema_history') IS NOT NULL"
SELECT_VERSION = "SELECT max(version) FROM schema_history"
# Every change a process must hear of: 'm <session_id> <message_id>' for each message
# inserted, 's <session_id>' when a session is created, deleted, renamed or changes status.
# Sent from triggers, so tools, import and prune are heard alike; PostgreSQL delivers a
# notification only when (and if) its transaction commits.
CHANNEL = "shared_context_changes"
# What search's trigram index holds, per message: a query matches it with this expression.
SEARCH_TEXT = "content || ' ' || sender || ' ' || coalesce(metadata, '')"
# The error a migration raises when pg_trgm cannot be created (see TRIGRAM).
MISSING_EXTENSION = "SC001"
# The error message_id() raises for a post into a session closed while it was on its way
# (migration 4); the unit of work turns it into the domain's CONFLICT.
SESSION_CLOSED = "SC002"

# SQLite's functions that the shared statements call. SQLite's two-argument max() is NULL
# if either argument is (GREATEST is not); a CASE keeps the functions inlinable.
COMPAT = (
    """CREATE FUNCTION max(a bigint, b bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN a >= b THEN a WHEN a < b THEN b END $$""",
    """CREATE FUNCTION max(a text, b text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN a COLLATE "C" >= b COLLATE "C" THEN a
        WHEN a COLLATE "C" < b COLLATE "C" THEN b END $$""",
    # anycompatible: ifnull(bigint_column, 0) resolves as SQLite's does (PostgreSQL 13+).
    """CREATE FUNCTION ifnull(a anycompatible, b anycompatible) RETURNS anycompatible
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT coalesce(a, b) $$""",
    # length(CAST(x AS BLOB)) is x's size in bytes (memory.py); length(text) counts characters.
    "CREATE DOMAIN blob AS text",
    """CREATE FUNCTION length(b blob) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT octet_length(b) $$""",
    # json_group_array(x): the values as a JSON array in text; '[]' over no rows.
    """CREATE FUNCTION json_group_array_final(items text[]) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT array_to_json(items)::text $$""",
    """CREATE AGGREGATE json_group_array(text) (
        SFUNC = array_append, STYPE = text[], INITCOND = '{}',
        FINALFUNC = json_group_array_final
    )""",
    # json_each(json, '$.a.b'): one row per element of an array, per member of an object,
    # or the one scalar at the path; none if the path is absent. `value` as SQLite gives
    # it (strings unquoted, true/false as 1/0, containers as JSON text, though not minified
    # as SQLite's; always as text) and `type` with SQLite's names. A single SELECT, so the
    # planner inlines it into the caller.
    """CREATE FUNCTION json_each(doc text, path text) RETURNS TABLE (value text, type text)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT CASE WHEN json_typeof(e.item) IN ('array', 'object') THEN e.item::text
                WHEN json_typeof(e.item) = 'boolean' THEN
                    CASE e.item #>> '{}' WHEN 'true' THEN '1' ELSE '0' END
                ELSE e.item #>> '{}' END,
            CASE json_typeof(e.item) WHEN 'string' THEN 'text'
                WHEN 'number' THEN CASE WHEN e.item #>> '{}' ~ '^-?[0-9]+$' THEN 'integer'
                    ELSE 'real' END
                WHEN 'boolean' THEN e.item #>> '{}'
                ELSE json_typeof(e.item) END
        FROM (SELECT CASE WHEN path = '$' THEN doc::json
            ELSE doc::json #> string_to_array(substr(path, 3), '.') END) AS t (target),
        LATERAL (
            SELECT a.item FROM json_array_elements(CASE json_typeof(t.target)
                WHEN 'array' THEN t.target END) AS a (item)
            UNION ALL
            SELECT o.value FROM json_each(CASE json_typeof(t.target)
                WHEN 'object' THEN t.target END) AS o
            UNION ALL
            SELECT t.target WHERE json_typeof(t.target) NOT IN ('array', 'object')
        ) AS e (item)
    $$""",
)

# Creating pg_trgm needs the contrib package on the server and, as it is a trusted
# extension, CREATE on the database (the owner has it). Without either the migration
# stops with one line saying what to do, under its own SQLSTATE.
TRIGRAM = f"""DO $$ BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION WHEN OTHERS THEN
    RAISE EXCEPTION USING ERRCODE = '{MISSING_EXTENSION}', MESSAGE = 'search needs the '
        || 'pg_trgm extension and it could not be created (' || SQLERRM || '): have the '
        || 'database owner or a superuser run CREATE EXTENSION pg_trgm in this database '
        || '(the server needs PostgreSQL''s contrib modules installed)';
END $$"""

TABLES = (
    """CREATE TABLE schema_history (
        version INTEGER NOT NULL,
        applied_at TEXT COLLATE "C" NOT NULL,
        pid INTEGER NOT NULL,
        host TEXT COLLATE "C" NOT NULL
    )""",
    # rowid: the domain pages sessions by SQLite's implicit rowid (LIST_SESSIONS).
    """CREATE TABLE sessions (
        id TEXT COLLATE "C" PRIMARY KEY,
        rowid BIGSERIAL NOT NULL UNIQUE,
        purpose TEXT COLLATE "C" NOT NULL,
        status TEXT COLLATE "C" NOT NULL
            CHECK (status IN ('active', 'completed', 'archived')),
        created_by TEXT COLLATE "C" NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL,
        updated_at TEXT COLLATE "C" NOT NULL,
        metadata TEXT COLLATE "C"
    )""",
    "CREATE INDEX sessions_status ON sessions (status, created_at)",
    "CREATE INDEX sessions_idle ON sessions (updated_at) WHERE status != 'archived'",
    # list_sessions(status=...) pages one status newest first (SQLite's migration 8; there
    # the index carries the rowid by itself).
    "CREATE INDEX sessions_listing ON sessions (status, rowid)",
    """CREATE TABLE change_counters (
        name TEXT COLLATE "C" PRIMARY KEY,
        value BIGINT NOT NULL
    )""",
    "INSERT INTO change_counters (name, value) VALUES ('sessions', 0)",
    # No default: MESSAGE_ID assigns it (explicit ids, from an import, are kept).
    "CREATE SEQUENCE message_ids",
    """CREATE TABLE messages (
        id BIGINT PRIMARY KEY,
        session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        sender TEXT COLLATE "C" NOT NULL,
        sender_type TEXT COLLATE "C" NOT NULL,
        content TEXT COLLATE "C" NOT NULL,
        visibility TEXT COLLATE "C" NOT NULL
            CHECK (visibility IN ('public', 'private', 'agent_only', 'admin_only')),
        message_type TEXT COLLATE "C" NOT NULL,
        metadata TEXT COLLATE "C",
        parent_message_id BIGINT REFERENCES messages (id),
        created_at TEXT COLLATE "C" NOT NULL
    )""",
    "CREATE INDEX messages_session ON messages (session_id, id)",
    "CREATE INDEX messages_sender ON messages (session_id, sender, id)",
    # Search's candidates: trigrams of the very text ranking scores (ranking.score_row),
    # as FTS5 indexes content, sender and metadata. One expression, so a search is one
    # index scan; a query must repeat SEARCH_TEXT to use it. It cost about as much per
    # insert as an index over content alone (tests/benchmarks/bench_pg_insert.py).
    f"CREATE INDEX messages_trigram ON messages USING gin (({SEARCH_TEXT}) gin_trgm_ops)",
    """CREATE TABLE server_processes (
        id BIGSERIAL PRIMARY KEY,
        host TEXT COLLATE "C" NOT NULL,
        pid INTEGER NOT NULL,
        agent_id TEXT COLLATE "C",
        agent_type TEXT COLLATE "C" NOT NULL,
        client_name TEXT COLLATE "C",
        started_at TEXT COLLATE "C" NOT NULL,
        last_seen TEXT COLLATE "C" NOT NULL
    )""",
    """CREATE TABLE memory (
        id BIGSERIAL PRIMARY KEY,
        agent_id TEXT COLLATE "C" NOT NULL,
        session_id TEXT COLLATE "C" REFERENCES sessions (id) ON DELETE CASCADE,
        key TEXT COLLATE "C" NOT NULL,
        value TEXT COLLATE "C" NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL,
        updated_at TEXT COLLATE "C" NOT NULL,
        expires_at TEXT COLLATE "C"
    )""",
    # ifnull, as in SQLite's index: memory.py's ON CONFLICT names this very expression.
    "CREATE UNIQUE INDEX memory_key ON memory (agent_id, ifnull(session_id, ''), key)",
    "CREATE INDEX memory_expiry ON memory (expires_at) WHERE expires_at IS NOT NULL",
    """CREATE TABLE leases (
        name TEXT COLLATE "C" PRIMARY KEY,
        holder TEXT COLLATE "C" NOT NULL,
        expires_at TEXT COLLATE "C" NOT NULL
    )""",
    """CREATE TABLE agent_tokens (
        token_hash TEXT COLLATE "C" PRIMARY KEY,
        agent_id TEXT COLLATE "C" NOT NULL,
        agent_type TEXT COLLATE "C" NOT NULL,
        permissions TEXT COLLATE "C" NOT NULL,
        issued_by TEXT COLLATE "C" NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL,
        expires_at TEXT COLLATE "C" NOT NULL,
        revoked_at TEXT COLLATE "C"
    )""",
    "CREATE INDEX agent_tokens_expiry ON agent_tokens (expires_at)",
    """CREATE TABLE audit_log (
        id BIGSERIAL PRIMARY KEY,
        ts TEXT COLLATE "C" NOT NULL,
        agent_id TEXT COLLATE "C" NOT NULL,
        via TEXT COLLATE "C",
        action TEXT COLLATE "C" NOT NULL,
        session_id TEXT COLLATE "C",
        target TEXT COLLATE "C",
        result TEXT COLLATE "C" NOT NULL,
        detail TEXT COLLATE "C"
    )""",
    """CREATE TABLE inbox_marks (
        agent_id TEXT COLLATE "C" NOT NULL,
        session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        seen_id BIGINT NOT NULL,
        hinted_id BIGINT NOT NULL DEFAULT 0,
        nudged_id BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (agent_id, session_id)
    )""",
    "CREATE INDEX inbox_marks_session ON inbox_marks (session_id)",
    # INTEGER, not BIGINT: sum() of it is a bigint (a Python int), of a bigint a numeric.
    """CREATE TABLE session_activity (
        session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        sender TEXT COLLATE "C" NOT NULL,
        sender_type TEXT COLLATE "C" NOT NULL,
        visibility TEXT COLLATE "C" NOT NULL,
        message_count INTEGER NOT NULL,
        last_message_at TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (session_id, sender, sender_type, visibility)
    )""",
)

# A message's id is taken only once the writer holds its session's row lock, which it
# keeps until COMMIT. A bare sequence hands out ids at INSERT, so two writers could commit
# out of id order and a reader already past id 10 would never see 9. Under the lock, the
# next writer to the same session takes its id after this one commits: ids grow in commit
# order within every session, which is what after_id paging and the long poll read
# (tests/test_postgres.py). Writers to different sessions do not wait for each other.
# An explicit id (an import) is kept and moves the sequence past it, under an advisory
# lock so two importers cannot move it back; ids from nextval never take that lock.
# (pg_sequence_last_value is NULL until the first nextval: last_value would say 1.)
# The key is a shipped migration's text: the registry keeps it where it was.
IMPORT_LOCK = int(Lock.IMPORT_IDS)
MESSAGE_ID = f"""CREATE FUNCTION message_id() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM sessions WHERE id = NEW.session_id FOR NO KEY UPDATE;
    IF NEW.id IS NULL THEN
        NEW.id := nextval('message_ids');
    ELSIF NEW.id > coalesce(pg_sequence_last_value('message_ids'), 0) THEN
        PERFORM pg_advisory_xact_lock({IMPORT_LOCK});
        PERFORM setval('message_ids', NEW.id)
        WHERE NEW.id > coalesce(pg_sequence_last_value('message_ids'), 0);
    END IF;
    RETURN NEW;
END $$"""

TRIGGERS = (
    MESSAGE_ID,
    "CREATE TRIGGER message_id BEFORE INSERT ON messages"
    " FOR EACH ROW EXECUTE FUNCTION message_id()",
    # One function for everything an inserted message moves (one trigger call, not three):
    # SQLite's session_activity_insert and inbox_sender (migrations 6 and 7), and NOTIFY.
    f"""CREATE FUNCTION message_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO session_activity AS a VALUES
        (NEW.session_id, NEW.sender, NEW.sender_type, NEW.visibility, 1, NEW.created_at)
    ON CONFLICT (session_id, sender, sender_type, visibility) DO UPDATE SET
        message_count = a.message_count + 1,
        last_message_at = max(a.last_message_at, excluded.last_message_at);
    INSERT INTO inbox_marks AS i (agent_id, session_id, seen_id)
    VALUES (NEW.sender, NEW.session_id, NEW.id)
    ON CONFLICT (agent_id, session_id) DO UPDATE SET seen_id = excluded.seen_id
    WHERE NOT EXISTS (SELECT 1 FROM messages o WHERE o.session_id = excluded.session_id
        AND o.id > i.seen_id AND o.id < excluded.seen_id);
    INSERT INTO inbox_marks (agent_id, session_id, seen_id)
    SELECT t.value, NEW.session_id, NEW.id - 1
    FROM json_each(coalesce(NEW.metadata, '{{}}'), '$.to') AS t
    WHERE t.type = 'text' AND t.value != NEW.sender
    ON CONFLICT DO NOTHING;
    PERFORM pg_notify('{CHANNEL}', 'm ' || NEW.session_id || ' ' || NEW.id);
    RETURN NULL;
END $$""",  # noqa: S608 (constants only)
    "CREATE TRIGGER message_inserted AFTER INSERT ON messages"
    " FOR EACH ROW EXECUTE FUNCTION message_inserted()",
    # A group's last time is not recomputed when a message goes (as in SQLite's).
    """CREATE FUNCTION message_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE session_activity SET message_count = message_count - 1
    WHERE session_id = OLD.session_id AND sender = OLD.sender
        AND sender_type = OLD.sender_type AND visibility = OLD.visibility;
    DELETE FROM session_activity
    WHERE session_id = OLD.session_id AND sender = OLD.sender
        AND sender_type = OLD.sender_type AND visibility = OLD.visibility
        AND message_count <= 0;
    RETURN NULL;
END $$""",
    "CREATE TRIGGER message_deleted AFTER DELETE ON messages"
    " FOR EACH ROW EXECUTE FUNCTION message_deleted()",
    # SQLite's sessions_count_* and inbox_creator (migrations 3 and 6), and NOTIFY.
    f"""CREATE FUNCTION session_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE change_counters SET value = value + 1 WHERE name = 'sessions';
    IF TG_OP = 'INSERT' THEN
        INSERT INTO inbox_marks (agent_id, session_id, seen_id)
        VALUES (NEW.created_by, NEW.id, 0) ON CONFLICT DO NOTHING;
    END IF;
    PERFORM pg_notify('{CHANNEL}', 's ' || CASE TG_OP WHEN 'DELETE' THEN OLD.id ELSE NEW.id END);
    RETURN NULL;
END $$""",  # noqa: S608 (constants only)
    "CREATE TRIGGER session_added_or_removed AFTER INSERT OR DELETE ON sessions"
    " FOR EACH ROW EXECUTE FUNCTION session_changed()",
    "CREATE TRIGGER session_updated AFTER UPDATE OF status, purpose ON sessions FOR EACH ROW"
    " WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.purpose IS DISTINCT FROM NEW.purpose)"
    " EXECUTE FUNCTION session_changed()",
)

# What `import` has written, for a rerun to continue (SQLite's migration 9).
IMPORTS = (
    """CREATE TABLE imports (
        key TEXT COLLATE "C" PRIMARY KEY,
        session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        messages BIGINT NOT NULL DEFAULT 0,
        dropped_links BIGINT NOT NULL DEFAULT 0,
        started_at TEXT COLLATE "C" NOT NULL,
        finished_at TEXT COLLATE "C"
    )""",
    "CREATE INDEX imports_session ON imports (session_id)",
    """CREATE TABLE imported_messages (
        session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        original_id BIGINT NOT NULL,
        message_id BIGINT NOT NULL,
        PRIMARY KEY (session_id, original_id)
    )""",
)

# Claims and acknowledged hand-offs: SQLite's migration 10.
CLAIMS = (
    """CREATE TABLE claims (
        id BIGSERIAL PRIMARY KEY,
        target TEXT COLLATE "C" NOT NULL,
        kind TEXT COLLATE "C" NOT NULL CHECK (kind IN ('path', 'glob', 'task')),
        base TEXT COLLATE "C" NOT NULL,
        holder TEXT COLLATE "C" NOT NULL,
        shared INTEGER NOT NULL DEFAULT 0,
        reason TEXT COLLATE "C",
        session_id TEXT COLLATE "C",
        host TEXT COLLATE "C",
        pid INTEGER,
        process TEXT COLLATE "C",
        token_hash TEXT COLLATE "C",
        created_at TEXT COLLATE "C" NOT NULL,
        renewed_at TEXT COLLATE "C" NOT NULL,
        expires_at TEXT COLLATE "C" NOT NULL
    )""",
    "CREATE INDEX claims_base ON claims (base)",
    "CREATE INDEX claims_holder ON claims (holder, target)",
    # Claim writers update this row first: its row lock serialises them (claims.py).
    "INSERT INTO change_counters (name, value) VALUES ('claims', 0)",
    """CREATE TABLE addressed (
        message_id BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        agent_id TEXT COLLATE "C" NOT NULL,
        session_id TEXT COLLATE "C" NOT NULL,
        acknowledged_at TEXT COLLATE "C",
        nudged INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (message_id, agent_id)
    )""",
    "CREATE INDEX addressed_waiting ON addressed (agent_id) WHERE acknowledged_at IS NULL",
    # A trigger of its own, so migration 1's message_inserted stays as shipped.
    """CREATE FUNCTION message_addressed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO addressed (message_id, agent_id, session_id)
    SELECT NEW.id, t.value, NEW.session_id
    FROM json_each(NEW.metadata, '$.to') AS t
    WHERE t.type = 'text' AND t.value != NEW.sender
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$""",
    "CREATE TRIGGER message_addressed AFTER INSERT ON messages FOR EACH ROW"
    " WHEN (NEW.metadata IS NOT NULL AND NEW.metadata LIKE '%\"to\"%')"
    " EXECUTE FUNCTION message_addressed()",
    """INSERT INTO addressed (message_id, agent_id, session_id, nudged)
    SELECT m.id, t.value, m.session_id, 1 FROM messages m,
        json_each(coalesce(m.metadata, '{}'), '$.to') AS t
    WHERE t.type = 'text' AND t.value != m.sender ON CONFLICT DO NOTHING""",
)

# A post is INSERT ... SELECT ... WHERE s.status = 'active' (messages.py), and the statement
# reads the session in its own snapshot, taken before message_id() waits for the row lock:
# a post racing update_session(status='completed') could read 'active', wait while the
# close commits, then land in the closed session. Under the lock the row is the newest
# committed version (READ COMMITTED), so the status is checked again there. An import
# writes messages into a session of any status that it created in the same transaction
# (the row's xmin is this transaction), or with explicit ids: those are let through.
CHECKED_MESSAGE_ID = f"""CREATE OR REPLACE FUNCTION message_id() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    session_status text;
    created_here boolean;
BEGIN
    SELECT status, xmin = pg_current_xact_id()::xid INTO session_status, created_here
    FROM sessions WHERE id = NEW.session_id FOR NO KEY UPDATE;
    IF session_status != 'active' AND NOT created_here AND NEW.id IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '{SESSION_CLOSED}', DETAIL = session_status,
            MESSAGE = format('session %s is %s; reopen it with update_session(status=''active'')'
                || ' before posting.', NEW.session_id, session_status);
    END IF;
    IF NEW.id IS NULL THEN
        NEW.id := nextval('message_ids');
    ELSIF NEW.id > coalesce(pg_sequence_last_value('message_ids'), 0) THEN
        PERFORM pg_advisory_xact_lock({IMPORT_LOCK});
        PERFORM setval('message_ids', NEW.id)
        WHERE NEW.id > coalesce(pg_sequence_last_value('message_ids'), 0);
    END IF;
    RETURN NEW;
END $$"""  # noqa: S608 (constants only)

MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (TRIGRAM, *COMPAT, *TABLES, *TRIGGERS),
    2: IMPORTS,
    3: CLAIMS,
    4: (CHECKED_MESSAGE_ID,),
}

SCHEMA_VERSION = max(MIGRATIONS)
