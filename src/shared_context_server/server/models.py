"""Pydantic models of every tool's input, and the compact JSON schemas made from them.

Every agent pays for the tool list on every turn, so schemas carry no titles, and an
optional argument is written as its plain type rather than `anyOf [type, null]`.
The models of results are in outputs.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from shared_context_server.blackboard import audit, memory, messages, search
from shared_context_server.blackboard.changes import MAX_WAIT_S
from shared_context_server.blackboard.identity import Visibility
from shared_context_server.blackboard.limits import (
    DEFAULT_FUZZY_THRESHOLD,
    DEFAULT_PAGE_LIMIT,
    DEFAULT_SEARCH_LIMIT,
    DEFAULT_WAIT_S,
    FUZZY_SCALE,
    MAX_MEMORY_KEY_CHARS,
    MAX_MESSAGE_TYPE_CHARS,
    MAX_SESSION_ID_CHARS,
    MAX_SESSIONS_LIMIT,
)
from shared_context_server.blackboard.tokens import MAX_TTL_S

Json = dict[str, Any]


def _fits_sqlite(value: int) -> int:
    # Checked here rather than as a schema maximum, which every tool list would carry.
    if value >= 2**63:
        raise ValueError("is larger than any id (ids fit in 64 bits)")
    return value


def _positive(value: int) -> int:
    if value < 1:
        raise ValueError(f"must be 1 or more; got {value}")
    return value


def _seconds(most: int) -> Callable[[int], int]:
    def check(value: int) -> int:
        if not 1 <= value <= most:
            raise ValueError(f"must be 1-{most} seconds; got {value}")
        return value

    return check


def _session_id_length(value: str) -> str:
    if len(value) > MAX_SESSION_ID_CHARS:
        raise ValueError(
            f"is longer than any session id ({MAX_SESSION_ID_CHARS} characters); "
            "use one from list_sessions"
        )
    return value


def _length(least: int, most: int) -> AfterValidator:
    """A text length checked in code rather than written into every tool list."""

    def check(value: str) -> str:
        if not least <= len(value) <= most:
            raise ValueError(f"must be {least}-{most} characters long; it has {len(value)}")
        return value

    return AfterValidator(check)


MessageId = Annotated[int, Field(ge=1), AfterValidator(_fits_sqlite)]
AfterId = Annotated[int, Field(ge=0), AfterValidator(_fits_sqlite)]
# Checked in code, as _fits_sqlite: a "minimum" in the schema would be carried by every
# tool list, in two profiles.
ClaimId = Annotated[int, AfterValidator(_positive), AfterValidator(_fits_sqlite)]
# Limits checked in code, not written into schemas that every agent pays for on every turn.
SessionId = Annotated[str, AfterValidator(_session_id_length)]


class Input(BaseModel):
    """A tool's arguments: unknown properties are refused and types are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)

    # Every tool: act as the sub-agent this token (from authenticate_agent) stands for.
    agent_token: str | None = None


class CreateSession(Input):
    purpose: str
    metadata: Json | None = None


class GetSession(Input):
    session_id: SessionId


class ListSessions(Input):
    status: Literal["active", "completed", "archived", "all"] = "active"
    limit: int = Field(DEFAULT_PAGE_LIMIT, ge=1, le=MAX_SESSIONS_LIMIT)
    cursor: str | None = None


class UpdateSession(Input):
    session_id: SessionId
    status: Literal["active", "completed", "archived"] | None = None
    purpose: str | None = None
    metadata: Json | None = None  # replaces the session's metadata whole


class AddMessage(Input):
    session_id: SessionId
    content: str
    visibility: Visibility = "public"
    message_type: Annotated[str, _length(1, MAX_MESSAGE_TYPE_CHARS)] = "message"
    metadata: Json | None = None
    parent_message_id: MessageId | None = None


class AddPrivateNote(Input):
    session_id: SessionId
    content: str
    metadata: Json | None = None


class GetMessage(Input):
    session_id: SessionId
    message_id: MessageId


class GetContext(Input):
    session_id: SessionId
    limit: int = Field(DEFAULT_PAGE_LIMIT, ge=1, le=messages.MAX_CONTEXT_LIMIT)
    after_id: AfterId | None = None
    before_id: MessageId | None = None
    sender: str | None = None
    visibility: Visibility | None = None


