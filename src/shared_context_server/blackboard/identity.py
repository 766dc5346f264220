"""Who an agent is, what it may do, and the one rule for which messages it may read."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from shared_context_server.errors import InvalidInput, PermissionDenied

Permission = Literal["read", "write", "admin"]
IdentitySource = Literal["flag", "env", "client_info", "token", "default"]
Visibility = Literal["public", "private", "agent_only", "admin_only"]

VISIBILITIES: tuple[Visibility, ...] = ("public", "private", "agent_only", "admin_only")
DEFAULT_PERMISSIONS: frozenset[Permission] = frozenset({"read", "write"})

# No whitespace, so ids read well in logs, transcripts and `tail`; printable (below), so
# no control or bidirectional-override character can disguise one id as another.
_NAME = re.compile(r"^[^\s\x00-\x1f\x7f]{1,128}$")


@dataclass(frozen=True)
class Agent:
    """An acting agent: a process's own identity, or a sub-agent's by token."""

    agent_id: str
    agent_type: str = "generic"
    permissions: frozenset[Permission] = field(default=DEFAULT_PERMISSIONS)
    source: IdentitySource = "flag"
    # For a sub-agent acting by token: the process agent the call came through (audit).
    via: str | None = None

    @property
    def is_admin(self) -> bool:
        return "admin" in self.permissions

    def require(self, permission: Permission, action: str) -> None:
        """Raises PermissionDenied unless this agent holds `permission`."""
        if permission not in self.permissions and not self.is_admin:
            raise PermissionDenied(
                f"{action} needs the '{permission}' permission; agent '{self.agent_id}' has "
                f"{sorted(self.permissions)}."
            )


def check_name(value: str, what: str) -> str:
    """An agent id or type: 1-128 printable characters without whitespace (no control,
    format or bidirectional-override characters); around each '/', a name on both sides."""
    if not _NAME.match(value) or not value.isprintable():
        shown = value.encode("ascii", "backslashreplace").decode()
        raise InvalidInput(
            f"{what} must be 1-128 printable characters without spaces, control or "
            f"bidirectional-override characters; got '{shown[:200]}'."
        )
    if "/" in value and "" in value.split("/"):
        raise InvalidInput(f"{what} {value!r} has an empty part; a sub-agent id is 'parent/name'.")
    return value


# The actors the server itself writes audit entries as: no agent may take these names.
RESERVED_IDS = frozenset({"maintenance", "operator"})


def check_process_id(value: str, what: str) -> str:
    """A process's own agent id: a name without '/', which is kept for sub-agents
    (`parent/name`, tokens.py), so no process can be another agent's sub-agent; and not
    one of the server's own actor names."""
    check_name(value, what)
    if "/" in value:
        raise InvalidInput(
            f"{what} may not contain '/': ids with '/' are sub-agents minted by "
            f"authenticate_agent. Use e.g. {value.replace('/', '-')!r}."
        )
    if value in RESERVED_IDS:
        raise InvalidInput(f"{what} {value!r} is the server's own name in the audit log.")
    return value


def in_family(agent_id: str, parent: str) -> bool:
    """`agent_id` is `parent` or one of its sub-agents (`parent/...`)."""
    return agent_id == parent or agent_id.startswith(parent + "/")


# The visibility rule lives in visibility.py (no imports, for the hook); every reader of
# messages takes it from here or there.
from shared_context_server.blackboard.visibility import VISIBLE_SQL, visible_to  # noqa: E402

__all__ = ["VISIBLE_SQL", "visible_to"]

if TYPE_CHECKING:
    from shared_context_server.blackboard.visibility import Reader

    _check: Reader = Agent("a")  # an Agent is what the visibility rule reads


def check_visibility(value: str) -> Visibility:
    if value not in VISIBILITIES:
        raise InvalidInput(f"visibility must be one of {', '.join(VISIBILITIES)}; got {value!r}.")
    return value
