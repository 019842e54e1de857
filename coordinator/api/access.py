"""Who may call what: the one access table, and the ``require`` dependency that enforces it.

Every route (the API under ``/api/v1`` and the compliance pages) either appears in ``ACCESS`` (by
route name) or in ``PUBLIC``; the role-matrix test checks both directions against the app's routes.
API routes authenticate by bearer token, pages by browser session (``require(..., via=...)``). Finer
checks (own party, creator) live in the service functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from coordinator.accounts import BOOTSTRAP, Principal, authenticate
from coordinator.api.deps import ContextDep, SettingsDep
from coordinator.errors import Forbidden

__all__ = ["ACCESS", "PUBLIC", "ROLES", "current_principal", "require", "required"]

ADMIN, ANALYST, OPERATOR, AUDITOR = "admin", "analyst", "operator", "auditor"
ROLES = (BOOTSTRAP, ADMIN, ANALYST, OPERATOR, AUDITOR)
USERS = (ADMIN, ANALYST, OPERATOR, AUDITOR)

ACCESS: dict[str, tuple[str, ...]] = {
    "create_user": (BOOTSTRAP, ADMIN),
    "read_me": USERS,
    "register_party": (ADMIN,),
    "list_parties": USERS,
    "get_party": USERS,
    "register_dataset": (ADMIN,),
    "list_datasets": USERS,
    "get_dataset": USERS,
    "submit_job": (ANALYST, ADMIN),
    "list_jobs": USERS,
    "get_job": USERS,
    "approve_job": (ADMIN, AUDITOR),
    "cancel_job": (ANALYST, ADMIN),
    "retry_job": (ANALYST, ADMIN),  # the job's creator or an admin (approver) of an involved party
    "node_jobs": (ADMIN, OPERATOR),
    "report_progress": (ADMIN, OPERATOR),
    "report_result": (ADMIN, OPERATOR),
    "list_budgets": (AUDITOR, ADMIN),
    "audit_events": (AUDITOR, ADMIN),
    "audit_export": (AUDITOR,),
    "audit_head": (AUDITOR, ADMIN),
    # compliance pages (coordinator.api.routes.audit_pages), browser session instead of bearer token
    "audit_page": (AUDITOR,),
    "audit_job_page": (AUDITOR,),
    "audit_page_export": (AUDITOR,),
}
PUBLIC = frozenset({"healthz", "audit_public_key", "login_page", "login_submit", "logout_submit"})

_bearer = HTTPBearer(auto_error=False, description="API token, or the bootstrap token (creates users only)")


def current_principal(
    ctx: ContextDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The authenticated caller (``Unauthorized`` if none)."""
    bootstrap = settings.bootstrap_token.get_secret_value() if settings.bootstrap_token else None
    return authenticate(ctx, credentials.credentials if credentials else None, bootstrap)


def require(*roles: str, via: Callable[..., Principal] = current_principal) -> Callable[[Principal], Principal]:
    """A dependency admitting only callers whose role (or ``bootstrap``) is in ``roles``.

    Args:
        roles: role names from ``ROLES``.
        via: the dependency that authenticates the caller (bearer token by default).
    """
    allowed = frozenset(roles)

    def dependency(principal: Principal = Depends(via)) -> Principal:  # noqa: B008 - ``via`` is a local
        if principal.label not in allowed:
            raise Forbidden(f"role {principal.label!r} may not call this endpoint (allowed: {', '.join(roles)})")
        return principal

    dependency.allowed_roles = allowed  # type: ignore[attr-defined]  # read by the role-matrix test
    return dependency


def required(route_name: str) -> Callable[[Principal], Principal]:
    """``require`` with the roles the access table gives ``route_name``."""
    return require(*ACCESS[route_name])
