"""Exporting a session: lossless JSON Lines (the default) or JSON that import reads back,
or a Markdown transcript for people; written as read, a message at a time, in constant
memory, and to a file only through a partial file created exclusively beside it.

JSON Lines keeps every field of the session and its messages (threading, metadata,
visibility, timestamps, who acknowledged a hand-off): a header line (format, version,
view, the session), then one message a line in id order. Reading it back: import_read.py;
writing it into a database: import_write.py.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from shared_context_server.blackboard.identity import Agent
from shared_context_server.blackboard.sessions import fetch_session
from shared_context_server.clock import utc_now
from shared_context_server.operations.import_read import FORMAT, VERSION
from shared_context_server.operations.viewers import ADMIN_VIEWER, PUBLIC_VIEWER
from shared_context_server.operations.watch import all_messages, count_visible
from shared_context_server.storage.seam import Store
from shared_context_server.terminal import counted

Form = Literal["jsonl", "json", "markdown"]
Progress = Callable[[int, int], None]
Write = Callable[[str], object]

# The export stops at the session's last message when it began: a busy session still
# gives a file that ends somewhere, and the Markdown heading's count stays true.
LAST_ID = "SELECT max(id) FROM messages WHERE session_id = ?"


@dataclass(frozen=True)
class Exported:
    messages: int
    view: str
    complete: bool


def view_name(viewer: Agent) -> str:
    if viewer is PUBLIC_VIEWER:
        return "public"
    if viewer is ADMIN_VIEWER:
        return "admin"
    return f"agent:{viewer.agent_id} ({viewer.agent_type})"


FORMS: dict[str, Form] = {"jsonl": "jsonl", "json": "json", "markdown": "markdown"}
SUFFIXES: dict[str, Form] = {".json": "json", ".md": "markdown", ".markdown": "markdown"}


def form_for(output: str | None, asked: str | None) -> Form:
    """The asked form, else what the file's name says (.json, .md), else JSON Lines."""
    if asked is not None:
        return FORMS[asked]
    return SUFFIXES.get(Path(output).suffix.lower() if output else "", "jsonl")


def _line(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


async def export_session(
    db: Store,
    viewer: Agent,
    session_id: str,
    write: Write,
    form: Form = "jsonl",
    progress: Progress | None = None,
) -> Exported:
    """Write the session and every message `viewer` may see, in `form`, through `write`.

    `complete` is true only for an admin's export (every message). Raises SessionNotFound.
    """
    session = await fetch_session(db, session_id)
    total = await count_visible(db, viewer, session_id)
    last = await db.read_one(LAST_ID, (session_id,))
    last_id = int(last[0]) if last and last[0] is not None else 0
    header = {
        "format": FORMAT,
        "version": VERSION,
        "form": "json-lines",
        "exported_at": utc_now(),
        "view": view_name(viewer),
        "complete": viewer.is_admin,
        "session": session,
    }
    if form == "jsonl":
        write(_line(header) + "\n")
    elif form == "json":
        del header["form"]
        opening = json.dumps(header, ensure_ascii=False, indent=2)
        write(opening.removesuffix("\n}") + ',\n  "messages": [')
    else:
        write(_markdown_heading(header, total))
    count = 0
    async for message in all_messages(db, viewer, session_id):
        if message["id"] > last_id:
            break
        # The file names the session once, at the top.
        record = {k: v for k, v in message.items() if k != "session_id"}
        if form == "jsonl":
            write(_line(record) + "\n")
        elif form == "json":
            write(("\n    " if count == 0 else ",\n    ") + _line(record))
        else:
            write(_markdown_message(record))
        count += 1
        if progress and count % 500 == 0:
            progress(count, total)
    if form == "json":
        write("\n  ]\n}\n" if count else "]\n}\n")
    if progress:
        progress(count, max(total, count))
    return Exported(count, str(header["view"]), viewer.is_admin)


def _markdown_heading(header: dict[str, Any], total: int) -> str:
    session = header["session"]
    view = {"public": "public messages only", "admin": "every message"}.get(
        header["view"], "what " + header["view"].removeprefix("agent:") + " can see"
    )
    lines = [
        f"# {session['purpose']}",
        "",
        f"Session `{session['id']}` · {session['status']} · started by "
        f"{session['created_by']} at {session['created_at']} · "
        f"{counted(total, 'messages')} ({view}) · exported {header['exported_at']}",
    ]
    if session["metadata"]:
        lines += ["", f"Metadata: `{json.dumps(session['metadata'], ensure_ascii=False)}`"]
    return "\n".join(lines) + "\n"


def _markdown_message(message: dict[str, Any]) -> str:
    """A heading per message with sender, time and threading, then its text."""
    head = [f"#{message['id']}", f"{message['sender']} ({message['sender_type']})"]
    head.append(message["created_at"])
    if message["visibility"] != "public":
        head.append(message["visibility"])
    if message["message_type"] != "message":
        head.append(message["message_type"])
    if message["parent_message_id"] is not None:
        head.append(f"reply to #{message['parent_message_id']}")
    lines = ["", "## " + " · ".join(head), "", message["content"]]
    if message["metadata"]:
        lines += ["", f"Metadata: `{json.dumps(message['metadata'], ensure_ascii=False)}`"]
    return "\n".join(lines) + "\n"


@contextmanager
def partial_file(target: Path) -> Iterator[IO[str]]:
    """A new file beside `target`, renamed onto it when the block ends without error and
    removed when it does not.

    mkstemp opens with O_CREAT|O_EXCL (and O_NOFOLLOW where the platform has it) under a
    random name, retrying on a clash, and gives mode 0600 (an export may hold private
    messages): a link or file planted where the partial file goes is never opened, so its
    target is never written, on POSIX and Windows alike.
    """
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    partial = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            yield out
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
