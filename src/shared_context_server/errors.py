"""The errors an agent can act on, each with a stable code.

The MCP dispatch boundary turns these into `isError` results whose structured content is
`{"code": ..., "message": ...}`; anything else that escapes is a bug and is logged.
"""

from __future__ import annotations

from typing import Any


class BlackboardError(Exception):
    """Base of every error a caller can fix; `message` says what to do."""

    code = "INVALID_INPUT"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            out["details"] = self.details
        return out


class InvalidInput(BlackboardError):
    code = "INVALID_INPUT"


class LimitExceeded(BlackboardError):
    code = "LIMIT_EXCEEDED"


class SessionNotFound(BlackboardError):
    code = "SESSION_NOT_FOUND"


class NotFound(BlackboardError):
    code = "NOT_FOUND"


class PermissionDenied(BlackboardError):
    code = "PERMISSION_DENIED"


class Conflict(BlackboardError):
    code = "CONFLICT"


class DatabaseBusy(BlackboardError):
    code = "DATABASE_BUSY"


class TokenInvalid(BlackboardError):
    code = "TOKEN_INVALID"


class StorageFull(BlackboardError):
    code = "STORAGE_FULL"


class StorageReadOnly(BlackboardError):
    code = "STORAGE_READ_ONLY"


class StorageDamaged(BlackboardError):
    code = "STORAGE_DAMAGED"


class StorageReplaced(BlackboardError):
    """The file this process holds is no longer the file at its path: writes would vanish."""

    code = "STORAGE_REPLACED"


class SchemaTooNew(BlackboardError):
    """Another, newer release migrated the file while this process was running."""

    code = "SCHEMA_TOO_NEW"


class StorageError(Exception):
    """The database cannot be used at all (wrong journal mode, newer schema); fatal at start."""
