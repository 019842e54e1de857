"""Jobs: submission, approvals, cancellation, retry, and the node-facing progress/result reports."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status

from coordinator import jobs
from coordinator.accounts import Principal
from coordinator.api.access import required
from coordinator.api.deps import ContextDep
from coordinator.store import MAX_DB_INT
from protocols.wire.control import (
    ApprovalCreate,
    JobCreate,
    JobProgress,
    JobPublic,
    JobResultReport,
    JobRetry,
    JobStatus,
)

router = APIRouter()
JobId = Annotated[int, Path(ge=1, le=MAX_DB_INT)]


@router.post("/jobs", status_code=status.HTTP_201_CREATED, response_model=JobPublic, tags=["jobs"])
def submit_job(
    body: JobCreate, ctx: ContextDep, actor: Annotated[Principal, Depends(required("submit_job"))]
) -> JobPublic:
    """Submit a job; it is evaluated by policy at once (``rejected`` or ``pending_approval``)."""
    return jobs.submit(ctx, actor, body)


@router.get("/jobs", response_model=list[JobPublic], tags=["jobs"])
def list_jobs(ctx: ContextDep, actor: Annotated[Principal, Depends(required("list_jobs"))]) -> list[JobPublic]:
    """Jobs the caller may see."""
    return jobs.list_jobs(ctx, actor)


@router.get("/jobs/{job_id}", response_model=JobPublic, tags=["jobs"])
def get_job(
    job_id: JobId, ctx: ContextDep, actor: Annotated[Principal, Depends(required("get_job"))]
) -> JobPublic:
    """One job."""
    return jobs.get_job(ctx, actor, job_id)


@router.post("/jobs/{job_id}/approvals", response_model=JobPublic, tags=["jobs"])
def approve_job(
    job_id: JobId, body: ApprovalCreate, ctx: ContextDep,
    actor: Annotated[Principal, Depends(required("approve_job"))],
) -> JobPublic:
    """Add a signed approval over the job digest."""
    return jobs.approve(ctx, actor, job_id, body)


@router.post("/jobs/{job_id}/cancel", response_model=JobPublic, tags=["jobs"])
def cancel_job(
    job_id: JobId, ctx: ContextDep, actor: Annotated[Principal, Depends(required("cancel_job"))]
) -> JobPublic:
    """Cancel a job that is not final."""
    return jobs.cancel(ctx, actor, job_id)


@router.post("/jobs/{job_id}/retry", response_model=JobPublic, tags=["jobs"])
def retry_job(
    job_id: JobId, ctx: ContextDep, actor: Annotated[Principal, Depends(required("retry_job"))],
    body: JobRetry | None = None,
) -> JobPublic:
    """Run a failed job again as a new attempt, under the current policy.

    ``approved`` at once if its approvals still cover its digest (terms and policy version), else
    ``pending_approval``; 409 with the denying rules if the policy now denies it (it stays ``failed``).
    A training job resumes from the nodes' checkpoints.
    """
    return jobs.retry(ctx, actor, job_id, body or JobRetry())


@router.get("/nodes/jobs", response_model=list[JobPublic], tags=["nodes"])
def node_jobs(
    ctx: ContextDep, actor: Annotated[Principal, Depends(required("node_jobs"))],
    job_status: Annotated[JobStatus, Query(alias="status")] = JobStatus.APPROVED,
) -> list[JobPublic]:
    """Jobs involving the caller's party in the given status (default ``approved``)."""
    return jobs.node_jobs(ctx, actor, job_status)


@router.post("/jobs/{job_id}/progress", response_model=JobPublic, tags=["nodes"])
def report_progress(
    job_id: JobId, body: JobProgress, ctx: ContextDep,
    actor: Annotated[Principal, Depends(required("report_progress"))],
) -> JobPublic:
    """A node's progress report."""
    return jobs.report_progress(ctx, actor, job_id, body)


@router.post("/jobs/{job_id}/result", response_model=JobPublic, tags=["nodes"])
def report_result(
    job_id: JobId, body: JobResultReport, ctx: ContextDep,
    actor: Annotated[Principal, Depends(required("report_result"))],
) -> JobPublic:
    """A node's final report for its party."""
    return jobs.report_result(ctx, actor, job_id, body)
