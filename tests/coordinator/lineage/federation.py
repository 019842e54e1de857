"""Two nodes' worth of real egress ledgers against a coordinator: what the cross-check and lineage tests run on.

Each node is its real ``EgressLedger`` and its real ``CoordinatorClient`` (which records every control
message it sends in the ledger, as a node does). Data-plane messages are recorded the way the peer
client and the node's reply path record them (``ledger.record(peer=..., job_id=...)``), and results are
reported with ``node.runner.ledger_receipts``, the function the job runner uses.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from node.coordinator_client import CoordinatorClient
from node.ledger import EgressLedger
from node.runner import ledger_receipts
from protocols.wire.control import JobProgress, JobResultReport
from tests.support.coordinator import World

API = "/api/v1"


@dataclass
class Node:
    """One party's ledger and control-plane client."""

    party: str
    ledger: EgressLedger
    client: CoordinatorClient
    path: Path

    def send(self, peer: str, job_id: int | None, payload: bytes, kind: str = "psi.points") -> None:
        """Record one data-plane message to ``peer`` (the peer client records before sending)."""
        self.ledger.record(peer=peer, kind=kind, payload=payload, job_id=job_id, ref=f"{kind}/0/1of1")

    def report(self, job_id: int, outputs: dict[str, Any] | None = None) -> JobResultReport:
        """Report success as the runner does (receipts from the ledger, then the control message)."""
        report = JobResultReport(status="succeeded", outputs=outputs or {}, attempt=1,
                                 **ledger_receipts(self.ledger, job_id))
        self.client.report_result(job_id, report)
        return report

    def export(self, out: Path) -> Path:
        """``tandem-<party> ledger export --out`` (the same method)."""
        self.ledger.export_jsonl(out)
        return out


def nodes(world: World, tmp: Path, *, base_url: str = "http://testserver",
          transport: httpx.BaseTransport | None = None) -> dict[str, Node]:
    """A bank node (admin token) and a telco node (operator token) with ledgers under ``tmp``."""
    out = {}
    for party, who in (("bank", "bank_admin"), ("telco", "telco_op")):
        path = tmp / f"{party}-node.db"
        ledger = EgressLedger(path)
        client = CoordinatorClient(base_url, world.tokens[who], ledger, transport=transport)
        out[party] = Node(party, ledger, client, path)
    return out


def run_overlap(world: World, pair: dict[str, Node]) -> dict[str, Any]:
    """An approved overlap job run between the two ledgers: progress, two messages each way, both results."""
    job = world.approved_job()
    bank, telco = pair["bank"], pair["telco"]
    bank.client.report_progress(job["id"], JobProgress(stage="psi", fraction=0.5, attempt=1))
    for i in range(2):
        bank.send("telco", job["id"], hashlib.sha256(b"bank %d" % i).digest() * 10)
        telco.send("bank", job["id"], hashlib.sha256(b"telco %d" % i).digest() * 12, kind="psi.reply")
    telco.report(job["id"], {"bank_set_size": 4200})
    bank.report(job["id"], {"overlap": 1234})
    return job


def audit_export(world: World, out: Path) -> Path:
    """The coordinator's audit export, as the auditor downloads it."""
    r = world.c.get(f"{API}/audit/export", headers=world.h("auditor"))
    assert r.status_code == 200, r.text
    out.write_bytes(r.content)
    return out


def lines(path: Path) -> list[str]:
    """A file's lines (what the CLI and the page hand the cross-check)."""
    return path.read_text(encoding="utf-8").splitlines()
