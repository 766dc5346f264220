"""The dashboard's HTTP surface: the page, its JSON reads and one live event stream.

Every read goes through `Reader`, so what a response holds is what the viewer may see;
the page fills itself from these responses with textContent only (static/app.js).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from shared_context_server.dashboard.guard import Guard
from shared_context_server.dashboard.live import Changes
from shared_context_server.dashboard.reads import Reader
from shared_context_server.errors import BlackboardError, InvalidInput, SessionNotFound
from shared_context_server.operations.viewers import describe

STATIC = Path(__file__).parent / "static"
STATUS = {
    "INVALID_INPUT": 400,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "SESSION_NOT_FOUND": 404,
    "DATABASE_BUSY": 503,
}
STATUSES = ("active", "completed", "archived", "all")
PING_SECONDS = 15

Endpoint = Callable[[Request], Awaitable[Response]]


def _json(data: Any) -> JSONResponse:
    return JSONResponse(data)


def _text(request: Request, name: str, *, required: bool = False) -> str | None:
    value = request.query_params.get(name) or None
    if required and value is None:
        raise InvalidInput(f"the {name} parameter is required.")
    return value


def _number(request: Request, name: str) -> int | None:
    value = request.query_params.get(name)
    if not value:
        return None
    if not value.isdigit() or len(value) > 18:
        raise InvalidInput(f"{name} must be a message id (digits); got {value!r}.")
    return int(value)


def _guarded(endpoint: Endpoint) -> Endpoint:
    """A caller's mistake (a bad id, a non-admin asking for the audit log) is a JSON error
    with the blackboard's code, never a page."""

    async def run(request: Request) -> Response:
        try:
            return await endpoint(request)
        except BlackboardError as error:
            return JSONResponse(error.to_dict(), status_code=STATUS.get(error.code, 400))

    return run


def build_app(reader: Reader, changes: Changes, token: str, host: str, port: int) -> Guard:
    """The whole dashboard for `reader`'s viewer, behind the token and Host checks."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(changes.run)
            app.state.changes = changes
            yield
            tg.cancel_scope.cancel()

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    async def meta(request: Request) -> Response:
        return _json(
            {
                "viewer": describe(reader.viewer),
                "admin": reader.viewer.is_admin,
                "database": reader.db.where,
            }
        )

    async def sessions(request: Request) -> Response:
        status = request.query_params.get("status", "all")
        if status not in STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(STATUSES)}; got {status!r}.")
        return _json(await reader.sessions(status))  # type: ignore[arg-type]

    async def session(request: Request) -> Response:
        return _json(await reader.session(request.path_params["sid"]))

    async def messages(request: Request) -> Response:
        sid = request.path_params["sid"]
        return _json(await reader.page(sid, before_id=_number(request, "before")))

    async def activity(request: Request) -> Response:
        return _json(await reader.activity(request.path_params["sid"]))

    async def search(request: Request) -> Response:
        query = _text(request, "q", required=True)
        assert query is not None
        return _json(await reader.search(query, _text(request, "session")))

    async def processes(request: Request) -> Response:
        return _json(await reader.processes())

    async def claims(request: Request) -> Response:
        return _json(await reader.claims())

    async def audit_log(request: Request) -> Response:
        names = ("session_id", "agent_id", "action", "cursor")
        return _json(await reader.audit(*(_text(request, n) for n in names)))

    async def memory_keys(request: Request) -> Response:
        return _json(await reader.memory_keys(_text(request, "agent_id"), _text(request, "cursor")))

    async def memory_value(request: Request) -> Response:
        agent_id = _text(request, "agent_id", required=True)
        key = _text(request, "key", required=True)
        assert agent_id is not None and key is not None
        return _json(await reader.memory_value(agent_id, key, _text(request, "session_id")))

    async def events(request: Request) -> Response:
        """`change` after each commit; with `session`, the viewer's new messages in it."""
        sid = _text(request, "session")
        after = _number(request, "after") or 0
        if sid is not None:
            await reader.session(sid)  # a missing session: a 404 here, not a broken stream

        async def stream() -> AsyncIterator[dict[str, str]]:
            nonlocal after
            seen = changes.seen
            async with changes.listening():
                while True:
                    data: dict[str, Any] = {"change": seen}
                    if sid is not None:
                        try:
                            page = await reader.after(sid, after)
                        except SessionNotFound:
                            yield {"event": "gone", "data": "{}"}
                            return
                        if page["messages"]:
                            after = page["messages"][-1]["id"]
                        data.update(page)
                    yield {"event": "change", "data": json.dumps(data)}
                    if sid is not None and data["has_more"]:
                        continue  # the rest of a burst follows at once
                    moved = await changes.wait(seen)
                    if moved is None:
                        return
                    seen = moved

        return EventSourceResponse(stream(), ping=PING_SECONDS)

    api: list[tuple[str, Endpoint]] = [
        ("/api/meta", meta),
        ("/api/sessions", sessions),
        ("/api/sessions/{sid}", session),
        ("/api/sessions/{sid}/messages", messages),
        ("/api/sessions/{sid}/activity", activity),
        ("/api/search", search),
        ("/api/processes", processes),
        ("/api/claims", claims),
        ("/api/audit", audit_log),
        ("/api/memory", memory_keys),
        ("/api/memory/value", memory_value),
        ("/api/events", events),
    ]
    routes = [
        Route("/", index),
        *(Route(path, _guarded(endpoint)) for path, endpoint in api),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    return Guard(Starlette(routes=routes, lifespan=lifespan), token, host, port)
