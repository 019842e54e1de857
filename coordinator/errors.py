"""Coordinator domain errors. Services raise these; ``coordinator.api.error_catalog`` maps them to HTTP.

Tree::

    CoordinatorError
    ├── BadRequest        the request is well-formed JSON but makes no sense (400)
    ├── Unauthorized      no credentials, or credentials we do not recognise (401)
    ├── Forbidden         authenticated, but not allowed to do this (403)
    ├── NotFound          an id or name that does not exist (404)
    └── Conflict          the object exists, or is in a state that forbids this (409)
        ├── BudgetExceeded    an ε charge would overspend its dataset pair's budget (409)
        └── PolicyDenied      the policy (now) denies the job; one entry per denying rule (409)

Each error names the offending ``field`` when there is one and may suggest a ``fix``.
"""

from __future__ import annotations

__all__ = ["BadRequest", "BudgetExceeded", "Conflict", "CoordinatorError", "Forbidden", "NotFound", "PolicyDenied",
           "Unauthorized"]


class CoordinatorError(Exception):
    """Root of the coordinator's domain errors."""

    def __init__(self, message: str, *, field: str | None = None, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.fix = fix
        self.audited = False  # set where the refusal was already written to the audit log as its own event


class BadRequest(CoordinatorError):
    """The request is syntactically valid but semantically wrong."""


class Unauthorized(CoordinatorError):
    """Missing or unrecognised credentials."""


class Forbidden(CoordinatorError):
    """The caller may not perform this action."""


class NotFound(CoordinatorError):
    """The named object does not exist (or is not visible to the caller)."""


class Conflict(CoordinatorError):
    """The object already exists or is in a state that forbids the action."""


class BudgetExceeded(Conflict):
    """A store refused an ε charge: the pair has already spent ``spent`` of its ``limit``."""

    def __init__(self, message: str, *, spent: float, limit: float, fix: str | None = None) -> None:
        super().__init__(message, field="params.epsilon", fix=fix)
        self.spent = spent
        self.limit = limit


class PolicyDenied(Conflict):
    """The policy denies the job (e.g. a retry under a newer policy or an exhausted ε budget).

    ``denials`` holds one ``(rule_id, field, message, fix)`` per denying rule; the API lists each.
    """

    def __init__(self, message: str, *, denials: list[tuple[str, str | None, str, str | None]]) -> None:
        super().__init__(message, field="policy", fix="; ".join(dict.fromkeys(d[3] for d in denials if d[3])) or None)
        self.denials = denials
