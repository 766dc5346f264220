"""Compact text renderings of results: what a model reads, most important first.

Structured content carries the same data for programs; the text is not JSON so the model
does not pay for the keys twice. Messages read as message_text.py renders them: nothing a
client writes reaches column 0, where only this module's lines start.
"""

from __future__ import annotations

import json
from typing import Any

from shared_context_server.message_text import message_text, name, one_line


def _meta(metadata: dict[str, Any] | None) -> str:
    if not metadata:
        return ""
    return " " + json.dumps(metadata, separators=(",", ":"))


def session_line(session: dict[str, Any]) -> str:
    purpose = session["purpose"]
    if len(purpose) > 100:
        purpose = purpose[:99] + "…"
    who = name(session["created_by"])
    return f"{session['id']} [{session['status']}] by {who}: {one_line(purpose)}"


def created_session(data: dict[str, Any]) -> str:
    return f"Created session {data['session_id']} (active): {one_line(data['purpose'])}"


def session_detail(data: dict[str, Any]) -> str:
    session = data["session"]
    lines = [
        session_line(session),
        f"created {session['created_at']}, updated {session['updated_at']}"
        + _meta(session["metadata"]),
    ]
    if len(session["purpose"]) > 100:
        lines.append("purpose: " + one_line(session["purpose"]))
    count = data["message_count"]
    if count:
        lines.append(
            f"{count} message{'s' if count != 1 else ''} you can see, from "
            f"{', '.join(map(name, data['participants']))}; last at {data['last_message_at']}"
        )
    else:
        lines.append("no messages you can see yet")
    return "\n".join(lines)


def session_page(data: dict[str, Any]) -> str:
    sessions = data["sessions"]
    lines = [f"{len(sessions)} session{'s' if len(sessions) != 1 else ''}"]
    lines += [session_line(s) for s in sessions]
    if data["next_cursor"]:
        lines.append(f"more: cursor={data['next_cursor']}")
    return "\n".join(lines)


def updated_session(data: dict[str, Any]) -> str:
    return "Updated: " + session_line(data["session"])


def posted_message(data: dict[str, Any]) -> str:
    return f"Posted #{data['message_id']} to {data['session_id']} at {data['created_at']}"


def one_message(data: dict[str, Any]) -> str:
    return message_text(data["message"])


def message_page(data: dict[str, Any]) -> str:
    messages = data["messages"]
    if not messages:
        return "No messages."
    first, last = messages[0]["id"], messages[-1]["id"]
    head = f"{len(messages)} message{'s' if len(messages) != 1 else ''} (#{first}..#{last})"
    if data["has_more"]:
        head += "; more exist beyond this page (page with before_id or after_id)"
    return "\n".join([head, *(message_text(m) for m in messages)])


def waited_messages(data: dict[str, Any]) -> str:
    if not data["messages"]:
        return "No new messages before the timeout; call again with the same after_id."
    return message_page(data)


def inbox(data: dict[str, Any]) -> str:
    if not data["sessions"]:
        return "Nothing new for you."
    count = sum(len(group["messages"]) for group in data["sessions"])
    head = f"{count} new" + (f", {data['for_you']} for you" if data["for_you"] else "")
    if data["has_more"]:
        head += "; more wait: call check_inbox again"
    parts = [head]
    for group in data["sessions"]:
        parts.append(f"== {group['session_id']}: {one_line(group['purpose'])}")
        for message in group["messages"]:
            mark = "[for you] " if message["for_you"] else ""
            parts.append(mark + message_text(message))
    return "\n".join(parts)


def claimed(data: dict[str, Any]) -> str:
    lines = [
        f"Claimed #{c['id']} {c['target']}{' (shared)' if c['shared'] else ''} until {c['until']}"
        for c in data["granted"]
    ]
    if data["conflicts"] and not data["granted"]:
        lines.append("Nothing claimed: every target stays free (all or nothing).")
    for c in data["conflicts"]:
        why = f" ({c['reason']})" if c["reason"] else ""
        lines.append(
            f"Held: {c['target']} by {c['held_by']} as {c['claim']}{why} until {c['until']}; "
            "message them (add_message to) or wait."
        )
    return "\n".join(lines)


def released(data: dict[str, Any]) -> str:
    if not data["released"]:
        return "Nothing to release."
    return "\n".join(f"Released #{c['id']} {c['target']} ({c['holder']})" for c in data["released"])


def claim_list(data: dict[str, Any]) -> str:
    if not data["claims"]:
        return "No claims."
    lines = []
    for c in data["claims"]:
        why = f": {c['reason']}" if c["reason"] else ""
        shared = " shared" if c["shared"] else ""
        lines.append(f"#{c['id']} {c['target']} by {c['holder']}{shared} until {c['until']}{why}")
    if data["has_more"]:
        lines.append("More: narrow with prefix or holder.")
    return "\n".join(lines)


def acknowledged(data: dict[str, Any]) -> str:
    ids = ", ".join(f"#{i}" for i in data["acknowledged"])
    return f"Acknowledged {ids} in {data['session_id']}."


