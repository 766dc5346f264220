"""Domain functions on a real file, no MCP: sessions, messages, visibility, paging, limits."""

from __future__ import annotations

import re
from typing import Any

import pytest

from shared_context_server.blackboard import messages, paging, sessions
from shared_context_server.blackboard.identity import Agent
from shared_context_server.blackboard.limits import Limits
from shared_context_server.errors import (
    Conflict,
    InvalidInput,
    LimitExceeded,
    NotFound,
    PermissionDenied,
    SessionNotFound,
)
from shared_context_server.storage.seam import Store
from tests.support import ADMIN, ALICE, BOB, CAROL

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


async def new_session(db: Store, by: Agent = ALICE) -> str:
    return str((await sessions.create_session(db, by, "review"))["id"])


# Who may read a message of each visibility posted by alice (a reviewer).
MATRIX = [
    ("public", {"alice", "bob", "carol", "root"}),
    ("private", {"alice", "root"}),
    ("agent_only", {"alice", "bob", "root"}),
]


@pytest.mark.parametrize(("visibility", "readers"), MATRIX)
async def test_each_visibility_reaches_exactly_its_readers(
    db: Store, visibility: str, readers: set[str]
) -> None:
    sid = await new_session(db)
    posted = await messages.add_message(db, ALICE, sid, "x", visibility)
    for reader in (ALICE, BOB, CAROL, ADMIN):
        page = await messages.get_context(db, reader, sid)
        sees = [m["id"] for m in page["messages"]] == [posted["message_id"]]
        assert sees == (reader.agent_id in readers), (visibility, reader.agent_id)
        detail = await sessions.get_session(db, reader, sid)
        assert detail["message_count"] == (1 if sees else 0)
        assert detail["participants"] == (["alice"] if sees else [])


async def test_admin_only_is_posted_by_admins_and_read_only_by_them(db: Store) -> None:
    sid = await new_session(db)
    with pytest.raises(PermissionDenied, match="only admins"):
        await messages.add_message(db, ALICE, sid, "x", "admin_only")
    posted = await messages.add_message(db, ADMIN, sid, "ops", "admin_only")
    for reader in (ALICE, BOB, CAROL):
        with pytest.raises(NotFound):
            await messages.get_message(db, reader, sid, posted["message_id"])
    assert (await messages.get_message(db, ADMIN, sid, posted["message_id"]))["content"] == "ops"


async def test_unknown_visibility_is_rejected_and_nothing_is_stored(db: Store) -> None:
    sid = await new_session(db)
    with pytest.raises(InvalidInput, match="visibility must be one of"):
        await messages.add_message(db, ALICE, sid, "x", "secret")
    assert (await messages.get_context(db, ADMIN, sid))["messages"] == []


async def test_parent_must_be_a_visible_message_of_the_same_session(db: Store) -> None:
    one, two = await new_session(db), await new_session(db)
    elsewhere = await messages.add_message(db, ALICE, two, "other session")
    hidden = await messages.add_message(db, ALICE, one, "mine", "private")
    for parent in (elsewhere["message_id"], hidden["message_id"], 999_999):
        with pytest.raises(NotFound, match="parent_message_id"):
            await messages.add_message(db, BOB, one, "reply", parent_message_id=parent)
    ok = await messages.add_message(db, ALICE, one, "reply", parent_message_id=hidden["message_id"])
    got = await messages.get_message(db, ALICE, one, ok["message_id"])
    assert got["parent_message_id"] == hidden["message_id"]


async def test_ids_grow_and_timestamps_are_iso_utc_with_microseconds(db: Store) -> None:
    sid = await new_session(db)
    posted = [await messages.add_message(db, ALICE, sid, f"m{i}") for i in range(5)]
    ids = [p["message_id"] for p in posted]
    stamps = [p["created_at"] for p in posted]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert stamps == sorted(stamps) and all(TIMESTAMP.match(s) for s in stamps)


async def test_sql_looking_content_is_stored_and_returned_verbatim(db: Store) -> None:
    sid = await new_session(db)
    nasty = "'); DROP TABLE messages; -- \" OR 1=1 /* \\x00 ☃"
    posted = await messages.add_message(db, ALICE, sid, nasty, metadata={"q": nasty})
    got = await messages.get_message(db, ALICE, sid, posted["message_id"])
    assert got["content"] == nasty and got["metadata"] == {"q": nasty}


