"""POST /api/v1/jobs/{id}/reject: an auditor or an involved party's admin turns a pending job down, with a reason."""

from __future__ import annotations

from tests.coordinator.console.conftest import submit_auditor_job
from tests.support.coordinator import API


def _reject(world, job, who: str, reason: object = "purpose too broad for id numbers"):
    return world.c.post(f"{API}/jobs/{job['id']}/reject", json={"reason": reason}, headers=world.h(who))


def test_auditor_rejects_a_pending_job_with_a_reason_audited(id_world):
    job = submit_auditor_job(id_world)

    r = _reject(id_world, job, "auditor")

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "cancelled"
    assert body["status_detail"] == "rejected by user:auditor: purpose too broad for id numbers"
    events = [e for e in id_world.events() if e["object"] == f"job:{job['id']}"]
    rejected = [e for e in events if e["action"] == "job.rejected"]
    assert len(rejected) == 1 and rejected[0]["actor"] == "user:auditor"
    assert rejected[0]["details"]["reason"] == "purpose too broad for id numbers"
    assert rejected[0]["details"]["digest"] == job["digest"]
    status = [e["details"] for e in events if e["action"] == "job.status"][-1]
    assert (status["from"], status["to"]) == ("pending_approval", "cancelled")
    print(f"rejected: job {job['id']} -> {body['status']} ({body['status_detail']})")


def test_an_involved_party_admin_may_reject(id_world):
    job = submit_auditor_job(id_world)
    r = _reject(id_world, job, "telco_admin", "the telco does not take part this quarter")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text


def test_rejection_refusals_name_the_cause(id_world):
    job = submit_auditor_job(id_world)

    empty = _reject(id_world, job, "auditor", "")
    analyst = _reject(id_world, job, "bank_analyst")
    operator = _reject(id_world, job, "telco_op")

    assert empty.status_code == 422 and empty.json()["detail"][0]["field"] == "body.reason", empty.text
    assert analyst.status_code == 403 and "may not call this endpoint" in analyst.text
    assert operator.status_code == 403
    assert id_world.c.get(f"{API}/jobs/{job['id']}", headers=id_world.h("auditor")).json()["status"] == \
        "pending_approval"
    refused = [e for e in id_world.events() if e["action"] == "request.refused" and e["object"] == f"job:{job['id']}"]
    assert {e["actor"] for e in refused} >= {"user:bank_analyst", "user:telco_op"}


def test_only_a_pending_job_can_be_rejected(id_world):
    job = id_world.approved_job()  # an ordinary overlap: the parties approve, no auditor needed

    r = _reject(id_world, job, "auditor")

    assert r.status_code == 409, r.text
    assert "only a job pending approval can be rejected" in r.json()["detail"][0]["message"]
    assert id_world.c.get(f"{API}/jobs/{job['id']}", headers=id_world.h("auditor")).json()["status"] == "approved"
    again = _reject(id_world, submit_auditor_job(id_world), "auditor")
    twice = _reject(id_world, again.json(), "auditor")
    assert twice.status_code == 409 and "is cancelled" in twice.json()["detail"][0]["message"]
