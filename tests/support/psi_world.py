"""Two real node runtimes (bank, telco) on loopback with pinned mutual TLS, a fake coordinator, captured egress.

Every byte a node sends goes through its ``EgressLedger.record`` (peer request chunks, peer responses
and errors, coordinator requests); ``World`` wraps that method on both runtimes and keeps the
payloads, so a test can search everything each node sent.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from node.adapters import open_source
from node.approval import sign_approval
from node.governance import describe, load_governance
from node.runtime import NodeRuntime
from node.settings import NodeSettings
from protocols.crypto.signing import job_digest
from protocols.wire.control import (
    ApprovalPublic,
    DatasetPublic,
    Decision,
    JobInput,
    JobKind,
    JobParams,
    JobProgress,
    JobPublic,
    JobResultReport,
    JobStatus,
    PartyKind,
    PartyPublic,
    Purpose,
    job_terms,
)

NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
GOVERNANCE = Path(__file__).resolve().parents[2] / "demo" / "governance"


class FakeCoordinator:
    """Parties, datasets, jobs; records progress and results."""

    def __init__(self) -> None:
        self.parties: dict[str, PartyPublic] = {}
        self.datasets: dict[int, DatasetPublic] = {}
        self.jobs: dict[int, JobPublic] = {}
        self.progress: list[tuple[int, str, JobProgress]] = []
        self.results: dict[int, dict[str, JobResultReport]] = {}
        self._lock = threading.Lock()

    def transport(self, party: str) -> httpx.MockTransport:
        return httpx.MockTransport(lambda request: self.handle(party, request))

    def handle(self, party: str, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/v1")
        body = json.loads(request.content) if request.content else None
        with self._lock:
            if m := re.fullmatch(r"/parties/([a-z0-9_\-]+)", path):
                return httpx.Response(200, json=self.parties[m[1]].model_dump(mode="json"))
            if path == "/parties":
                return httpx.Response(200, json=[p.model_dump(mode="json") for p in self.parties.values()])
            if m := re.fullmatch(r"/datasets/(\d+)", path):
                return httpx.Response(200, json=self.datasets[int(m[1])].model_dump(mode="json"))
            if path == "/nodes/jobs":
                status = request.url.params["status"]
                return httpx.Response(200, json=[j.model_dump(mode="json") for j in self.jobs.values()
                                                 if j.status == status])
            if m := re.fullmatch(r"/jobs/(\d+)/progress", path):
                self.progress.append((int(m[1]), party, JobProgress.model_validate(body)))
                return httpx.Response(200, json={"ok": True})
            if m := re.fullmatch(r"/jobs/(\d+)/result", path):
                self.results.setdefault(int(m[1]), {})[party] = JobResultReport.model_validate(body)
                return httpx.Response(200, json={"ok": True})
        return httpx.Response(404, json={"detail": f"no route {path}"})


@dataclass
class Node:
    name: str
    runtime: NodeRuntime
    server: object
    sent: list[bytes] = field(default_factory=list)


class World:
    """Bank and telco node runtimes with servers, datasets registered, egress captured."""

    def __init__(self, tmp: Path, data: dict[str, Path], *, handlers: dict[str, dict]) -> None:
        self.coordinator = FakeCoordinator()
        self.handlers = handlers
        self.nodes: dict[str, Node] = {}
        for name in ("bank", "telco"):
            settings = NodeSettings(party=name, kind=name, api_token="t0k3n-for-tests", state_dir=tmp / name,
                                    poll_interval=0.2)
            rt = NodeRuntime.open(settings, create_keys=True, transport=self.coordinator.transport(name))
            server = rt.server(port=0)
            server.start()
            node = Node(name, rt, server)
            self._capture(node)
            self.nodes[name] = node
            self.coordinator.parties[name] = PartyPublic(
                id=len(self.nodes), name=name, kind=PartyKind(name), signing_key=rt.keys.signing.public_hex,
                sealing_key=rt.keys.sealing_public_hex, tls_fingerprint=rt.keys.tls_fingerprint,
                node_url=f"https://localhost:{server.port}", created_at=NOW)
        for node in self.nodes.values():
            node.runtime.refresh_pins()
        self.dataset_ids = {}
        for dataset_id, (name, party) in enumerate(
            [("bank_customers", "bank"), ("bank_lost_contacts", "bank"), ("telco_subscribers", "telco")], start=1
        ):
            self._register(dataset_id, name, party, data[name])

    @staticmethod
    def _capture(node: Node) -> None:
        ledger = node.runtime.ledger
        original = ledger.record

        def record(*, peer, kind, payload, job_id=None, ref=""):
            node.sent.append(bytes(payload))
            return original(peer=peer, kind=kind, payload=payload, job_id=job_id, ref=ref)

        ledger.record = record  # type: ignore[method-assign]

    def _register(self, dataset_id: int, name: str, party: str, path: Path) -> None:
        gov_path = GOVERNANCE / f"{name}.yaml"
        with open_source(f"csv://{path}") as source:
            entry = describe(source, load_governance(gov_path))
        self.coordinator.datasets[dataset_id] = DatasetPublic(
            id=dataset_id, party=party, schema_digest="0" * 64, created_at=NOW, **entry.model_dump())
        self.nodes[party].runtime.datasets.put(dataset_id, name, f"csv://{path}", gov_path)
        self.dataset_ids[name] = dataset_id

    def submit(self, job_id: int, kind: JobKind, purpose: Purpose, inputs: list[JobInput], params: JobParams
               ) -> JobPublic:
        approvers = ["party:bank", "party:telco"]
        terms = job_terms(job_id, kind, purpose, "psi test", inputs, params, "v1")
        job = JobPublic(
            id=job_id, kind=kind, purpose=purpose, title="psi test", inputs=inputs, params=params,
            status=JobStatus.APPROVED, status_detail="", stage="", progress=0.0, digest=job_digest(terms),
            policy_version="v1", decision=Decision(allowed=True, policy_version="v1", rules=[],
                                                   required_approvals=approvers),
            required_approvals=approvers, approvals=[], outputs={}, created_by="analyst", created_at=NOW,
            updated_at=NOW)
        approvals = []
        for name, node in self.nodes.items():
            a = sign_approval(job, node.runtime.keys.signing, name)
            approvals.append(ApprovalPublic(approver=a.approver, signature=a.signature, signer_key="", user="admin",
                                            created_at=NOW))
        job = job.model_copy(update={"approvals": approvals})
        self.coordinator.jobs[job_id] = job
        return job

    def run(self, *, timeout: float = 60.0) -> dict[str, list]:
        """Run both nodes' runners once, concurrently; return their outcomes."""
        outcomes: dict[str, list] = {}

        def go(name: str) -> None:
            outcomes[name] = self.nodes[name].runtime.runner(self.handlers[name]).run_once()

        threads = [threading.Thread(target=go, args=(n,)) for n in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout)
        assert not any(t.is_alive() for t in threads), "a node did not finish"
        return outcomes

    def close(self) -> None:
        for node in self.nodes.values():
            node.server.stop()
            node.runtime.close()