async def test_a_nul_character_in_text_is_refused_alike_on_both_engines(db: Store) -> None:
    sid = await new_session(db)
    with pytest.raises(InvalidInput, match=r"content holds a NUL character"):
        await messages.add_message(db, ALICE, sid, "before\x00after")
    with pytest.raises(InvalidInput, match=r"purpose holds a NUL character"):
        await sessions.create_session(db, ALICE, "a\x00b")
    with pytest.raises(InvalidInput, match=r"metadata holds a NUL character"):
        await messages.add_message(db, ALICE, sid, "ok", metadata={"to": ["bob"], "q": "\x00"})
    assert (await messages.get_context(db, ALICE, sid))["messages"] == []


async def test_get_context_pages_latest_then_back_then_forward(db: Store) -> None:
    sid = await new_session(db)
    ids = [(await messages.add_message(db, ALICE, sid, f"m{i}"))["message_id"] for i in range(10)]
    latest = await messages.get_context(db, BOB, sid, limit=4)
    assert [m["id"] for m in latest["messages"]] == ids[6:] and latest["has_more"]
    back = await messages.get_context(db, BOB, sid, limit=4, before_id=ids[6])
    assert [m["id"] for m in back["messages"]] == ids[2:6] and back["has_more"]
    first = await messages.get_context(db, BOB, sid, limit=4, before_id=ids[2])
    assert [m["id"] for m in first["messages"]] == ids[:2] and not first["has_more"]
    forward = await messages.get_context(db, BOB, sid, limit=4, after_id=ids[5])
    assert [m["id"] for m in forward["messages"]] == ids[6:] and not forward["has_more"]


async def test_get_context_filters_by_sender_and_visibility(db: Store) -> None:
    sid = await new_session(db)
    await messages.add_message(db, ALICE, sid, "a", "agent_only")
    await messages.add_message(db, BOB, sid, "b")
    by_bob = await messages.get_context(db, ALICE, sid, sender="bob")
    assert [m["content"] for m in by_bob["messages"]] == ["b"]
    team = await messages.get_context(db, BOB, sid, visibility="agent_only")
    assert [m["content"] for m in team["messages"]] == ["a"]


async def test_one_senders_pages_go_back_and_forward_among_the_others(db: Store) -> None:
    sid = await new_session(db)
    other = await new_session(db)
    mine = []
    for i in range(12):
        await messages.add_message(db, ALICE, other, f"elsewhere {i}")
        posted = await messages.add_message(db, BOB if i % 3 else ALICE, sid, f"m{i}")
        if i % 3 == 0:
            mine.append(posted["message_id"])
    await messages.add_message(db, ALICE, sid, "only mine", "private")

    def page(**kw: Any) -> Any:
        return messages.get_context(db, BOB, sid, limit=2, sender="alice", **kw)

    latest = await page()
    assert [m["id"] for m in latest["messages"]] == mine[2:] and latest["has_more"]
    back = await page(before_id=mine[2])
    assert [m["id"] for m in back["messages"]] == mine[:2] and not back["has_more"]
    forward = await page(after_id=mine[0])
    assert [m["id"] for m in forward["messages"]] == mine[1:3] and forward["has_more"]
    public = await messages.get_context(db, ALICE, sid, sender="alice", visibility="public")
    assert [m["id"] for m in public["messages"]] == mine


async def test_a_page_stops_early_at_the_character_budget(db: Store) -> None:
    sid = await new_session(db)
    for _ in range(5):
        await messages.add_message(db, ALICE, sid, "x" * 400)
    page = await messages.get_context(db, ALICE, sid, limits=Limits(max_page_chars=1000))
    assert len(page["messages"]) == 2 and page["has_more"]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"limit": 0}, InvalidInput),
        ({"limit": 501}, InvalidInput),
        ({"after_id": 1, "before_id": 5}, InvalidInput),
        ({"visibility": "everyone"}, InvalidInput),
    ],
)
async def test_get_context_refuses_bad_paging(db: Store, kwargs: dict, error: type) -> None:  # type: ignore[type-arg]
    sid = await new_session(db)
    with pytest.raises(error):
        await messages.get_context(db, ALICE, sid, **kwargs)


async def test_missing_session_is_session_not_found_everywhere(db: Store) -> None:
    for call in (
        messages.add_message(db, ALICE, "nope", "x"),
        messages.get_context(db, ALICE, "nope"),
        messages.get_message(db, ALICE, "nope", 1),
        sessions.get_session(db, ALICE, "nope"),
        sessions.update_session(db, ALICE, "nope", status="completed"),
    ):
        with pytest.raises(SessionNotFound, match="list_sessions"):
            await call


