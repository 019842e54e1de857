"""Every refused write by an authenticated caller is an audit event (issue 15, item 8)."""

from __future__ import annotations

from tests.support.coordinator import API


def _refusals(world) -> list[dict]:
    return [e for e in world.events() if e["action"] == "request.refused"]


def test_an_auditors_refused_approval_attempt_is_audited(world):
    job = world.submit()
    sig = world.keys["bank"].sign_approval(job["digest"])

    r = world.c.post(f"{API}/jobs/{job['id']}/approvals", json={"approver": "party:bank", "signature": sig},
                     headers=world.h("auditor"))

    assert r.status_code == 403
    (event,) = _refusals(world)
    assert (event["actor"], event["object"]) == ("user:auditor", f"job:{job['id']}")
    assert event["details"]["status"] == 403 and event["details"]["field"] == "body.approver"


def test_refused_writes_of_every_kind_are_audited_once_and_reads_are_not(world):
    job = world.submit()
    writes = [
        world.c.post(f"{API}/jobs/{job['id']}/cancel", headers=world.h("telco_op")),            # role
        world.c.post(f"{API}/jobs/{job['id']}/retry", json={}, headers=world.h("bank_analyst")),  # state
        world.c.post(f"{API}/users", json={"name": "x", "role": "analyst", "party": "bank"},
                     headers=world.h("bank_analyst")),                                         # role
    ]
    read = world.c.get(f"{API}/jobs/999999", headers=world.h("bank_analyst"))
    bad_signature = world.c.post(f"{API}/jobs/{job['id']}/approvals",
                                 json={"approver": "party:bank", "signature": "00" * 64},
                                 headers=world.h("bank_admin"))

    assert [r.status_code for r in writes] == [403, 409, 403] and read.status_code == 404
    assert bad_signature.status_code == 403
    refused = _refusals(world)
    assert [e["details"]["status"] for e in refused] == [403, 409, 403]  # the bad signature: approval.refused
    assert [e["action"] for e in world.events()].count("approval.refused") == 1


def test_a_job_refused_for_an_out_of_range_param_is_audited_with_the_field(world):
    before = len(world.events())
    r = world.c.post(f"{API}/jobs", json={"kind": "audience_overlap", "purpose": "marketing", "title": "t",
                                          "inputs": [{"dataset_id": 1}], "params": {"epsilon": 99}},
                     headers=world.h("bank_analyst"))

    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "body.params.epsilon"
    (event,) = _refusals(world)
    assert event["actor"] == "user:bank_analyst" and event["details"]["field"] == "body.params.epsilon"
    assert len(world.events()) == before + 1  # the refusal only: no job, nothing half-written
