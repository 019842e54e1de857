"""The compliance web pages: sign in, review the audit log and one job's events, download the export.

Pages live outside ``/api/v1`` and outside the OpenAPI schema (they return HTML, not API models), but
are gated by the same access table (``ACCESS``/``PUBLIC``), with the browser session in place of the
bearer token. Errors raised while handling a page (including in its dependencies) become HTML pages
with the same status codes: 401 shows the login form, which returns the user to the page afterwards.

Who may view: ``auditor`` only (the access table). The pages still list events through the same scope as
the API (``access.audit_scope``), so if the table ever admits a party's user, it sees only events about
its own party. The chain is verified incrementally (``coordinator.audit.review``): a view re-hashes only
events appended since the last view; ``?verify=full`` re-hashes every event.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Cookie, Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.routing import APIRoute

from coordinator import jobs
from coordinator.accounts import Principal
from coordinator.api import audit_html
from coordinator.api.access import ACCESS, RoleCheck, audit_scope, require
from coordinator.api.deps import ContextDep, FailuresDep, SettingsDep, VerifiedDep, client_address
from coordinator.api.web_sessions import (
    ABSOLUTE,
    COOKIE,
    LoginAttempt,
    WebSessions,
    get_sessions,
    login,
    logout,
    session_principal,
)
from coordinator.audit import log as audit_log
from coordinator.audit.review import EventFilter, review
from coordinator.errors import BadRequest, CoordinatorError, Forbidden, Unauthorized
from coordinator.store import MAX_DB_INT
from protocols.wire.control import Role

__all__ = ["install", "router"]

MAX_FILTER_CHARS = 200
MAX_LOGIN_BYTES = 4096
FilterText = Annotated[str, Query(max_length=MAX_FILTER_CHARS)]
PageNumber = Annotated[int, Query(ge=1, le=MAX_DB_INT)]
PerPage = Annotated[int, Query(ge=10, le=500)]
Verify = Annotated[Literal["", "full"], Query()]


def _status(exc: CoordinatorError) -> int:
    return {Unauthorized: 401, Forbidden: 403, BadRequest: 400}.get(type(exc), 404)


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=audit_html.SECURITY_HEADERS)


def _error_response(request: Request, exc: Exception) -> HTMLResponse:
    if isinstance(exc, RequestValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _html(audit_html.error_page(422, f"{where}: {first.get('msg', 'invalid value')}"), 422)
    assert isinstance(exc, CoordinatorError)
    status = _status(exc)
    if status == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return _html(audit_html.login_page(exc.message, _safe_next(target), error=True), 401)
    return _html(audit_html.error_page(status, exc.message, exc.fix), status)


class HtmlErrorRoute(APIRoute):
    """A route whose domain and validation errors are rendered as HTML pages, not JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap the default handler (which also resolves dependencies) to catch errors."""
        handler = super().get_route_handler()

        async def html_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except (CoordinatorError, RequestValidationError) as exc:
                return _error_response(request, exc)

        return html_errors


router = APIRouter(route_class=HtmlErrorRoute, include_in_schema=False, tags=["pages"])


def page_gate(route_name: str) -> RoleCheck:
    """``require`` with the access table's roles for ``route_name``, authenticated by the browser session."""
    return require(*ACCESS[route_name], via=session_principal)


