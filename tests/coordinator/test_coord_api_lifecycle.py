"""Job lifecycle through the HTTP API: policy decision, signed approvals, node reports, audit."""

from __future__ import annotations

from coordinator.app import create_app
from coordinator.audit.chain import verify_export
from coordinator.store import MemoryStore
from protocols.crypto.signing import SigningKey
from tests.support.coordinator import API, TestClient, World, app_settings, expected_digest


def _actions(world) -> list[str]:
    return [e["action"] for e in world.events()]


def test_startup_records_policy_loaded(world):
    first = world.events()[0]
    version = world.c.get(f"{API}/healthz").json()["policy_version"]
    assert (first["seq"], first["action"]) == (0, "policy.loaded")
    assert first["details"]["version"] == version and len(first["details"]["digest"]) == 64


def test_denied_job_is_rejected_with_reasons(world):
    job = world.submit(purpose="risk")  # audience_overlap may not serve purpose risk

    assert job["status"] == "rejected" and not job["decision"]["allowed"]
    denied = [r for r in job["decision"]["rules"] if not r["allowed"]]
    assert any(r["rule_id"].startswith("R03") for r in denied)
    assert job["status_detail"].startswith("denied by policy: R03")
    decided = next(e for e in world.events() if e["action"] == "policy.decided")
    assert decided["details"]["allowed"] is False and decided["details"]["rules_denied"]


def test_allowed_job_waits_for_both_parties(world):
    job = world.submit()

    assert job["status"] == "pending_approval" and job["decision"]["allowed"]
    assert job["required_approvals"] == ["party:bank", "party:telco"]
    assert job["digest"] == expected_digest(job)
    assert _actions(world)[-3:] == ["job.submitted", "policy.decided", "job.status"]


def test_real_signatures_approve_the_job(world):
    job = world.submit()

    first = world.approve(job, "party:bank", "bank_admin")
    assert first.status_code == 200 and first.json()["status"] == "pending_approval"
    assert first.json()["status_detail"] == "waiting for approvals: party:telco"
    second = world.approve(job, "party:telco", "telco_admin").json()

    assert second["status"] == "approved"
    assert [(a["approver"], a["user"]) for a in second["approvals"]] == [("party:bank", "bank_admin"),
                                                                        ("party:telco", "telco_admin")]
    assert second["approvals"][0]["signer_key"] == world.keys["bank"].public_hex
    assert _actions(world)[-3:] == ["approval.added", "approval.added", "job.status"]


def test_forged_signature_is_refused_and_audited(world):
    job = world.submit()

    r = world.approve(job, "party:bank", "bank_admin", key=SigningKey.generate())

    assert r.status_code == 403
    assert r.json()["detail"][0]["field"] == "body.signature"
    assert "does not verify" in r.json()["detail"][0]["message"]
    assert world.c.get(f"{API}/jobs/{job['id']}", headers=world.h("bank_admin")).json()["approvals"] == []
    assert _actions(world)[-1] == "approval.refused"


def test_admin_cannot_sign_for_another_party(world):
    job = world.submit()
    r = world.approve(job, "party:telco", "bank_admin")
    assert r.status_code == 403 and r.json()["detail"][0]["field"] == "body.approver"


def test_approval_after_approval_conflicts(world):
    job = world.approved_job()
    r = world.approve(job, "party:bank", "bank_admin")
    assert r.status_code == 409 and "approved" in r.json()["detail"][0]["message"]


def test_high_level_field_needs_auditor_signature(world):
    world.register("telco", "subscribers", [{"name": "msisdn", "type": "string", "category": "identifier",
                                             "security_level": 4, "key_type": "mobile", "purposes": ["marketing"]}])
    job = world.submit()
    assert job["required_approvals"] == ["auditor", "party:bank", "party:telco"], job["decision"]
    world.approve(job, "party:bank", "bank_admin")
    world.approve(job, "party:telco", "telco_admin")

    assert world.approve(job, "auditor", "bank_admin").status_code == 403
    final = world.approve(job, "auditor", "auditor").json()

    assert final["status"] == "approved"
    assert final["approvals"][-1]["signer_key"] == world.auditor_key.public_hex


