"""`execute_raw_query` for agents: permission, bound parameters, and a page of rows.

The domain's half of a raw query; the engine's half (what a statement may touch, and running
it confined) is `storage/<engine>/raw.py`, reached through `store.raw`. Apart from rows.py
because it shares nothing with the table tools: no table is loaded, no filter built.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from shared_context_server.blackboard.identity import Agent
from shared_context_server.blackboard.limits import DEFAULT_LIMITS, Limits, check_text
from shared_context_server.blackboard.records.location import RecordsStore
from shared_context_server.blackboard.records.schema import INT64, decode
from shared_context_server.errors import InvalidInput
from shared_context_server.storage.seam.records import WriteRefused


def _raw_param(value: Any, index: int, native_booleans: bool) -> Any:
    if isinstance(value, bool):
        return value if native_booleans else int(value)
    if isinstance(value, int) and not INT64[0] <= value <= INT64[1]:
        raise InvalidInput(f"params[{index}] is outside 64-bit integers.", argument="params")
    if value is None or isinstance(value, str | int | float):
        return value
    raise InvalidInput(
        f"params[{index}] must be text, a number, true/false or null; "
        "pass JSON as text (json('...') in SQL).",
        argument="params",
    )


async def execute_raw_query(
    store: RecordsStore,
    agent: Agent,
    query: str,
    params: Sequence[Any] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> dict[str, Any]:
    """Run one statement over the shared tables; columns, rows (capped), changes.

    Writes only with --allow-raw-writes and the write permission. Raises InvalidInput
    (forbidden or malformed statement), NotFound, Conflict, LimitExceeded, DatabaseBusy.
    """
    agent.require("read", "execute_raw_query")
    if not query.strip():
        raise InvalidInput("query is empty; send one SQL statement.", argument="query")
    check_text(query, "query", limits.max_content_chars, "Send a shorter statement.")
    native = store.dialect.native_booleans
    bound = [_raw_param(value, i, native) for i, value in enumerate(params or ())]
    raw = store.raw
    writes = raw.allow_writes and ("write" in agent.permissions or agent.is_admin)
    try:
        outcome = await raw.run(query, bound, writes=writes)
    except WriteRefused:
        if raw.allow_writes:  # the server allows raw writes; this agent lacks the permission
            agent.require("write", "a raw query that changes rows")
        raise
    fetched = outcome.fetched
    if writes and fetched.changes:
        await store.record_raw_write(agent, ",".join(sorted(outcome.written)), fetched.changes)
    truncated = len(fetched.rows) > raw.max_rows
    rows: list[list[Any]] = []
    chars = 0
    for row in fetched.rows[: raw.max_rows]:
        values = [decode(None, value) for value in row]
        chars += len(json.dumps(values, ensure_ascii=False, default=str))
        if rows and chars > limits.max_page_chars:
            truncated = True
            break
        rows.append(values)
    return {
        "columns": fetched.columns,
        "rows": rows,
        "row_count": len(rows),
        "changes": fetched.changes,
        "truncated": truncated,
    }
