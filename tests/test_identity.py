"""Sub-agent tokens, permissions and the audit trail: domain functions on a real file, and
the tools through real MCP client sessions in both protocol eras."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shared_context_server.blackboard import audit, messages, sessions, tokens
from shared_context_server.blackboard.maintenance import DEFAULT_ARCHIVE_AFTER_DAYS
from shared_context_server.clock import now_utc
from shared_context_server.config import Settings, resolve_settings
from shared_context_server.errors import Conflict, InvalidInput, PermissionDenied, TokenInvalid
from shared_context_server.storage.seam import Store, Target
from tests.support import ADMIN, ALICE, BOB, ERAS, connect, fails, ok, rows


def settings(target: Target, agent_id: str | None = "alice", **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "db_path": target,
        "agent_id": agent_id,
        "agent_id_source": "flag",
        "agent_type": "reviewer",
    }
    return Settings(**(base | overrides))


async def audit_rows(target: Target) -> list[tuple[Any, ...]]:
    return await rows(
        target,
        "SELECT agent_id, via, action, session_id, target, result FROM audit_log ORDER BY id",
    )


# --------------------------------------------------------------------------- domain


async def test_a_token_is_stored_only_as_a_hash_and_resolves_to_the_sub_agent(
    db: Store,
) -> None:
    minted = await tokens.authenticate_agent(db, ALICE, "alice/helper", permissions=["read"])
    assert minted["token"].startswith("sct_") and len(minted["token"]) >= 4 + 32
    stored = await db.read("SELECT token_hash FROM agent_tokens")
    assert [r[0] for r in stored] == [tokens.token_hash(minted["token"])]
    sub = await tokens.resolve_token(db, minted["token"], ALICE)
    assert (sub.agent_id, sub.agent_type, sub.permissions) == (
        "alice/helper",
        "reviewer",
        frozenset({"read"}),
    )
    assert (sub.source, sub.via) == ("token", "alice")


@pytest.mark.parametrize(
    ("agent_id", "agent_type", "permissions", "says"),
    [
        ("alice/helper", None, ["read", "admin"], "permissions you lack (admin)"),
        ("bob", None, None, "under your own id"),
        ("alicex", None, None, "under your own id"),
        ("alice/helper", "writer", None, "your agent_type"),
    ],
)
async def test_a_token_wider_than_its_minter_is_refused(
    db: Store, agent_id: str, agent_type: str | None, permissions: Any, says: str
) -> None:
    with pytest.raises(PermissionDenied, match=says.replace("(", r"\(").replace(")", r"\)")):
        await tokens.authenticate_agent(db, ALICE, agent_id, agent_type, permissions)
    assert await db.read("SELECT * FROM agent_tokens") == []


async def test_an_admin_may_mint_any_identity(db: Store) -> None:
    minted = await tokens.authenticate_agent(db, ADMIN, "bob", "writer", ["read", "admin"])
    sub = await tokens.resolve_token(db, minted["token"], ADMIN)
    assert (sub.agent_id, sub.agent_type, sub.is_admin) == ("bob", "writer", True)


async def test_expired_revoked_and_garbage_tokens_are_refused_saying_which(db: Store) -> None:
    minted = await tokens.authenticate_agent(db, ALICE, "alice/a", expires_in=60)
    later = now_utc() + timedelta(seconds=61)
    with pytest.raises(TokenInvalid, match="expired at"):
        await tokens.resolve_token(db, minted["token"], ALICE, now=later)
    assert (await tokens.revoke_token(db, ALICE, minted["token"]))["revoked"] is True
    with pytest.raises(TokenInvalid, match="revoked at"):
        await tokens.resolve_token(db, minted["token"], ALICE)
    assert (await tokens.revoke_token(db, ALICE, minted["token"]))["revoked"] is False
    for garbage in ("", "sct_nope", "x" * 5000, "'; DROP TABLE agent_tokens; --"):
        with pytest.raises(TokenInvalid, match="not a token this blackboard issued"):
            await tokens.resolve_token(db, garbage, ALICE)


async def test_only_the_minter_its_agent_or_an_admin_may_revoke(db: Store) -> None:
    first = await tokens.authenticate_agent(db, ALICE, "alice/a")
    with pytest.raises(PermissionDenied, match="only the agent that minted"):
        await tokens.revoke_token(db, BOB, first["token"])
    sub = await tokens.resolve_token(db, first["token"], ALICE)
    assert (await tokens.revoke_token(db, sub, first["token"]))["revoked"] is True
    second = await tokens.authenticate_agent(db, ALICE, "alice/b")
    assert (await tokens.revoke_token(db, ADMIN, second["token"]))["revoked"] is True


async def test_a_sub_agent_cannot_mint_itself_a_token_that_outlives_its_own(
    db: Store,
) -> None:
    first = await tokens.authenticate_agent(db, ALICE, "alice/h", expires_in=60)
    sub = await tokens.resolve_token(db, first["token"], ALICE)
    with pytest.raises(PermissionDenied, match="a sub-agent cannot mint tokens; ask alice"):
        await tokens.authenticate_agent(db, sub, "alice/h", expires_in=3600)
    # A token minted for a sub-agent's own sub-agent by the parent stays the parent's to revoke.
    second = await tokens.authenticate_agent(db, ALICE, "alice/h/x")
    assert (await tokens.revoke_token(db, ALICE, second["token"]))["revoked"] is True


REFUSE_AUDIT = {
    "sqlite": [
        "CREATE TRIGGER no_audit BEFORE INSERT ON audit_log BEGIN"
        " SELECT RAISE(ABORT, 'audit refused'); END"
    ],
    "postgres": [
        "CREATE FUNCTION no_audit() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$",
        "CREATE TRIGGER no_audit BEFORE INSERT ON audit_log"
        " FOR EACH ROW EXECUTE FUNCTION no_audit()",
    ],
}


async def test_an_audit_entry_that_cannot_be_written_undoes_its_change(db: Store) -> None:
    s = await sessions.create_session(db, ALICE, "audited")
    for statement in REFUSE_AUDIT[db.engine]:  # every audit insert now fails
        await db.transact(lambda conn, sql=statement: conn.execute(sql))
    with pytest.raises(Exception, match="audit refused"):
        await messages.add_message(db, ALICE, s["id"], "never stored")
    with pytest.raises(Exception, match="audit refused"):
        await sessions.update_session(db, ALICE, s["id"], purpose="never renamed")
    assert await db.read("SELECT * FROM messages") == []
    assert (await sessions.get_session(db, ALICE, s["id"]))["session"]["purpose"] == "audited"


async def test_a_mutation_and_its_audit_entry_commit_or_roll_back_together(
    db: Store,
) -> None:
    s = await sessions.create_session(db, ALICE, "audited")
    await messages.add_message(db, ALICE, s["id"], "one")
    await sessions.update_session(db, ALICE, s["id"], status="completed")
    with pytest.raises(Conflict):  # a closed session: the insert fails, and no entry
        await messages.add_message(db, ALICE, s["id"], "two")
    with pytest.raises(PermissionDenied):
        await sessions.update_session(db, BOB, s["id"], status="active")
    rows = [tuple(r) for r in await db.read("SELECT agent_id, action, target FROM audit_log")]
    assert rows == [
        ("alice", "create_session", f"session:{s['id']}"),
        ("alice", "add_message", "message:1"),
        ("alice", "update_session", f"session:{s['id']}"),
    ]


async def test_audit_log_pages_newest_first_and_filters(db: Store) -> None:
    s = await sessions.create_session(db, ALICE, "paging")
    for n in range(5):
        await messages.add_message(db, ALICE, s["id"], f"m{n}")
    await sessions.create_session(db, BOB, "bob's")
    first = await audit.get_audit_log(db, ALICE, action="add_message", limit=3)
    assert [e["target"] for e in first["entries"]] == ["message:5", "message:4", "message:3"]
    rest = await audit.get_audit_log(
        db, ALICE, action="add_message", limit=3, cursor=first["next_cursor"]
    )
    assert [e["target"] for e in rest["entries"]] == ["message:2", "message:1"]
    assert rest["next_cursor"] is None
    everyone = await audit.get_audit_log(db, ADMIN)
    assert {e["agent_id"] for e in everyone["entries"]} == {"alice", "bob"}
    in_session = await audit.get_audit_log(db, ADMIN, session_id=s["id"])
    assert len(in_session["entries"]) == 6
    with pytest.raises(PermissionDenied, match="only admins"):
        await audit.get_audit_log(db, ALICE, agent_id="bob")


# --------------------------------------------------------------------------- tools


@pytest.mark.parametrize("era", ERAS)
async def test_a_sub_agent_acts_as_itself_by_token_for_every_rule(target: Target, era: str) -> None:
    async with connect(era, settings(target)) as s:
        sid = (await ok(s, "create_session", purpose="delegation"))["session_id"]
        token = (await ok(s, "authenticate_agent", agent_id="alice/helper"))["token"]
        me = await ok(s, "whoami", agent_token=token)
        assert (me["agent_id"], me["identity_source"], me["via"]) == (
            "alice/helper",
            "token",
            "alice",
        )
        assert "settings" not in me
        await ok(s, "add_private_note", session_id=sid, content="helper's own", agent_token=token)
        await ok(s, "set_memory", key="k", value=1, agent_token=token)
        # The parent sees neither the sub-agent's private note nor its memory.
        assert (await ok(s, "get_context", session_id=sid))["messages"] == []
        await fails(s, "get_memory", "NOT_FOUND", key="k")
        page = await ok(s, "get_context", session_id=sid, agent_token=token)
        assert [m["sender"] for m in page["messages"]] == ["alice/helper"]
        log = await ok(s, "get_audit_log", agent_token=token)
        assert [(e["agent_id"], e["via"], e["action"]) for e in log["entries"]] == [
            ("alice/helper", "alice", "set_memory"),
            ("alice/helper", "alice", "add_private_note"),
        ]
        # The parent reads its own entries and its sub-agents'; the sub-agent only its own.
        family = await ok(s, "get_audit_log")
        assert {e["agent_id"] for e in family["entries"]} == {"alice", "alice/helper"}
        await fails(s, "get_audit_log", "PERMISSION_DENIED", agent_id="alice", agent_token=token)


@pytest.mark.parametrize("era", ERAS)
async def test_a_bad_token_is_an_error_never_the_process_identity(target: Target, era: str) -> None:
    async with connect(era, settings(target)) as s:
        text = await fails(s, "whoami", "TOKEN_INVALID", agent_token="sct_forged")
        assert "authenticate_agent" in text and "leave agent_token out" in text
        sid = (await ok(s, "create_session", purpose="p"))["session_id"]
        await fails(s, "add_message", "TOKEN_INVALID", session_id=sid, content="x", agent_token="")
        token = (await ok(s, "authenticate_agent", agent_id="alice/h"))["token"]
        assert (await ok(s, "revoke_token", token=token))["revoked"] is True
        await fails(s, "get_context", "TOKEN_INVALID", session_id=sid, agent_token=token)
        assert (await ok(s, "get_context", session_id=sid))["messages"] == []  # nothing posted
    results = [(r[0], r[2], r[5]) for r in await audit_rows(target)]
    assert ("alice", "whoami", "TOKEN_INVALID") in results
    assert ("alice", "add_message", "TOKEN_INVALID") in results
    assert ("alice", "revoke_token", "ok") in results


@pytest.mark.parametrize("era", ERAS)
async def test_a_read_only_sub_agent_cannot_write_and_the_refusal_is_audited(
    target: Target, era: str
) -> None:
    async with connect(era, settings(target)) as s:
        sid = (await ok(s, "create_session", purpose="p"))["session_id"]
        token = (await ok(s, "authenticate_agent", agent_id="alice/ro", permissions=["read"]))[
            "token"
        ]
        text = await fails(
            s, "add_message", "PERMISSION_DENIED", session_id=sid, content="x", agent_token=token
        )
        assert "'write' permission" in text
        await fails(s, "set_memory", "PERMISSION_DENIED", key="k", value=1, agent_token=token)
        await fails(
            s,
            "authenticate_agent",
            "PERMISSION_DENIED",
            agent_id="alice/ro/x",
            agent_token=token,
        )
        assert (await ok(s, "get_context", session_id=sid, agent_token=token))["messages"] == []
        denied = await ok(s, "get_audit_log", agent_token=token)
        entries = denied["entries"]
        assert [(e["action"], e["result"], e["session_id"], e["target"]) for e in entries] == [
            ("authenticate_agent", "PERMISSION_DENIED", None, "agent:alice/ro/x"),
            ("set_memory", "PERMISSION_DENIED", None, "memory:k"),
            ("add_message", "PERMISSION_DENIED", sid, None),
        ]


@pytest.mark.parametrize("era", ERAS)
async def test_only_the_creator_or_an_admin_updates_a_session(target: Target, era: str) -> None:
    async with (
        connect(era, settings(target)) as alice,
        connect(era, settings(target, "bob")) as bob,
        connect(era, settings(target, "root", admin=True)) as root,
    ):
        sid = (await ok(alice, "create_session", purpose="mine"))["session_id"]
        text = await fails(bob, "update_session", "PERMISSION_DENIED", session_id=sid, purpose="x")
        assert "creator (alice)" in text
        await ok(root, "update_session", session_id=sid, purpose="renamed", metadata={"k": 1})
        seen = (await ok(bob, "get_session", session_id=sid))["session"]
        assert (seen["purpose"], seen["metadata"]) == ("renamed", {"k": 1})
        await ok(root, "update_session", session_id=sid, status="completed")
        log = await ok(root, "get_audit_log", session_id=sid)
        assert [(e["agent_id"], e["action"], e["result"]) for e in log["entries"]] == [
            ("root", "update_session", "ok"),
            ("root", "update_session", "ok"),
            ("bob", "update_session", "PERMISSION_DENIED"),
            ("alice", "create_session", "ok"),
        ]
        admin_view = await ok(root, "whoami")
        assert admin_view["settings"]["archive_after_days"] == DEFAULT_ARCHIVE_AFTER_DAYS
        await fails(bob, "get_audit_log", "PERMISSION_DENIED", agent_id="alice")


@pytest.mark.parametrize("era", ERAS)
async def test_a_slash_is_kept_for_sub_agents_so_no_process_is_another_agents_sub_agent(
    tmp_path: Path, era: str
) -> None:
    with pytest.raises(InvalidInput, match="may not contain '/'"):
        resolve_settings({"db": str(tmp_path / "x.db"), "agent_id": "alice/bot"}, {})
    with pytest.raises(InvalidInput, match="SHARED_CONTEXT_AGENT_ID may not contain"):
        resolve_settings({"db": str(tmp_path / "x.db")}, {"SHARED_CONTEXT_AGENT_ID": "a/b"})
    with pytest.raises(InvalidInput, match="the server's own name"):
        resolve_settings({"db": str(tmp_path / "x.db"), "agent_id": "maintenance"}, {})
    unnamed = settings(tmp_path / "bb.db", agent_id=None, agent_id_source=None)
    async with connect(era, unnamed, client_name="alice/bot") as s:
        assert (await ok(s, "whoami"))["agent_id"] == "alice-bot"
