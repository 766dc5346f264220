"""A process's settings from flags and environment: a flag beats its environment variable.

Whoever writes the client's config owns the machine, so both sources are trusted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from shared_context_server.blackboard.changes import DEFAULT_POLL_INTERVAL
from shared_context_server.blackboard.identity import check_name, check_process_id
from shared_context_server.blackboard.limits import DEFAULT_LIMITS, Limits
from shared_context_server.blackboard.maintenance import (
    DEFAULT_ARCHIVE_AFTER_DAYS,
    DEFAULT_AUDIT_RETENTION_DAYS,
    DEFAULT_INTERVAL_S,
    Policy,
)
from shared_context_server.blackboard.tokens import DEFAULT_TTL_S, MAX_TTL_S
from shared_context_server.errors import InvalidInput
from shared_context_server.storage.opener import (
    check_db_value,
    default_db_path,
    is_postgres_url,
    postgres_url,
)
from shared_context_server.storage.seam import Target
from shared_context_server.storage.seam.records import RECORDS_URL_ENV

ENV_DB = "SHARED_CONTEXT_DB"
ENV_AGENT_ID = "SHARED_CONTEXT_AGENT_ID"
ENV_AGENT_TYPE = "SHARED_CONTEXT_AGENT_TYPE"
ENV_ADMIN = "SHARED_CONTEXT_ADMIN"
ENV_MAX_CONTENT = "SHARED_CONTEXT_MAX_CONTENT_CHARS"
ENV_MAX_MEMORY = "SHARED_CONTEXT_MAX_MEMORY_BYTES"
ENV_LOG_LEVEL = "SHARED_CONTEXT_LOG_LEVEL"
ENV_POLL_INTERVAL = "SHARED_CONTEXT_POLL_INTERVAL"
ENV_TOOLSETS = "SHARED_CONTEXT_TOOLSETS"
ENV_ALLOW_RAW_WRITES = "SHARED_CONTEXT_ALLOW_RAW_WRITES"
ENV_TOKEN_TTL = "SHARED_CONTEXT_TOKEN_TTL"
ENV_ARCHIVE_AFTER = "SHARED_CONTEXT_ARCHIVE_AFTER_DAYS"
ENV_AUDIT_RETENTION = "SHARED_CONTEXT_AUDIT_RETENTION_DAYS"
ENV_MAINTENANCE_INTERVAL = "SHARED_CONTEXT_MAINTENANCE_INTERVAL"
ENV_STDIO = "SHARED_CONTEXT_STDIO"
ENV_RECORDS_URL = RECORDS_URL_ENV
ENV_PUSH = "SHARED_CONTEXT_PUSH"

# The groups of tools a process can offer; `core` alone by default keeps the tool list small.
# `minimal` is the part of core a worker agent needs (server/toolsets.py says which).
TOOLSETS = ("core", "minimal", "records")
DEFAULT_TOOLSETS: frozenset[str] = frozenset({"core"})

# name -> (environment variable, what it sets); the README's table and a test use this.
ENVIRONMENT: dict[str, str] = {
    ENV_DB: "database file or postgresql:// URL (default: a file in the per-user data directory)",
    ENV_AGENT_ID: "this process's agent id (default: the client's name)",
    ENV_AGENT_TYPE: "this process's agent type (default: generic)",
    ENV_ADMIN: "1 gives this process the admin permission",
    ENV_MAX_CONTENT: "longest message content in characters "
    f"(default {DEFAULT_LIMITS.max_content_chars})",
    ENV_MAX_MEMORY: "largest memory value in bytes of JSON "
    f"(default {DEFAULT_LIMITS.max_memory_bytes})",
    ENV_LOG_LEVEL: "stderr log level (default WARNING)",
    ENV_POLL_INTERVAL: "seconds between looks for other processes' commits "
    f"(default {DEFAULT_POLL_INTERVAL:g})",
    ENV_TOOLSETS: "toolsets to offer, comma-separated: core or minimal, records (default core)",
    ENV_ALLOW_RAW_WRITES: "1 lets execute_raw_query change rows of the shared tables",
    ENV_RECORDS_URL: "on PostgreSQL: the confined login raw queries run as, as a URL "
    "(default: one the server makes, if its role may create roles)",
    ENV_TOKEN_TTL: "seconds a sub-agent token lives unless expires_in says "
    f"(default {DEFAULT_TTL_S})",
    ENV_ARCHIVE_AFTER: "archive sessions idle this many days "
    f"(default {DEFAULT_ARCHIVE_AFTER_DAYS}; 0 never)",
    ENV_AUDIT_RETENTION: "keep audit entries this many days "
    f"(default {DEFAULT_AUDIT_RETENTION_DAYS}; 0 forever)",
    ENV_MAINTENANCE_INTERVAL: "seconds between maintenance rounds "
    f"(default {DEFAULT_INTERVAL_S:g})",
    ENV_STDIO: "threads: the SDK's threaded stdio transport (default auto)",
    ENV_PUSH: "channels pushes messages for the agent into a Claude Code session, "
    "channels-all every message in its sessions (default off)",
}

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# off: nothing pushed; channels: messages for the agent, as Claude Code channel events
# (server/channels.py); channels-all: every message in its sessions.
PushMode = Literal["off", "channels", "channels-all"]
PUSH_MODES: tuple[PushMode, ...] = ("off", "channels", "channels-all")
# auto: the event loop's own pipes when stdin and stdout are pipes; threads: the SDK's.
STDIO_TRANSPORTS = ("auto", "threads")
# Below 10 ms polling costs CPU for nothing; above 5 s real time stops being real.
MIN_POLL_INTERVAL = 0.01
MAX_POLL_INTERVAL = 5.0
# A round a tenth of a second apart is for tests; a day apart still sweeps daily.
MIN_MAINTENANCE_INTERVAL = 0.1
MAX_MAINTENANCE_INTERVAL = 86400.0
MAX_DAYS = 36500  # a century: beyond it dates overflow
# `prune` removes archived sessions last changed longer ago than this, in days.
PRUNE_ARCHIVED_AFTER_DAYS = 30.0

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    db_path: Target  # a file's path, or a PostgreSQL URL
    agent_id: str | None = None
    agent_id_source: Literal["flag", "env"] | None = None
    agent_type: str = "generic"
    admin: bool = False
    limits: Limits = field(default_factory=Limits)
    log_level: str = "WARNING"
    poll_interval: float = DEFAULT_POLL_INTERVAL
    toolsets: frozenset[str] = DEFAULT_TOOLSETS
    allow_raw_writes: bool = False
    token_ttl_s: int = DEFAULT_TTL_S
    # Seconds between maintenance rounds; which ages it acts on.
    maintenance_interval_s: float = DEFAULT_INTERVAL_S
    archive_after_days: int = DEFAULT_ARCHIVE_AFTER_DAYS
    audit_retention_days: int = DEFAULT_AUDIT_RETENTION_DAYS
    stdio: Literal["auto", "threads"] = "auto"
    push: PushMode = "off"

    def policy(self) -> Policy:
        """What this process's maintenance rounds act on, when it holds the lease."""
        return Policy(
            self.maintenance_interval_s, self.archive_after_days, self.audit_retention_days
        )

    def public(self) -> dict[str, Any]:
        """What an admin's whoami shows: the settings that shape the shared file."""
        return {
            "toolsets": sorted(self.toolsets),
            "allow_raw_writes": self.allow_raw_writes,
            "max_content_chars": self.limits.max_content_chars,
            "max_memory_bytes": self.limits.max_memory_bytes,
            "poll_interval_s": self.poll_interval,
            "token_ttl_s": self.token_ttl_s,
            "maintenance_interval_s": self.maintenance_interval_s,
            "archive_after_days": self.archive_after_days,
            "audit_retention_days": self.audit_retention_days,
            "push": self.push,
        }


