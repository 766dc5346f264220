"""What a client sends, on its way in: each line to one JSON-RPC message or to the error
that answers it, and the bound on requests in flight.

Every line gets a message or an answer, whatever it holds. The fast path is the SDK's own
parser (pydantic over the bytes), which stops at about 200 levels of nesting; a line it
refuses is looked at again with the standard library, so a request whose arguments are
merely deep still reaches its tool (which refuses them with LIMIT_EXCEEDED, naming the
argument) and keeps its id. Only a line nested past MAX_LINE_DEPTH is a parse error.

A lone surrogate escape (`"\\ud800"`) is valid JSON but no UTF-8 text: nothing holding
one could be written back to the client or into the database. It reads as U+FFFD, as an
invalid UTF-8 byte already does; an id holding one is an invalid request (answered with a
null id), since no reply could echo it.

A request stays in flight from the moment it is read until its answer is written (or it
settles unanswered: cancelled by the client). While MAX_IN_FLIGHT are, or their lines
hold MAX_IN_FLIGHT_BYTES, the transport reads no more: a client that sends faster than
the server answers, or reads no replies at all, leaves its requests in its own pipe
instead of in the server's memory.
"""

from __future__ import annotations

import json
import logging
import re
from itertools import accumulate
from typing import Any

import anyio
import mcp_types as types
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from mcp_types import INVALID_REQUEST, PARSE_ERROR
from pydantic import ValidationError

logger = logging.getLogger(__name__)

