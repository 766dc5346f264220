"""Reading an export file for `import`, in bounded memory: every record is checked as a
tool would check it before anything is written.

Two forms are read. JSON Lines (what `export` writes by default): a header line (format,
version, view, the session), then one message a line, ids increasing; it is read a line at
a time, each line at most MAX_LINE_BYTES, so a file of any length costs the same memory.
The whole-JSON form (`export --format json`, and every export before JSON Lines) must be
parsed whole, so it is read only up to MAX_JSON_BYTES; a larger one is refused with a
message saying to re-export it as JSON Lines.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, field_validator

from shared_context_server.blackboard.acks import recipients
from shared_context_server.blackboard.identity import RESERVED_IDS, Visibility, check_name
from shared_context_server.blackboard.limits import (
    DEFAULT_LIMITS,
    MESSAGE_TYPE,
    check_text,
    encode_metadata,
)
from shared_context_server.blackboard.sessions import Status
from shared_context_server.errors import BlackboardError, InvalidInput

FORMAT = "shared-context-server/session"
VERSION = 1
# A message line holds at most 100,000 characters of content and 16 KiB of metadata; even
# written with every character escaped (\uXXXX, 6 bytes) that stays under 1 MiB.
MAX_LINE_BYTES = 2 * 1024 * 1024
# Parsing a JSON document takes several times its size in memory: importing 31 MB of JSON
# (105,000 messages) peaked at 210 MB. JSON Lines has no bound (43 MB at any size).
MAX_JSON_BYTES = 32 * 1024 * 1024
# Later than this past the importer's clock, a time is a wrong clock or a forged file.
FUTURE_SLACK = timedelta(days=1)

_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
# The product's own session ids (sessions.new_session_id).
SESSION_ID = re.compile(r"^sess_[0-9a-f]{16}$")
_REEXPORT = "re-export the session with `export` (JSON Lines, the default)"


def _timestamp(value: str) -> str:
    if not _TIME.match(value):
        raise ValueError("must be an ISO 8601 UTC time like 2026-11-22T05:33:12.123456Z")
    try:
        moment = datetime.strptime(value, _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"{value} is not a real date and time") from None
    if moment > datetime.now(UTC) + FUTURE_SLACK:
        raise ValueError(f"{value} is more than a day in the future")
    return value


def _name(value: str) -> str:
    try:
        return check_name(value, "the name")
    except InvalidInput as error:
        raise ValueError(error.message) from None


Name = Annotated[str, AfterValidator(_name)]
Time = Annotated[str, AfterValidator(_timestamp)]


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
    _names = field_validator("created_by")(_name)

    @field_validator("id")
    @classmethod
    def _session_id(cls, value: str) -> str:
        if not SESSION_ID.match(value):
            raise ValueError("must be a session id like sess_0123456789abcdef")
        return value


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
    # A hand-off (metadata.to), as export writes it: who acknowledged it and when, and who
    # has not yet. Absent from exports of messages addressed to no one, and older files.
    # Only an agent can acknowledge, so those are names; `to` may hold any text.
    acknowledged: dict[Name, Time] | None = None
    unacknowledged: list[str] | None = None

    _times = field_validator("created_at")(_timestamp)
    _names = field_validator("sender", "sender_type")(_name)

    @field_validator("id", "parent_message_id")
    @classmethod
    def _positive(cls, value: int | None) -> int | None:
        if value is not None and not 0 < value < 2**63:
            raise ValueError("must be a message id from 1 to 2**63-1")
        return value

    @field_validator("message_type")
    @classmethod
    def _message_type(cls, value: str) -> str:
        if not MESSAGE_TYPE.match(value):
            raise ValueError("must be 1-64 letters, digits or _.:-")
        return value


class Header(_Strict):
    """What a file says about itself and its session: the first line of JSON Lines."""

    format: Literal["shared-context-server/session"]
    version: int
    form: Literal["json-lines"] | None = None
    exported_at: str
    view: str
    complete: bool
    session: ImportedSession

    _times = field_validator("exported_at")(_timestamp)

    @field_validator("version")
    @classmethod
    def _version(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be 1 or more (export format versions start at 1)")
        return value

    @property
    def key(self) -> str:
        """The same for every reading of one export, in either form: what a rerun of an
        interrupted import finds its earlier work by."""
        fields = [self.exported_at, self.view, self.session.model_dump()]
        text = json.dumps(fields, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()


def _problems(error: ValidationError) -> str:
    problems = [
        ".".join(str(part) for part in item["loc"]) + ": " + item["msg"]
        for item in error.errors(include_url=False, include_input=False)
    ]
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return "; ".join(problems[:3]) + more


def _loads(data: bytes | str, where: str) -> Any:
    """JSON without NaN or Infinity. Raises InvalidInput."""
    try:
        return json.loads(data, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        raise InvalidInput(
            f"{where} is not JSON (line {error.lineno}, column {error.colno}: {error.msg}); "
            "import takes a file that `export` wrote."
        ) from None
    except UnicodeDecodeError:
        raise InvalidInput(
            f"{where} is not UTF-8 text; import takes a file that `export` wrote."
        ) from None
    except ValueError as error:  # NaN or Infinity, which no tool accepts
        raise InvalidInput(f"{where}: {error}; import takes plain JSON.") from None
    except RecursionError:
        raise InvalidInput(
            f"{where} nests too deeply to be a session export; import takes a file that "
            "`export` wrote."
        ) from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _check_version(raw: Any, where: str) -> None:
    if isinstance(raw, dict) and isinstance(raw.get("version"), int) and raw["version"] > VERSION:
        raise InvalidInput(
            f"{where} is export format version {raw['version']}, newer than this "
            f"shared-context-server reads ({VERSION}); upgrade it to import this file."
        )


def _check_like_a_tool(item: ImportedSession | ImportedMessage, where: str) -> None:
    """Refuse what a tool would refuse: the same limits, text that can be stored, and no
    server actor's name. Raises InvalidInput."""
    limits = DEFAULT_LIMITS
    try:
        if isinstance(item, ImportedSession):
            check_text(item.purpose, "purpose", limits.max_purpose_chars, "")
            names, text = {"created_by": item.created_by}, item.purpose
        else:
            check_text(item.content, "content", limits.max_content_chars, "")
            names, text = {"sender": item.sender}, item.content
        encoded = encode_metadata(item.metadata, limits)
        text.encode("utf-8")
        (encoded or "").encode("utf-8")
    except BlackboardError as error:
        raise InvalidInput(f"{where}: {error.message.strip()}") from None
    except UnicodeEncodeError:
        raise InvalidInput(
            f"{where}: holds text that is not valid Unicode (a lone surrogate)."
        ) from None
    for field, name in names.items():
        if name in RESERVED_IDS:
            raise InvalidInput(
                f"{where}: {field} {name!r} is the server's own name; no agent may use it."
            )


