"""The ε budget per (bank dataset, telco dataset) pair through the API: deny, charge, refund, list, race."""

from __future__ import annotations

import threading
from typing import Any

from coordinator.app import create_app
from tests.support.coordinator import API, TestClient, World, app_settings, party_create


def _submit(world: World, epsilon: float | None) -> dict[str, Any]:
    body = world.job_body()
    if epsilon is not None:
        body["params"]["epsilon"] = epsilon
    r = world.c.post(f"{API}/jobs", json=body, headers=world.h("bank_analyst"))
    assert r.status_code == 201, r.text
    return r.json()


def _approved(world: World, epsilon: float | None) -> dict[str, Any]:
    job = _submit(world, epsilon)
    assert world.approve(job, "party:bank", "bank_admin").status_code == 200
    r = world.approve(job, "party:telco", "telco_admin")
    assert r.status_code == 200 and r.json()["status"] == "approved", r.text
    return r.json()


def _budgets(world: World, who: str = "auditor") -> dict[str, Any]:
    r = world.c.get(f"{API}/budgets", headers=world.h(who))
    assert r.status_code == 200, r.text
    return r.json()


def _pair(world: World) -> dict[str, Any]:
    (pair,) = _budgets(world)["pairs"]
    return pair


def _events(world: World, action: str) -> list[dict[str, Any]]:
    return [e for e in world.events() if e["action"] == action]


def test_approval_charges_the_pair_and_audits_it(world):
    # Prepare
    job = _submit(world, 1.0)
    assert job["status"] == "pending_approval" and _budgets(world)["pairs"] == []

    # Execute
    _approved(world, None)  # an exact count on the same pair spends nothing
    world.approve(job, "party:bank", "bank_admin")
    approved = world.approve(job, "party:telco", "telco_admin").json()

    # Assert
    assert approved["status"] == "approved"
    pair = _pair(world)
    assert (pair["bank_dataset_id"], pair["telco_dataset_id"]) == (world.datasets["bank"], world.datasets["telco"])
    assert (pair["bank_party"], pair["telco_party"]) == ("bank", "telco")
    assert (pair["budget"], pair["spent"], pair["remaining"]) == (3.0, 1.0, 2.0)
    assert (pair["charged_jobs"], pair["refunded_jobs"]) == ([job["id"]], [])
    (charged,) = _events(world, "budget.charged")
    assert charged["object"] == f"job:{job['id']}"
    assert charged["details"] == {"pair": [world.datasets["bank"], world.datasets["telco"]], "epsilon": 1.0,
                                  "spent": 1.0, "budget": 3.0}
    actions = [e["action"] for e in world.events()]
    assert actions[-3:] == ["approval.added", "budget.charged", "job.status"]


def test_exhausted_budget_denies_submission_with_rule_and_remaining(world):
    for epsilon in (1.0, 1.0, 0.5):
        _approved(world, epsilon)

    job = _submit(world, 1.0)

    assert job["status"] == "rejected"
    assert job["status_detail"] == "denied by policy: R16-epsilon-budget"
    (denial,) = [r for r in job["decision"]["rules"] if not r["allowed"]]
    assert denial["rule_id"] == "R16-epsilon-budget" and denial["field"] == "params.epsilon"
    assert "0.5 of 3 remaining" in denial["message"] and f"bank dataset {world.datasets['bank']}" in denial["message"]
    assert "lower params.epsilon to at most 0.5" in denial["fix"] and "ask compliance" in denial["fix"]
    assert _submit(world, 0.5)["status"] == "pending_approval"  # what is left still fits
    assert _submit(world, None)["status"] == "pending_approval"  # and an exact count needs no budget


