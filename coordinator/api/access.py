"""Who may call what: the one access table, and the ``require`` dependency that enforces it.

Every route (the API under ``/api/v1`` and the compliance pages) either appears in ``ACCESS`` (by
route name) or in ``PUBLIC``; the role-matrix test checks both directions against the app's routes.
API routes authenticate by bearer token, pages by browser session (``require(..., via=...)``). Finer
checks (own party, creator) live in the service functions.

``operator`` is the node role: a node running with an operator token can fetch its party's jobs, report
progress and results, and read the catalog (parties, datasets, the jobs its party is in), and nothing
else: no users, parties, datasets, submissions, approvals, budgets or audit. Admins keep the node
endpoints so nodes set up with an admin token go on working.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.requests import cookie_parser
from starlette.types import Scope as Scope_

from coordinator.accounts import BOOTSTRAP, Principal, authenticate, hash_token
from coordinator.api.deps import ContextDep, FailuresDep, SettingsDep, client_address
from coordinator.api.web_sessions import COOKIE, mark_authenticated
from coordinator.audit.scope import EVERYONE, Scope
from coordinator.errors import Forbidden
from protocols.wire.control import Role

__all__ = ["ACCESS", "PUBLIC", "ROLES", "RoleCheck", "audit_scope", "current_principal", "known_caller", "require",
           "required"]

ADMIN, ANALYST, OPERATOR, AUDITOR = "admin", "analyst", "operator", "auditor"
ROLES = (BOOTSTRAP, ADMIN, ANALYST, OPERATOR, AUDITOR)
USERS = (ADMIN, ANALYST, OPERATOR, AUDITOR)

ACCESS: dict[str, tuple[str, ...]] = {
    "create_user": (BOOTSTRAP, ADMIN),
    "revoke_user": (ADMIN, AUDITOR),  # an admin: users of its own party; an auditor: anyone
    "read_me": USERS,
    "register_party": (ADMIN,),
    "list_parties": USERS,
    "get_party": USERS,
    "register_dataset": (ADMIN,),
    "list_datasets": USERS,
    "get_dataset": USERS,
    "submit_job": (ANALYST, ADMIN),
    "dry_run_job": (ANALYST, ADMIN),
    "list_jobs": USERS,
    "get_job": USERS,
    "approve_job": (ADMIN, AUDITOR),
    "cancel_job": (ANALYST, ADMIN),
    "reject_job": (AUDITOR, ADMIN),  # an auditor, or an admin of an involved party; only while pending
    "retry_job": (ANALYST, ADMIN),  # the job's creator or an admin (approver) of an involved party
    "node_jobs": (ADMIN, OPERATOR),
    "report_progress": (ADMIN, OPERATOR),
    "report_result": (ADMIN, OPERATOR),
    "job_disclosure": USERS,  # what the caller may see of a job's results (coordinator.disclosure)
    "record_export": (ADMIN, OPERATOR),  # a node audits each export of row-level results first
    "job_lineage": (ADMIN, ANALYST, AUDITOR),  # an auditor, or a user of one of the job's parties
    "dataset_lineage": (ADMIN, ANALYST, AUDITOR),  # an auditor, or a user of the owning party
    "list_budgets": (AUDITOR, ADMIN),
    "audit_events": (AUDITOR, ADMIN),  # an admin sees its own party's events only (audit.review.Scope)
    "audit_export": (AUDITOR,),
    "audit_head": (AUDITOR, ADMIN),
    # compliance pages (coordinator.api.routes.audit_pages), browser session instead of bearer token
    "audit_page": (AUDITOR,),
    "audit_job_page": (AUDITOR,),
    "audit_page_export": (AUDITOR,),
    # lineage and the ledger cross-check (coordinator.api.routes.lineage_pages), browser session
    "lineage_job_page": (AUDITOR,),
    "lineage_dataset_page": (AUDITOR,),
    "crosscheck_page": (AUDITOR,),
    "crosscheck_submit": (AUDITOR,),
    # compliance console (coordinator.api.routes.console_pages): same sign-in as the audit pages. The service
    # (coordinator.console) also serves party admins (jobs waiting on "party:<their party>"), but the login
    # form admits auditors only, so the pages are the auditor's
    "console_approvals_page": (AUDITOR,),
    "console_job_page": (AUDITOR,),
    "console_approve_submit": (AUDITOR,),
    "console_reject_submit": (AUDITOR,),
    "console_policy_page": (AUDITOR,),
    # a party user's own jobs and outputs (desensitised to the user's clearance), same sign-in
    "console_my_jobs_page": (ADMIN, ANALYST, OPERATOR, AUDITOR),
    "console_my_job_page": (ADMIN, ANALYST, OPERATOR, AUDITOR),
    # compliance reports (coordinator.api.routes.report_pages), browser session; refusals are audited
    "report_job_page": (AUDITOR,),
    "report_job_pdf": (AUDITOR,),
    "report_period_page": (AUDITOR,),
    "report_period_pdf": (AUDITOR,),
}
PUBLIC = frozenset({"healthz", "audit_public_key", "login_page", "login_submit", "logout_submit"})

RoleCheck = Callable[[Principal], Awaitable[Principal]]
"""A dependency admitting only some roles (``require``): async, as it only compares a role."""

_bearer = HTTPBearer(auto_error=False, description="API token, or the bootstrap token (creates users only)")


async def current_principal(
    request: Request,
    ctx: ContextDep,
    settings: SettingsDep,
    failures: FailuresDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The authenticated caller (``Unauthorized`` if none; failures are audited through ``failures``).

    A token read from the store in the last seconds (``ctx.principals``) is answered here without a
    thread-pool hop; anything else (bootstrap, unknown, expired) goes through ``accounts.authenticate``.
    """
    token = credentials.credentials if credentials else None
    cached = ctx.principals.get(hash_token(token), ctx.clock()) if token else None
    if cached is not None:
        principal = Principal.of(cached)
    else:
        bootstrap = settings.bootstrap_token.get_secret_value() if settings.bootstrap_token else None
        principal = await run_in_threadpool(authenticate, ctx, token, bootstrap, client=client_address(request),
                                            failures=failures)
    request.state.principal = principal  # so a refused write is audited under its caller (error_catalog)
    mark_authenticated(request)
    return principal


