"""Moving a session between files: a lossless JSON export that imports anywhere, and a
Markdown transcript for people.

The JSON keeps every field of the session and its messages (threading, metadata,
visibility, timestamps). Import gives messages fresh ids (remapping reply-to links), so it
never clashes with what the target file holds; the session keeps its id unless the target
already has one by that name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from shared_context_server.blackboard import audit
from shared_context_server.blackboard.identity import RESERVED_IDS, Agent, Visibility, check_name
from shared_context_server.blackboard.limits import (
    DEFAULT_LIMITS,
    MESSAGE_TYPE,
    check_text,
    encode_metadata,
)
from shared_context_server.blackboard.sessions import (
    SESSION_EXISTS,
    Status,
    fetch_session,
    new_session_id,
)
from shared_context_server.clock import utc_now
from shared_context_server.errors import BlackboardError, InvalidInput
from shared_context_server.operations.viewers import ADMIN_VIEWER, PUBLIC_VIEWER
from shared_context_server.operations.watch import all_messages, count_visible
from shared_context_server.storage.seam import Conn, Store
from shared_context_server.terminal import counted

FORMAT = "shared-context-server/session"
VERSION = 1

Progress = Callable[[int, int], None]

_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")

INSERT_SESSION = (
    "INSERT INTO sessions (id, purpose, status, created_by, created_at, updated_at, metadata)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
# Each engine gives the id, as for a posted message: ids keep growing in commit order.
INSERT_MESSAGE = (
    "INSERT INTO messages (session_id, sender, sender_type, content, visibility,"
    " message_type, metadata, parent_message_id, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
)


def view_name(viewer: Agent) -> str:
    if viewer is PUBLIC_VIEWER:
        return "public"
    if viewer is ADMIN_VIEWER:
        return "admin"
    return f"agent:{viewer.agent_id} ({viewer.agent_type})"


async def export_session(
    db: Store, viewer: Agent, session_id: str, progress: Progress | None = None
) -> dict[str, Any]:
    """The session and every message `viewer` may see, as one JSON-ready document.

    `complete` is true only for an admin's export (every message). Raises SessionNotFound.
    """
    session = await fetch_session(db, session_id)
    total = await count_visible(db, viewer, session_id)
    messages: list[dict[str, Any]] = []
    async for message in all_messages(db, viewer, session_id):
        # The file names the session once, at the top.
        messages.append({k: v for k, v in message.items() if k != "session_id"})
        if progress and len(messages) % 500 == 0:
            progress(len(messages), total)
    if progress:
        progress(len(messages), max(total, len(messages)))
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": utc_now(),
        "view": view_name(viewer),
        "complete": viewer.is_admin,
        "session": session,
        "messages": messages,
    }


def to_json(document: dict[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def to_markdown(document: dict[str, Any]) -> str:
    """A readable transcript: a heading per message with sender, time and threading."""
    session = document["session"]
    messages = document["messages"]
    view = {"public": "public messages only", "admin": "every message"}.get(
        document["view"], "what " + document["view"].removeprefix("agent:") + " can see"
    )
    lines = [
        f"# {session['purpose']}",
        "",
        f"Session `{session['id']}` · {session['status']} · started by "
        f"{session['created_by']} at {session['created_at']} · "
        f"{counted(len(messages), 'messages')} ({view}) · exported {document['exported_at']}",
    ]
    if session["metadata"]:
        lines += ["", f"Metadata: `{json.dumps(session['metadata'], ensure_ascii=False)}`"]
    for message in messages:
        head = [f"#{message['id']}", f"{message['sender']} ({message['sender_type']})"]
        head.append(message["created_at"])
        if message["visibility"] != "public":
            head.append(message["visibility"])
        if message["message_type"] != "message":
            head.append(message["message_type"])
        if message["parent_message_id"] is not None:
            head.append(f"reply to #{message['parent_message_id']}")
        lines += ["", "## " + " · ".join(head), "", message["content"]]
        if message["metadata"]:
            meta = json.dumps(message["metadata"], ensure_ascii=False)
            lines += ["", f"Metadata: `{meta}`"]
    return "\n".join(lines) + "\n"


# --- import -----------------------------------------------------------------------------


def _timestamp(value: str) -> str:
    if not _TIME.match(value):
        raise ValueError("must be an ISO 8601 UTC time like 2026-11-22T05:33:12.123456Z")
    return value


def _name(value: str) -> str:
    try:
        return check_name(value, "the name")
    except InvalidInput as error:
        raise ValueError(error.message) from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ImportedSession(_Strict):
    id: str
    purpose: str
    status: Status
    created_by: str
    created_at: str
    updated_at: str
    metadata: dict[str, Any] | None

    _times = field_validator("created_at", "updated_at")(_timestamp)
    _names = field_validator("id", "created_by")(_name)


class ImportedMessage(_Strict):
    id: int
    session_id: str | None = None
    sender: str
    sender_type: str
    content: str
    visibility: Visibility
    message_type: str
    metadata: dict[str, Any] | None
    parent_message_id: int | None
    created_at: str

    _times = field_validator("created_at")(_timestamp)
    _names = field_validator("sender", "sender_type")(_name)

    @field_validator("message_type")
    @classmethod
    def _message_type(cls, value: str) -> str:
        if not MESSAGE_TYPE.match(value):
            raise ValueError("must be 1-64 letters, digits or _.:-")
        return value


class ExportFile(_Strict):
    format: Literal["shared-context-server/session"]
    version: int
    exported_at: str
    view: str
    complete: bool
    session: ImportedSession
    messages: list[ImportedMessage]


def parse_export(text: str, source: str) -> ExportFile:
    """Validate an export file's text. Raises InvalidInput naming the first problems."""
    try:
        raw = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        raise InvalidInput(
            f"{source} is not JSON (line {error.lineno}, column {error.colno}: {error.msg}); "
            "import takes a file written by `export --format json`."
        ) from None
    except ValueError as error:  # NaN or Infinity, which no tool accepts
        raise InvalidInput(f"{source}: {error}; import takes plain JSON.") from None
    except RecursionError:
        raise InvalidInput(
            f"{source} nests too deeply to be a session export; import takes a file "
            "written by `export --format json`."
        ) from None
    if isinstance(raw, dict) and isinstance(raw.get("version"), int) and raw["version"] > VERSION:
        raise InvalidInput(
            f"{source} is export format version {raw['version']}, newer than this "
            f"shared-context-server reads ({VERSION}); upgrade it to import this file."
        )
    try:
        document = ExportFile.model_validate(raw)
    except ValidationError as error:
        problems = [
            ".".join(str(part) for part in item["loc"]) + ": " + item["msg"]
            for item in error.errors(include_url=False, include_input=False)
        ]
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise InvalidInput(
            f"{source} is not a session export: {'; '.join(problems[:3])}{more}."
        ) from None
    _check_like_a_tool(document.session, f"{source}: session")
    seen: set[int] = set()
    for index, message in enumerate(document.messages):
        where = f"{source}: messages[{index}]"
        _check_like_a_tool(message, where)
        if message.id in seen:
            raise InvalidInput(f"{where}: id {message.id} appears twice.")
        if message.session_id not in (None, document.session.id):
            raise InvalidInput(f"{where}: session_id is not the exported session's id.")
        if message.parent_message_id is not None and message.parent_message_id >= message.id:
            raise InvalidInput(f"{where}: replies to #{message.parent_message_id}, not earlier.")
        seen.add(message.id)
    return document


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _check_like_a_tool(item: ImportedSession | ImportedMessage, where: str) -> None:
    """Refuse what a tool would refuse: the same limits, and no server actor's name.
    Raises InvalidInput."""
    limits = DEFAULT_LIMITS
    try:
        if isinstance(item, ImportedSession):
            check_text(item.purpose, "purpose", limits.max_purpose_chars, "")
            names = {"created_by": item.created_by}
        else:
            check_text(item.content, "content", limits.max_content_chars, "")
            names = {"sender": item.sender}
        encode_metadata(item.metadata, limits)
    except BlackboardError as error:
        raise InvalidInput(f"{where}: {error.message.strip()}") from None
    for field, name in names.items():
        if name in RESERVED_IDS:
            raise InvalidInput(
                f"{where}: {field} {name!r} is the server's own name; no agent may use it."
            )