def _message(raw: Any, where: str, header: Header, previous: int) -> ImportedMessage:
    """One message, checked alone and against the one before it. Raises InvalidInput."""
    try:
        message = ImportedMessage.model_validate(raw)
    except ValidationError as error:
        raise InvalidInput(f"{where} is not a message: {_problems(error)}.") from None
    _check_like_a_tool(message, where)
    if message.session_id not in (None, header.session.id):
        raise InvalidInput(f"{where}: session_id is not the exported session's id.")
    if message.id <= previous:
        raise InvalidInput(
            f"{where}: id {message.id} does not follow #{previous}; messages are in id order, "
            "each id once."
        )
    if message.parent_message_id is not None and message.parent_message_id >= message.id:
        raise InvalidInput(f"{where}: replies to #{message.parent_message_id}, not earlier.")
    _check_acknowledgements(message, where)
    return message


def _check_acknowledgements(message: ImportedMessage, where: str) -> None:
    """Who acknowledged a hand-off, and who not, only among the agents its metadata `to`
    addresses (as the database records them), each once. Raises InvalidInput."""
    addressed = recipients(message.metadata, message.sender)
    done, waiting = list(message.acknowledged or {}), message.unacknowledged or []
    for field, names in (("acknowledged", done), ("unacknowledged", waiting)):
        for name in names:
            if name not in addressed:
                listed = ", ".join(repr(n) for n in sorted(addressed)) or "no one but its sender"
                raise InvalidInput(
                    f"{where}: {field} names {name!r}, whom the message is not addressed to "
                    f"(its metadata.to addresses {listed})."
                )
    both = sorted(set(done) & set(waiting))
    if both:
        raise InvalidInput(f"{where}: {both[0]!r} is both acknowledged and unacknowledged.")