def nested(levels: int) -> dict:  # type: ignore[type-arg]
    value: dict = {}  # type: ignore[type-arg]
    for _ in range(levels):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("content", "metadata", "error"),
    [
        ("x" * 101, None, LimitExceeded),
        ("ok", {"blob": "y" * 17_000}, LimitExceeded),
        ("   ", None, InvalidInput),
        ("ok", nested(5_000), LimitExceeded),  # the nesting limit (32 levels)
    ],
)
async def test_oversize_or_empty_writes_are_refused_and_not_stored(
    db: Store,
    content: str,
    metadata: dict | None,
    error: type,  # type: ignore[type-arg]
) -> None:
    sid = await new_session(db)
    with pytest.raises(error):
        await messages.add_message(
            db, ALICE, sid, content, metadata=metadata, limits=Limits(max_content_chars=100)
        )
    assert (await messages.get_context(db, ALICE, sid))["messages"] == []


async def test_purpose_over_1000_characters_is_limit_exceeded(db: Store) -> None:
    with pytest.raises(LimitExceeded, match="1,000"):
        await sessions.create_session(db, ALICE, "p" * 1001)


async def test_lifecycle_moves_forward_and_reopens_but_never_skips(db: Store) -> None:
    sid = await new_session(db)
    with pytest.raises(Conflict, match="can become completed"):
        await sessions.update_session(db, ALICE, sid, status="archived")
    for status in ("completed", "archived", "active", "completed", "active"):
        updated = await sessions.update_session(db, ALICE, sid, status=status)  # type: ignore[arg-type]
        assert updated["status"] == status


async def test_posting_to_a_closed_session_says_how_to_reopen(db: Store) -> None:
    sid = await new_session(db)
    await sessions.update_session(db, ALICE, sid, status="completed")
    with pytest.raises(Conflict, match="reopen"):
        await messages.add_message(db, BOB, sid, "late")


async def test_list_sessions_pages_with_a_cursor_and_filters_status(db: Store) -> None:
    made = [await new_session(db) for _ in range(5)]
    await sessions.update_session(db, ALICE, made[0], status="completed")
    first = await sessions.list_sessions(db, BOB, limit=3)
    rest = await sessions.list_sessions(db, BOB, limit=3, cursor=first["next_cursor"])
    listed = [s["id"] for page in (first, rest) for s in page["sessions"]]
    assert listed == made[:0:-1] and rest["next_cursor"] is None  # newest first, active only
    every = await sessions.list_sessions(db, BOB, status="all", limit=50)
    assert len(every["sessions"]) == 5
    with pytest.raises(InvalidInput, match="cursor"):
        await sessions.list_sessions(db, BOB, cursor="garbage!")


async def test_a_read_only_agent_cannot_write(db: Store) -> None:
    reader = Agent("viewer", "generic", frozenset({"read"}))
    with pytest.raises(PermissionDenied, match="'write' permission"):
        await sessions.create_session(db, reader, "nope")


@pytest.mark.parametrize(
    ("cursor", "shape"),
    [
        ("not base64!", (int,)),
        ("", (int,)),
        (paging.encode_cursor("a", "b"), (int,)),  # another list's cursor
        (paging.encode_cursor(-1), (int,)),
        (paging.encode_cursor(2**63), (int,)),
        (paging.encode_cursor(True), (int,)),
        (paging.encode_cursor(5), (str, str)),
    ],
)
def test_a_cursor_no_list_returned_is_refused_naming_the_tool(
    cursor: str, shape: tuple[type, ...]
) -> None:
    with pytest.raises(InvalidInput, match="cursor is not one list_x returned"):
        paging.decode_cursor(cursor, shape, "list_x")


def test_every_list_pages_with_the_same_cursor_form() -> None:
    assert paging.decode_cursor(paging.encode_cursor(7), (int,), "t") == (7,)
    position = ("alice", "sess_1", "k\nwith newline")
    assert paging.decode_cursor(paging.encode_cursor(*position), (str,) * 3, "t") == position
    assert paging.cut([1, 2, 3], 2) == ([1, 2], True)
    assert paging.cut([1, 2], 2) == ([1, 2], False)


def test_a_message_and_a_session_have_one_shape_in_every_layer() -> None:
    from shared_context_server.blackboard import news
    from shared_context_server.operations.import_read import ImportedMessage, ImportedSession
    from shared_context_server.server import outputs

    message_keys = set(messages.Message.__annotations__)
    session_keys = set(sessions.Session.__annotations__)
    # Tools' output schema; a hand-off (metadata.to) also carries who acknowledged it.
    extra = {"acknowledged", "unacknowledged"}
    assert set(outputs.Message.model_fields) == message_keys | extra
    assert set(outputs.Session.model_fields) == session_keys
    assert set(ImportedMessage.model_fields) == message_keys | extra  # export and import
    assert set(ImportedSession.model_fields) == session_keys
    assert news.COLUMNS == messages.MESSAGE_COLUMNS  # the hook's reads (news.py stays light)
