"""How a message reads as text, for models (server/render.py, the hook's digest) and for
people (`tail`): one header line at column 0, then every line of the content indented.

Models read the text, not the structured result, so nothing a client sends may look like
the renderer's own lines. Only the renderer writes at column 0: content lines are
indented, and every character some reader takes as a line break, a cursor move or a
reordering (\\r, \\x0b, \\x0c, \\x85, U+2028, ANSI escapes, bidi overrides) is shown as
an escape such as `\\x1b`, in contents and in the names, types and titles beside them.
The escapes are for reading, not reversible: the structured result keeps the exact text.

Imported by the hook on every prompt: the standard library only, nothing at run time
beyond `json`, which it loads anyway.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

INDENT = "  "


_SHORT = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}


def _escape(code: int) -> str:
    if code in _SHORT:
        return _SHORT[code]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


# C0 and C1 controls, DEL, the Unicode line and paragraph separators, and the bidi
# embeddings, overrides and isolates (which can move text to the start of a line).
_HOSTILE = (
    *range(0x20),
    *range(0x7F, 0xA0),
    0x2028,
    0x2029,
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
)
_IN_CONTENT = {code: _escape(code) for code in _HOSTILE if chr(code) not in "\n\t"}
_ON_ONE_LINE = _IN_CONTENT | {ord("\n"): "\\n"}  # a tab stays: it cannot start a line
_IN_JSON = {code: f"\\u{code:04x}" for code in _HOSTILE}


def one_line(text: str) -> str:
    """`text` on one line (a title, a snippet): breaks and controls shown as escapes."""
    return text.translate(_ON_ONE_LINE)


def quoted(text: str) -> str:
    """`text` as a JSON string on one line: JSON escapes the C0 controls only, so the C1
    controls, line separators and bidi overrides are escaped here, in JSON's own form."""
    return json.dumps(text, ensure_ascii=False).translate(_IN_JSON)


def name(text: str) -> str:
    """A sender, type or other field of a header as one token: the server admits no
    whitespace or controls in names, and a row written around it shows them escaped."""
    if text.isprintable() and " " not in text:
        return text
    return "".join(c if c.isprintable() and c != " " else _escape(ord(c)) for c in text)


def body(content: str) -> str:
    """Every line of `content` indented, so none of it can start at column 0."""
    if content.isprintable():
        # No break, control, separator or bidi character (each is unprintable): one line
        # with nothing to escape. translate() looks up every character in a dict, which
        # cost a page of 50 one-line messages more than reading them.
        return INDENT + content
    text = content.replace("\r\n", "\n").translate(_IN_CONTENT)
    return INDENT + text.replace("\n", "\n" + INDENT)


def _plain(text: str, role: str) -> str:
    return text


def header(
    message: Mapping[str, Any],
    when: str | None = None,
    paint: Callable[[str, str], str] = _plain,
) -> str:
    """`#12 alice (reviewer) private reply-to #10 finding 2026-...Z {meta}`: what is not
    the default only; `when` replaces the stored time (tail shows local time); `paint`
    styles a field by role ("id", "sender", "visibility") after it is made safe."""
    head = [
        paint(f"#{message['id']}", "id"),
        paint(name(message["sender"]), "sender") + f" ({name(message['sender_type'])})",
    ]
    if message["visibility"] != "public":
        head.append(paint(name(message["visibility"]), "visibility"))
    if message.get("parent_message_id") is not None:  # a tool's result leaves out a null
        head.append(f"reply-to #{message['parent_message_id']}")
    if message["message_type"] != "message":
        head.append(name(message["message_type"]))
    head.append(name(when or message["created_at"]))
    if "unacknowledged" in message:  # a hand-off: who has acknowledged it, who not yet
        acked = ", ".join(name(a) for a in message["acknowledged"]) or "nobody"
        waiting = ", ".join(name(a) for a in message["unacknowledged"])
        head.append(f"acked by {acked}" + (f"; awaiting {waiting}" if waiting else ""))
    if message.get("metadata"):
        # ASCII-only JSON: every control and separator escaped, on one line.
        head.append(json.dumps(message["metadata"], separators=(",", ":")))
    return " ".join(head)


def message_text(
    message: Mapping[str, Any],
    when: str | None = None,
    paint: Callable[[str, str], str] = _plain,
) -> str:
    """The header line, then the content indented."""
    return header(message, when, paint) + "\n" + body(message["content"])
