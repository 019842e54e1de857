"""Compliance report pages: one job's or one period's report, as HTML or PDF, for the signed-in auditor.

``/console/reports/jobs/{id}.html|.pdf`` and ``/console/reports/period.html|.pdf?from=DATE&to=DATE``
(default: the last 30 days up to today). The same browser session and access table as the audit pages
(``ACCESS``: auditors only); a session of another role is refused and the refusal audited
(``report.refused``), as is a report of a job the caller may not see. Every report produced is audited
(``report.produced``, with its digest and the audit head it was produced against).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from coordinator import reports
from coordinator.accounts import Principal
from coordinator.api import audit_html
from coordinator.api.access import ACCESS
from coordinator.api.deps import ContextDep
from coordinator.api.report_html import render_html
from coordinator.api.routes.audit_pages import HtmlErrorRoute
from coordinator.api.web_sessions import session_principal
from coordinator.audit import log as audit_log
from coordinator.errors import Forbidden
from coordinator.report_pdf import render_pdf
from coordinator.store import MAX_DB_INT

__all__ = ["DEFAULT_PERIOD_DAYS", "install", "router"]

DEFAULT_PERIOD_DAYS = 30
JobId = Annotated[int, Path(ge=1, le=MAX_DB_INT)]

router = APIRouter(route_class=HtmlErrorRoute, include_in_schema=False, tags=["pages"])


def report_gate(route_name: str) -> Callable[..., Principal]:
    """The browser session's user if its role may call ``route_name``; else ``Forbidden``, audited."""
    allowed = frozenset(ACCESS[route_name])

    def dependency(request: Request, ctx: ContextDep,
                   principal: Annotated[Principal, Depends(session_principal)]) -> Principal:
        if principal.label not in allowed:
            audit_log.record_alone(ctx, principal.actor, "report.refused", "report",
                                   {"reason": f"role {principal.label} may not read reports",
                                    "path": request.url.path[:200]})
            refused = Forbidden(f"role {principal.label!r} may not call this endpoint (allowed: {', '.join(allowed)})",
                                fix="sign in with an auditor's token")
            refused.audited = True
            raise refused
        return principal

    dependency.allowed_roles = allowed  # type: ignore[attr-defined]  # read by the role-matrix test
    return dependency


def _pdf(signed: reports.SignedReport, filename: str) -> Response:
    disposition = f'attachment; filename="{filename}"'
    return Response(render_pdf(signed), media_type="application/pdf",
                    headers={**audit_html.SECURITY_HEADERS, "Content-Disposition": disposition})


def _html(body: str) -> HTMLResponse:
    return HTMLResponse(body, headers=audit_html.SECURITY_HEADERS)


def _period(start: str, end: str, ctx: ContextDep) -> tuple[str, str]:
    today = ctx.clock().date()
    return start or (today - timedelta(days=DEFAULT_PERIOD_DAYS)).isoformat(), end or today.isoformat()


@router.get("/console/reports/jobs/{job_id}.html", response_class=HTMLResponse)
def report_job_page(job_id: JobId, ctx: ContextDep,
                    user: Annotated[Principal, Depends(report_gate("report_job_page"))]) -> HTMLResponse:
    """One job's compliance report as a page, with a link to its PDF."""
    signed = reports.job_report(ctx, user, job_id)
    return _html(render_html(signed, user.name, pdf_href=f"/console/reports/jobs/{job_id}.pdf"))


@router.get("/console/reports/jobs/{job_id}.pdf")
def report_job_pdf(job_id: JobId, ctx: ContextDep,
                   user: Annotated[Principal, Depends(report_gate("report_job_pdf"))]) -> Response:
    """One job's compliance report as a PDF download."""
    return _pdf(reports.job_report(ctx, user, job_id), f"tandem-job-{job_id}-report.pdf")


@router.get("/console/reports/period.html", response_class=HTMLResponse)
def report_period_page(ctx: ContextDep, user: Annotated[Principal, Depends(report_gate("report_period_page"))],
                       start: Annotated[str, Query(alias="from", max_length=40)] = "",
                       end: Annotated[str, Query(alias="to", max_length=40)] = "") -> HTMLResponse:
    """The report of every job active in the period, as a page (default: the last 30 days)."""
    start, end = _period(start, end, ctx)
    signed = reports.period_report(ctx, user, start, end)
    pdf_href = "/console/reports/period.pdf?" + urlencode({"from": start, "to": end})
    return _html(render_html(signed, user.name, pdf_href=pdf_href))


@router.get("/console/reports/period.pdf")
def report_period_pdf(ctx: ContextDep, user: Annotated[Principal, Depends(report_gate("report_period_pdf"))],
                      start: Annotated[str, Query(alias="from", max_length=40)] = "",
                      end: Annotated[str, Query(alias="to", max_length=40)] = "") -> Response:
    """The period report as a PDF download."""
    start, end = _period(start, end, ctx)
    return _pdf(reports.period_report(ctx, user, start, end), f"tandem-report-{start}-{end}.pdf")


def install(app: FastAPI) -> None:
    """Mount the report pages on ``app`` (after ``audit_pages.install``, whose sessions they use)."""
    app.include_router(router)
