"""The cross-check of a real run: a coordinator process, a bank and a telco node process, an overlap job over
mutual TLS, and the exports taken with the commands the README gives (``tandem-<party> ledger export``).

The clean run passes ``tandem-coordinator audit cross-check`` with the signed head checked; the lineage
lists every message each node's ledger holds for the job. Then a message for a job the coordinator never
heard of is appended to the bank's real ledger (through ``EgressLedger``, as the node would record it), and
the command flags it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from demo.processes import ProcessGroup
from demo.steps import GOVERNANCE as DEMO_GOVERNANCE
from demo.steps import (
    Federation,
    approve,
    create_users,
    node_env,
    register_datasets,
    start_coordinator,
    start_nodes,
    submit,
    wait_job,
)
from node.ledger import EgressLedger
from protocols.crypto.signing import SigningKey

pytestmark = pytest.mark.slow


def _cross_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator.cli", "audit", "cross-check", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_a_real_two_node_run_cross_checks_clean_and_an_unknown_message_is_flagged(tmp_path: Path):
    from demo.synthetic import generate

    state = tmp_path / "fed"
    state.mkdir(mode=0o700)
    generate(state / "data", n=400, seed=7)
    group = ProcessGroup(state / "logs")
    with group.running():
        url, bootstrap = start_coordinator(state, group, {})
        auditor = SigningKey.generate()
        tokens = create_users(url, bootstrap, auditor)
        envs = {p: node_env(state, url, p, tokens[f"{p}-admin"], [auditor.public_hex]) for p in ("bank", "telco")}
        fed = Federation(state, url, tokens, auditor, envs, group)
        register_datasets(fed, {p: [(state / "data" / f"{n}.csv", DEMO_GOVERNANCE / f"{n}.yaml")]
                                for p, n in (("bank", "bank_customers"), ("telco", "telco_subscribers"))})
        start_nodes(fed)
        with fed.api("compliance") as c:
            ids = {d["name"]: d["id"] for d in c.get("/datasets").json()}
        job = submit(fed, {"kind": "audience_overlap", "purpose": "app_promotion", "title": "overlap",
                           "inputs": [{"dataset_id": ids["bank_customers"], "key_fields": ["id_number"]},
                                      {"dataset_id": ids["telco_subscribers"], "key_fields": ["id_number"]}],
                           "params": {"output_mode": "count"}})
        assert job.status == "pending_approval", job.status_detail
        approve(fed, job)
        done = wait_job(fed, job.id, timeout=300)
        assert done.status == "succeeded", done.status_detail
        with fed.api("compliance") as c:
            (state / "audit.jsonl").write_bytes(c.get("/audit/export").content)
            key = c.get("/audit/public-key").json()["public_key"]
            lineage = c.get(f"/jobs/{job.id}/lineage").json()
        for party in ("bank", "telco"):
            fed.node(party, "ledger", "export", "--out", str(state / f"{party}.jsonl"))

    ledgers = ["--ledger", f"bank={state / 'bank.jsonl'}", "--ledger", str(state / "telco.jsonl")]
    clean = _cross_check("--audit", str(state / "audit.jsonl"), *ledgers, "--key", key)
    print(clean.stdout, clean.stderr)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "signature checked" in clean.stdout and "chain ok" in clean.stdout
    for party in ("bank", "telco"):
        reported = next(m for m in lineage["messages"] if m["party"] == party)
        peer = {"bank": "telco", "telco": "bank"}[party]
        assert reported["status"] == "succeeded" and reported["messages_sent"] == len(reported["entries"]) > 0
        assert any(e["peer"] == peer for e in reported["entries"])

    ledger = EgressLedger(state / "bank" / "node.db")
    ledger.record(peer="telco", kind="psi.points", payload=b"\x01" * 64, job_id=job.id + 100, ref="x/0/1of1")
    ledger.export_jsonl(state / "bank-after.jsonl")
    ledger.close()
    flagged = _cross_check("--audit", str(state / "audit.jsonl"), "--ledger", str(state / "bank-after.jsonl"),
                           "--ledger", str(state / "telco.jsonl"))
    print(flagged.stdout)
    assert flagged.returncode == 1
    assert "FLAGGED unknown_job [bank]" in flagged.stdout and f"job {job.id + 100}" in flagged.stdout
