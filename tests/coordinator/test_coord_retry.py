"""Retrying a failed job through the API: who may, when, policy re-evaluated, approvals, budget, audit, reports."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from sqlalchemy import text

from coordinator.store import JobUpdate, SqlStore
from protocols.wire.control import Decision, JobKind, Purpose
from tests.support.coordinator import API, NOW, World, expected_digest, job_create


def _retry(world: World, job: dict[str, Any], who: str = "bank_analyst", reason: str | None = "node restarted"):
    body = None if reason is None else {"reason": reason}
    return world.c.post(f"{API}/jobs/{job['id']}/retry", json=body, headers=world.h(who))


def _fail(world: World, job: dict[str, Any], detail: str = "telco node lost") -> dict[str, Any]:
    r = world.c.post(f"{API}/jobs/{job['id']}/result", json={"status": "failed", "detail": detail},
                     headers=world.h("telco_op"))
    assert r.status_code == 200 and r.json()["status"] == "failed", r.text
    return r.json()


def _failed_job(world: World, epsilon: float | None = None) -> dict[str, Any]:
    body = world.job_body()
    if epsilon is not None:
        body["params"]["epsilon"] = epsilon
    job = world.c.post(f"{API}/jobs", json=body, headers=world.h("bank_analyst")).json()
    world.approve(job, "party:bank", "bank_admin")
    approved = world.approve(job, "party:telco", "telco_admin").json()
    assert approved["status"] == "approved", approved
    return _fail(world, approved)


def _events(world: World, action: str, job: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [e for e in world.events() if e["action"] == action and (job is None or e["object"] == f"job:{job['id']}")]


def _set_policy(world: World, **changes: Any) -> None:
    ctx = world.c.app.state.context
    world.c.app.state.context = dataclasses.replace(ctx, policy=dataclasses.replace(ctx.policy, **changes))


def _budgets(world: World) -> dict[str, Any]:
    return world.c.get(f"{API}/budgets", headers=world.h("auditor")).json()


def _reapprove(world: World, retried: dict[str, Any]) -> dict[str, Any]:
    world.approve(retried, "party:bank", "bank_admin")
    approved = world.approve(retried, "party:telco", "telco_admin").json()
    assert approved["status"] == "approved", approved
    return approved


def test_a_failed_job_is_retried_as_a_fresh_attempt_that_every_party_signs_again(world):
    # Prepare
    job = _failed_job(world)
    assert job["attempt"] == 1 and job["status_detail"] == "telco: telco node lost"

    # Execute
    r = _retry(world, job)

    # Assert: a new attempt, a new digest (an approval signs one attempt), no approvals, the failed run's reports gone
    assert r.status_code == 200, r.text
    retried = r.json()
    assert (retried["status"], retried["attempt"], retried["approvals"]) == ("pending_approval", 2, [])
    assert retried["digest"] != job["digest"] and retried["digest"] == expected_digest(retried)
    assert retried["outputs"] == {}
    assert retried["status_detail"] == "attempt 2: waiting for approvals: party:bank, party:telco"
    (event,) = _events(world, "job.retried", job)
    assert event["actor"] == "user:bank_analyst"
    assert event["details"] == {"attempt": 2, "reason": "node restarted", "previous_detail": "telco: telco node lost",
                                "digest": retried["digest"], "digest_changed": True, "approvals_kept": []}
    moved = _events(world, "job.status", job)[-1]["details"]
    assert (moved["from"], moved["to"]) == ("failed", "pending_approval")
    assert [e["action"] for e in world.events()][-3:] == ["job.retried", "policy.decided", "job.status"]
    assert world.approve(job, "party:bank", "bank_admin").status_code == 403  # attempt 1's digest signs nothing now
    assert _reapprove(world, retried)["attempt"] == 2


def test_the_new_attempt_is_decided_by_its_own_reports_and_stale_ones_are_refused(world):
    # Prepare
    job = _failed_job(world)
    _reapprove(world, _retry(world, job).json())

    # Execute
    stale = world.c.post(f"{API}/jobs/{job['id']}/result", json={"status": "failed", "attempt": 1},
                         headers=world.h("bank_admin"))
    reports = [world.c.post(f"{API}/jobs/{job['id']}/result", json={"status": "succeeded", "attempt": 2,
                                                                     "outputs": {"overlap": 700}},
                            headers=world.h(who)) for who in ("bank_admin", "telco_op")]

    # Assert
    assert stale.status_code == 409 and stale.json()["detail"][0]["field"] == "body.attempt"
    assert [r.status_code for r in reports] == [200, 200]
    done = reports[-1].json()
    assert done["status"] == "succeeded" and done["attempt"] == 2
    assert done["outputs"] == {"telco": {"overlap": 700}}  # a node is answered with its own party's outputs
    seen = world.c.get(f"{API}/jobs/{job['id']}", headers=world.h("auditor")).json()["outputs"]
    assert seen == {"bank": {"overlap": 700}, "telco": {"overlap": 700}}


@pytest.mark.parametrize("state", ["pending_approval", "approved", "running", "succeeded", "rejected",
                                   "cancelled"])
def test_only_a_failed_job_can_be_retried(world, state):
    # Prepare
    if state == "rejected":
        job = world.submit(purpose="risk")
    elif state == "pending_approval":
        job = world.submit()
    else:
        job = world.approved_job()
    if state == "running":
        world.c.post(f"{API}/jobs/{job['id']}/progress", json={"stage": "psi", "fraction": 0.1},
                     headers=world.h("telco_op"))
    elif state == "succeeded":
        for who in ("bank_admin", "telco_op"):
            world.c.post(f"{API}/jobs/{job['id']}/result", json={"status": "succeeded"}, headers=world.h(who))
    elif state == "cancelled":
        world.c.post(f"{API}/jobs/{job['id']}/cancel", headers=world.h("bank_analyst"))
    assert world.c.get(f"{API}/jobs/{job['id']}", headers=world.h("bank_admin")).json()["status"] == state

    # Execute
    r = _retry(world, job)

    # Assert
    assert r.status_code == 409
    assert r.json()["detail"][0]["message"] == f"job {job['id']} is {state}; only a failed job can be retried"
    assert _events(world, "job.retried") == []


@pytest.mark.parametrize(("who", "status"), [("auditor", 403), ("telco_op", 403), ("other_analyst", 403),
                                             ("bank_admin", 200), ("telco_admin", 200)])
def test_who_may_retry(world, who, status):
    # Prepare: the creator is bank_analyst; admins of both involved parties approve jobs
    world.add_user("other_analyst", "analyst", "bank")
    job = _failed_job(world)

    # Execute
    r = _retry(world, job, who=who, reason=None)

    # Assert
    assert r.status_code == status, r.text
    if status == 403:
        assert world.c.get(f"{API}/jobs/{job['id']}", headers=world.h("bank_admin")).json()["status"] == "failed"
    else:
        assert _events(world, "job.retried", job)[0]["actor"] == f"user:{who}"


def test_a_job_the_policy_now_denies_stays_failed_with_the_rules_and_fixes(world):
    # Prepare: the new policy no longer lets audience_overlap serve marketing
    job = _failed_job(world)
    kinds = dict(world.c.app.state.context.policy.kinds)
    overlap = kinds[JobKind.AUDIENCE_OVERLAP]
    kinds[JobKind.AUDIENCE_OVERLAP] = dataclasses.replace(overlap, purposes=overlap.purposes - {Purpose.MARKETING})
    _set_policy(world, kinds=kinds, version="2099-01-01.1")

    # Execute
    r = _retry(world, job)

    # Assert
    assert r.status_code == 409
    detail = r.json()["detail"]
    assert "is now denied by policy 2099-01-01.1: R03" in detail[0]["message"]
    rules = detail[1:]
    assert rules and all(d["rule_id"].startswith("R03") and d["message"].startswith(d["rule_id"]) for d in rules)
    assert all(d["fix"] for d in rules) and detail[0]["fix"]
    after = world.c.get(f"{API}/jobs/{job['id']}", headers=world.h("bank_analyst")).json()
    assert (after["status"], after["attempt"], after["digest"]) == ("failed", 1, job["digest"])
    (refused,) = _events(world, "job.retry_refused", job)
    assert refused["actor"] == "user:bank_analyst" and refused["details"]["reason"] == "node restarted"
    assert refused["details"]["rules_denied"][0].startswith("R03")


def test_a_new_policy_version_changes_the_digest_so_the_job_waits_for_new_signatures(world):
    # Prepare
    job = _failed_job(world)
    _set_policy(world, version="2099-01-01.1")

    # Execute
    retried = _retry(world, job).json()
    world.approve(retried, "party:bank", "bank_admin")
    approved = world.approve(retried, "party:telco", "telco_admin").json()

    # Assert
    assert (retried["status"], retried["attempt"], retried["approvals"]) == ("pending_approval", 2, [])
    assert retried["policy_version"] == "2099-01-01.1" and retried["decision"]["policy_version"] == "2099-01-01.1"
    assert retried["digest"] != job["digest"] and retried["digest"] == expected_digest(retried)
    assert retried["status_detail"] == "attempt 2: waiting for approvals: party:bank, party:telco"
    (event,) = _events(world, "job.retried", job)
    assert event["details"]["digest_changed"] is True and event["details"]["approvals_kept"] == []
    assert approved["status"] == "approved" and approved["attempt"] == 2


def test_old_signatures_do_not_approve_the_new_digest(world):
    job = _failed_job(world)
    _set_policy(world, version="2099-01-01.1")
    retried = _retry(world, job).json()

    r = world.approve(job, "party:bank", "bank_admin")  # signs the old digest

    assert r.status_code == 403 and retried["status"] == "pending_approval"


def test_a_retry_charges_the_refunded_epsilon_again(world):
    # Prepare: the failed count job's ε was refunded
    job = _failed_job(world, epsilon=1.0)
    assert _budgets(world)["pairs"][0]["spent"] == 0.0

    # Execute
    retried = _reapprove(world, _retry(world, job).json())

    # Assert
    assert retried["status"] == "approved"
    (pair,) = _budgets(world)["pairs"]
    assert (pair["spent"], pair["charged_jobs"], pair["refunded_jobs"]) == (1.0, [job["id"]], [])
    assert len(_events(world, "budget.charged", job)) == 2 and len(_events(world, "budget.refunded", job)) == 1


def test_a_retry_is_refused_when_the_budget_was_spent_meanwhile(world):
    # Prepare: the failed job's refunded ε went to other jobs of the same pair
    job = _failed_job(world, epsilon=1.0)
    for epsilon in (1.0, 1.0, 0.5):
        other = world.c.post(f"{API}/jobs", json={**world.job_body(), "params": {"output_mode": "count",
                                                                                  "epsilon": epsilon}},
                             headers=world.h("bank_analyst")).json()
        world.approve(other, "party:bank", "bank_admin")
        assert world.approve(other, "party:telco", "telco_admin").json()["status"] == "approved"

    # Execute
    r = _retry(world, job)

    # Assert
    assert r.status_code == 409
    detail = r.json()["detail"]
    assert [d["rule_id"] for d in detail[1:]] == ["R16-epsilon-budget"]
    assert detail[1]["field"] == "params.epsilon" and "0.5 of 3 remaining" in detail[1]["message"]
    assert world.c.get(f"{API}/jobs/{job['id']}", headers=world.h("bank_analyst")).json()["status"] == "failed"
    assert _budgets(world)["pairs"][0]["spent"] == 2.5


def test_a_job_with_a_successful_report_is_not_retried(world):
    job = world.approved_job()
    world.c.post(f"{API}/jobs/{job['id']}/result", json={"status": "succeeded", "outputs": {"overlap": 9}},
                 headers=world.h("bank_admin"))
    _fail(world, job)

    r = _retry(world, job)

    assert r.status_code == 409 and "already reported success" in r.json()["detail"][0]["message"]


def test_nodes_see_the_retried_job_once_it_is_approved_again(world):
    job = _failed_job(world)
    retried = _retry(world, job).json()
    waiting = world.c.get(f"{API}/nodes/jobs", params={"status": "approved"}, headers=world.h("telco_op")).json()
    _reapprove(world, retried)

    listed = world.c.get(f"{API}/nodes/jobs", params={"status": "approved"}, headers=world.h("telco_op")).json()

    assert waiting == [] and [(j["id"], j["attempt"]) for j in listed] == [(job["id"], 2)]


def test_old_database_gains_the_attempt_column(tmp_path):
    url = f"sqlite:///{tmp_path}/old.db"
    old = SqlStore.from_url(url)
    decision = Decision(allowed=True, policy_version="1", rules=[], required_approvals=[])
    with old.write() as tx:
        job = tx.jobs.create_job(job_create(1), created_by="a", parties=["bank"], decision=decision, now=NOW)
    with old.engine.begin() as conn:
        conn.execute(text("ALTER TABLE job DROP COLUMN attempt"))
    old.close()

    upgraded = SqlStore.from_url(url)
    with upgraded.write() as tx:
        before = tx.jobs.get_job(job.id)
        after = tx.jobs.update_job(job.id, JobUpdate(attempt=2), NOW)
    upgraded.close()

    assert (before.attempt, after.attempt) == (1, 2)
