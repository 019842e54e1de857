"""Two real node runtimes (bank, telco) on loopback with pinned mutual TLS, a fake coordinator, captured egress.

Every byte a node sends goes through its ``EgressLedger.record`` (peer request chunks, peer responses
and errors, coordinator requests); ``World`` wraps that method on both runtimes and keeps the
payloads, so a test can search everything each node sent.

``World`` is the bare pair; ``psi_world`` registers the demo's three PSI datasets on it, and
``ScoringWorld`` adds two datasets and one trained model stored on both nodes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from demo.steps import GOVERNANCE
from node.adapters import open_source
from node.approval import sign_approval
from node.governance import describe, load_governance
from node.jobs.scoring.api import bank_scoring, telco_scoring
from node.runtime import NodeRuntime
from node.settings import NodeSettings
from protocols.crypto.signing import SigningKey
from protocols.wire.control import (
    ApprovalPublic,
    DatasetPublic,
    JobInput,
    JobKind,
    JobParams,
    JobPublic,
    PartyKind,
    PartyPublic,
    Purpose,
)
from tests.support.fake_coordinator import NOW, TwoPartyCoordinator, make_job
from tests.support.scoring_models import Population, Trained, store_models, write_dataset

PSI_DATASETS = [("bank_customers", "bank"), ("bank_lost_contacts", "bank"), ("telco_subscribers", "telco")]
BANK_DATASET, TELCO_DATASET = 1, 2


@dataclass
class Node:
    """One node: its runtime, its peer server, and every payload it sent."""

    name: str
    runtime: NodeRuntime
    server: object
    sent: list[bytes] = field(default_factory=list)


class World:
    """Bank and telco node runtimes with servers, known to one fake coordinator, egress captured."""

    def __init__(self, tmp: Path, *, handlers: dict[str, dict] | None = None, poll_interval: float = 0.2) -> None:
        self.tmp, self.coordinator = tmp, TwoPartyCoordinator()
        self.handlers = handlers if handlers is not None else {}
        self.nodes: dict[str, Node] = {}
        self.dataset_ids: dict[str, int] = {}
        self.auditor_key = SigningKey.generate()  # the compliance officer both nodes trust
        for name in ("bank", "telco"):
            self._start(name, poll_interval)
        for node in self.nodes.values():
            node.runtime.refresh_pins()

    @property
    def runtimes(self) -> dict[str, NodeRuntime]:
        """Each node's runtime, by party."""
        return {name: node.runtime for name, node in self.nodes.items()}

    @property
    def sent(self) -> dict[str, list[bytes]]:
        """Each node's sent payloads, by party."""
        return {name: node.sent for name, node in self.nodes.items()}

    def _start(self, name: str, poll_interval: float) -> None:
        settings = NodeSettings(party=name, kind=name, api_token="t0k3n-for-tests", state_dir=self.tmp / name,
                                poll_interval=poll_interval, auditor_keys=[self.auditor_key.public_hex])
        rt = NodeRuntime.open(settings, create_keys=True, transport=self.coordinator.transport(name))
        server = rt.server(port=0)
        server.start()
        node = Node(name, rt, server)
        _capture(node)
        self.nodes[name] = node
        self.coordinator.parties[name] = PartyPublic(
            id=len(self.nodes), name=name, kind=PartyKind(name), signing_key=rt.keys.signing.public_hex,
            sealing_key=rt.keys.sealing_public_hex, tls_fingerprint=rt.keys.tls_fingerprint,
            node_url=f"https://localhost:{server.port}", created_at=NOW)

    def register(self, dataset_id: int, party: str, csv: Path, gov_path: Path) -> None:
        """Describe ``csv`` under ``gov_path``, register it with the coordinator and on ``party``'s node."""
        with open_source(f"csv://{csv}") as source:
            entry = describe(source, load_governance(gov_path))
        self.coordinator.datasets[dataset_id] = DatasetPublic(
            id=dataset_id, party=party, schema_digest="0" * 64, created_at=NOW, **entry.model_dump())
        self.nodes[party].runtime.datasets.put(dataset_id, entry.name, f"csv://{csv}", gov_path)
        self.dataset_ids[entry.name] = dataset_id

    def submit(self, job_id: int, kind: JobKind, purpose: Purpose, inputs: list[JobInput], params: JobParams,
               *, title: str = "psi test", auditor: bool = True) -> JobPublic:
        """Put an approved job on the coordinator.

        It is signed by both nodes and, with ``auditor``, by the compliance officer whose key both trust.
        """
        owners = {i: d.party for i, d in self.coordinator.datasets.items()}
        job = make_job(job_id, kind=kind, purpose=purpose, inputs=inputs, params=params, title=title, parties=owners)
        approvals = []
        for name, node in self.nodes.items():
            a = sign_approval(job, node.runtime.keys.signing, name)
            approvals.append(ApprovalPublic(approver=a.approver, signature=a.signature, signer_key="", user="admin",
                                            created_at=NOW))
        if auditor:
            approvals.append(ApprovalPublic(approver="auditor", signature=self.auditor_key.sign_approval(job.digest),
                                            signer_key="", user="compliance", created_at=NOW))
        job = job.model_copy(update={"approvals": approvals})
        self.coordinator.jobs[job_id] = job
        return job

    def run(self, handlers: dict[str, dict] | None = None, *, timeout: float = 60.0) -> dict[str, list]:
        """Run both nodes' runners once, concurrently (``handlers`` or ``self.handlers``); return their outcomes."""
        handlers = handlers if handlers is not None else self.handlers
        outcomes: dict[str, list] = {}

        def go(name: str) -> None:
            outcomes[name] = self.nodes[name].runtime.runner(handlers[name]).run_once()

        threads = [threading.Thread(target=go, args=(n,)) for n in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout)
        assert not any(t.is_alive() for t in threads), "a node did not finish"
        return outcomes

    def close(self) -> None:
        """Stop both servers and close both runtimes."""
        for node in self.nodes.values():
            node.server.stop()  # type: ignore[attr-defined]
            node.runtime.close()


