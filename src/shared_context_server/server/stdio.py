"""MCP over stdin/stdout on the event loop's own pipe transports.

The SDK's `stdio_server` reads each line and writes and flushes each reply through a
worker thread, portable to every platform and file type. Every call then pays three trips
to a thread and back (measured: the larger part of a small call's server time). When stdin
is a pipe or socket on POSIX (how every MCP client spawns a server), the loop reads it
itself, and writes stdout itself too (plainly, when stdout is a file or a terminal);
anything else (stdin from a terminal or a file, one socket for both, Windows) gets the
SDK's transport. `--stdio threads` (`SHARED_CONTEXT_STDIO=threads`) asks for the SDK's anyway.

As in the SDK: while serving, fd 0 reads the null device and fd 1 writes to stderr, so a
stray print or a child process cannot corrupt the protocol stream; both are put back at
the end. Unlike the SDK, a line that is not a JSON-RPC message gets a JSON-RPC error back
(-32700 if it is not JSON, -32600 if it is JSON of another shape) instead of silence, and
requests already read when the input ends are answered before the server stops. Both
transports go through intake.py: lines parsed whatever they hold, and reading stopped
while the bound of requests in flight is reached. Writing a reply never fails on what it
holds: a lone surrogate (which no UTF-8 can carry) goes out as U+FFFD.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from mcp_types import PARSE_ERROR
from pydantic_core import PydanticSerializationError

from shared_context_server.server.intake import (
    InFlight,
    error_line,
    parse_line,
    recover_line,
    without_surrogates,
)

logger = logging.getLogger(__name__)

# One request per line; a line past this is answered with a parse error and skipped.
MAX_LINE_BYTES = 64 * 1024 * 1024
# Lines are read through a buffer of this size (a longer one is gathered piece by piece).
READ_BUFFER_BYTES = 1024 * 1024
# At the end of input, how long requests already read may take to answer.
EOF_GRACE_S = 2.0

ReadStream = MemoryObjectReceiveStream[SessionMessage | Exception]
WriteStream = MemoryObjectSendStream[SessionMessage]


def wire_json(message: types.JSONRPCMessage) -> str:
    """The message as one JSON text that UTF-8 can encode.

    The intake turns a client's lone surrogates into U+FFFD, but the server's side has its
    own (a path or an environment variable decoded with surrogateescape); the write, and
    the whole server with it, must not fail on one."""
    try:
        return message.model_dump_json(by_alias=True, exclude_unset=True)
    except PydanticSerializationError:
        return _without_surrogates(message).model_dump_json(by_alias=True, exclude_unset=True)


def _writable(item: SessionMessage) -> SessionMessage:
    """`item` as the SDK's writer can serialise it (it would fail on a lone surrogate)."""
    try:
        item.message.model_dump_json(by_alias=True, exclude_unset=True)
    except PydanticSerializationError:
        return SessionMessage(_without_surrogates(item.message), metadata=item.metadata)
    return item


def _without_surrogates(message: types.JSONRPCMessage) -> types.JSONRPCMessage:
    logger.warning("a reply held a lone surrogate (a name or path not in UTF-8?): sent as U+FFFD")
    data = message.model_dump(by_alias=True, mode="json", exclude_unset=True)
    return types.jsonrpc_message_adapter.validate_python(without_surrogates(data))


