"""The ledger cross-check across attempts of a retried job (issue 10, item 4).

Prepare: a coordinator (TestClient), two nodes with real ``EgressLedger``s and ``CoordinatorClient``s,
an approved job whose first attempt fails mid-exchange: the bank reports the failure first, so the
telco's own failure report (the attempt its killed process ran) is refused by the job's state.
Execute: the telco reports anyway, the job is retried, attempt 2 runs and both report success;
``cross_check`` over both ledgers and the audit export.
Assert: the refused failure report is audited with its ledger receipts, so every message of the failed
attempt is accounted for and listed under that attempt; a message naming an attempt the coordinator
never ran is still flagged (``unknown_attempt``), and so is a message of a job the node never reported.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from coordinator.crosscheck import LedgerInput, cross_check, format_text
from node.coordinator_client import CoordinatorError
from node.runner import ledger_receipts
from protocols.wire.control import JobResultReport
from tests.coordinator.lineage.federation import API, Node, audit_export, lines, nodes
from tests.support.coordinator import World


def _send(node: Node, peer: str, job_id: int, attempt: int, n: int) -> None:
    for i in range(n):
        node.ledger.record(peer=peer, kind="psi.points", job_id=job_id, attempt=attempt, ref=f"psi/{i}/1of1",
                           payload=hashlib.sha256(b"%s %d %d" % (node.party.encode(), attempt, i)).digest() * 8)


def _report(node: Node, job_id: int, status: str, attempt: int) -> None:
    node.client.report_result(job_id, JobResultReport(status=status, attempt=attempt, detail=f"{status} here",
                                                      **ledger_receipts(node.ledger, job_id)))


def _check(pair: dict[str, Node], audit: Path, tmp: Path) -> Any:
    given = [LedgerInput(p, lines(n.export(tmp / f"{p}.jsonl")), p) for p, n in pair.items()]
    return cross_check(given, lines(audit))


@pytest.fixture
def retried(world: World, tmp_path: Path) -> dict[str, Any]:
    """Attempt 1 fails (the telco's report refused but audited), attempt 2 succeeds."""
    pair = nodes(world, tmp_path, transport=world.c._transport)
    job = world.approved_job()
    bank, telco = pair["bank"], pair["telco"]
    _send(bank, "telco", job["id"], 1, 2)
    _send(telco, "bank", job["id"], 1, 3)  # the telco's attempt 1 answered, then was killed
    _report(bank, job["id"], "failed", 1)  # the bank gives up first: the job fails
    with pytest.raises(CoordinatorError) as refused:
        _report(telco, job["id"], "failed", 1)  # the restarted telco's report of its interrupted attempt
    assert refused.value.status_code == 409
    r = world.c.post(f"{API}/jobs/{job['id']}/retry", json={"reason": "telco restarted"},
                     headers=world.h("bank_analyst"))
    assert r.status_code == 200, r.text
    world.approve(r.json(), "party:bank", "bank_admin")
    assert world.approve(r.json(), "party:telco", "telco_admin").json()["status"] == "approved"
    _send(bank, "telco", job["id"], 2, 2)
    _send(telco, "bank", job["id"], 2, 2)
    _report(telco, job["id"], "succeeded", 2)
    _report(bank, job["id"], "succeeded", 2)
    return {"pair": pair, "job": job, "world": world}


def test_a_failed_attempts_messages_are_matched_to_its_audited_report(retried, tmp_path):
    world, job, pair = retried["world"], retried["job"], retried["pair"]
    audit = audit_export(world, tmp_path / "audit.jsonl")

    result = _check(pair, audit, tmp_path)

    print(format_text(result))
    assert result.ok, result.findings
    refused = [e for e in world.events() if e["action"] == "job.result" and e["object"] == f"job:{job['id']}"
               and e["details"]["party"] == "telco" and e["details"].get("accepted") is False]
    assert len(refused) == 1 and refused[0]["details"]["attempt"] == 1
    assert refused[0]["details"]["messages_sent"] == 3  # the receipts of the killed attempt
    telco = next(s for s in result.ledgers if s.party == "telco")
    assert telco.failed_attempts == ((job["id"], 1, 3),)
    assert f"job {job['id']} attempt 1: 3" in format_text(result)


def test_a_message_of_no_known_attempt_is_flagged(retried, tmp_path):
    world, job, pair = retried["world"], retried["job"], retried["pair"]
    _send(pair["telco"], "bank", job["id"], 7, 1)  # attempt 7 of a job the coordinator ran twice
    audit = audit_export(world, tmp_path / "audit.jsonl")

    result = _check(pair, audit, tmp_path)

    assert [(f.code, f.party, f.job_id) for f in result.findings] == [("unknown_attempt", "telco", job["id"])]
    assert "attempts 1..2" in result.findings[0].message
    assert "cross-check FAILED: 1 unknown_attempt" in format_text(result)


def test_a_failed_attempt_nobody_reported_is_still_unreported(world, tmp_path):
    pair = nodes(world, tmp_path, transport=world.c._transport)
    job = world.approved_job()
    _send(pair["bank"], "telco", job["id"], 1, 1)
    _send(pair["telco"], "bank", job["id"], 1, 2)
    _report(pair["bank"], job["id"], "failed", 1)  # the telco never reports its attempt
    audit = audit_export(world, tmp_path / "audit.jsonl")

    result = _check(pair, audit, tmp_path)

    assert ("unreported", "telco", job["id"]) in [(f.code, f.party, f.job_id) for f in result.findings]