# Far past any real message (tool arguments may nest MAX_JSON_DEPTH levels, limits.py),
# and shallow enough for the standard library's recursive parser on any stack.
MAX_LINE_DEPTH = 512
MAX_IN_FLIGHT = 64
MAX_IN_FLIGHT_BYTES = 16 * 1024 * 1024

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATES = re.compile("[\ud800-\udfff]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
for _byte, _step in ((b"[", 1), (b"{", 1), (b"]", -1), (b"}", -1)):
    _STEP[_byte[0]] = _step


def error_line(code: int, message: str, request_id: types.RequestId | None = None) -> bytes:
    """One JSON-RPC error, as a line for the wire."""
    error = types.JSONRPCError(
        jsonrpc="2.0", id=request_id, error=types.ErrorData(code=code, message=message)
    )
    return error.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"


def nesting_depth(line: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest (brackets in strings aside)."""
    brackets = _STRING.sub(b"", line).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _usable_id(data: Any) -> types.RequestId | None:
    """The id a reply can echo: a string (of valid Unicode) or an integer; anything else
    is answered as null."""
    request_id = data.get("id") if isinstance(data, dict) else None
    if isinstance(request_id, str) and not _SURROGATES.search(request_id):
        return request_id
    if isinstance(request_id, int) and not isinstance(request_id, bool):
        return request_id
    return None


def without_surrogates(value: Any) -> Any:
    """`value` (decoded JSON) with every lone surrogate in its strings, keys included,
    replaced by U+FFFD."""
    if isinstance(value, str):
        return _SURROGATES.sub("\ufffd", value)
    if isinstance(value, dict):
        return {without_surrogates(k): without_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_surrogates(item) for item in value]
    return value


def parse_line(line: bytes | str) -> types.JSONRPCMessage | bytes:
    """The message a line holds, or the JSON-RPC error line that answers it: -32700 when
    it is not JSON (or nests deeper than MAX_LINE_DEPTH), -32600 when it is JSON but not a
    JSON-RPC 2.0 message (with its id when that is a string or an integer, else null)."""
    raw = line.encode("utf-8", "surrogatepass") if isinstance(line, str) else line
    text = raw.decode("utf-8", errors="replace")
    try:
        message = types.jsonrpc_message_adapter.validate_json(text, by_name=False)
    except ValueError:
        parsed = _slow_parse(raw, text)
        if isinstance(parsed, bytes):
            return parsed
        message = parsed
    if isinstance(message, types.JSONRPCNotification):
        # A request whose id is null, a float or an object reads as a notification, and
        # would go unanswered; it is an invalid request (MCP ids are strings or integers).
        data = json.loads(text)
        if isinstance(data, dict) and "id" in data:
            why = f"id must be a string or an integer, not {_kind(data['id'])}"
            return _invalid(raw, data, why)
    return message


def _slow_parse(raw: bytes, text: str) -> types.JSONRPCMessage | bytes:
    # Counting brackets is cheap; the exact depth is worked out only when they could nest
    # past the limit.
    if raw.count(b"[") + raw.count(b"{") > MAX_LINE_DEPTH:
        depth = nesting_depth(raw)
        if depth > MAX_LINE_DEPTH:
            logger.warning("answered a line nested %d levels deep: %.200r", depth, raw)
            return error_line(
                PARSE_ERROR,
                f"Parse error: the line nests {depth:,} levels deep; the limit is "
                f"{MAX_LINE_DEPTH} (tool arguments nest far less: see the README's limits)",
            )
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        logger.warning("answered a line that is not JSON: %.200r", raw)
        return error_line(PARSE_ERROR, "Parse error: each line must be one JSON-RPC message")
    # The fast path refuses lone surrogates, so only this path meets them.
    if _SURROGATE_ESCAPE.search(raw):
        request_id = data.get("id") if isinstance(data, dict) else None
        if isinstance(request_id, str) and _SURROGATES.search(request_id):
            return _invalid(raw, data, "the id holds a lone surrogate (\\ud800-\\udfff)")
        data = without_surrogates(data)
    try:
        return types.jsonrpc_message_adapter.validate_python(data, by_name=False)
    except ValueError:
        return _invalid(raw, data, "not a JSON-RPC 2.0 message")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, float):
        return "a number with a fraction"
    return "an object" if isinstance(value, dict) else "an array"


def _invalid(raw: bytes, data: Any, why: str) -> bytes:
    logger.warning("answered a line that is not a JSON-RPC message: %.200r", raw)
    return error_line(INVALID_REQUEST, f"Invalid Request: {why}", _usable_id(data))


def recover_line(error: Exception) -> bytes | None:
    """The line behind an error the SDK's own reader passed on instead of a message (its
    pydantic error holds the input), or None."""
    if not isinstance(error, ValidationError):  # only pydantic's errors hold the input
        return None
    for item in error.errors(include_url=False):
        value = item.get("input")
        if isinstance(value, str):
            return value.encode("utf-8", "surrogatepass")
        if isinstance(value, dict | list):
            try:
                return json.dumps(value).encode()
            except (ValueError, RecursionError):
                return None
    return None


class InFlight:
    """The requests read and not yet answered, and the wait for room among them."""

    def __init__(self, limit: int = MAX_IN_FLIGHT, max_bytes: int = MAX_IN_FLIGHT_BYTES) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self.count = 0
        self.bytes = 0
        # Per id, the line sizes of its requests (a client may reuse an id).
        self._sizes: dict[types.RequestId, list[int]] = {}
        self._changed = anyio.Event()

    @property
    def full(self) -> bool:
        return self.count >= self.limit or self.bytes >= self.max_bytes

    def admit(self, message: types.JSONRPCMessage, size: int) -> SessionMessage:
        """The message for the server; a request is counted until it settles."""
        if not isinstance(message, types.JSONRPCRequest):
            return SessionMessage(message)
        request_id = message.id
        self._sizes.setdefault(request_id, []).append(size)
        self.count += 1
        self.bytes += size

        async def unanswered() -> None:  # cancelled by the client: no answer will come
            self._settle(request_id)

        metadata = ServerMessageMetadata(on_request_unanswered=unanswered)
        return SessionMessage(message, metadata=metadata)

    def answered(self, message: types.JSONRPCMessage) -> None:
        """A message was written: an answer settles its request."""
        match message:
            case types.JSONRPCResponse(id=request_id) | types.JSONRPCError(id=request_id):
                if request_id is not None:
                    self._settle(request_id)
            case _:
                pass

    def _settle(self, request_id: types.RequestId) -> None:
        sizes = self._sizes.get(request_id)
        if not sizes:
            return
        self.bytes -= sizes.pop()
        self.count -= 1
        if not sizes:
            del self._sizes[request_id]
        self._changed.set()
        self._changed = anyio.Event()

    async def room(self) -> None:
        """Return once another request may be read."""
        while self.full:
            await self._changed.wait()

    async def drained(self) -> None:
        """Return once every request read has settled."""
        while self.count:
            await self._changed.wait()