class ExportReader:
    """An export file opened for import: `header`, then `messages()` in id order.

    Raises InvalidInput (naming the line or record, and what to do) for anything a tool
    would refuse; the caller reads the messages through once to check them all before
    writing, then again to write.
    """

    def __init__(self, stream: IO[bytes], source: str) -> None:
        self.source = source
        self._stream = stream
        first = stream.readline(MAX_LINE_BYTES + 1)
        raw: Any = None
        if len(first) <= MAX_LINE_BYTES:
            try:
                raw = json.loads(first, parse_constant=_no_constant)
            except (ValueError, RecursionError):
                raw = None
        self._whole: list[Any] | None = None
        if isinstance(raw, dict) and "messages" not in raw:
            self.lines = True
            _check_version(raw, f"{source} line 1")
            try:
                self.header = Header.model_validate(raw)
            except ValidationError as error:
                raise InvalidInput(
                    f"{source} line 1 is not a session export: {_problems(error)}; import "
                    "takes a file that `export` wrote."
                ) from None
            _check_like_a_tool(self.header.session, f"{source} line 1: session")
            self._start = stream.tell() if stream.seekable() else None
            return
        self.lines = False
        rest = stream.read(MAX_JSON_BYTES + 1 - len(first)) if len(first) <= MAX_JSON_BYTES else b""
        if len(first) + len(rest) > MAX_JSON_BYTES:
            raise InvalidInput(
                f"{source} is larger than {MAX_JSON_BYTES // 2**20} MB, the most import reads "
                "as one JSON document; it is not a JSON Lines export either. If it is an "
                f"older export, {_REEXPORT}; JSON Lines has no size bound."
            )
        self.header, self._whole = _whole_json(first + rest, source)

    def messages(self) -> Iterator[ImportedMessage]:
        """Every message, checked, oldest first. Raises InvalidInput."""
        previous = 0
        if self._whole is not None:
            for index, raw in enumerate(self._whole):
                where = f"{self.source}: messages[{index}]"
                message = _message(raw, where, self.header, previous)
                previous = message.id
                yield message
            return
        number = 1
        while True:
            line = self._stream.readline(MAX_LINE_BYTES + 1)
            number += 1
            where = f"{self.source} line {number}"
            if not line:
                return
            if len(line) > MAX_LINE_BYTES:
                raise InvalidInput(
                    f"{where} is longer than {MAX_LINE_BYTES // 2**20} MB, more than any "
                    f"message holds; {_REEXPORT}."
                )
            if not line.strip():
                continue
            message = _message(_loads(line, where), where, self.header, previous)
            previous = message.id
            yield message

    def rewind(self) -> None:
        """Back to the first message, for the second reading. The stream must seek."""
        if self._whole is None:
            assert self._start is not None
            self._stream.seek(self._start)


def _whole_json(text: bytes, source: str) -> tuple[Header, list[Any]]:
    """The header of a whole-JSON export, checked, and its messages as parsed (checked
    one by one as they are read: a model of every message at once would take several
    times the memory of the parsed JSON). Raises InvalidInput."""
    raw = _loads(text, source)
    del text
    _check_version(raw, source)
    if not isinstance(raw, dict):
        raise InvalidInput(f"{source} is not a session export: it is not a JSON object.")
    messages = raw.pop("messages", None)
    try:
        header = Header.model_validate(raw)
    except ValidationError as error:
        raise InvalidInput(f"{source} is not a session export: {_problems(error)}.") from None
    if not isinstance(messages, list):
        raise InvalidInput(f"{source} is not a session export: messages: must be a list.")
    _check_like_a_tool(header.session, f"{source}: session")
    return header, messages


def open_input(name: str) -> tuple[IO[bytes], str]:
    """The file to import, as bytes that can be read twice, and how to name it in
    messages. stdin (or a FIFO) is copied to a temporary file as it is first read."""
    if name == "-":
        return io.BufferedReader(_Tee(sys.stdin.buffer, tempfile.TemporaryFile())), "stdin"
    try:
        stream = Path(name).open("rb")  # noqa: SIM115 (closed by the caller)
    except FileNotFoundError:
        raise InvalidInput(
            f"no file {name}; name a file that `export` wrote (or - for stdin)."
        ) from None
    except OSError as error:
        raise InvalidInput(
            f"cannot read {name} ({error.strerror or error}); name a file that `export` "
            "wrote (or - for stdin)."
        ) from None
    if not stream.seekable():
        return io.BufferedReader(_Tee(stream, tempfile.TemporaryFile())), name
    return stream, name


class _Tee(io.RawIOBase):
    """Reads from `source`, keeping a copy in `spool` that later reads (after a seek)
    come from: a one-pass input read twice, in constant memory."""

    def __init__(self, source: IO[bytes], spool: IO[bytes]) -> None:
        self.source, self.spool, self.replaying = source, spool, False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.replaying:
            return self.spool.readinto(buffer)  # type: ignore[attr-defined,no-any-return]
        data = self.source.read(len(buffer))
        self.spool.write(data)
        buffer[: len(data)] = data
        return len(data)

    def tell(self) -> int:
        return self.spool.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        self.replaying = True
        return self.spool.seek(offset, whence)

    def close(self) -> None:
        self.source.close()
        self.spool.close()
        super().close()
