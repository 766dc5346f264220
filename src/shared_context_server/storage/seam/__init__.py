"""The one seam between the domain and storage: read, or run a unit of work in a transaction.

The domain (`blackboard/`) reaches its data only through a `Store`. Two engines stand
behind it: the SQLite file (`db.Database`, the default) and a PostgreSQL database
(`postgres.PgDatabase`, for agents on several machines). Both take the same statements,
written once with `?` placeholders in the dialect the two share; what differs (placeholder
style, a few SQLite functions, message ids in commit order, change detection, the search
index) is kept inside each engine and its schema, never in `blackboard/`.

A unit of work is plain synchronous code over a `Conn`: it runs whole between BEGIN and
COMMIT in one trip to the engine, so by construction nothing else (no network call, no
await) happens while it holds locks that other agents' processes wait for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

Params = Sequence[Any]
# Where the blackboard lives: a SQLite file's path, or a PostgreSQL URL.
Target = Path | str
Engine = Literal["sqlite", "postgres"]
T = TypeVar("T")

# Work no agent waits for (the heartbeat, maintenance). An engine that closes idle
# connections need not keep one open after it (postgres/connections.py).
_BACKGROUND: ContextVar[bool] = ContextVar("background", default=False)


def run_in_background() -> None:
    """Mark the calling task, and what it runs on worker threads, as background work."""
    _BACKGROUND.set(True)


@contextmanager
def background() -> Iterator[None]:
    """Inside, the calling task's work is background work (a long poll between looks)."""
    token = _BACKGROUND.set(True)
    try:
        yield
    finally:
        _BACKGROUND.reset(token)


def in_background() -> bool:
    return _BACKGROUND.get()


class Row(Protocol):
    """A result row: by position or by column name (sqlite3.Row and the PostgreSQL rows)."""

    def __getitem__(self, key: int | str, /) -> Any: ...
    def __iter__(self) -> Iterator[Any]: ...
    def __len__(self) -> int: ...
    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    """What one statement run inside a unit of work gives back."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Conn(Protocol):
    """The connection a unit of work is handed, inside its transaction."""

    def execute(self, sql: str, parameters: Params = ..., /) -> Cursor: ...


Work = Callable[[Conn], T]


@dataclass(frozen=True)
class Fetched:
    """At most `max_rows` rows of one statement, its column names and the rows it changed."""

    columns: list[str]
    rows: list[Row]
    changes: int


@dataclass(frozen=True)
class CandidateQuery:
    """What search asks an engine for: the messages of a session worth scoring for `query`.

    The domain gives the columns and the condition (visibility, sender) on the table
    aliased `m`, with their parameters, so a message the reader may not see is never a
    candidate and the cap counts only visible ones; the engine finds candidates with its
    own index."""

    session_id: str
    query: str
    columns: str
    condition: str
    params: tuple[Any, ...]
    cap: int  # the most candidates to return
    direct_scan: int  # a session of at most this many messages: its newest, without the index
    short_query_scan: int  # no index match (or no trigram): this many newest messages


def newest_sql(q: CandidateQuery) -> str:
    """The session's newest visible messages (both engines' fall-back); parameters:
    session id, q.params, then the count."""
    return (
        f"SELECT {q.columns} FROM messages m WHERE m.session_id = ? AND {q.condition}"  # noqa: S608
        " ORDER BY m.id DESC LIMIT ?"
    )


# Every message of the session, whoever may see it (session_activity): picks the path.
SESSION_SIZE = "SELECT coalesce(sum(message_count), 0) FROM session_activity WHERE session_id = ?"


class ResultTooLarge(Exception):
    """A statement's rows passed the byte budget a bounded read was given."""


@dataclass(frozen=True)
class Change:
    """What one look found: messages with first_id <= id <= last_id may be new (a range
    that holds every new one, and on PostgreSQL possibly older ones of other sessions:
    readers re-check), and whether the list of sessions changed."""

    first_id: int
    last_id: int
    sessions_changed: bool

    @property
    def new_messages(self) -> bool:
        return self.last_id >= self.first_id