class WaitForMessages(Input):
    session_id: SessionId
    after_id: AfterId
    # int(): "120" rather than "120.0" in every tool list.
    timeout_s: float = Field(DEFAULT_WAIT_S, ge=0, le=int(MAX_WAIT_S))


class CheckInbox(Input):
    # Bounds checked by the domain (inbox.MAX_INBOX_LIMIT, MAX_WAIT_S), not written into
    # the minimal toolset's list, which a worker agent pays for on every turn.
    limit: int = DEFAULT_PAGE_LIMIT
    wait_s: float = 0
    ack: bool = False  # acknowledge the messages addressed to you that it returns


class SearchContext(Input):
    session_id: SessionId
    query: Annotated[str, _length(1, search.MAX_QUERY_CHARS)]
    fuzzy_threshold: float = Field(DEFAULT_FUZZY_THRESHOLD, ge=0, le=FUZZY_SCALE)
    limit: int = Field(DEFAULT_SEARCH_LIMIT, ge=1, le=search.MAX_LIMIT)
    sender: str | None = None


MemoryKey = Annotated[str, _length(1, MAX_MEMORY_KEY_CHARS)]


class SetMemory(Input):
    key: MemoryKey
    value: Any
    session_id: SessionId | None = None
    expires_in: Annotated[int, AfterValidator(_seconds(memory.MAX_EXPIRES_IN))] | None = None
    overwrite: bool = True


class GetMemory(Input):
    key: MemoryKey
    session_id: SessionId | None = None


class ListMemory(Input):
    session_id: SessionId | None = None
    prefix: Annotated[str, _length(0, MAX_MEMORY_KEY_CHARS)] = ""
    limit: int = Field(DEFAULT_PAGE_LIMIT, ge=1, le=memory.MAX_LIST_LIMIT)
    cursor: str | None = None


class DeleteMemory(Input):
    key: MemoryKey
    session_id: SessionId | None = None


class NoArguments(Input):
    pass


class AuthenticateAgent(Input):
    agent_id: str
    agent_type: str | None = None
    permissions: list[Literal["read", "write", "admin"]] | None = None
    expires_in: Annotated[int, AfterValidator(_seconds(MAX_TTL_S))] | None = None


class RevokeToken(Input):
    token: str


class GetAuditLog(Input):
    session_id: SessionId | None = None
    agent_id: str | None = None
    action: str | None = None
    limit: int = Field(DEFAULT_PAGE_LIMIT, ge=1, le=audit.MAX_LIMIT)
    cursor: str | None = None


class Claim(Input):
    targets: list[str]
    reason: str | None = None
    # Defaults not written (None: the domain's): bytes the minimal toolset pays every turn.
    ttl_s: int | None = None
    shared: bool | None = None
    session_id: SessionId | None = None
    partial: bool | None = None


class Release(Input):
    targets: list[str] | None = None
    ids: list[ClaimId] | None = None


class ListClaims(Input):
    prefix: str | None = None
    holder: str | None = None


class Acknowledge(Input):
    session_id: SessionId
    message_ids: list[MessageId]


def compact_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema without titles and with `X | None` written as X."""
    schema = model.model_json_schema()
    return _compact(schema)  # type: ignore[no-any-return]


def _compact(node: Any) -> Any:
    if isinstance(node, list):
        return [_compact(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" or (key == "additionalProperties" and isinstance(value, bool)):
            # Titles repeat the names. additionalProperties: true is the default, and
            # false (every input model) would cost bytes on every tool, every turn, for
            # what the models enforce anyway: an unknown property is INVALID_INPUT, naming it.
            continue
        if key in ("properties", "$defs"):
            out[key] = {name: _compact(schema) for name, schema in value.items()}
        else:
            out[key] = _compact(value)
    variants = out.get("anyOf")
    if isinstance(variants, list) and len(variants) == 2 and {"type": "null"} in variants:
        (inner,) = [v for v in variants if v != {"type": "null"}]
        if out.get("default", ...) is None:
            # Optional input: leaving it out already means None.
            del out["anyOf"], out["default"]
            out.update(inner)
        elif isinstance(inner.get("type"), str):
            # Nullable output: keep null legal in the shorter form.
            del out["anyOf"]
            out.update({**inner, "type": [inner["type"], "null"]})
    return out