def _safe_next(target: str) -> str:
    """Where to go after login: a path under /audit or /console on this site, else /audit (no open redirect)."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(("/audit", "/console")) or "\\" in target:
        return "/audit"
    return target


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host", "")


@router.get("/login", response_class=HTMLResponse)
def login_page(target: Annotated[str, Query(alias="next", max_length=MAX_FILTER_CHARS)] = "/audit") -> HTMLResponse:
    """The login form (paste an API token)."""
    return _html(audit_html.login_page("Paste your API token to sign in.", _safe_next(target)))


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_LOGIN_BYTES:
        raise BadRequest("login form too large", field="form")
    fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=4)
    return {k: v[0] for k, v in fields.items()}


@router.post("/login", response_class=HTMLResponse)
async def login_submit(request: Request, ctx: ContextDep, settings: SettingsDep, failures: FailuresDep) -> Response:
    """Check the pasted token; on success set the session cookie and go to the requested page."""
    if not _same_origin(request):
        raise Forbidden("cross-site login refused", field="header.origin")
    form = await _form(request)
    bootstrap = settings.bootstrap_token.get_secret_value() if settings.bootstrap_token else None
    allowed = tuple(dict.fromkeys((*ACCESS["audit_page"], *ACCESS["console_my_jobs_page"])))
    user, session_id = login(ctx, get_sessions(request), form.get("token", ""), bootstrap, allowed,
                             LoginAttempt(client_address(request), failures))
    target = _safe_next(form.get("next", "/audit"))
    if user.role != Role.AUDITOR and not target.startswith("/console/my-jobs"):
        target = "/console/my-jobs"  # the audit log and the console are the compliance officer's
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, session_id, max_age=int(ABSOLUTE.total_seconds()), path="/", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https" or settings.insecure_http)
    return response


@router.post("/logout", response_class=HTMLResponse)
def logout_submit(
    request: Request, ctx: ContextDep, tandem_session: Annotated[str | None, Cookie()] = None
) -> Response:
    """End the session and clear the cookie."""
    logout(ctx, get_sessions(request), tandem_session)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


def _job_filter(job: str) -> int | None:
    job = job.strip()
    if not job:
        return None
    if not job.isdigit() or not 1 <= int(job) <= MAX_DB_INT:
        raise BadRequest(f"job id must be a positive whole number, not {job!r}", field="query.job")
    return int(job)


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    ctx: ContextDep, failures: FailuresDep, verified: VerifiedDep,
    user: Annotated[Principal, Depends(page_gate("audit_page"))],
    action: FilterText = "", actor: FilterText = "",
    obj: Annotated[str, Query(alias="object", max_length=MAX_FILTER_CHARS)] = "",
    job: FilterText = "", page: PageNumber = 1, per_page: PerPage = 50, verify: Verify = "",
) -> HTMLResponse:
    """The audit log: chain status, signed head, filters and one page of events."""
    flt = EventFilter(action.strip(), actor.strip(), obj.strip(), _job_filter(job))
    failures.flush(ctx)
    view = review(ctx, flt, page, per_page, scope=audit_scope(user), verified=verified, full=verify == "full")
    return _html(audit_html.review_page(view, flt, user.name))


@router.get("/audit/jobs/{job_id}", response_class=HTMLResponse)
def audit_job_page(
    job_id: Annotated[int, Path(ge=1, le=MAX_DB_INT)], ctx: ContextDep, failures: FailuresDep,
    verified: VerifiedDep, user: Annotated[Principal, Depends(page_gate("audit_job_page"))],
    action: FilterText = "", actor: FilterText = "", page: PageNumber = 1, per_page: PerPage = 50,
    verify: Verify = "",
) -> HTMLResponse:
    """One job: its terms, status and approvals, the chain status, and its events."""
    record = jobs.get_job(ctx, user, job_id)
    flt = EventFilter(action.strip(), actor.strip(), job_id=job_id)
    failures.flush(ctx)
    view = review(ctx, flt, page, per_page, scope=audit_scope(user), verified=verified, full=verify == "full")
    return _html(audit_html.review_page(view, flt, user.name, record))


@router.get("/audit/export.jsonl", response_class=StreamingResponse)
def audit_page_export(
    ctx: ContextDep, failures: FailuresDep, user: Annotated[Principal, Depends(page_gate("audit_page_export"))]
) -> StreamingResponse:
    """The JSONL export (as ``GET /api/v1/audit/export``), for the signed-in browser."""
    failures.flush(ctx)
    return StreamingResponse(audit_log.export(ctx, user.actor), media_type="application/x-ndjson",
                             headers={"Content-Disposition": 'attachment; filename="audit.jsonl"',
                                      **audit_html.SECURITY_HEADERS})


def install(app: FastAPI) -> None:
    """Mount the pages on ``app`` and give it the session registry over its store (``app.state.context``)."""
    app.state.web_sessions = WebSessions(app.state.context.store)
    app.include_router(router)
