"""Shared parts of the report tests: a job run through the real API, with both parties' results posted."""

from __future__ import annotations

from typing import Any

from tests.support.coordinator import API, World

BANK_RESULT = {"status": "succeeded", "outputs": {"count": 812, "bank_set_size": 5000, "note": "row text"},
               "ledger_head": "a" * 64, "messages_sent": 3, "bytes_sent": 12345}
TELCO_RESULT = {"status": "succeeded", "outputs": {"bank_set_size": 5000, "matched_ids": [1, 2, 3]},
                "ledger_head": "b" * 64, "messages_sent": 2, "bytes_sent": 999}


def run_job(world: World, epsilon: float | None = 0.5, results: bool = True) -> dict[str, Any]:
    """Submit a count-mode overlap (with ``epsilon``), have both parties approve, post both nodes' results."""
    body = world.job_body()
    if epsilon is not None:
        body["params"]["epsilon"] = epsilon
    r = world.c.post(f"{API}/jobs", json=body, headers=world.h("bank_analyst"))
    assert r.status_code == 201, r.text
    job = r.json()
    world.approve(job, "party:bank", "bank_admin")
    assert world.approve(job, "party:telco", "telco_admin").json()["status"] == "approved"
    if results:
        r = world.c.post(f"{API}/jobs/{job['id']}/result", json=BANK_RESULT, headers=world.h("bank_admin"))
        assert r.status_code == 200, r.text
        r = world.c.post(f"{API}/jobs/{job['id']}/result", json=TELCO_RESULT, headers=world.h("telco_op"))
        assert r.json()["status"] == "succeeded", r.text
    return world.c.get(f"{API}/jobs/{job['id']}", headers=world.h("auditor")).json()


def sign_in_auditor(world: World) -> None:
    """Open a browser session for the auditor on the TestClient (the login form, as a browser would)."""
    r = world.c.post("/login", data={"token": world.tokens["auditor"]}, follow_redirects=False)
    assert r.status_code == 303, r.text


def export_lines(world: World) -> list[bytes]:
    """The audit export as an auditor downloads it, line by line."""
    r = world.c.get(f"{API}/audit/export", headers=world.h("auditor"))
    assert r.status_code == 200, r.text
    return r.content.splitlines(keepends=True)
