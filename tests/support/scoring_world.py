"""Bank and telco node runtimes on loopback (pinned mutual TLS), a fake coordinator, stored models.

Every byte either node sends passes its ``EgressLedger.record``; ``ScoringWorld`` keeps those payloads
so a test can search all of them.
"""

from __future__ import annotations

import threading
from pathlib import Path

from node.adapters import open_source
from node.approval import sign_approval
from node.governance import describe, load_governance
from node.jobs.scoring.api import bank_scoring, telco_scoring
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
    JobPublic,
    JobStatus,
    PartyKind,
    PartyPublic,
    Purpose,
    job_terms,
)
from tests.support.psi_world import NOW, FakeCoordinator
from tests.support.scoring_models import Population, Trained, store_models, write_dataset

BANK_DATASET, TELCO_DATASET = 1, 2


class ScoringWorld:
    """Two nodes serving, datasets registered, one model (``job_id``) stored on both."""

    def __init__(self, tmp: Path, pop: Population, trained: Trained, *, job_id: int = 7) -> None:
        self.tmp, self.coordinator = tmp, FakeCoordinator()
        self.runtimes: dict[str, NodeRuntime] = {}
        self.servers: dict[str, object] = {}
        self.sent: dict[str, list[bytes]] = {"bank": [], "telco": []}
        for name in ("bank", "telco"):
            settings = NodeSettings(party=name, kind=name, api_token="t0k3n-for-tests", state_dir=tmp / name,
                                    poll_interval=0.1)
            rt = NodeRuntime.open(settings, create_keys=True, transport=self.coordinator.transport(name))
            server = rt.server(port=0)
            server.start()
            self._capture(name, rt)
            self.runtimes[name], self.servers[name] = rt, server
            self.coordinator.parties[name] = PartyPublic(
                id=len(self.runtimes), name=name, kind=PartyKind(name), signing_key=rt.keys.signing.public_hex,
                sealing_key=rt.keys.sealing_public_hex, tls_fingerprint=rt.keys.tls_fingerprint,
                node_url=f"https://localhost:{server.port}", created_at=NOW)
        for rt in self.runtimes.values():
            rt.refresh_pins()
        self.register(BANK_DATASET, "bank", *write_dataset(tmp / "data", "bank_customers", pop.bank))
        self.register(TELCO_DATASET, "telco", *write_dataset(tmp / "data", "telco_subscribers", pop.telco))
        self.model_job = job_id
        self.bank_card, self.telco_card = store_models(tmp / "bank", tmp / "telco", job_id, trained, pop,
                                                       BANK_DATASET, TELCO_DATASET)
        self.telco_scoring = telco_scoring(self.runtimes["telco"])
        self.bank_scoring = bank_scoring(self.runtimes["bank"])

    def _capture(self, name: str, rt: NodeRuntime) -> None:
        original = rt.ledger.record

        def record(*, peer, kind, payload, job_id=None, ref=""):
            self.sent[name].append(bytes(payload))
            return original(peer=peer, kind=kind, payload=payload, job_id=job_id, ref=ref)

        rt.ledger.record = record  # type: ignore[method-assign]

    def register(self, dataset_id: int, party: str, csv: Path, gov_path: Path) -> None:
        with open_source(f"csv://{csv}") as source:
            entry = describe(source, load_governance(gov_path))
        self.coordinator.datasets[dataset_id] = DatasetPublic(
            id=dataset_id, party=party, schema_digest="0" * 64, created_at=NOW, **entry.model_dump())
        self.runtimes[party].datasets.put(dataset_id, entry.name, f"csv://{csv}", gov_path)

    def submit_score(self, job_id: int, *, bank_dataset: int = BANK_DATASET, telco_dataset: int = TELCO_DATASET
                     ) -> JobPublic:
        inputs = [JobInput(dataset_id=bank_dataset, key_fields=["id_number"]),
                  JobInput(dataset_id=telco_dataset, key_fields=["id_number"])]
        params = JobParams(output_mode="scores", model_job_id=self.model_job)
        approvers = ["party:bank", "party:telco"]
        terms = job_terms(job_id, JobKind.SCORE, Purpose.SCORING, "score", inputs, params, "v1")
        job = JobPublic(
            id=job_id, kind=JobKind.SCORE, purpose=Purpose.SCORING, title="score", inputs=inputs, params=params,
            status=JobStatus.APPROVED, status_detail="", stage="", progress=0.0, digest=job_digest(terms),
            policy_version="v1", decision=Decision(allowed=True, policy_version="v1", rules=[],
                                                   required_approvals=approvers),
            required_approvals=approvers, approvals=[], outputs={}, created_by="analyst", created_at=NOW,
            updated_at=NOW)
        approvals = [sign_approval(job, rt.keys.signing, name) for name, rt in self.runtimes.items()]
        job = job.model_copy(update={"approvals": [
            ApprovalPublic(approver=a.approver, signature=a.signature, signer_key="", user="admin", created_at=NOW)
            for a in approvals]})
        self.coordinator.jobs[job_id] = job
        return job

    def run(self, handlers: dict[str, dict], *, timeout: float = 60.0) -> dict[str, list]:
        outcomes: dict[str, list] = {}

        def go(name: str) -> None:
            outcomes[name] = self.runtimes[name].runner(handlers[name]).run_once()

        threads = [threading.Thread(target=go, args=(n,)) for n in self.runtimes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout)
        assert not any(t.is_alive() for t in threads), "a node did not finish"
        return outcomes

    def close(self) -> None:
        self.bank_scoring.close()
        for name, rt in self.runtimes.items():
            self.servers[name].stop()  # type: ignore[attr-defined]
            rt.close()
