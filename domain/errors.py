"""Domain errors: each carries a stable code that the API turns into `extensions.code`."""

from __future__ import annotations


class DomainError(Exception):
    code = "BAD_USER_INPUT"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(DomainError):
    code = "NOT_FOUND"


class Merged(NotFound):
    """A retired record (merged into another) for a caller who may see the kept record:
    NOT_FOUND, with `extensions.mergedInto` naming it."""

    def __init__(self, message: str, merged_into: str) -> None:
        super().__init__(message)
        self.extra = {"mergedInto": merged_into}


class BadInput(DomainError):
    code = "BAD_USER_INPUT"


class Conflict(DomainError):
    code = "CONFLICT"


class Forbidden(DomainError):
    code = "FORBIDDEN"


class ReasonRequired(Forbidden):
    """Health fields of a patient outside the caller's own care, with no stated purpose open:
    FORBIDDEN with `extensions.reason = REASON_REQUIRED` (statePurpose opens them)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.extra = {"reason": "REASON_REQUIRED"}
