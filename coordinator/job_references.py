"""Jobs that build on earlier jobs of the marketing loop: the references are checked before a job is stored.

* ``campaign_evaluation`` must name, in ``params.campaign_job_id``, a **succeeded** ``app_promotion`` job of
  the **same parties** (the arms it evaluates live at that telco).
* ``app_promotion`` may name, in ``params.previous_evaluation_job_id``, a succeeded ``campaign_evaluation`` of
  the same parties: the next campaign adjusts its model and targets to the last one's measured uplift (the
  loop of issue 12). Both ids are params, so they are part of the signed terms.
* No other kind may carry either id (a stray reference would be signed without meaning anything).

Pure over a job lookup; ``coordinator.jobs`` calls :func:`check_references` from ``_decide`` (submit and dry run).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from coordinator.errors import BadRequest, NotFound
from protocols.wire.control import JobCreate, JobKind, JobPublic, JobStatus

__all__ = ["check_references"]

_CAMPAIGN, _PREVIOUS = "body.params.campaign_job_id", "body.params.previous_evaluation_job_id"


def _referenced(get_job: Callable[[int], JobPublic], job_id: int, kind: JobKind, parties: Sequence[str],
                field: str) -> None:
    try:
        job = get_job(job_id)
    except NotFound:
        raise BadRequest(f"job {job_id} does not exist", field=field,
                         fix=f"name a succeeded {kind.value} job of the same parties") from None
    if job.kind != kind:
        raise BadRequest(f"job {job_id} is a {job.kind.value} job, not {kind.value}", field=field,
                         fix=f"name a succeeded {kind.value} job of the same parties")
    theirs = sorted({i.party for i in job.inputs if i.party is not None})  # the stored terms name each owner
    if theirs != sorted(parties):
        raise BadRequest(f"job {job_id} is between parties {theirs}, not {sorted(parties)}",
                         field=field, fix=f"name a {kind.value} job of this bank and telco")
    if job.status != JobStatus.SUCCEEDED:
        raise BadRequest(f"job {job_id} is {job.status.value}, not succeeded", field=field,
                         fix=f"wait until the {kind.value} job has succeeded, or name one that has")


def check_references(get_job: Callable[[int], JobPublic], body: JobCreate, parties: Sequence[str]) -> None:
    """Check ``body``'s references to earlier jobs (module docstring).

    Raises:
        BadRequest: a missing, unknown, unfinished, other-kind or other-parties reference (names the field).
    """
    params = body.params
    if body.kind == JobKind.CAMPAIGN_EVALUATION:
        if params.campaign_job_id is None:
            raise BadRequest("campaign_evaluation needs the campaign it evaluates", field=_CAMPAIGN,
                             fix="set params.campaign_job_id to the succeeded app_promotion job")
        _referenced(get_job, params.campaign_job_id, JobKind.APP_PROMOTION, parties, _CAMPAIGN)
    elif params.campaign_job_id is not None:
        raise BadRequest(f"a {body.kind.value} job takes no campaign_job_id", field=_CAMPAIGN,
                         fix="leave it out (only campaign_evaluation names a campaign)")
    if params.previous_evaluation_job_id is not None:
        if body.kind != JobKind.APP_PROMOTION:
            raise BadRequest(f"a {body.kind.value} job takes no previous_evaluation_job_id", field=_PREVIOUS,
                             fix="leave it out (only app_promotion builds on an earlier evaluation)")
        _referenced(get_job, params.previous_evaluation_job_id, JobKind.CAMPAIGN_EVALUATION, parties, _PREVIOUS)
