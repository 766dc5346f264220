"""`shared-context-server dashboard`: open the file read-only, choose the viewer, bind a
port, print the URL with its token, and serve until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import socket
import sys
import webbrowser
from types import FrameType

import anyio
import uvicorn

from shared_context_server.dashboard.live import Changes
from shared_context_server.dashboard.reads import Reader
from shared_context_server.dashboard.web import build_app
from shared_context_server.errors import InvalidInput, StorageError
from shared_context_server.operations.opening import open_existing
from shared_context_server.operations.viewers import choose_viewer, describe
from shared_context_server.storage.seam import Store, Target
from shared_context_server.terminal import note

LOOPBACK = ("127.0.0.1", "localhost", "::1")


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


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one the system picks). Raises InvalidInput."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise InvalidInput(
            f"cannot listen on {host}:{port} ({error.strerror or error}); "
            "leave --port out for a free one, or check --host."
        ) from None
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


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
    host: str = args.host
    if not 0 <= args.port <= 65535:
        raise InvalidInput(f"--port must be 0-65535; got {args.port}.")
    sock = bind(host, args.port)
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
            changes = Changes(reader.data_version)
            app = build_app(reader, changes, token, host, port)
            url = f"http://{url_host(host)}:{port}/?token={token}"
            note(f"dashboard of {db.where}, showing {describe(viewer)}")
            if host not in LOOPBACK:
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
                access_log=False,
                server_header=False,
                lifespan="on",
                timeout_graceful_shutdown=2,
            )
            async with anyio.create_task_group() as tg:
                tg.start_soon(db.listen)  # PostgreSQL's commits are heard, not looked for
                await _Server(config, changes).serve(sockets=[sock])
                tg.cancel_scope.cancel()
        finally:
            await db.close()
            sock.close()

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how it is meant to stop
        anyio.run(run)
    sys.stdout.flush()
    return 0
