"""The compliance console pages: the approvals inbox, a job's approval page (approve, reject), the policy.

``/console/approvals`` lists what waits on the signed-in user's signature; ``/console/jobs/{id}`` shows a
job's terms in words, its datasets and fields with their levels, the policy decision rule by rule, the
digest to sign and who has signed, with a form to paste a signature made outside the browser and a form
to reject the job with a reason; ``/console/policy`` shows the policy in force, its rules and its past
versions with the jobs decided under each.

Same sign-in and session as the audit pages (``audit_pages``: the login form, the session cookie), the
same access table (``ACCESS``), and the same look (``audit_html.CSS`` under the same CSP). Errors become
HTML pages with the API's status codes (``error_catalog.CATALOG``); 401 shows the login form, which
returns here. A refused form post is audited as ``request.refused`` unless the service already audited
it (a signature that does not verify is ``approval.refused``). Posts are accepted from this origin only.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute

from coordinator import console, jobs
from coordinator.accounts import Principal
from coordinator.api import audit_html, console_html
from coordinator.api.access import ACCESS, require
from coordinator.api.deps import ContextDep
from coordinator.api.error_catalog import CATALOG
from coordinator.api.web_sessions import session_principal
from coordinator.audit import log as audit_log
from coordinator.errors import BadRequest, CoordinatorError, Forbidden
from coordinator.store import MAX_DB_INT
from protocols.wire.control import JobStatus, Role

__all__ = ["install", "router"]

MAX_FORM_BYTES = 4096
JobId = Annotated[int, Path(ge=1, le=MAX_DB_INT)]
Done = Annotated[Literal["", "approved", "rejected"], Query()]
_NOTICES = {"approved": "Your approval was recorded.", "rejected": "The job was rejected; it will not run."}


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=audit_html.SECURITY_HEADERS)


def _status(exc: CoordinatorError) -> int:
    return next((CATALOG[cls] for cls in type(exc).__mro__ if cls in CATALOG), 400)


def _audit_refused_post(request: Request, exc: CoordinatorError, status: int) -> None:
    """A refused form post by a signed-in user is audited (once: not if the service audited it already)."""
    user = getattr(request.state, "principal", None)
    if request.method != "POST" or user is None or status == 401 or getattr(exc, "audited", False):
        return
    job = request.path_params.get("job_id")
    audit_log.record_alone(request.app.state.context, user.actor, "request.refused",
                           f"job:{job}" if job else "console",
                           {"method": "POST", "path": request.url.path, "status": status, "field": exc.field,
                            "message": exc.message[:300], "channel": "web"})


def _error_response(request: Request, exc: Exception) -> HTMLResponse:
    if isinstance(exc, RequestValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _html(audit_html.error_page(422, f"{where}: {first.get('msg', 'invalid value')}"), 422)
    assert isinstance(exc, CoordinatorError)
    status = _status(exc)
    _audit_refused_post(request, exc, status)
    if status == 401:
        target = request.url.path if request.method == "GET" else "/console/approvals"
        return _html(audit_html.login_page(exc.message, target, error=True), 401)
    message = f"{exc.message} ({exc.field})" if exc.field else exc.message
    return _html(audit_html.error_page(status, message, exc.fix), status)


class ConsoleRoute(APIRoute):
    """A route whose domain and validation errors are rendered as HTML pages with the API's status codes."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap the default handler (which also resolves dependencies) to catch errors."""
        handler = super().get_route_handler()

        async def html_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except (CoordinatorError, RequestValidationError) as exc:
                return _error_response(request, exc)

        return html_errors


router = APIRouter(route_class=ConsoleRoute, include_in_schema=False, tags=["pages"])


def console_gate(route_name: str) -> Callable[..., Principal]:
    """The access table's roles for ``route_name`` over the browser session; remembers the user for auditing."""
    check = require(*ACCESS[route_name], via=session_principal)

    def dependency(request: Request, user: Principal = Depends(check)) -> Principal:  # noqa: B008 - local
        request.state.principal = user
        return user

    return dependency