def _encode(metadata: dict[str, Any] | None) -> str | None:
    if metadata is None:
        return None
    return json.dumps(metadata, separators=(",", ":"), ensure_ascii=False)


async def import_session(db: Store, document: ExportFile) -> dict[str, Any]:
    """Write the session and its messages in one transaction: all of it or nothing.

    Messages get fresh ids in their original order, reply-to links follow them; a reply to
    a message the file does not hold (a narrower export) loses its link, and is counted.
    """
    session = document.session
    ordered = sorted(document.messages, key=lambda m: m.id)
    held = {m.id for m in ordered}
    dropped = sum(
        1 for m in ordered if m.parent_message_id is not None and m.parent_message_id not in held
    )

    def write(conn: Conn) -> str:
        session_id = session.id
        if conn.execute(SESSION_EXISTS, (session_id,)).fetchone():
            session_id = new_session_id()
        conn.execute(
            INSERT_SESSION,
            (
                session_id,
                session.purpose,
                session.status,
                session.created_by,
                session.created_at,
                session.updated_at,
                _encode(session.metadata),
            ),
        )
        new_ids: dict[int, int] = {}
        for m in ordered:
            parent = new_ids.get(m.parent_message_id) if m.parent_message_id else None
            values = (
                *(session_id, m.sender, m.sender_type, m.content, m.visibility),
                *(m.message_type, _encode(m.metadata), parent, m.created_at),
            )
            new_ids[m.id] = int(conn.execute(INSERT_MESSAGE, values).fetchone()[0])
        audit.write_entry(
            conn,
            audit.entry(
                audit.OPERATOR,
                "import",
                session_id=session_id,
                target=f"session:{session_id}",
                detail=counted(len(ordered), "messages"),
            ),
        )
        return session_id

    session_id = await db.transact(write)
    # Indexed now, in short batches after the import's own transaction: no server process
    # may run on this file for a while, and search reads only a bounded unindexed tail.
    await db.index_search()
    return {
        "session_id": session_id,
        "original_session_id": session.id,
        "messages": len(ordered),
        "dropped_reply_links": dropped,
        "view": document.view,
        "complete": document.complete,
    }
