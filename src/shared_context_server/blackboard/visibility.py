"""The visibility rule, the only place it is written, with no imports: the Claude Code
hook (hook.py) reads the inbox with it in a process that must start fast.

Every read of messages (get, list, search, counts, resources, notifications, long-poll,
inbox, export) puts VISIBLE_SQL on the messages table aliased `m`, with the parameters
from `visible_to`.
"""

from __future__ import annotations

# Not `typing.TYPE_CHECKING`: importing typing costs every hook run start-up time it
# cannot spare (docs/PERFORMANCE.md); mypy treats any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    class Reader(Protocol):
        """Who reads: an Agent (identity.py), or the hook's own light record of one."""

        @property
        def agent_id(self) -> str: ...

        @property
        def agent_type(self) -> str: ...

        @property
        def is_admin(self) -> bool: ...


VISIBLE_SQL = (
    "(m.visibility = 'public'"
    " OR (m.visibility = 'private' AND m.sender = ?)"
    " OR (m.visibility = 'agent_only' AND m.sender_type = ?)"
    " OR ?)"
)


def visible_to(reader: Reader) -> tuple[Any, ...]:
    """Parameters of VISIBLE_SQL for `reader`: admins read everything."""
    # A bool, not 1/0: SQLite stores it as 1/0, PostgreSQL takes only a boolean after OR.
    return (reader.agent_id, reader.agent_type, reader.is_admin)
