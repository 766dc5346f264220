"""Pydantic models of every core tool's result, and the shallow schemas made from them.

Output models exist for their schema only; results are built by the domain as dicts, and
tests/test_output_schemas.py checks every real result against its model, field for field.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from pydantic import BaseModel, ConfigDict

from shared_context_server.blackboard.identity import Visibility
from shared_context_server.server.models import Json, compact_schema


class Output(BaseModel):
    model_config = ConfigDict(extra="allow")


class Session(Output):
    id: str
    purpose: str
    status: str
    created_by: str
    created_at: str
    updated_at: str
    metadata: Json | None


class Message(Output):
    id: int
    # Left out where the result names the session once (lean() below).
    session_id: str | None = None
    sender: str
    sender_type: str
    content: str
    visibility: Visibility
    message_type: str
    metadata: Json | None = None  # left out when there is none
    parent_message_id: int | None = None  # left out when it is not a reply
    created_at: str
    # A message addressed with metadata.to: who acknowledged it, when; who has not yet.
    acknowledged: dict[str, str] | None = None
    unacknowledged: list[str] | None = None


class CreatedSession(Output):
    session_id: str
    purpose: str
    status: str
    created_by: str
    created_at: str


class SessionDetail(Output):
    session: Session
    message_count: int
    participants: list[str]
    last_message_at: str | None


class SessionPage(Output):
    sessions: list[Session]
    next_cursor: str | None


class UpdatedSession(Output):
    session: Session


class PostedMessage(Output):
    message_id: int
    session_id: str
    created_at: str


class OneMessage(Output):
    message: Message


class MessagePage(Output):
    messages: list[Message]
    has_more: bool


class InboxMessage(Message):
    for_you: bool


class InboxGroup(Output):
    session_id: str
    purpose: str
    messages: list[InboxMessage]


class InboxPage(Output):
    sessions: list[InboxGroup]
    for_you: int
    has_more: bool


class SearchHit(Output):
    message: Message
    score: float


class SearchResults(Output):
    results: list[SearchHit]
    search_time_ms: float


class StoredMemory(Output):
    key: str
    scope: str
    session_id: str | None
    expires_at: str | None
    size: int


class MemoryEntry(Output):
    key: str
    value: Any
    scope: str
    session_id: str | None
    created_at: str
    updated_at: str
    expires_at: str | None


class MemoryListing(Output):
    key: str
    scope: str
    session_id: str | None
    expires_at: str | None
    size: int


class MemoryPage(Output):
    entries: list[MemoryListing]
    next_cursor: str | None


class Deleted(Output):
    deleted: bool


class Identity(Output):
    agent_id: str
    agent_type: str
    permissions: list[str]
    identity_source: str
    database_path: str
    via: str | None = None  # a token's agent: the process agent it acts through
    settings: Json | None = None  # admins only


class Token(Output):
    token: str
    agent_id: str
    agent_type: str
    permissions: list[str]
    expires_at: str


class Revoked(Output):
    revoked: bool


class AuditEntry(Output):
    id: int
    ts: str
    agent_id: str
    action: str
    session_id: str | None
    target: str | None
    result: str
    via: str | None = None  # a token's agent: the process agent it acted through
    detail: str | None = None


class AuditPage(Output):
    entries: list[AuditEntry]
    next_cursor: str | None


class Claimed(Output):
    granted: list[Json]
    conflicts: list[Json]


class Released(Output):
    released: list[Json]


class ClaimList(Output):
    claims: list[Json]
    has_more: bool


class Acknowledged(Output):
    session_id: str
    acknowledged: list[int]


def lean(messages: Iterable[Any], *, in_session: bool = True) -> None:
    """Leave out of each message (in place) what the result already says: no `metadata`,
    no `parent_message_id` when they are null, and no `session_id` when the result is of
    one session (`in_session`). A page of 50 is a third smaller, and a client parses it in
    about half the time (docs/PERFORMANCE.md)."""
    for message in messages:
        fields = cast(dict[str, Any], message)
        if in_session:
            fields.pop("session_id", None)
        if fields.get("metadata", 0) is None:
            del fields["metadata"]
        if fields.get("parent_message_id", 0) is None:
            del fields["parent_message_id"]


def output_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A result's schema: top-level fields exact, nested objects as plain objects, lists
    as plain arrays.

    Messages and sessions would otherwise be spelled out in full in every tool that
    returns them; their fields are documented once, in the README. And a client checks
    every result against this schema: `items` would make it visit each message of a page,
    which costs more than the server spends reading them (docs/PERFORMANCE.md).
    """
    schema = compact_schema(model)
    schema.pop("$defs", None)
    schema.pop("required", None)  # every field is always present; the list repeats the names
    return _shallow(schema)  # type: ignore[no-any-return]


def _shallow(node: Any) -> Any:
    if isinstance(node, list):
        return [_shallow(item) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return {"type": "object"}
    if node.get("type") == "array":
        return {"type": "array"}
    return {key: _shallow(value) for key, value in node.items()}