def _is_pipe(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def loop_transport_usable() -> bool:
    """Whether the event loop can read stdin itself: a pipe or socket on POSIX, and not
    the very socket stdout writes to (socat EXEC, inetd), which asyncio's write side would
    take for closed as soon as a request arrives on it."""
    if sys.platform == "win32" or not _is_pipe(0):
        return False
    try:
        read, write = os.fstat(0), os.fstat(1)
    except OSError:
        return False
    return (read.st_dev, read.st_ino) != (write.st_dev, write.st_ino)


class _Output(asyncio.Protocol):
    """The write side: lets a writer wait while the pipe is full (the client is slow), and
    says when the client has closed its end."""

    def __init__(self, on_lost: Callable[[], None]) -> None:
        self._writable = asyncio.Event()
        self._writable.set()
        self._on_lost = on_lost
        self.closed = False

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._writable.set()
        self._on_lost()

    async def drain(self) -> None:
        await self._writable.wait()


@asynccontextmanager
async def stdio_streams(threads: bool = False) -> AsyncIterator[tuple[ReadStream, WriteStream]]:
    """(read_stream, write_stream) for `Server.run`, over this process's stdin/stdout;
    `threads`: the SDK's transport, whatever stdin and stdout are."""
    if threads or not loop_transport_usable():
        async with stdio_server() as (read, write), _bounded(read, write) as streams:
            yield streams
        return
    saved = os.dup(0), os.dup(1)  # to put back at the end; the transports close theirs
    wire = _Wire()
    try:
        await wire.open(os.dup(0), os.dup(1))
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.dup2(2, 1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(wire.read_lines)
            tg.start_soon(wire.write_messages)
            try:
                yield wire.incoming, wire.outgoing
            finally:
                await wire.outgoing.aclose()
                tg.cancel_scope.cancel()
    finally:
        wire.close()
        # Put the wire back on fd 0 and 1, blocking again, as the SDK's transport does.
        for fd, saved_fd in enumerate(saved):
            os.dup2(saved_fd, fd)
            os.close(saved_fd)
            os.set_blocking(fd, True)


class _Wire:
    """Lines in, lines out: stdin on the loop's pipe transport; stdout on one too, or
    written plainly when it is a file or a terminal."""

    def __init__(self) -> None:
        # Reading stops (the transport pauses) once twice this is buffered and unread:
        # while the server is at its bound of requests in flight, nothing is read.
        self._reader = asyncio.StreamReader(limit=READ_BUFFER_BYTES)
        self._transports: list[asyncio.BaseTransport] = []
        self._write: asyncio.WriteTransport | None = None
        self._reading = anyio.CancelScope()
        # Nobody reads any more: end the session as if its input had ended.
        self._output = _Output(on_lost=self._reading.cancel)
        self._blocking_fd: int | None = None  # stdout as a file or terminal: plain writes
        self._incoming_send, self.incoming = anyio.create_memory_object_stream[
            SessionMessage | Exception
        ](0)
        self.outgoing, self._outgoing_receive = anyio.create_memory_object_stream[SessionMessage](0)
        self._in_flight = InFlight()

    async def open(self, read_fd: int, write_fd: int) -> None:
        loop = asyncio.get_running_loop()
        reader = self._reader
        read, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
        )
        self._transports.append(read)
        if not _is_pipe(write_fd):
            # A file or a terminal (`printf ... | shared-context-server > out`): writes to
            # it do not wait on a reader, and asyncio has no transport for files.
            self._blocking_fd = write_fd
            return
        write, _ = await loop.connect_write_pipe(
            lambda: self._output, os.fdopen(write_fd, "wb", buffering=0)
        )
        self._transports.append(write)
        # Nothing waits in a buffer: a reply is in the pipe when _send returns, or _send
        # waits until it is, like the flush the SDK's transport does after every line.
        write.set_write_buffer_limits(high=0)
        self._write = write

    def close(self) -> None:
        for transport in self._transports:
            transport.close()
        if self._blocking_fd is not None:
            os.close(self._blocking_fd)

    async def _send(self, data: bytes) -> bool:
        """Write one line; False once the client has closed its end."""
        if self._blocking_fd is not None:
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(self._blocking_fd, view) :]
            except OSError:  # a terminal gone, a full disk: nobody will read the rest
                logger.warning("cannot write to stdout any more; stopping", exc_info=True)
                self._reading.cancel()
                return False
            return True
        if self._output.closed or self._write is None:
            return False
        self._write.write(data)
        await self._output.drain()
        return True

    async def read_lines(self) -> None:
        with self._reading:
            await self._read_lines()

    async def _read_lines(self) -> None:
        async with self._incoming_send:
            while line := await self._next_line():
                if line.isspace():
                    continue
                parsed = parse_line(line)
                if isinstance(parsed, bytes):
                    await self._send(parsed)
                    continue
                await self._incoming_send.send(self._in_flight.admit(parsed, len(line)))
                # Read no more until an answer is written: once the read buffer is full the
                # transport pauses, and the client's requests wait in its pipe, not here.
                await self._in_flight.room()
            # The server cancels what is in flight when its input ends: let requests
            # already read (`printf ... | shared-context-server`) answer first, briefly.
            with anyio.move_on_after(EOF_GRACE_S):
                await self._in_flight.drained()

    async def _next_line(self) -> bytes:
        """The next line, newline included; b"" at the end of input. A line longer than
        MAX_LINE_BYTES is answered with a parse error and skipped."""
        reader = self._reader
        parts: list[bytes] = []
        size = 0
        while True:
            try:
                piece = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as end:
                piece = end.partial  # a last line without its newline, or b""
            except asyncio.LimitOverrunError as overrun:
                # Longer than the read buffer: gathered piece by piece, up to the limit.
                piece = await reader.readexactly(overrun.consumed)
                parts.append(piece)
                size += len(piece)
                if size > MAX_LINE_BYTES:
                    parts, size = [], 0
                    if not await self._refuse_long_line():
                        return b""
                continue
            if size + len(piece) > MAX_LINE_BYTES:
                parts, size = [], 0
                await self._refuse_long_line(piece.endswith(b"\n"))
                if piece.endswith(b"\n"):
                    continue
                return b""
            parts.append(piece)
            return b"".join(parts)

    async def _refuse_long_line(self, ended: bool = False) -> bool:
        """Answer a line past MAX_LINE_BYTES and drop the rest of it (unless it `ended`);
        False if the input ends first."""
        logger.warning("answered a line longer than %d bytes", MAX_LINE_BYTES)
        await self._send(
            error_line(
                PARSE_ERROR,
                f"Parse error: a line longer than {MAX_LINE_BYTES:,} bytes; send less in one call",
            )
        )
        while not ended:
            try:
                await self._reader.readuntil(b"\n")
                ended = True
            except asyncio.IncompleteReadError:
                return False
            except asyncio.LimitOverrunError as overrun:
                await self._reader.readexactly(overrun.consumed)
        return True

    async def write_messages(self) -> None:
        async with self._outgoing_receive:
            async for item in self._outgoing_receive:
                message = item.message
                if await self._send(wire_json(message).encode() + b"\n"):
                    self._in_flight.answered(message)
                # else the client is gone, and reading has stopped


