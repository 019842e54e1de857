"""Disclosure: what a caller may see of a job's results, and the audited notice of each export."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from coordinator import disclosure
from coordinator.accounts import Principal
from coordinator.api.access import required
from coordinator.api.deps import ContextDep
from coordinator.store import MAX_DB_INT
from protocols.wire.desensitise import Disclosure, ExportReceipt, ExportRecord

router = APIRouter()
JobId = Annotated[int, Path(ge=1, le=MAX_DB_INT)]


@router.get("/jobs/{job_id}/disclosure", tags=["jobs"])
def job_disclosure(
    job_id: JobId, ctx: ContextDep, actor: Annotated[Principal, Depends(required("job_disclosure"))]
) -> Disclosure:
    """The caller's clearance for this job, whether it may export row-level results unmasked, each field's rule."""
    return disclosure.disclosure(ctx, actor, job_id)


@router.post("/jobs/{job_id}/exports", tags=["nodes"])
def record_export(
    job_id: JobId, body: ExportRecord, ctx: ContextDep,
    actor: Annotated[Principal, Depends(required("record_export"))],
) -> ExportReceipt:
    """Audit an export of the job's row-level results before the node writes it (refused if not granted)."""
    return disclosure.record_export(ctx, actor, job_id, body)
