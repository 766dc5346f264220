"""What a claim covers and when it is alive: the rules the claim tools (claims.py) and the
edit-time hook (hook.py) share. Standard library only: the hook runs before every edit.

A target is a named task (`task:migrate-auth`), a path, or a glob (`src/api/**`). Paths
and globs are made absolute against the caller's working directory; the literal part of
each (the whole path, a glob's directories before its first wildcard) is resolved with
realpath, so `..` and symlinks name one file one way. That literal part is the claim's
`base`, which the conflict check looks up by index.

Overlap is decided segment by segment, and is conservative: a path covers everything
under it (a claimed directory holds its files), a glob covers what it matches and what
lies under that, `**` matches any number of segments, and two wildcard segments overlap
unless their literal prefixes or suffixes rule it out. When unsure, they overlap.

A claim is alive until `expires_at`, while its sub-agent token (if any) is neither
revoked nor expired, and while its holder is present: the server process it was made
through still refreshes its heartbeat row (blackboard/processes.py: a killed process's
row is stale after STALE_AFTER[engine] seconds; on its own host a dead pid counts at once), or,
for the hook's auto-claims, any process of the holder does. A claim younger than
STALE_AFTER counts as present, since a process's first heartbeat may not be written yet.
"""

from __future__ import annotations

import os
from fnmatch import fnmatchcase

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CLAIMS_SCHEMA = 10  # the SQLite migration that made claims and addressed
DEFAULT_TTL_S = 900
MAX_TTL_S = 86400
# processes.stale_after(engine), per engine (that module is too heavy for the hook).
STALE_AFTER = {"sqlite": 15.0, "postgres": 45.0}
MAX_TARGET_CHARS = 1024
MAX_SEGMENTS = 64
TASK = "task:"
WILDCARDS = "*?["

# Claim writers take this row's lock first (migration 10): PostgreSQL serialises them on it.
LOCK_CLAIMS = "UPDATE change_counters SET value = value + 1 WHERE name = 'claims'"
CLAIM_COLUMNS = (
    "c.id, c.target, c.kind, c.base, c.holder, c.shared, c.reason, c.session_id,"
    " c.host, c.pid, c.created_at, c.renewed_at, c.expires_at"
)
# Parameters: now, now, cutoff, cutoff (see live_params).
LIVE_SQL = (
    "c.expires_at > ?"
    " AND (c.token_hash IS NULL OR EXISTS (SELECT 1 FROM agent_tokens t"
    "  WHERE t.token_hash = c.token_hash AND t.revoked_at IS NULL AND t.expires_at > ?))"
    " AND (c.renewed_at >= ? OR EXISTS (SELECT 1 FROM server_processes p"
    "  WHERE p.last_seen >= ? AND ((c.pid IS NULL AND p.agent_id = c.holder)"
    "   OR (p.host = c.host AND p.pid = c.pid))))"
)
# The same statement as audit.INSERT (a test checks): audit.py is too heavy for the hook.
INSERT_AUDIT = (
    "INSERT INTO audit_log (ts, agent_id, via, action, session_id, target, result, detail)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_CLAIM = (
    "INSERT INTO claims (target, kind, base, holder, shared, reason, session_id, host, pid,"
    " process, token_hash, created_at, renewed_at, expires_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
)
RENEW_CLAIM = (
    "UPDATE claims SET shared = ?, reason = ?, session_id = ?, host = ?, pid = ?, process = ?,"
    " token_hash = ?, renewed_at = ?, expires_at = ? WHERE id = ?"
)
DELETE_CLAIM = "DELETE FROM claims WHERE id = ?"


class BadTarget(ValueError):
    """A target that names nothing claimable; the message says why."""


def normalise(raw: str, cwd: str) -> tuple[str, str, str]:
    """(target, kind, base) for a claim target as given. Raises BadTarget."""
    text = raw.strip()
    if not text or len(text) > MAX_TARGET_CHARS or not text.isprintable():
        raise BadTarget(f"{raw[:80]!r} is not 1-{MAX_TARGET_CHARS} printable characters")
    if text.startswith(TASK):
        key = text[len(TASK) :].strip()
        if not key:
            raise BadTarget("a task target names its task: 'task:migrate-auth'")
        return TASK + key, "task", TASK + key
    path = os.path.expanduser(text)
    if not os.path.isabs(path):
        path = os.path.join(cwd, path)
    segments = path.split("/")
    if len(segments) > MAX_SEGMENTS:
        raise BadTarget(f"{text[:80]!r} is more than {MAX_SEGMENTS} directories deep")
    first = next((i for i, s in enumerate(segments) if any(c in s for c in WILDCARDS)), None)
    if first is None:
        full = os.path.realpath(path)
        return full, "path", full
    rest = [s for s in segments[first:] if s not in ("", ".")]
    if ".." in rest:
        raise BadTarget(f"{text[:80]!r} has '..' after a wildcard; write the directory first")
    base = os.path.realpath("/".join(segments[:first]) or "/")
    return base.rstrip("/") + "/" + "/".join(rest), "glob", base


