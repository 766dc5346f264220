"""Claims and acknowledged hand-offs, on the domain functions, on both engines."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from shared_context_server.blackboard import acks, audit, claim_rules, claims, messages, tokens
from shared_context_server.blackboard.changes import ChangeFeed
from shared_context_server.blackboard.claims import Presence
from shared_context_server.blackboard.inbox import check_inbox
from shared_context_server.blackboard.sessions import create_session
from shared_context_server.clock import iso, now_utc
from shared_context_server.errors import InvalidInput, PermissionDenied
from shared_context_server.message_text import header
from shared_context_server.storage.seam import Store
from tests.support import ADMIN, ALICE, BOB, CAROL

CWD = "/repo"


def norm(raw: str) -> tuple[str, str, str]:
    return claim_rules.normalise(raw, CWD)


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("src/**", "src/a.py", True),
        ("src/a.py", "src/**", True),
        ("src/api", "src/api/x.py", True),  # a path may be a directory
        ("src/a.py", "src/b.py", False),
        ("src/*.py", "src/*.md", False),
        ("src/*.py", "src/a*", True),
        ("src/**/*.py", "src/deep/er/x.py", True),
        ("docs/**", "src/**", False),
        ("src/a*/b", "src/ab/c", False),
        ("src/[ab].py", "src/*.md", True),  # a class: unsure, so they overlap
        ("src/../src/a.py", "src/a.py", True),
        ("task:auth", "task:auth", True),
        ("task:auth", "task:billing", False),
        ("task:auth", "src/**", False),
    ],
)
def test_overlap_rule_is_conservative_and_symmetric(a: str, b: str, overlap: bool) -> None:
    assert claim_rules.overlaps(*norm(a)[:2], *norm(b)[:2]) is overlap
    assert claim_rules.overlaps(*norm(b)[:2], *norm(a)[:2]) is overlap


def test_targets_are_made_absolute_and_resolved(tmp_path: Any) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert claim_rules.normalise("link/x.py", str(tmp_path))[0] == str(real / "x.py")
    assert claim_rules.normalise("link/../real/**", str(tmp_path)) == (
        f"{real}/**",
        "glob",
        str(real),
    )
    with pytest.raises(claim_rules.BadTarget):
        claim_rules.normalise("src/**/../x", CWD)


async def take(db: Store, who: Any, *targets: str, **options: Any) -> dict[str, Any]:
    options.setdefault("presence", None)
    return await claims.claim(db, who, list(targets), cwd=CWD, **options)


async def test_a_held_target_names_its_holder_reason_and_until(db: Store) -> None:
    mine = await take(db, ALICE, "src/**", reason="refactoring the API")
    assert [g["target"] for g in mine["granted"]] == ["/repo/src/**"]
    theirs = await take(db, BOB, "src/api/handlers.py")
    assert theirs["granted"] == []
    (conflict,) = theirs["conflicts"]
    assert conflict["held_by"] == "alice"
    assert conflict["reason"] == "refactoring the API"
    assert conflict["until"] == mine["granted"][0]["until"]


async def test_claim_is_all_or_nothing_unless_partial(db: Store) -> None:
    await take(db, ALICE, "src/a.py")
    refused = await take(db, BOB, "src/a.py", "src/b.py")
    assert refused["granted"] == [] and len(refused["conflicts"]) == 1
    assert (await claims.list_claims(db, BOB, cwd=CWD, holder="bob"))["claims"] == []
    some = await take(db, BOB, "src/a.py", "src/b.py", partial=True)
    assert [g["target"] for g in some["granted"]] == ["/repo/src/b.py"]


async def test_shared_claims_coexist_but_exclude_an_exclusive_one(db: Store) -> None:
    await take(db, ALICE, "task:migrate-auth", shared=True)
    assert (await take(db, BOB, "task:migrate-auth", shared=True))["granted"]
    assert (await take(db, CAROL, "task:migrate-auth"))["conflicts"]
    await take(db, CAROL, "docs/**")
    assert (await take(db, BOB, "docs/x.md", shared=True))["conflicts"]


async def test_claiming_again_renews_and_release_frees_it(db: Store) -> None:
    first = await take(db, ALICE, "src/a.py", ttl_s=60)
    again = await take(db, ALICE, "src/a.py", ttl_s=3600, reason="longer")
    assert again["granted"][0]["id"] == first["granted"][0]["id"]
    assert again["granted"][0]["until"] > first["granted"][0]["until"]
    released = await claims.release(db, ALICE, cwd=CWD, targets=["src/a.py"])
    assert [r["target"] for r in released["released"]] == ["/repo/src/a.py"]
    assert (await take(db, BOB, "src/a.py"))["granted"]


async def test_only_admins_break_a_claim_and_every_change_is_audited(db: Store) -> None:
    held = await take(db, ALICE, "src/a.py")
    claim_id = held["granted"][0]["id"]
    with pytest.raises(PermissionDenied):
        await claims.release(db, BOB, cwd=CWD, ids=[claim_id])
    await claims.release(db, ADMIN, cwd=CWD, ids=[claim_id])
    log = (await audit.get_audit_log(db, ADMIN))["entries"]
    actions = [(e["action"], e["agent_id"], e["target"]) for e in log]
    assert ("break_claim", "root", "/repo/src/a.py") in actions
    assert ("claim", "alice", "/repo/src/a.py") in actions


async def test_an_expired_claim_blocks_nobody(db: Store) -> None:
    await take(db, ALICE, "src/a.py", ttl_s=1)
    assert (await take(db, BOB, "src/a.py"))["conflicts"]

    def expire(conn: Any) -> None:
        conn.execute("UPDATE claims SET expires_at = ?", (iso(now_utc()),))

    await db.transact(expire)
    assert (await take(db, BOB, "src/a.py"))["granted"]


async def test_a_claim_ends_with_its_process_or_its_token(db: Store) -> None:
    # A process on this host whose pid is gone: its claim ends at once.
    gone = Presence(claims.socket.gethostname(), 2**22 + 12345, "run")
    await take(db, ALICE, "src/a.py", presence=gone)
    assert (await take(db, BOB, "src/a.py"))["granted"]
    # A sub-agent's claim ends when its token is revoked.
    minted = await tokens.authenticate_agent(db, ALICE, agent_id="alice/helper")
    helper = await tokens.resolve_token(db, minted["token"], ALICE)
    hashed = tokens.token_hash(minted["token"])
    await take(db, helper, "src/b.py", token_hash=hashed)
    assert (await take(db, CAROL, "src/b.py"))["conflicts"]
    await tokens.revoke_token(db, ALICE, minted["token"])
    assert (await take(db, CAROL, "src/b.py"))["granted"]


async def test_a_claim_on_another_host_ends_once_its_heartbeat_is_stale(db: Store) -> None:
    elsewhere = Presence("another-host", 4242, "run")
    await take(db, ALICE, "src/a.py", presence=elsewhere)
    assert (await take(db, BOB, "src/a.py"))["conflicts"]  # young: presumed present
    stale = iso(now_utc() - timedelta(seconds=claim_rules.STALE_AFTER[db.engine] + 1))

    def age(conn: Any) -> None:
        conn.execute("UPDATE claims SET renewed_at = ?", (stale,))

    await db.transact(age)
    assert (await take(db, BOB, "src/a.py"))["granted"]


async def test_release_without_targets_releases_all_of_ones_own(db: Store) -> None:
    await take(db, ALICE, "src/a.py", "task:x")
    await take(db, BOB, "docs/**")
    released = await claims.release(db, ALICE, cwd=CWD)
    assert len(released["released"]) == 2
    listed = (await claims.list_claims(db, CAROL, cwd=CWD))["claims"]
    assert [(c["holder"], c["target"]) for c in listed] == [("bob", "/repo/docs/**")]


async def test_a_bad_target_is_refused(db: Store) -> None:
    with pytest.raises(InvalidInput, match="task"):
        await take(db, ALICE, "task:")


async def handoff(db: Store) -> tuple[str, int]:
    session = await create_session(db, ALICE, purpose="hand-off")
    posted = await messages.add_message(
        db, ALICE, session["id"], "please review #12", metadata={"to": ["bob", "carol"]}
    )
    return session["id"], posted["message_id"]


async def test_the_sender_sees_who_acknowledged_and_who_has_not(db: Store) -> None:
    session_id, message_id = await handoff(db)
    await acks.acknowledge(db, BOB, session_id, [message_id])
    message: dict[str, Any] = dict(await messages.get_message(db, ALICE, session_id, message_id))
    assert list(message["acknowledged"]) == ["bob"]
    assert message["unacknowledged"] == ["carol"]
    with pytest.raises(InvalidInput, match="not addressed to you"):
        await acks.acknowledge(db, ALICE, session_id, [message_id])


async def test_the_text_a_model_reads_says_who_acknowledged_a_hand_off(db: Store) -> None:
    session_id, message_id = await handoff(db)
    await acks.acknowledge(db, BOB, session_id, [message_id])
    message = await messages.get_message(db, ALICE, session_id, message_id)
    assert "acked by bob; awaiting carol" in header(message)
    plain = await messages.add_message(db, ALICE, session_id, "no one addressed")
    read = await messages.get_message(db, ALICE, session_id, plain["message_id"])
    assert "acked" not in header(read)


async def test_check_inbox_puts_unacknowledged_hand_offs_first_and_acks_them(db: Store) -> None:
    session_id, message_id = await handoff(db)
    await messages.add_message(db, ALICE, session_id, "chatter after it")
    feed = ChangeFeed(db)
    page = await check_inbox(feed, CAROL, ack=True)
    first = page["sessions"][0]["messages"][0]
    assert first["id"] == message_id
    message: dict[str, Any] = dict(await messages.get_message(db, ALICE, session_id, message_id))
    assert "carol" in message["acknowledged"] and message["unacknowledged"] == ["bob"]


async def test_maintenance_deletes_the_rows_of_ended_claims_only(db: Store) -> None:
    await take(db, ALICE, "src/a.py", ttl_s=1)
    await take(db, BOB, "src/b.py")

    def expire(conn: Any) -> None:
        conn.execute("UPDATE claims SET expires_at = ? WHERE holder = 'alice'", (iso(now_utc()),))

    await db.transact(expire)
    assert await claims.sweep_ended_claims(db) == 1
    assert [r[0] for r in await db.read("SELECT holder FROM claims")] == ["bob"]
