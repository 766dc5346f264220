"""A post racing the close of its session, on both engines: it lands before the close or
is refused with CONFLICT, never after."""

from __future__ import annotations

import io
import random

import anyio
import pytest

from shared_context_server.blackboard.messages import add_message
from shared_context_server.blackboard.sessions import (
    UPDATE_SESSION,
    create_session,
    update_session,
)
from shared_context_server.clock import utc_now
from shared_context_server.errors import Conflict, NotFound
from shared_context_server.operations.import_read import ExportReader
from shared_context_server.operations.import_write import import_messages
from shared_context_server.operations.transfer import export_session
from shared_context_server.operations.viewers import ADMIN_VIEWER
from shared_context_server.storage.opener import open_store
from shared_context_server.storage.seam import Conn, Store, Target
from tests.support import ALICE, rows

TRIES = 200
DELAYS = (0.0, 0.0005, 0.001)
COUNT = "SELECT count(*) FROM messages WHERE session_id = ?"


async def _close(db: Store, session_id: str) -> int:
    """update_session(status='completed')'s UPDATE; returns the messages the session holds
    as the close commits."""

    def close(conn: Conn) -> int:
        conn.execute(UPDATE_SESSION, ("completed", "racing", None, utc_now(), session_id))
        return int(conn.execute(COUNT, (session_id,)).fetchone()[0])

    return await db.transact(close)


async def _post(db: Store, session_id: str, delay: float) -> str:
    """add_message after `delay` seconds: 'landed', or 'refused' with the domain's CONFLICT."""
    await anyio.sleep(delay)
    try:
        await add_message(db, ALICE, session_id, "racing the close")
    except Conflict as conflict:
        assert conflict.details == {"status": "completed"}
        return "refused"
    return "landed"


async def test_a_post_racing_the_close_of_its_session_never_lands_after_it(
    target: Target,
) -> None:
    poster, closer = await open_store(target), await open_store(target, migrate=False)
    outcomes: list[str] = []
    try:
        for attempt in range(TRIES):
            session_id = (await create_session(poster, ALICE, "racing"))["id"]
            at_close: list[int] = []

            async def close(session_id: str = session_id, at_close: list[int] = at_close) -> None:
                await anyio.sleep(random.choice(DELAYS))
                at_close.append(await _close(closer, session_id))

            async def post(session_id: str = session_id) -> None:
                outcomes.append(await _post(poster, session_id, random.choice(DELAYS)))

            async with anyio.create_task_group() as tg:
                for task in random.sample((close, post), 2):  # either may start first
                    tg.start_soon(task)
            after = await rows(target, COUNT, (session_id,))
            assert after[0][0] == at_close[0], f"try {attempt}: a message landed after the close"
    finally:
        await poster.close()
        await closer.close()
    assert len(outcomes) == TRIES
    assert {"landed", "refused"} <= set(outcomes)  # both orders happened: a real race


async def test_a_refused_post_writes_neither_message_nor_audit_entry(db: Store) -> None:
    session_id = (await create_session(db, ALICE, "done"))["id"]
    first = await add_message(db, ALICE, session_id, "the finding")
    with pytest.raises(NotFound, match="parent_message_id"):
        await add_message(
            db, ALICE, session_id, "a reply", parent_message_id=first["message_id"] + 9
        )
    await update_session(db, ALICE, session_id, status="completed")
    with pytest.raises(Conflict, match="is completed; reopen it"):
        await add_message(db, ALICE, session_id, "too late")
    logged = await db.read("SELECT target FROM audit_log WHERE action = 'add_message'")
    assert [tuple(row) for row in logged] == [(f"message:{first['message_id']}",)]
    assert len(await db.read("SELECT id FROM messages")) == 1


async def test_an_import_still_writes_the_messages_of_a_completed_session(
    db: Store, other_target: Target
) -> None:
    session_id = (await create_session(db, ALICE, "done"))["id"]
    await add_message(db, ALICE, session_id, "the finding")
    await update_session(db, ALICE, session_id, status="completed")
    with pytest.raises(Conflict, match="is completed; reopen it"):
        await add_message(db, ALICE, session_id, "too late")
    written: list[str] = []
    await export_session(db, ADMIN_VIEWER, session_id, written.append)
    exported = ExportReader(io.BytesIO("".join(written).encode()), "test.jsonl")
    other = await open_store(other_target)
    try:
        await import_messages(other, exported.header, exported.messages())
    finally:
        await other.close()
    assert await rows(other_target, "SELECT status FROM sessions") == [("completed",)]
    assert await rows(other_target, "SELECT content FROM messages") == [("the finding",)]