def _literal_ends(segment: str) -> tuple[str, str]:
    """The text before a segment's first wildcard, and after its last (none after a
    character class: conservative)."""
    first = min(i for i, c in enumerate(segment) if c in WILDCARDS)
    if "[" in segment:
        return segment[:first], ""
    return segment[:first], segment[max(segment.rfind("*"), segment.rfind("?")) + 1 :]


def _segments_overlap(a: str, b: str) -> bool:
    wild_a, wild_b = any(c in a for c in WILDCARDS), any(c in b for c in WILDCARDS)
    if not wild_a and not wild_b:
        return a == b
    if not wild_a:
        return fnmatchcase(a, b)
    if not wild_b:
        return fnmatchcase(b, a)
    # Two patterns: a name matching both starts with both literal prefixes and ends with
    # both literal suffixes; beyond that, assume they overlap.
    (head_a, tail_a), (head_b, tail_b) = _literal_ends(a), _literal_ends(b)
    heads = head_a.startswith(head_b) or head_b.startswith(head_a)
    tails = tail_a.endswith(tail_b) or tail_b.endswith(tail_a)
    return heads and tails


def overlaps(
    target_a: str, kind_a: str, target_b: str, kind_b: str, *, b_is_file: bool = False
) -> bool:
    """Whether two normalised targets may name a common file (tasks: the same task).
    A path that is a regular file (or `b_is_file`: the file an edit writes) holds
    nothing under it; any other path may be a directory."""
    if kind_a == "task" or kind_b == "task":
        return target_a == target_b
    a, b = target_a.split("/"), target_b.split("/")
    a_file = kind_a == "path" and os.path.isfile(target_a)
    b_file = b_is_file or (kind_b == "path" and os.path.isfile(target_b))
    seen: dict[tuple[int, int], bool] = {}

    def walk(i: int, j: int) -> bool:
        # One side used up: it named a directory (or a glob's match) above the rest of
        # the other, which it covers, unless it is a file.
        if i == len(a):
            return not a_file or all(s == "**" for s in b[j:])
        if j == len(b):
            return not b_file or all(s == "**" for s in a[i:])
        if (i, j) in seen:
            return seen[(i, j)]
        if a[i] == "**":
            found = walk(i + 1, j) or walk(i, j + 1)
        elif b[j] == "**":
            found = walk(i, j + 1) or walk(i + 1, j)
        else:
            found = _segments_overlap(a[i], b[j]) and walk(i + 1, j + 1)
        seen[(i, j)] = found
        return found

    return walk(0, 0)


def ancestors(base: str) -> list[str]:
    """`base` and every directory above it: the bases of claims that may cover it."""
    if base.startswith(TASK):
        return [base]
    found = ["/"]
    parts = [p for p in base.split("/") if p]
    for i in range(1, len(parts) + 1):
        found.append("/" + "/".join(parts[:i]))
    return found


def candidates_sql(count: int, below: bool) -> str:
    """Live claims whose base is one of `count` ancestors, or (`below`) lies under the
    last of them: the only claims that can overlap a target with that base."""
    where = f"c.base IN ({', '.join('?' * count)})"
    if below:
        where = f"({where} OR (c.base >= ? AND c.base < ?))"
    return f"SELECT {CLAIM_COLUMNS} FROM claims c WHERE {where} AND {LIVE_SQL}"  # noqa: S608


def candidates_params(base: str, below: bool) -> list[Any]:
    params: list[Any] = list(ancestors(base))
    if below:
        under = base if base.endswith("/") else base + "/"
        params += [under, under[:-1] + "0"]  # '0' sorts just after '/'
    return params


def live_params(now: str, cutoff: str) -> tuple[str, str, str, str]:
    return (now, now, cutoff, cutoff)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def gone_here(row: Any, host: str) -> bool:
    """A claim made through a process on this host whose pid no longer exists."""
    return bool(row["pid"] is not None and row["host"] == host and not pid_alive(int(row["pid"])))


def covering(
    conn: Any,
    target: str,
    kind: str,
    base: str,
    now: str,
    cutoff: str,
    host: str,
    *,
    is_file: bool = False,
) -> list[Any]:
    """Live claims that overlap the target (every holder), minus those of dead local
    pids. `is_file`: the target is a file being written (nothing lies under it)."""
    below = kind != "task" and not is_file
    sql = candidates_sql(len(ancestors(base)), below)
    rows = conn.execute(sql, (*candidates_params(base, below), *live_params(now, cutoff)))
    return [
        row
        for row in rows.fetchall()
        if overlaps(row["target"], row["kind"], target, kind, b_is_file=is_file)
        and not gone_here(row, host)
    ]