async def _form(request: Request, fields: tuple[str, ...]) -> dict[str, str]:
    """The posted form, from this origin only, at most ``MAX_FORM_BYTES``."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise Forbidden("cross-site form post refused", field="header.origin")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise BadRequest(f"form too large ({len(body)} bytes; at most {MAX_FORM_BYTES})", field="form")
    parsed = parse_qs(body.decode("utf-8", "replace"), max_num_fields=8)
    return {k: parsed.get(k, [""])[0] for k in fields}


@router.get("/console/approvals", response_class=HTMLResponse)
def console_approvals_page(
    ctx: ContextDep, user: Annotated[Principal, Depends(console_gate("console_approvals_page"))]
) -> HTMLResponse:
    """The jobs that wait for the signed-in user's signature."""
    return _html(console_html.approvals_page(console.inbox(ctx, user), console.approver_for(user), user.name))


@router.get("/console/jobs/{job_id}", response_class=HTMLResponse)
def console_job_page(
    job_id: JobId, ctx: ContextDep, user: Annotated[Principal, Depends(console_gate("console_job_page"))],
    done: Done = "",
) -> HTMLResponse:
    """One job for its approvers: terms, datasets and fields, decision, digest, approvals, the forms."""
    review = console.job_review(ctx, user, job_id)
    may_reject = review.job.status == JobStatus.PENDING_APPROVAL and user.role in (Role.AUDITOR, Role.ADMIN)
    return _html(console_html.job_page(review, user.name, may_reject, _NOTICES.get(done, "")))


@router.post("/console/jobs/{job_id}/approve", response_class=HTMLResponse)
async def console_approve_submit(
    job_id: JobId, request: Request, ctx: ContextDep,
    user: Annotated[Principal, Depends(console_gate("console_approve_submit"))],
) -> Response:
    """Record the pasted signature as the user's approval (verified against the user's registered key)."""
    form = await _form(request, ("signature",))
    console.approve_with(ctx, user, job_id, form["signature"])
    return RedirectResponse(f"/console/jobs/{job_id}?done=approved", status_code=303)


@router.post("/console/jobs/{job_id}/reject", response_class=HTMLResponse)
async def console_reject_submit(
    job_id: JobId, request: Request, ctx: ContextDep,
    user: Annotated[Principal, Depends(console_gate("console_reject_submit"))],
) -> Response:
    """Reject the job with the given reason (``jobs.reject``: it ends cancelled, audited as job.rejected)."""
    form = await _form(request, ("reason",))
    jobs.reject(ctx, user, job_id, form["reason"])
    return RedirectResponse(f"/console/jobs/{job_id}?done=rejected", status_code=303)


@router.get("/console/policy", response_class=HTMLResponse)
def console_policy_page(
    ctx: ContextDep, user: Annotated[Principal, Depends(console_gate("console_policy_page"))]
) -> HTMLResponse:
    """The policy in force, each rule with its text and parameters, and every version with its jobs."""
    return _html(console_html.policy_page(ctx.policy, console.rule_catalog(ctx.policy),
                                          console.policy_history(ctx, user), user.name))


@router.get("/console/my-jobs", response_class=HTMLResponse)
def console_my_jobs_page(
    ctx: ContextDep, user: Annotated[Principal, Depends(console_gate("console_my_jobs_page"))]
) -> HTMLResponse:
    """The jobs the signed-in user may see (a party user: its party's jobs)."""
    return _html(console_html.my_jobs_page(jobs.list_jobs(ctx, user), user.name))


@router.get("/console/my-jobs/{job_id}", response_class=HTMLResponse)
def console_my_job_page(
    job_id: JobId, ctx: ContextDep, user: Annotated[Principal, Depends(console_gate("console_my_job_page"))]
) -> HTMLResponse:
    """One job's status and outputs as the signed-in user may see them.

    That is ``jobs.get_job``: its own party's outputs, desensitised to its clearance.
    """
    return _html(console_html.my_job_page(jobs.get_job(ctx, user, job_id), user.name))


def install(app: FastAPI) -> None:
    """Mount the console pages on ``app`` (after ``audit_pages.install``, which creates the session registry)."""
    app.include_router(router)