@asynccontextmanager
async def _bounded(
    read: ReadStream, write: WriteStream
) -> AsyncIterator[tuple[ReadStream, WriteStream]]:
    """The SDK's streams with this module's intake between them and the server: requests
    in flight bounded (the SDK's reader then blocks, and stops reading stdin), and a line
    the SDK could not parse answered rather than dropped. A request whose id is null, a
    float or an object the SDK reads as a notification, and so it goes unanswered here."""
    in_flight = InFlight()
    to_server, incoming = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    outgoing, from_server = anyio.create_memory_object_stream[SessionMessage](0)

    refusals = write.clone()
    # Checked before the SDK's writer sees it, which costs a second serialisation of each
    # reply: this transport is the portable fallback, not the fast one.

    async def take() -> None:
        async with to_server, read, refusals:
            async for item in read:
                if isinstance(item, Exception):
                    line = recover_line(item)
                    parsed = parse_line(line) if line is not None else None
                    if parsed is None or isinstance(parsed, bytes):
                        reply = parsed or error_line(PARSE_ERROR, "Parse error: not JSON-RPC")
                        message = types.jsonrpc_message_adapter.validate_json(reply)
                        with contextlib.suppress(
                            anyio.BrokenResourceError, anyio.ClosedResourceError
                        ):  # the client left (as in give)
                            await refusals.send(SessionMessage(message))
                        continue
                    size = len(line or b"")
                    item = SessionMessage(parsed)
                else:
                    size = len(item.message.model_dump_json(by_alias=True, exclude_unset=True))
                await to_server.send(in_flight.admit(item.message, size))
                await in_flight.room()

    async def give() -> None:
        async with from_server, write:  # the SDK's writer ends once both are closed
            async for item in from_server:
                # The SDK's writer stopped: the client left (its BrokenPipeError ends the
                # server). Replies have nowhere to go; the server must not fail for that
                # while it winds down.
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await write.send(_writable(item))
                in_flight.answered(item.message)

    async with anyio.create_task_group() as tg:
        tg.start_soon(take)
        tg.start_soon(give)
        try:
            yield incoming, outgoing
        finally:
            await outgoing.aclose()
            tg.cancel_scope.cancel()