def known_caller(app: Any, scope: Scope_) -> bool:
    """Whether every credential ``scope``'s request carries is one this app authenticated in the last minutes.

    For ``middleware.ClientRateLimit``: such a request needs no token of the failed-authentication
    limit while it waits to be served (a 401 it still gets is charged). Known: the bootstrap token
    (constant-time compare), an API token whose user authenticated in the last minutes
    (``ctx.principals.known``), or a browser session this process resolved in the last minutes
    (``WebSessions.known``, from memory: the middleware reads no database) whose token did. A request
    with one known credential beside an unknown one (a known token beside a guessed session cookie: the
    pages authenticate the cookie) is unknown, as is a second ``Authorization`` or ``Cookie`` header, a
    login, and anything else: those go through the limit as before.
    """
    raw = scope.get("headers") or ()
    auths = [value for name, value in raw if name == b"authorization"]
    cookies = [value for name, value in raw if name == b"cookie"]
    if len(auths) > 1 or len(cookies) > 1 or scope.get("path", "").endswith("/login"):
        return False  # the app authenticates one header (and a login its form): only one credential counts
    ctx = app.state.context
    session_id = cookie_parser(cookies[0].decode("latin-1")).get(COOKIE) if cookies else None
    if not auths and session_id is None:
        return False
    if auths and not _known_bearer(app, auths[0].decode("latin-1")):
        return False
    if session_id is None:
        return True
    sessions = getattr(app.state, "web_sessions", None)
    token_hash = sessions.known(session_id) if sessions is not None else None  # memory only: no store I/O here
    return token_hash is not None and ctx.principals.known(token_hash, ctx.clock())


def _known_bearer(app: Any, auth: str) -> bool:
    """Whether an ``Authorization`` value is a bearer token this app knows (see :func:`known_caller`)."""
    if auth[:7].lower() != "bearer ":
        return False
    token = auth[7:].strip()
    bootstrap = app.state.settings.bootstrap_token
    if bootstrap is not None and hmac.compare_digest(token.encode(), bootstrap.get_secret_value().encode()):
        return True
    ctx = app.state.context
    return bool(token) and ctx.principals.known(hash_token(token), ctx.clock())


def require(*roles: str, via: Callable[..., Principal] = current_principal) -> RoleCheck:
    """A dependency admitting only callers whose role (or ``bootstrap``) is in ``roles``.

    Args:
        roles: role names from ``ROLES``.
        via: the dependency that authenticates the caller (bearer token by default).
    """
    allowed = frozenset(roles)

    async def dependency(principal: Principal = Depends(via)) -> Principal:  # noqa: B008 - ``via`` is a local
        # async: a role check needs no thread-pool hop (FastAPI runs sync dependencies in its thread pool)
        if principal.label not in allowed:
            raise Forbidden(f"role {principal.label!r} may not call this endpoint (allowed: {', '.join(roles)})")
        return principal

    dependency.allowed_roles = allowed  # type: ignore[attr-defined]  # read by the role-matrix test
    return dependency


def required(route_name: str) -> RoleCheck:
    """``require`` with the roles the access table gives ``route_name``."""
    return require(*ACCESS[route_name])


def audit_scope(principal: Principal) -> Scope:
    """What ``principal`` may read of the audit log: everything for an auditor, else its own party's events."""
    return EVERYONE if principal.role == Role.AUDITOR else Scope(party=principal.party)