def resolve_db_path(flag: str | None, environ: Mapping[str, str] = os.environ) -> Target:
    """--db, else SHARED_CONTEXT_DB, else the per-user default file; a PostgreSQL URL
    stays a string, its scheme in lower case. Raises InvalidInput for an empty --db (an
    unset shell variable), which must not mean the real blackboard, and for a value that
    looks like a URL of another scheme (a typo must not become a file)."""
    if flag is not None and not flag.strip():
        raise InvalidInput(
            "--db is empty (an unset variable?); give a file path, or leave --db out for "
            "the default blackboard."
        )
    raw = flag or environ.get(ENV_DB)
    if raw:
        check_db_value(raw, "--db" if flag else ENV_DB)
    if is_postgres_url(raw):
        return postgres_url(str(raw))
    return Path(raw).expanduser() if raw else default_db_path()


def _positive_int(
    flags: Mapping[str, Any],
    name: str,
    environ: Mapping[str, str],
    variable: str,
    *,
    least: int = 1,
    most: int | None = None,
) -> int | None:
    """A whole number from its flag, else its variable; None if neither is given."""
    value = flags.get(name)
    if value is None and environ.get(variable):
        try:
            value = int(environ[variable])
        except ValueError:
            raise InvalidInput(f"{variable} must be a whole number.") from None
    if value is not None and (value < least or (most is not None and value > most)):
        bound = f"from {least} to {most}" if most is not None else f"at least {least}"
        raise InvalidInput(f"--{name.replace('_', '-')} / {variable} must be {bound}.")
    return value if value is None else int(value)