def identity(data: dict[str, Any]) -> str:
    return (
        f"You are {data['agent_id']} (type {data['agent_type']}, "
        f"permissions {', '.join(data['permissions'])}; identity from {data['identity_source']})."
        + (f" Acting through {data['via']}'s process." if data.get("via") else "")
        + (f"\nDatabase: {data['database_path']}")
        + ("\nSettings: " + _pairs(data["settings"]) if data.get("settings") else "")
    )


def _pairs(values: dict[str, Any]) -> str:
    return ", ".join(
        f"{k} {','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in values.items()
    )


def token(data: dict[str, Any]) -> str:
    return (
        f"Token for {data['agent_id']} (type {data['agent_type']}, "
        f"{', '.join(data['permissions'])}; expires {data['expires_at']}). Pass it as "
        f"agent_token on every call the sub-agent makes:\n{data['token']}"
    )


def revoked(data: dict[str, Any]) -> str:
    return "Revoked." if data["revoked"] else "Nothing to revoke (unknown, expired or revoked)."


def audit_page(data: dict[str, Any]) -> str:
    lines = []
    for e in data["entries"]:
        who = f"{e['agent_id']} via {e['via']}" if e.get("via") else e["agent_id"]
        parts = [e["ts"], who, e["action"], e["session_id"], e["target"], "->", e["result"]]
        detail = f" ({e['detail']})" if e.get("detail") else ""
        lines.append(" ".join(str(p) for p in parts if p) + detail)
    if not lines:
        lines.append("No audit entries.")
    if data["next_cursor"]:
        lines.append(f"More: cursor={data['next_cursor']}")
    return "\n".join(lines)


def error(data: dict[str, Any]) -> str:
    return f"{data['code']}: {data['message']}"


def search_results(data: dict[str, Any]) -> str:
    results = data["results"]
    head = f"{len(results)} match{'es' if len(results) != 1 else ''} ({data['search_time_ms']} ms)"
    lines = [f"[{r['score']}] " + message_text(r["message"]) for r in results]
    return "\n".join([head, *lines])


def _scope(data: dict[str, Any]) -> str:
    return f"session {data['session_id']}" if data["session_id"] else "global"


def _expiry(data: dict[str, Any]) -> str:
    return f", expires {data['expires_at']}" if data["expires_at"] else ""


def stored_memory(data: dict[str, Any]) -> str:
    return f"Stored {data['key']} ({_scope(data)}, {data['size']} bytes{_expiry(data)})"


def memory_entry(data: dict[str, Any]) -> str:
    value = json.dumps(data["value"], ensure_ascii=False)
    return f"{data['key']} ({_scope(data)}, updated {data['updated_at']}{_expiry(data)})\n{value}"


def memory_page(data: dict[str, Any]) -> str:
    entries = data["entries"]
    lines = [f"{len(entries)} key{'s' if len(entries) != 1 else ''}"]
    lines += [f"{e['key']} ({_scope(e)}, {e['size']} bytes{_expiry(e)})" for e in entries]
    if data["next_cursor"]:
        lines.append(f"more: cursor={data['next_cursor']}")
    return "\n".join(lines)


def deleted(data: dict[str, Any]) -> str:
    return "Deleted." if data["deleted"] else "Nothing to delete (no such live key)."


# The records toolset (server/records_tools.py).


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def records_table(data: dict[str, Any]) -> str:
    columns = []
    for c in data["columns"]:
        flags = [k.replace("_", " ") for k in ("primary_key", "not_null", "unique") if c.get(k)]
        columns.append(f"{c['name']} {c['type']}" + (f" ({', '.join(flags)})" if flags else ""))
    return f"{data['table_name']}: " + ", ".join(columns)


def records_inserted(data: dict[str, Any]) -> str:
    return f"Inserted row {data['id']}: {_compact_json(data['record'])}"


def records_page(data: dict[str, Any]) -> str:
    records = data["records"]
    head = f"{len(records)} record{'s' if len(records) != 1 else ''}"
    if data["has_more"]:
        head += "; more match (raise offset by this count for the next page)"
    return "\n".join([head, *(_compact_json(record) for record in records)])


def records_updated(data: dict[str, Any]) -> str:
    return f"Updated {data['count']} row{'s' if data['count'] != 1 else ''}."


def records_deleted(data: dict[str, Any]) -> str:
    return f"Deleted {data['count']} row{'s' if data['count'] != 1 else ''}."


def records_tables(data: dict[str, Any]) -> str:
    if not data["tables"]:
        return "No shared tables yet; create_table makes one."
    return "\n".join(
        f"{t['table_name']} ({t['row_count']} row{'' if t['row_count'] == 1 else 's'})"
        for t in data["tables"]
    )


def records_raw(data: dict[str, Any]) -> str:
    head = f"{data['row_count']} row{'s' if data['row_count'] != 1 else ''}"
    if data["truncated"]:
        head += " (truncated: add a LIMIT or narrow the query)"
    if data["changes"]:
        head += f"; {data['changes']} changed"
    lines = [head]
    if data["columns"]:
        lines.append("columns: " + ", ".join(data["columns"]))
    lines += [_compact_json(row) for row in data["rows"]]
    return "\n".join(lines)