class Store(Protocol):
    """What the domain may do with storage: read, and write in one transaction."""

    engine: Engine
    # Busy waits are bounded by this, in seconds, for every call that writes.
    busy_seconds: float
    # True when the engine hears of other processes' commits as they happen (PostgreSQL's
    # LISTEN, while `listen` runs) and calls the `on_commit` listeners for them; False when
    # readers must look (`changes`, `data_version`) every so often (SQLite).
    push: bool
    # The schema version this release writes, on this engine.
    release_schema: int
    # The column that addresses any row of any table (batched deletes cut by it).
    row_key: str
    # The engine driver's own errors (a bug's SQL error, a fault given no code yet):
    # background loops catch these, with BlackboardError, to log and go on.
    errors: tuple[type[Exception], ...]

    @property
    def where(self) -> str:
        """The database, for messages: a file path, or a URL without its password."""
        ...

    async def read(self, sql: str, params: Params = (), *, small: bool = False) -> list[Row]:
        """One statement outside any transaction: it sees every commit made before it.
        `small`: at most a page of rows, which SQLite reads on the caller's thread."""
        ...

    async def read_one(self, sql: str, params: Params = (), *, small: bool = False) -> Row | None:
        """The first row of `read`, or None."""
        ...

    async def transact(self, work: Callable[[Conn], T]) -> T:
        """Run `work` between BEGIN and COMMIT, serialised with every other writer of its
        data; ROLLBACK and re-raise if it raises. DatabaseBusy if the wait passes
        `busy_seconds`."""
        ...

    async def transact_then_read(self, work: Callable[[Conn], Callable[[], T]]) -> T:
        """As `transact`, for a unit that need not look at a result before its last
        statement: `work` runs the statements and returns a function that reads their
        results, called once all have run (on PostgreSQL after COMMIT went with them in
        one trip, so the row locks they take are held over no round trip to this process).
        Each statement must be right to commit whatever the ones before it found (a later
        one writes only if an earlier one did, in its own SQL)."""
        ...

    async def try_transact(self, work: Callable[[Conn], object]) -> bool:
        """Run `work` in a transaction only if that needs no wait; False if not done."""
        ...

    async def search_candidates(self, q: CandidateQuery) -> list[Row]:
        """The messages worth scoring for a search, from the engine's own index."""
        ...

    async def index_search(self, *, batch: int = ..., at_least: int = 1) -> int:
        """Bring the search index up to the latest commits where the engine indexes
        apart from its writes, a batch per short transaction, once about `at_least` are
        pending; returns how many it added (0 where writes index themselves)."""
        ...

    async def schema_version(self) -> int:
        """The schema version the database holds."""
        ...

    async def checkpoint_if_large(self) -> int:
        """Engine upkeep for maintenance: SQLite copies a large WAL back into the file;
        returns the pages moved (PostgreSQL checkpoints on its own: 0)."""
        ...

    def on_commit(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` after each of this process's commits (and, where `push`, each
        one heard of from another process); returns its remover."""
        ...

    async def changes(self) -> Change | None:
        """What any process committed since the previous call, or None if nothing that a
        feed reports (new messages, the list of sessions). The first call only sets the
        baseline. One caller per Store: the process's change feed."""
        ...

    async def data_version(self) -> int:
        """A number that moves whenever another process may have committed."""
        ...

    async def listen(self) -> None:
        """Hear other processes' commits until cancelled, where the engine can (`push`),
        while someone wants news (`want_news`); returns at once where it cannot."""
        ...

    def want_news(self, wanted: bool) -> None:
        """Someone in this process waits for other processes' commits (True), or nobody
        does any more (False): PostgreSQL holds a LISTEN connection only in between."""
        ...

    async def news_ready(self) -> None:
        """Return once every later commit will be heard (PostgreSQL: LISTEN is in place),
        or after a few seconds if it cannot be yet; at once on a file."""
        ...

    async def close(self) -> None: ...


def passwordless(url: str) -> str:
    """The URL with its password left out (a command to paste: libpq then takes it from
    ~/.pgpass or PGPASSWORD); `redact`'s `***` where it cannot be parsed."""
    import re
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return redact(url)
    netloc = parts.netloc
    if password is not None:
        netloc = netloc.replace(f":{password}@", "@", 1)
    kept = [p for p in re.split(r"[&;]", parts.query) if p and "password=" not in p.lower()]
    return urlunsplit(parts._replace(netloc=netloc, query="&".join(kept)))


def redact(url: str) -> str:
    """The URL with any password replaced, for messages and logs: the one after the user
    name (in a malformed URL too), and any `password=` (or `sslpassword=`) among the
    query's parameters, which libpq reads too."""
    import re
    from urllib.parse import urlsplit, urlunsplit

    in_query = re.compile(r"((?:^|[&;?])[^=&;?]*password=)[^&;]*", re.IGNORECASE)
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # unparsable (a stray bracket): hide whatever sits before an @
        return in_query.sub(r"\1***", re.sub(r"//[^/@]*@", "//***@", url, count=1))
    if password is None:
        # A malformed URL (one slash after the scheme, a slash in the password) can hold a
        # password where urlsplit finds none: whatever follows the user before the last @.
        head, mark, tail = url.partition("?")
        scheme, _, rest = head.partition(":")
        userinfo, at, place = rest.rpartition("@")
        if at and ":" in userinfo:
            masked = f"{scheme}:{userinfo.partition(':')[0]}:***@{place}{mark}{tail}"
            return in_query.sub(r"\1***", masked)
    netloc = parts.netloc
    if password is not None:
        netloc = netloc.replace(f":{password}@", ":***@", 1)
    query = in_query.sub(r"\1***", parts.query)
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))