def test_node_progress_and_results_finish_the_job(world):
    job = world.approved_job()
    jid = job["id"]
    listed = world.c.get(f"{API}/nodes/jobs", params={"status": "approved"}, headers=world.h("telco_op")).json()
    assert [j["id"] for j in listed] == [jid]

    running = world.c.post(f"{API}/jobs/{jid}/progress", json={"stage": "psi", "fraction": 0.5},
                           headers=world.h("telco_op")).json()
    assert (running["status"], running["stage"], running["progress"]) == ("running", "psi", 0.5)
    half = world.c.post(f"{API}/jobs/{jid}/result", json={"status": "succeeded", "outputs": {"overlap": 1200}},
                        headers=world.h("bank_admin")).json()
    assert half["status"] == "running" and half["status_detail"] == "waiting for results from: telco"
    done = world.c.post(f"{API}/jobs/{jid}/result", json={"status": "succeeded", "messages_sent": 4},
                        headers=world.h("telco_op")).json()

    assert done["status"] == "succeeded" and done["progress"] == 1.0
    assert done["outputs"] == {"telco": {}}  # the telco's node is answered with its own party's outputs only
    seen = world.c.get(f"{API}/jobs/{jid}", headers=world.h("auditor")).json()["outputs"]
    assert seen == {"bank": {"overlap": 1200}, "telco": {}}
    again = world.c.post(f"{API}/jobs/{jid}/result", json={"status": "succeeded"}, headers=world.h("telco_op"))
    assert again.status_code == 409 and "succeeded" in again.json()["detail"][0]["message"]


def test_one_failed_result_fails_the_job(world):
    job = world.approved_job()
    r = world.c.post(f"{API}/jobs/{job['id']}/result", json={"status": "failed", "detail": "peer unreachable"},
                     headers=world.h("bank_admin"))
    assert r.json()["status"] == "failed" and r.json()["status_detail"] == "bank: peer unreachable"


def test_failed_progress_fails_the_job(world):
    job = world.approved_job()
    r = world.c.post(f"{API}/jobs/{job['id']}/progress", json={"stage": "psi", "fraction": 0.1, "status": "failed",
                                                              "detail": "disk full"}, headers=world.h("bank_admin"))
    assert (r.json()["status"], r.json()["status_detail"]) == ("failed", "bank: disk full")


def test_waiting_report_keeps_job_approved(world):
    job = world.approved_job()
    detail = "waiting: no protocol implementation for audience_overlap yet"
    r = world.c.post(f"{API}/jobs/{job['id']}/progress", json={"stage": "waiting", "fraction": 0.0, "detail": detail},
                     headers=world.h("telco_op"))
    assert (r.json()["status"], r.json()["status_detail"]) == ("approved", detail)


def test_progress_on_pending_job_names_the_status(world):
    job = world.submit()
    r = world.c.post(f"{API}/jobs/{job['id']}/progress", json={"stage": "psi", "fraction": 0.1},
                     headers=world.h("bank_admin"))
    assert r.status_code == 409 and "pending_approval" in r.json()["detail"][0]["message"]


def test_cancel_by_creator_then_final(world):
    job = world.submit()
    r = world.c.post(f"{API}/jobs/{job['id']}/cancel", headers=world.h("bank_analyst"))
    assert r.json()["status"] == "cancelled"
    again = world.c.post(f"{API}/jobs/{job['id']}/cancel", headers=world.h("telco_admin"))
    assert again.status_code == 409 and "cancelled" in again.json()["detail"][0]["message"]


