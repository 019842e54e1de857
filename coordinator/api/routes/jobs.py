"""Jobs: submission, approvals, cancellation, retry, and the node-facing progress/result reports."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status
from starlette.concurrency import run_in_threadpool

from coordinator import jobs
from coordinator.accounts import Principal
from coordinator.api.access import required
from coordinator.api.deps import ContextDep
from coordinator.store import MAX_DB_INT
from protocols.wire import control as wire

router = APIRouter()
JobId = Annotated[int, Path(ge=1, le=MAX_DB_INT)]


@router.post("/jobs", status_code=status.HTTP_201_CREATED, tags=["jobs"])
def submit_job(
    body: wire.JobCreate, ctx: ContextDep, actor: Annotated[Principal, Depends(required("submit_job"))]
) -> wire.JobPublic:
    """Submit a job; it is evaluated by policy at once (``rejected`` or ``pending_approval``)."""
    return jobs.submit(ctx, actor, body)


@router.post("/jobs/dry-run", tags=["jobs"])
def dry_run_job(
    body: wire.JobCreate, ctx: ContextDep, actor: Annotated[Principal, Depends(required("dry_run_job"))]
) -> wire.Decision:
    """The policy decision a submission of ``body`` would get now, each rule with the fix for a denial.

    Nothing is stored or audited.
    """
    return jobs.dry_run(ctx, actor, body)


@router.get("/jobs", tags=["jobs"])
def list_jobs(ctx: ContextDep, actor: Annotated[Principal, Depends(required("list_jobs"))]) -> list[wire.JobPublic]:
    """Jobs the caller may see."""
    return jobs.list_jobs(ctx, actor)


@router.get("/jobs/{job_id}", tags=["jobs"])
def get_job(
    job_id: JobId, ctx: ContextDep, actor: Annotated[Principal, Depends(required("get_job"))]
) -> wire.JobPublic:
    """One job."""
    return jobs.get_job(ctx, actor, job_id)


@router.post("/jobs/{job_id}/approvals", tags=["jobs"])
def approve_job(
    job_id: JobId, body: wire.ApprovalCreate, ctx: ContextDep,
    actor: Annotated[Principal, Depends(required("approve_job"))],
) -> wire.JobPublic:
    """Add a signed approval over the job digest."""
    return jobs.approve(ctx, actor, job_id, body)


@router.post("/jobs/{job_id}/cancel", tags=["jobs"])
def cancel_job(
    job_id: JobId, ctx: ContextDep, actor: Annotated[Principal, Depends(required("cancel_job"))]
) -> wire.JobPublic:
    """Cancel a job that is not final."""
    return jobs.cancel(ctx, actor, job_id)


@router.post("/jobs/{job_id}/reject", tags=["jobs"])
def reject_job(
    job_id: JobId, body: wire.JobReject, ctx: ContextDep, actor: Annotated[Principal, Depends(required("reject_job"))]
) -> wire.JobPublic:
    """Turn down a job pending approval with a reason: it ends ``cancelled``; audited as ``job.rejected``."""
    return jobs.reject(ctx, actor, job_id, body.reason)


@router.post("/jobs/{job_id}/retry", tags=["jobs"])
def retry_job(
    job_id: JobId, ctx: ContextDep, actor: Annotated[Principal, Depends(required("retry_job"))],
    body: wire.JobRetry | None = None,
) -> wire.JobPublic:
    """Run a failed job again as a new attempt, under the current policy.

    ``approved`` at once if its approvals still cover its digest (terms and policy version), else
    ``pending_approval``; 409 with the denying rules if the policy now denies it (it stays ``failed``).
    A training job resumes from the nodes' checkpoints.
    """
    return jobs.retry(ctx, actor, job_id, body or wire.JobRetry())


@router.get("/nodes/jobs", tags=["nodes"], response_model=list[wire.JobPublic])
async def node_jobs(
    ctx: ContextDep, actor: Annotated[Principal, Depends(required("node_jobs"))],
    job_status: Annotated[wire.JobStatus, Query(alias="status")] = wire.JobStatus.APPROVED,
) -> Response:
    """Jobs involving the caller's party in the given status (default ``approved``).

    Answered from ``ctx.answers`` (no thread-pool hop) until a write changes jobs in that status.
    """
    body = jobs.cached_node_jobs(ctx, actor, job_status)
    if body is None:
        body = await run_in_threadpool(jobs.node_jobs_json, ctx, actor, job_status)
    return Response(body, media_type="application/json")


@router.post("/jobs/{job_id}/progress", tags=["nodes"])
def report_progress(
    job_id: JobId, body: wire.JobProgress, ctx: ContextDep,
    actor: Annotated[Principal, Depends(required("report_progress"))],
) -> wire.JobPublic:
    """A node's progress report."""
    return jobs.report_progress(ctx, actor, job_id, body)


@router.post("/jobs/{job_id}/result", tags=["nodes"])
def report_result(
    job_id: JobId, body: wire.JobResultReport, ctx: ContextDep,
    actor: Annotated[Principal, Depends(required("report_result"))],
) -> wire.JobPublic:
    """A node's final report for its party."""
    return jobs.report_result(ctx, actor, job_id, body)