def _capture(node: Node) -> None:
    """Wrap ``node``'s egress ledger so every payload it records is also kept in ``node.sent``."""
    ledger = node.runtime.ledger
    original = ledger.record

    def record(*, peer, kind, payload, job_id=None, ref="", **more):  # noqa: ANN001, ANN003, ANN202
        node.sent.append(bytes(payload))
        return original(peer=peer, kind=kind, payload=payload, job_id=job_id, ref=ref, **more)

    ledger.record = record  # type: ignore[method-assign]


def psi_world(tmp: Path, data: dict[str, Path], *, handlers: dict[str, dict]) -> World:
    """A ``World`` with the demo's PSI datasets (paths in ``data``, governance from demo/governance) as 1, 2, 3."""
    world = World(tmp, handlers=handlers)
    for dataset_id, (name, party) in enumerate(PSI_DATASETS, start=1):
        world.register(dataset_id, party, data[name], GOVERNANCE / f"{name}.yaml")
    return world


class ScoringWorld(World):
    """Two nodes serving, datasets registered, one model (``job_id``) stored on both."""

    def __init__(self, tmp: Path, pop: Population, trained: Trained, *, job_id: int = 7) -> None:
        super().__init__(tmp, poll_interval=0.1)
        self.register(BANK_DATASET, "bank", *write_dataset(tmp / "data", "bank_customers", pop.bank))
        self.register(TELCO_DATASET, "telco", *write_dataset(tmp / "data", "telco_subscribers", pop.telco))
        self.model_job = job_id
        self.bank_card, self.telco_card = store_models(tmp / "bank", tmp / "telco", job_id, trained, pop,
                                                       BANK_DATASET, TELCO_DATASET)
        self.telco_scoring = telco_scoring(self.runtimes["telco"])
        self.bank_scoring = bank_scoring(self.runtimes["bank"])

    def submit_score(self, job_id: int, *, bank_dataset: int = BANK_DATASET, telco_dataset: int = TELCO_DATASET
                     ) -> JobPublic:
        """Submit a batch ``score`` job for the stored model over the two datasets."""
        inputs = [JobInput(dataset_id=bank_dataset, key_fields=["id_number"]),
                  JobInput(dataset_id=telco_dataset, key_fields=["id_number"])]
        params = JobParams(output_mode="scores", model_job_id=self.model_job)
        return self.submit(job_id, JobKind.SCORE, Purpose.SCORING, inputs, params, title="score")

    def close(self) -> None:
        """Close the bank's scoring service, then both nodes."""
        self.bank_scoring.close()
        super().close()
