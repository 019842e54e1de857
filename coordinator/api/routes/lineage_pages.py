"""Lineage and the ledger cross-check: the API route for a job's lineage, and the compliance pages.

API (bearer token, under ``/api/v1``): ``GET /jobs/{id}/lineage`` and ``GET /datasets/{id}/lineage`` for
auditors and the users of the job's (dataset's) parties (``coordinator.lineage`` scopes what they see).

Pages (browser session, the audit pages' sign-in, look and HTML errors): ``/console/jobs/{id}/lineage``,
``/console/datasets/{id}`` and ``/console/crosscheck``, where an auditor uploads the audit export and the
nodes' ledger exports (``multipart/form-data``, same origin only) and reads the findings. Every run is
audited (``crosscheck.ran`` with the verdict, ``crosscheck.refused`` with the refused input and why).
"""

from __future__ import annotations

import email.parser
import email.policy
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Path, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse

from coordinator import crosscheck, lineage
from coordinator.accounts import Principal
from coordinator.api import audit_html, lineage_html
from coordinator.api.access import required
from coordinator.api.deps import ContextDep
from coordinator.api.routes.audit_pages import HtmlErrorRoute, page_gate
from coordinator.audit import log as audit_log
from coordinator.errors import BadRequest, CoordinatorError, Forbidden
from coordinator.store import MAX_DB_INT

__all__ = ["api_router", "router"]

Id = Annotated[int, Path(ge=1, le=MAX_DB_INT)]
MAX_UPLOAD_PARTS = 8
LEDGER_SLOTS = ("1", "2")

api_router = APIRouter(tags=["lineage"])
router = APIRouter(route_class=HtmlErrorRoute, include_in_schema=False, tags=["pages"])


@api_router.get("/jobs/{job_id}/lineage")
def job_lineage(job_id: Id, ctx: ContextDep,
                actor: Annotated[Principal, Depends(required("job_lineage"))]) -> dict[str, Any]:
    """A job's datasets and versions, field uses, policy, approvals, ledger receipts, results and readers."""
    encoded: dict[str, Any] = jsonable_encoder(lineage.job_lineage(ctx, actor, job_id))
    return encoded


@api_router.get("/datasets/{dataset_id}/lineage")
def dataset_lineage(dataset_id: Id, ctx: ContextDep,
                    actor: Annotated[Principal, Depends(required("dataset_lineage"))]) -> dict[str, Any]:
    """A dataset's registrations and every job that used it."""
    encoded: dict[str, Any] = jsonable_encoder(lineage.dataset_lineage(ctx, actor, dataset_id))
    return encoded


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=audit_html.SECURITY_HEADERS)


@router.get("/console/jobs/{job_id}/lineage", response_class=HTMLResponse)
def lineage_job_page(job_id: Id, ctx: ContextDep,
                     user: Annotated[Principal, Depends(page_gate("lineage_job_page"))]) -> HTMLResponse:
    """One job's lineage."""
    return _html(lineage_html.job_lineage_page(lineage.job_lineage(ctx, user, job_id), user.name))


@router.get("/console/datasets/{dataset_id}", response_class=HTMLResponse)
def lineage_dataset_page(dataset_id: Id, ctx: ContextDep,
                         user: Annotated[Principal, Depends(page_gate("lineage_dataset_page"))]) -> HTMLResponse:
    """One dataset and every job that touched it."""
    return _html(lineage_html.dataset_page(lineage.dataset_lineage(ctx, user, dataset_id), user.name))


@router.get("/console/crosscheck", response_class=HTMLResponse)
def crosscheck_page(user: Annotated[Principal, Depends(page_gate("crosscheck_page"))]) -> HTMLResponse:
    """The upload form."""
    return _html(lineage_html.crosscheck_page(user.name))


def _parts(request: Request, body: bytes) -> dict[str, tuple[str, bytes]]:
    """The multipart form's fields: name -> (file name, content)."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise BadRequest("the cross-check form must be sent as multipart/form-data", field="header.content-type",
                         fix="use the form on /console/crosscheck")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + ctype.encode("latin-1") + b"\r\n\r\n" + body)
    if not message.is_multipart():
        raise BadRequest("the upload is not a multipart form", field="body", fix="use the form on /console/crosscheck")
    out: dict[str, tuple[str, bytes]] = {}
    for part in list(message.iter_parts())[:MAX_UPLOAD_PARTS]:
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            payload = part.get_payload(decode=True)
            out[name] = (str(part.get_filename() or name), payload if isinstance(payload, bytes) else b"")
    return out


def _text(parts: dict[str, tuple[str, bytes]], name: str) -> str:
    return parts.get(name, ("", b""))[1].decode("utf-8", "replace").strip()


def _inputs(parts: dict[str, tuple[str, bytes]]) -> tuple[list[crosscheck.LedgerInput], list[bytes]]:
    audit = parts.get("audit")
    if audit is None or not audit[1].strip():
        raise crosscheck.CrossCheckRefused("no audit export uploaded", field="audit",
                                           fix="choose the file `tandem-coordinator audit export` wrote")
    ledgers = []
    for slot in LEDGER_SLOTS:
        filename, content = parts.get(f"ledger_{slot}", ("", b""))
        if content.strip():
            party = _text(parts, f"party_{slot}") or None
            ledgers.append(crosscheck.LedgerInput(filename, content.splitlines(), party))
    return ledgers, audit[1].splitlines()


@router.post("/console/crosscheck", response_class=HTMLResponse)
async def crosscheck_submit(request: Request, ctx: ContextDep,
                            user: Annotated[Principal, Depends(page_gate("crosscheck_submit"))]) -> HTMLResponse:
    """Run the cross-check on the uploaded files and show the findings (every run and refusal is audited)."""
    try:
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != request.headers.get("host", ""):
            raise Forbidden("cross-site form post refused", field="header.origin")
        parts = _parts(request, await request.body())
    except CoordinatorError as exc:
        audit_log.record_alone(ctx, user.actor, "crosscheck.refused", "audit",
                               {"field": exc.field or "form", "reason": exc.message[:500]})
        exc.audited = True
        raise
    try:
        ledgers, audit_lines = _inputs(parts)
        result = crosscheck.cross_check(ledgers, audit_lines, ctx.audit_key.public_hex)
    except crosscheck.CrossCheckRefused as exc:
        audit_log.record_alone(ctx, user.actor, "crosscheck.refused", "audit",
                               {"field": exc.field[:200], "reason": exc.message[:500]})
        return _html(lineage_html.crosscheck_page(user.name, refusal=(exc.field, exc.message, exc.fix)), 422)
    audit_log.record_alone(ctx, user.actor, "crosscheck.ran", "audit",
                           {"ok": result.ok, "audit_head": result.audit_head, "findings": crosscheck.grouped(
                               result.findings), "ledgers": {s.party: s.head for s in result.ledgers}})
    return _html(lineage_html.crosscheck_page(user.name, result=result))