def resolve_settings(flags: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> Settings:
    """Settings from parsed flags (None = not given) over the environment.

    Raises InvalidInput naming the flag or variable at fault.
    """
    agent_id: str | None = flags.get("agent_id")
    source: Literal["flag", "env"] | None = "flag" if agent_id is not None else None
    if agent_id is None and environ.get(ENV_AGENT_ID):
        agent_id, source = environ[ENV_AGENT_ID], "env"
    if agent_id is not None:
        check_process_id(agent_id, "--agent-id" if source == "flag" else ENV_AGENT_ID)
    agent_type = flags.get("agent_type") or environ.get(ENV_AGENT_TYPE) or "generic"
    check_name(agent_type, "--agent-type / " + ENV_AGENT_TYPE)

    admin = bool(flags.get("admin")) or _env_flag(environ, ENV_ADMIN)
    allow_raw_writes = bool(flags.get("allow_raw_writes")) or _env_flag(
        environ, ENV_ALLOW_RAW_WRITES
    )
    if flags.get("toolsets") is not None:
        toolsets = parse_toolsets(flags["toolsets"], "--toolsets")
    elif environ.get(ENV_TOOLSETS) is not None:
        toolsets = parse_toolsets(environ[ENV_TOOLSETS], ENV_TOOLSETS)
    else:
        toolsets = DEFAULT_TOOLSETS

    max_content = _positive_int(flags, "max_content_chars", environ, ENV_MAX_CONTENT)
    max_memory = _positive_int(flags, "max_memory_bytes", environ, ENV_MAX_MEMORY)
    sizes = {"max_content_chars": max_content, "max_memory_bytes": max_memory}
    limits = Limits(**{name: value for name, value in sizes.items() if value is not None})

    poll_interval = _poll_interval(flags.get("poll_interval"), environ)
    token_ttl = _positive_int(flags, "token_ttl", environ, ENV_TOKEN_TTL, most=MAX_TTL_S)
    archive = _positive_int(
        flags, "archive_after_days", environ, ENV_ARCHIVE_AFTER, least=0, most=MAX_DAYS
    )
    retention = audit_retention(flags, environ)
    interval = _seconds_setting(
        flags.get("maintenance_interval"),
        environ,
        ENV_MAINTENANCE_INTERVAL,
        "--maintenance-interval",
        (MIN_MAINTENANCE_INTERVAL, MAX_MAINTENANCE_INTERVAL),
    )
    log_level = (flags.get("log_level") or environ.get(ENV_LOG_LEVEL) or "WARNING").upper()
    if log_level not in LOG_LEVELS:
        raise InvalidInput(
            f"{ENV_LOG_LEVEL} must be one of {', '.join(LOG_LEVELS)}; got {log_level!r}."
        )
    stdio = (flags.get("stdio") or environ.get(ENV_STDIO) or "auto").lower()
    if stdio not in STDIO_TRANSPORTS:
        raise InvalidInput(
            f"{ENV_STDIO} must be one of {', '.join(STDIO_TRANSPORTS)}; got {stdio!r}."
        )
    push = (flags.get("push") or environ.get(ENV_PUSH) or "off").lower()
    if push not in PUSH_MODES:
        raise InvalidInput(
            f"--push / {ENV_PUSH} must be one of {', '.join(PUSH_MODES)}; got {push!r}."
        )
    return Settings(
        db_path=resolve_db_path(flags.get("db"), environ),
        agent_id=agent_id,
        agent_id_source=source,
        agent_type=agent_type,
        admin=admin,
        limits=limits,
        log_level=log_level,
        poll_interval=poll_interval,
        toolsets=toolsets,
        allow_raw_writes=allow_raw_writes,
        token_ttl_s=token_ttl or DEFAULT_TTL_S,
        maintenance_interval_s=interval if interval is not None else DEFAULT_INTERVAL_S,
        archive_after_days=DEFAULT_ARCHIVE_AFTER_DAYS if archive is None else archive,
        audit_retention_days=retention,
        stdio="threads" if stdio == "threads" else "auto",
        push=cast(PushMode, push),
    )


def audit_retention(flags: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> int:
    """Days of audit log kept (0: all): --audit-retention-days, else its variable, else 90."""
    days = _positive_int(
        flags, "audit_retention_days", environ, ENV_AUDIT_RETENTION, least=0, most=MAX_DAYS
    )
    return DEFAULT_AUDIT_RETENTION_DAYS if days is None else days


def _poll_interval(flag: float | None, environ: Mapping[str, str]) -> float:
    """--poll-interval, else SHARED_CONTEXT_POLL_INTERVAL, else 0.1. Raises InvalidInput."""
    value = _seconds_setting(
        flag, environ, ENV_POLL_INTERVAL, "--poll-interval", (MIN_POLL_INTERVAL, MAX_POLL_INTERVAL)
    )
    return DEFAULT_POLL_INTERVAL if value is None else value


def _seconds_setting(
    flag: float | None,
    environ: Mapping[str, str],
    variable: str,
    name: str,
    bounds: tuple[float, float],
) -> float | None:
    """Seconds from the flag, else its variable, within `bounds`; None if neither is given.
    Raises InvalidInput naming the flag or variable."""
    what, value = name, flag
    if value is None and environ.get(variable):
        what = variable
        try:
            value = float(environ[variable])
        except ValueError:
            raise InvalidInput(f"{variable} must be a number of seconds.") from None
    if value is not None and not bounds[0] <= value <= bounds[1]:
        raise InvalidInput(f"{what} must be {bounds[0]}-{bounds[1]} seconds; got {value}.")
    return value


def _env_flag(environ: Mapping[str, str], name: str) -> bool:
    raw = environ.get(name, "").strip().lower()
    if raw not in _TRUE | _FALSE:
        raise InvalidInput(f"{name} must be 1 or 0; got {raw!r}.")
    return raw in _TRUE


def parse_toolsets(raw: str, where: str) -> frozenset[str]:
    """`core,records` -> {"core", "records"}. Raises InvalidInput naming `where`."""
    names = [name.strip() for name in raw.split(",") if name.strip()]
    unknown = [name for name in names if name not in TOOLSETS]
    if unknown or not names:
        got = ", ".join(repr(n) for n in unknown) if unknown else "nothing"
        raise InvalidInput(
            f"{where}: unknown toolset {got}; choose from {', '.join(TOOLSETS)} "
            "(e.g. core,records or minimal)."
        )
    return frozenset(names)