def test_jobs_are_visible_only_to_involved_parties(world):
    job = world.submit()
    world.add_user("other_admin", "admin", "other")
    assert world.c.get(f"{API}/jobs", headers=world.h("other_admin")).json() == []
    r = world.c.get(f"{API}/jobs/{job['id']}", headers=world.h("other_admin"))
    assert r.status_code == 404
    assert [j["id"] for j in world.c.get(f"{API}/jobs", headers=world.h("auditor")).json()] == [job["id"]]
    assert [j["id"] for j in world.c.get(f"{API}/jobs", headers=world.h("telco_op")).json()] == [job["id"]]


def test_export_verifies_and_is_audited(world):
    world.approved_job()
    key = world.c.get(f"{API}/audit/public-key").json()["public_key"]

    r = world.c.get(f"{API}/audit/export", headers=world.h("auditor"))

    lines = r.text.splitlines(keepends=True)
    report = verify_export(lines, key)
    assert report.ok, report.reason
    assert '"action":"audit.exported"' in lines[-2]
    head = world.c.get(f"{API}/audit/head", headers=world.h("auditor")).json()
    assert head["seq"] == report.count - 1 and head["key"] == key


def test_failed_login_is_audited_without_the_token(world):
    bad = "not-a-real-token-but-long-enough-xyz"
    r = world.c.get(f"{API}/users/me", headers={"Authorization": f"Bearer {bad}"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    event = world.events()[-1]
    assert event["action"] == "auth.failed" and bad not in str(event) and bad[:6] not in str(event)


def test_dataset_reregistration_updates_schema(world):
    before = world.c.get(f"{API}/datasets/{world.datasets['telco']}", headers=world.h("bank_analyst")).json()
    after = world.register("telco", "subscribers", [{"name": "msisdn", "type": "string", "category": "identifier",
                                                    "security_level": 3, "key_type": "mobile"}])
    assert after["id"] == before["id"] and after["schema_digest"] != before["schema_digest"]
    assert _actions(world)[-1] == "dataset.updated"


def test_party_lookup_names_missing_party(world):
    r = world.c.get(f"{API}/parties/nowhere", headers=world.h("auditor"))
    assert r.status_code == 404 and "nowhere" in r.json()["detail"][0]["message"]
    assert world.c.get(f"{API}/parties/bank", headers=world.h("auditor")).json()["kind"] == "bank"


def test_admin_creates_only_own_party_staff(world):
    ok = world.c.post(f"{API}/users", json={"name": "bob", "role": "analyst", "party": "bank"},
                      headers=world.h("bank_admin"))
    other = world.c.post(f"{API}/users", json={"name": "eve", "role": "analyst", "party": "telco"},
                         headers=world.h("bank_admin"))
    admin = world.c.post(f"{API}/users", json={"name": "mal", "role": "admin", "party": "bank"},
                         headers=world.h("bank_admin"))
    assert ok.status_code == 201 and len(ok.json()["token"]) >= 43
    assert (other.status_code, admin.status_code) == (403, 403)
    assert world.c.get(f"{API}/users/me", headers={"Authorization": f"Bearer {ok.json()['token']}"}).json()["name"] \
        == "bob"


def test_user_shape_rules(world):
    auditor_with_party = {"name": "aud2", "role": "auditor", "party": "bank"}
    analyst_without = {"name": "an2", "role": "analyst"}
    for body in (auditor_with_party, analyst_without):
        r = world.c.post(f"{API}/users", json=body, headers=world.h("bootstrap"))
        assert r.status_code == 400 and r.json()["detail"][0]["field"] == "body.party"
    dup = world.c.post(f"{API}/users", json={"name": "auditor", "role": "auditor"}, headers=world.h("bootstrap"))
    assert dup.status_code == 409


def test_the_app_runs_on_the_memory_store_too(tmp_path):
    world = World(TestClient(create_app(app_settings(tmp_path), store=MemoryStore()))).populate()
    job = world.approved_job()
    assert job["digest"] == expected_digest(job)
    assert [e["seq"] for e in world.events()] == list(range(len(world.events())))