def test_budget_spent_after_submission_refuses_the_final_approval(world):
    # Prepare: four jobs each fit at submission; three of them use the whole budget
    late = _submit(world, 1.0)
    first = [_approved(world, 1.0) for _ in range(3)]
    assert world.approve(late, "party:bank", "bank_admin").status_code == 200

    # Execute
    r = world.approve(late, "party:telco", "telco_admin")

    # Assert: refused with R16's wording, not recorded, audited; the job still waits
    assert r.status_code == 409
    detail = r.json()["detail"][0]
    assert detail["message"].startswith("R16-epsilon-budget: ") and "0 of 3 remaining" in detail["message"]
    assert detail["field"] == "params.epsilon" and "exact count" in detail["fix"]
    job = world.c.get(f"{API}/jobs/{late['id']}", headers=world.h("bank_analyst")).json()
    assert job["status"] == "pending_approval" and [a["approver"] for a in job["approvals"]] == ["party:bank"]
    (refused,) = _events(world, "budget.refused")
    assert refused["object"] == f"job:{late['id']}" and "R16-epsilon-budget" in refused["details"]["reason"]
    assert _pair(world)["spent"] == 3.0

    # a refund makes room again
    world.c.post(f"{API}/jobs/{first[0]['id']}/cancel", headers=world.h("bank_analyst"))
    assert world.approve(late, "party:telco", "telco_admin").json()["status"] == "approved"
    assert _pair(world)["spent"] == 3.0


def test_cancel_refunds_the_charge(world):
    job = _approved(world, 1.0)

    r = world.c.post(f"{API}/jobs/{job['id']}/cancel", headers=world.h("bank_analyst"))

    assert r.json()["status"] == "cancelled"
    pair = _pair(world)
    assert (pair["spent"], pair["remaining"], pair["charged_jobs"], pair["refunded_jobs"]) == (0.0, 3.0, [],
                                                                                                [job["id"]])
    (refunded,) = _events(world, "budget.refunded")
    assert refunded["details"] == {"pair": [world.datasets["bank"], world.datasets["telco"]], "epsilon": 1.0,
                                   "reason": "job cancelled"}


def test_failure_before_any_result_refunds(world):
    job = _approved(world, 1.0)

    r = world.c.post(f"{API}/jobs/{job['id']}/progress", json={"stage": "psi.mobile", "fraction": 0.2,
                                                                "status": "failed", "detail": "peer gone"},
                     headers=world.h("telco_op"))

    assert r.json()["status"] == "failed"
    assert _pair(world)["spent"] == 0.0
    assert _events(world, "budget.refunded")[0]["details"]["reason"] == "job failed"


def test_failure_after_the_count_was_released_keeps_the_charge(world):
    # Prepare: the bank reported its (noised) count, so the ε is spent
    job = _approved(world, 1.0)
    r = world.c.post(f"{API}/jobs/{job['id']}/result", json={"status": "succeeded", "outputs": {"overlap": 1234}},
                     headers=world.h("bank_admin"))
    assert r.status_code == 200, r.text

    # Execute
    r = world.c.post(f"{API}/jobs/{job['id']}/result", json={"status": "failed", "detail": "disk full"},
                     headers=world.h("telco_op"))

    # Assert
    assert r.json()["status"] == "failed"
    assert _pair(world)["spent"] == 1.0 and _events(world, "budget.refunded") == []


