"""`shared-context-server dashboard`: open the file read-only, choose the viewer, bind a
port, print the URL with its token, and serve until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import ipaddress
import logging
import secrets
import socket
import sys
import webbrowser
from types import FrameType

import anyio
import uvicorn

from shared_context_server.dashboard.guard import url_host
from shared_context_server.dashboard.live import Changes
from shared_context_server.dashboard.reads import Reader
from shared_context_server.dashboard.web import build_app
from shared_context_server.errors import InvalidInput, StorageError
from shared_context_server.operations.opening import open_existing
from shared_context_server.operations.viewers import choose_viewer, describe
from shared_context_server.storage.seam import Store, Target
from shared_context_server.terminal import note

SHARED_LOOPBACK = "127.0.0.1"


async def open_for_reading(target: Target) -> Store:
    """The existing file or database, never migrated: the dashboard writes nothing.

    Raises NotFound, StorageError."""
    db = await open_existing(target, migrate=False)
    version = await db.schema_version()
    if version != db.release_schema:
        await db.close()
        raise StorageError(
            f"{db.where} has schema version {version} and this dashboard reads "
            f"{db.release_schema}; start a server (or `shared-context-server sessions`) on it "
            "once to migrate it, or upgrade shared-context-server."
        )
    return db


def listen(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one the system picks). Raises OSError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def bind(host: str, port: int) -> socket.socket:
    """`listen`, its failure said in one line. Raises InvalidInput."""
    try:
        return listen(host, port)
    except OSError as error:
        raise cannot_listen(host, port, error) from None


def cannot_listen(host: str, port: int, error: OSError) -> InvalidInput:
    return InvalidInput(
        f"cannot listen on {host}:{port} ({error.strerror or error}); "
        "leave --port out for a free one, or check --host."
    )


def own_loopback() -> str:
    """A random loopback address, 127.x.y.z outside 127.0.x.x (where 127.0.0.53 and
    127.0.1.1 already serve on many systems)."""
    x, y, z = secrets.randbelow(254) + 1, secrets.randbelow(256), secrets.randbelow(254) + 1
    return f"127.{x}.{y}.{z}"


def bind_own_loopback(port: int) -> socket.socket:
    """A listening socket on a loopback address of this run's own, so that its cookie, which
    follows the host and not the port, is sent to nothing else. Linux and Windows route all
    of 127/8 to the loopback; where the system has no such address (macOS and the BSDs give
    lo0 only 127.0.0.1 unless aliased), 127.0.0.1, with a note.

    Raises InvalidInput."""
    address = own_loopback()
    try:
        return listen(address, port)
    except OSError as error:
        if error.errno != errno.EADDRNOTAVAIL:
            raise cannot_listen(address, port, error) from None
    note(
        "note: this system has no loopback address but 127.0.0.1, so the dashboard shares "
        "it with other local services (its cookie opens nothing there)."
    )
    return bind(SHARED_LOOPBACK, port)


def is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Server(uvicorn.Server):
    """Ends the live streams at Ctrl-C: uvicorn waits for open responses to finish, and a
    browser's stream never would."""

    def __init__(self, config: uvicorn.Config, changes: Changes) -> None:
        super().__init__(config)
        self._changes = changes
        self._loop = asyncio.get_running_loop()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler: hand the wake-up to the event loop rather than touch it here.
        self._loop.call_soon_threadsafe(self._changes.stop)
        super().handle_exit(sig, frame)


def run_dashboard(args: argparse.Namespace, path: Target) -> int:
    """Serve until interrupted; returns the exit status."""
    if not 0 <= args.port <= 65535:
        raise InvalidInput(f"--port must be 0-65535; got {args.port}.")
    sock = bind_own_loopback(args.port) if args.host is None else bind(args.host, args.port)
    address: str = sock.getsockname()[0]  # what the Host check holds to (localhost's too)
    host: str = args.host or address
    port = int(sock.getsockname()[1])
    token = secrets.token_urlsafe(24)

    async def run() -> None:
        db = await open_for_reading(path)
        try:
            viewer = await choose_viewer(
                db,
                getattr(args, "as_agent", None),
                getattr(args, "agent_type", None),
                getattr(args, "admin", False),
            )
            reader = Reader(db, viewer)
            changes = Changes(reader.data_version, errors=db.errors)
            app = build_app(reader, changes, token, address, port)
            url = f"http://{url_host(host)}:{port}/?token={token}"
            note(f"dashboard of {db.where}, showing {describe(viewer)}")
            if not is_loopback(host):
                note(
                    f"warning: listening on {host}, not only this machine: anyone who can "
                    "reach it and learns the URL can read the blackboard."
                )
            print(url, flush=True)
            note("Ctrl-C stops it.")
            if args.open:
                webbrowser.open(url)
            config = uvicorn.Config(
                app,
                log_level=logging.WARNING,
                access_log=False,  # it would print the first request's URL, token and all
                server_header=False,
                lifespan="on",
                timeout_graceful_shutdown=2,
            )
            async with anyio.create_task_group() as tg:
                db.want_news(True)  # PostgreSQL's commits are heard, not looked for
                tg.start_soon(db.listen)
                await _Server(config, changes).serve(sockets=[sock])
                tg.cancel_scope.cancel()
        finally:
            await db.close()
            sock.close()

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how it is meant to stop
        anyio.run(run)
    sys.stdout.flush()
    return 0
