"""An evaluation names a succeeded app_promotion of the same parties; a campaign may name a succeeded evaluation.

Unit checks over a job lookup (every refusal names the field), and through the API: a submission
naming an unfinished campaign is refused with 400 and the field, and nothing is stored.
"""

from __future__ import annotations

import pytest

from coordinator.errors import BadRequest, NotFound
from coordinator.job_references import check_references
from protocols.wire.control import JobCreate, JobInput, JobKind, JobParams, JobPublic, JobStatus, Purpose
from tests.support.coordinator import API
from tests.support.fake_coordinator import make_job

PARTIES = ["bank", "telco"]


def _jobs() -> dict[int, JobPublic]:
    return {
        1: make_job(1, kind=JobKind.APP_PROMOTION, purpose=Purpose.APP_PROMOTION, status=JobStatus.SUCCEEDED),
        2: make_job(2, kind=JobKind.APP_PROMOTION, purpose=Purpose.APP_PROMOTION, status=JobStatus.RUNNING),
        3: make_job(3, kind=JobKind.APP_PROMOTION, purpose=Purpose.APP_PROMOTION, status=JobStatus.SUCCEEDED,
                    parties={1: "bank", 2: "telco2"}),
        4: make_job(4, kind=JobKind.CAMPAIGN_EVALUATION, purpose=Purpose.APP_PROMOTION, status=JobStatus.SUCCEEDED,
                    params=JobParams(output_mode="count", campaign_job_id=1)),
        5: make_job(5, status=JobStatus.SUCCEEDED),
    }


def _lookup(job_id: int) -> JobPublic:
    jobs = _jobs()
    if job_id not in jobs:
        raise NotFound(f"job {job_id} not found")
    return jobs[job_id]


def _body(kind: JobKind, **params: int) -> JobCreate:
    inputs = [JobInput(dataset_id=1, key_fields=["mobile"]), JobInput(dataset_id=2, key_fields=["msisdn"])]
    return JobCreate(kind=kind, purpose=Purpose.APP_PROMOTION, title="t", inputs=inputs,
                     params=JobParams(output_mode="count", **params))


def test_an_evaluation_of_a_succeeded_campaign_of_the_pair_passes() -> None:
    check_references(_lookup, _body(JobKind.CAMPAIGN_EVALUATION, campaign_job_id=1), PARTIES)
    check_references(_lookup, _body(JobKind.APP_PROMOTION, previous_evaluation_job_id=4), PARTIES)


@pytest.mark.parametrize(("kind", "params", "field", "words"), [
    (JobKind.CAMPAIGN_EVALUATION, {}, "campaign_job_id", "needs the campaign"),
    (JobKind.CAMPAIGN_EVALUATION, {"campaign_job_id": 99}, "campaign_job_id", "does not exist"),
    (JobKind.CAMPAIGN_EVALUATION, {"campaign_job_id": 2}, "campaign_job_id", "running, not succeeded"),
    (JobKind.CAMPAIGN_EVALUATION, {"campaign_job_id": 3}, "campaign_job_id", "telco2"),
    (JobKind.CAMPAIGN_EVALUATION, {"campaign_job_id": 5}, "campaign_job_id", "audience_overlap job, not app_promotion"),
    (JobKind.APP_PROMOTION, {"previous_evaluation_job_id": 1}, "previous_evaluation_job_id", "not campaign_evaluation"),
    (JobKind.AUDIENCE_OVERLAP, {"campaign_job_id": 1}, "campaign_job_id", "takes no campaign_job_id"),
    (JobKind.SEGMENT_SIZES, {"previous_evaluation_job_id": 4}, "previous_evaluation_job_id", "takes no"),
])
def test_bad_references_name_the_field(kind: JobKind, params: dict, field: str, words: str) -> None:
    with pytest.raises(BadRequest) as caught:
        check_references(_lookup, _body(kind, **params), PARTIES)
    assert caught.value.field == f"body.params.{field}" and words in caught.value.message and caught.value.fix


def test_the_api_refuses_an_evaluation_of_an_unfinished_campaign(world) -> None:
    campaign = world.c.post(f"{API}/jobs", json={**world.job_body(), "kind": "audience_overlap"},
                            headers=world.h("bank_analyst")).json()
    body = {**world.job_body(), "kind": "campaign_evaluation", "purpose": "app_promotion",
            "params": {"output_mode": "count", "campaign_job_id": campaign["id"]}}
    before = world.c.get(f"{API}/jobs", headers=world.h("auditor")).json()
    r = world.c.post(f"{API}/jobs", json=body, headers=world.h("bank_analyst"))
    assert r.status_code == 400, r.text
    assert "campaign_job_id" in r.text and "not app_promotion" in r.text
    assert world.c.get(f"{API}/jobs", headers=world.h("auditor")).json() == before


def test_the_references_are_signed_terms_and_a_noised_evaluation_charges_the_pair() -> None:
    from coordinator.policy import epsilon_charge  # noqa: PLC0415
    from protocols.crypto.signing import job_digest  # noqa: PLC0415
    from protocols.wire.control import job_terms  # noqa: PLC0415

    body = _body(JobKind.APP_PROMOTION, previous_evaluation_job_id=4)

    def digest(params: JobParams) -> str:
        return job_digest(job_terms(9, body.kind, body.purpose, body.title, body.inputs, params, "v", attempt=1))

    assert digest(body.params) != digest(body.params.model_copy(update={"previous_evaluation_job_id": 5}))
    assert digest(JobParams(output_mode="count")) == digest(JobParams(output_mode="count", campaign_job_id=None))
    assert epsilon_charge(JobKind.CAMPAIGN_EVALUATION, JobParams(epsilon=0.5, campaign_job_id=1)) == 0.5
    assert epsilon_charge(JobKind.CAMPAIGN_EVALUATION, JobParams(campaign_job_id=1)) == 0.0