def test_concurrent_final_approvals_cannot_overspend(tmp_path):
    # Prepare: a file database, as deployed (the shared connection of in-memory SQLite is not meant for
    # concurrent requests); six 1.0 jobs, each missing only the telco's approval; the budget holds three
    settings = app_settings(tmp_path, database_url=f"sqlite:///{tmp_path}/coord.db")
    client = TestClient(create_app(settings))
    world = World(client).populate()
    jobs = [_submit(world, 1.0) for _ in range(6)]
    for job in jobs:
        assert world.approve(job, "party:bank", "bank_admin").status_code == 200
    codes: list[int] = []
    start = threading.Barrier(len(jobs))

    def approve(job: dict[str, Any]) -> None:
        start.wait()
        codes.append(world.approve(job, "party:telco", "telco_admin").status_code)

    # Execute
    threads = [threading.Thread(target=approve, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Assert
    assert sorted(codes) == [200] * 3 + [409] * 3
    pair = _pair(world)
    assert pair["spent"] == 3.0 and len(pair["charged_jobs"]) == 3
    assert len(_events(world, "budget.charged")) == 3 and len(_events(world, "budget.refused")) == 3
    client.app.state.context.store.close()


def test_budgets_visible_to_auditor_and_admins_of_involved_parties_only(world):
    _approved(world, 0.5)
    world.add_user("other_admin", "admin", "other")
    body = party_create("other", "bank").model_dump(mode="json")
    assert world.c.post(f"{API}/parties", json=body, headers=world.h("other_admin")).status_code == 200

    seen = {who: len(_budgets(world, who)["pairs"]) for who in ("auditor", "bank_admin", "telco_admin", "other_admin")}

    assert seen == {"auditor": 1, "bank_admin": 1, "telco_admin": 1, "other_admin": 0}
    limits = _budgets(world, "other_admin")
    assert (limits["epsilon_budget_per_pair"], limits["epsilon_max_per_job"], limits["epsilon_default"]) == (
        3.0, 1.0, 0.5)
    assert world.c.get(f"{API}/budgets", headers=world.h("bank_analyst")).status_code == 403


def _site_job(world: World) -> dict[str, Any]:
    """An approved site_selection job (ε 1.0) over a telco cell dataset and a bank branch dataset."""
    grid = {"name": "home_grid", "type": "string", "category": "sensitive", "security_level": 3,
            "desensitisation": "generalise", "purposes": ["site_selection"]}
    lat = {"name": "lat", "type": "float", "category": "feature", "security_level": 2, "purposes": ["site_selection"]}
    world.register("telco", "cells", [grid])
    world.register("bank", "branches", [lat])
    body = {"kind": "site_selection", "purpose": "site_selection", "title": "branches",
            "inputs": [{"dataset_id": world.datasets["telco"], "feature_fields": ["home_grid"]},
                       {"dataset_id": world.datasets["bank"], "feature_fields": ["lat"]}],
            "params": {"output_mode": "count", "epsilon": 1.0, "n_sites": 2, "radius_km": 2.0}}
    r = world.c.post(f"{API}/jobs", json=body, headers=world.h("bank_analyst"))
    assert r.status_code == 201, r.text
    job = r.json()
    world.approve(job, "party:bank", "bank_admin")
    r = world.approve(job, "party:telco", "telco_admin")
    assert r.json()["status"] == "approved", r.text
    return r.json()


def test_a_site_selection_that_ran_keeps_its_charge_whatever_the_reports_say(world):
    # Prepare: the telco started (its release goes straight to the bank), then a party fails its report,
    # as a bank that read the release and failed on purpose would
    job = _site_job(world)
    r = world.c.post(f"{API}/jobs/{job['id']}/progress", json={"stage": "sites: aggregating", "fraction": 0.2},
                     headers=world.h("telco_op"))
    assert r.json()["status"] == "running", r.text

    # Execute
    r = world.c.post(f"{API}/jobs/{job['id']}/result", json={"status": "failed", "detail": "peer gone"},
                     headers=world.h("telco_op"))

    # Assert: no refund, so a retry cannot buy a fresh noised release for nothing
    assert r.json()["status"] == "failed"
    assert _pair(world)["spent"] == 1.0 and _events(world, "budget.refunded") == []


def test_a_site_selection_that_never_ran_is_refunded(world):
    job = _site_job(world)

    r = world.c.post(f"{API}/jobs/{job['id']}/cancel", headers=world.h("bank_analyst"))

    assert r.json()["status"] == "cancelled"
    assert _pair(world)["spent"] == 0.0 and _events(world, "budget.refunded")[0]["details"]["reason"] == "job cancelled"
