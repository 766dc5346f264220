"""Sub-agent tokens: one server process, several distinct agents.

A host's sub-agents share their parent's server process, so they share its identity unless
the parent mints each a token with `authenticate_agent` and the sub-agent passes it as
`agent_token`. A token never reaches further than the agent that minted it:
- its permissions are a subset of the minter's;
- a non-admin names its sub-agents under its own id (`parent/name`) and gives them its own
  agent_type, so minting cannot read another agent's private messages and memory, or the
  agent_only messages of another type. Admins (trusted by config) may mint any identity.

Tokens are 192 random bits; the file keeps only their SHA-256 (a fast hash is enough for
a secret that long), so a copy of the file does not hand out identities.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import datetime, timedelta
from typing import Any

from shared_context_server.blackboard import audit
from shared_context_server.blackboard.identity import Agent, Permission, check_name, in_family
from shared_context_server.blackboard.sweeps import EXPIRED_TOKENS
from shared_context_server.clock import iso, now_utc
from shared_context_server.errors import InvalidInput, PermissionDenied, TokenInvalid
from shared_context_server.storage.seam import Conn, Store

PREFIX = "sct_"
DEFAULT_TTL_S = 24 * 3600
MAX_TTL_S = 30 * 24 * 3600
ORDER: tuple[Permission, ...] = ("read", "write", "admin")

INSERT = (
    "INSERT INTO agent_tokens"
    " (token_hash, agent_id, agent_type, permissions, issued_by, created_at, expires_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
LOOKUP = (
    "SELECT agent_id, agent_type, permissions, issued_by, expires_at, revoked_at"
    " FROM agent_tokens WHERE token_hash = ?"
)
REVOKE = "UPDATE agent_tokens SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL"
SWEEP_BATCH = 1000


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _sorted(permissions: frozenset[Permission]) -> list[Permission]:
    return [p for p in ORDER if p in permissions]


def check_grant(
    caller: Agent, agent_id: str, agent_type: str | None, permissions: list[Permission] | None
) -> tuple[str, frozenset[Permission]]:
    """The (agent_type, permissions) a token minted by `caller` would carry.

    Raises InvalidInput, PermissionDenied (wider than the caller, or another agent's name).
    """
    check_name(agent_id, "agent_id")
    if agent_type is not None:
        check_name(agent_type, "agent_type")
    wanted: frozenset[Permission] = (
        frozenset(permissions) if permissions is not None else caller.permissions - {"admin"}
    )
    if not wanted:
        raise InvalidInput("permissions is empty; give at least 'read'.")
    if not caller.is_admin:
        wider = sorted(wanted - caller.permissions)
        if wider:
            raise PermissionDenied(
                f"a token cannot carry permissions you lack ({', '.join(wider)}); you have "
                f"{_sorted(caller.permissions)}."
            )
        own = caller.agent_id
        if not in_family(agent_id, own):
            raise PermissionDenied(
                f"name your sub-agent under your own id, e.g. '{own}/{agent_id}': only admins "
                "mint tokens for other agents' ids."
            )
        if agent_type is not None and agent_type != caller.agent_type:
            raise PermissionDenied(
                f"a sub-agent has your agent_type ({caller.agent_type}); only admins mint "
                "tokens of another type."
            )
    return agent_type or caller.agent_type, wanted


async def authenticate_agent(
    db: Store,
    caller: Agent,
    agent_id: str,
    agent_type: str | None = None,
    permissions: list[Permission] | None = None,
    expires_in: int | None = None,
    *,
    default_ttl_s: int = DEFAULT_TTL_S,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Mint a token for a sub-agent. Raises InvalidInput, PermissionDenied."""
    caller.require("write", "authenticate_agent")
    if caller.source == "token":
        # Else a sub-agent could mint itself a fresh token that outlives a revoke of its own.
        raise PermissionDenied(
            f"a sub-agent cannot mint tokens; ask {caller.via or 'the agent that minted yours'} "
            "(without agent_token) to mint one."
        )
    kind, granted = check_grant(caller, agent_id, agent_type, permissions)
    ttl = expires_in if expires_in is not None else default_ttl_s
    if not 1 <= ttl <= MAX_TTL_S:
        raise InvalidInput(
            f"expires_in must be 1-{MAX_TTL_S} seconds ({MAX_TTL_S // 86400} days); got {ttl}."
        )
    token = PREFIX + secrets.token_urlsafe(24)
    moment = now or now_utc()
    created, expires_at = iso(moment), iso(moment + timedelta(seconds=ttl))
    granted_list = _sorted(granted)

    def mint(conn: Conn) -> None:
        conn.execute(
            INSERT,
            (
                token_hash(token),
                agent_id,
                kind,
                json.dumps(granted_list),
                caller.agent_id,
                created,
                expires_at,
            ),
        )
        audit.write_entry(
            conn,
            audit.entry(
                caller,
                "authenticate_agent",
                target=f"agent:{agent_id}",
                detail=f"{kind} {','.join(granted_list)} until {expires_at}",
            ),
        )

    await db.transact(mint)
    return {
        "token": token,
        "agent_id": agent_id,
        "agent_type": kind,
        "permissions": granted_list,
        "expires_at": expires_at,
    }


async def revoke_token(
    db: Store, caller: Agent, token: str, *, now: datetime | None = None
) -> dict[str, Any]:
    """Revoke a token: its minter (or the minter's parent), its own agent, or an admin may.
    `revoked` is False for a token that is unknown, expired or already revoked.
    Raises PermissionDenied."""
    stamp = iso(now or now_utc())
    digest = token_hash(token)

    def revoke(conn: Conn) -> bool:
        row = conn.execute(LOOKUP, (digest,)).fetchone()
        if row is None:
            return False
        own = caller.agent_id
        allowed = (
            caller.is_admin
            or in_family(row["issued_by"], own)
            or in_family(row["agent_id"], own)
            or own == row["agent_id"]
        )
        if not allowed:
            raise PermissionDenied(
                f"only the agent that minted this token ({row['issued_by']}), the token's own "
                "agent, or an admin may revoke it."
            )
        live = row["revoked_at"] is None and row["expires_at"] > stamp
        if live:
            conn.execute(REVOKE, (stamp, digest))
            audit.write_entry(
                conn, audit.entry(caller, "revoke_token", target=f"agent:{row['agent_id']}")
            )
        return bool(live)

    return {"revoked": await db.transact(revoke)}


async def resolve_token(db: Store, token: str, via: Agent, *, now: datetime | None = None) -> Agent:
    """The sub-agent `token` stands for, acting through process agent `via`.

    One indexed read on the caller's thread (no trip to aiosqlite's), so a call with a
    token costs about what one without does. Raises TokenInvalid: never falls back to `via`.
    """
    rows = (
        await db.read(LOOKUP, (token_hash(token),), small=True) if token.startswith(PREFIX) else []
    )
    if not rows:
        raise TokenInvalid(
            "agent_token is not a token this blackboard issued (or it was swept after "
            "expiring); mint one with authenticate_agent, or leave agent_token out to act as "
            f"{via.agent_id}."
        )
    row = rows[0]
    if row["revoked_at"] is not None:
        raise TokenInvalid(
            f"agent_token was revoked at {row['revoked_at']}; ask for a new one with "
            "authenticate_agent."
        )
    if row["expires_at"] <= iso(now or now_utc()):
        raise TokenInvalid(
            f"agent_token expired at {row['expires_at']}; ask for a new one with "
            "authenticate_agent.",
            expired_at=row["expires_at"],
        )
    permissions: frozenset[Permission] = frozenset(json.loads(row["permissions"]))
    return Agent(row["agent_id"], row["agent_type"], permissions, "token", via=via.agent_id)


async def sweep_expired_tokens(db: Store, *, now: datetime | None = None) -> int:
    """Delete tokens past their expiry (revoked ones included); one batch per call."""
    return await EXPIRED_TOKENS.delete_batch(db, iso(now or now_utc()), SWEEP_BATCH)
