"""An in-process hetero LR federation for tests: the coordinator's arbiter and both party jobs, no Flower.

The arbiter loop plays the ServerApp (one call of :meth:`PartyJob.on_round` per party and round, both
parties of a round concurrently, as two SuperNodes would); :class:`Link` plays the mutual-TLS data
plane (``exchange`` delivers the body to the other party's ``on_peer``). Each party stores its part in
a real :class:`ModelStore` under its own state directory, as the node does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from coordinator.flower.arbiters import LrJobArbiter
from node.jobs.training._data import PartyData
from node.jobs.training._party import JobSpec, PartyJob, make_party_job
from node.jobs.training.alignment import aligned_from
from node.jobs.training.checkpoints import checkpoint_dir
from node.model_store import ModelStore
from node.peer import PeerError, PeerMessage
from protocols.vfl.model_parts import DataDigests, FeatureColumn, ModelCard
from protocols.vfl.rounds import LrRound, RoundPayload, TrainingError, decode_payload
from protocols.wire.control import JobKind, KeyType

OTHER = {"bank": "telco", "telco": "bank"}
JOB_ID = 7
DIGEST = hashlib.sha256(b"job 7").hexdigest()
ARBITER = {"iterations": 3, "batch_size": 64, "key_bits": 256, "allow_insecure_test_key": True,
           "optimizer": "adam", "learning_rate": 0.2, "gradient": "taylor", "warm_start": False,
           "feature_exponent": -5, "alpha": 0.01, "seed": 3}
"""Mini-batch Adam on the Taylor gradient (the settings before ``LrConfig.recommended``), small test key."""
RECOMMENDED = {"key_bits": 256, "allow_insecure_test_key": True, "seed": 3}
"""What the coordinator sends for a job without LR overrides (the recommended settings), small test key."""


def party_data(n: int = 160, seed: int = 5) -> dict[str, PartyData]:
    """Bank (3 features + label) and telco (2 features) rows of the same ``n`` customers, same order."""
    rng = np.random.default_rng(seed)
    x_bank, x_telco = rng.normal(size=(n, 3)), rng.normal(size=(n, 2))
    logits = x_bank @ [0.8, -0.5, 0.3] + x_telco @ [1.0, -0.7]
    labels = (rng.random(n) < 1.0 / (1.0 + np.exp(-logits))).astype(np.float64)
    keys: list[str | None] = [f"{100000 + i}" for i in range(n)]
    return {
        "bank": PartyData(KeyType.CUSTOMER_ID, keys, ["b0", "b1", "b2"], x_bank, labels, "b" * 64),
        "telco": PartyData(KeyType.CUSTOMER_ID, keys, ["t0", "t1"], x_telco, None, "c" * 64),
    }


@dataclass
class Link:
    """The data plane from one party to the other; ``gone`` makes it fail as a vanished node does."""

    sender: str
    target: Callable[[], PartyJob]
    gone: bool = False
    tamper: Callable[[str, bytes], bytes] | None = None

    def exchange(self, job_id: int, channel: str, seq: int, body: bytes, *, kind: str = "data") -> bytes:
        """Deliver ``body`` to the other party's inbox handler and return its answer."""
        if self.gone:
            raise PeerError("connection refused by the peer node", http_status=None)
        if self.tamper is not None:
            body = self.tamper(channel, body)
        return self.target().on_peer(PeerMessage(job_id, channel, seq, kind, self.sender, body))


@dataclass
class Federation:
    """Both party jobs of one run, their links and state directories."""

    root: Path
    data: dict[str, PartyData]
    allow_insecure_test_key: dict[str, bool] = field(default_factory=lambda: {"bank": True, "telco": True})
    jobs: dict[str, PartyJob] = field(default_factory=dict)
    links: dict[str, Link] = field(default_factory=dict)
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending: dict[str, Future[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.links = {p: Link(p, lambda o=OTHER[p]: self.jobs[o]) for p in ("bank", "telco")}  # type: ignore[misc]
        for party, data in self.data.items():
            spec = JobSpec(
                job_id=JOB_ID, job_digest=DIGEST, party=party, algorithm="lr", data=data,
                peer=lambda p=party: self.links[p],  # type: ignore[misc]
                allow_insecure_test_key=self.allow_insecure_test_key[party], wait_timeout=60.0,
                store=self._store(party), figures_dir=self.root / party / "figures",
                checkpoint_dir=checkpoint_dir(self.root / party, JOB_ID),
            )
            (self.root / party / "figures").mkdir(parents=True, exist_ok=True)
            job = make_party_job(spec, active=party == "bank")
            canonical = {str(k): i for i, k in enumerate(data.keys)}
            job.set_aligned(aligned_from(JOB_ID, canonical, frozenset(canonical), len(canonical)))
            self.jobs[party] = job

    def _store(self, party: str) -> Callable[[dict[str, Any], BaseModel, dict[str, Any]], None]:
        def store(metrics: dict[str, Any], part: BaseModel, extra: dict[str, Any]) -> None:
            columns = [FeatureColumn(name=n) for n in self.data[party].feature_names]
            card = ModelCard(job_id=JOB_ID, kind=JobKind.TRAIN_RISK, algo="hetero_lr", party=party,
                             peer_party="telco" if party == "bank" else "bank",
                             role="active" if party == "bank" else "passive", features=columns,
                             label="default" if party == "bank" else None,
                             data=DataDigests(keys_sha256=str(extra["keys_sha256"]), dataset_schema_digest="x"),
                             policy_version="test")
            ModelStore(self.root / party).save(card, part)
            self.parts[party] = part.model_dump(mode="json")

        return store

    def models(self, party: str) -> list[ModelCard]:
        """The models stored at ``party``'s node."""
        return ModelStore(self.root / party).list()

    def fail(self, reason: str) -> None:
        """Fail both jobs, as each node's handler does when its job fails."""
        for job in self.jobs.values():
            job.fail(TrainingError(reason))


def run(fed: Federation, arbiter: LrJobArbiter, *, crash_after: int | None = None,
        vanish: tuple[str, int] | None = None) -> list[dict[str, RoundPayload]]:
    """Drive the arbiter and both party jobs round by round; return every round's payloads.

    A party's failed round fails the other party's job too (as the coordinator does when the ServerApp
    run fails), then the failure is raised.

    Args:
        fed: the parties.
        arbiter: the coordinator's arbiter for this run.
        crash_after: stop (as if both nodes died) once the LR round of this iteration has been answered,
            before the arbiter sees the answers.
        vanish: ``(party, iteration)``: that party's node disappears at the LR round of that iteration
            (its round is never answered, its data plane refuses connections). The other party's round
            is left running in ``fed.pending``.
    """
    sent: list[dict[str, RoundPayload]] = []
    payloads = arbiter.start()
    pool = ThreadPoolExecutor(2)
    try:
        while payloads is not None:
            decoded = {p: decode_payload(b) for p, b in payloads.items()}
            sent.append(decoded)
            iteration = _lr_iteration(decoded)
            if vanish is not None and iteration == vanish[1]:
                fed.links[OTHER[vanish[0]]].gone = True  # the link *to* the vanished node
                fed.pending = {p: pool.submit(fed.jobs[p].on_round, b) for p, b in payloads.items() if p != vanish[0]}
                return sent
            futures = {p: pool.submit(fed.jobs[p].on_round, b) for p, b in payloads.items()}
            wait(futures.values(), timeout=120, return_when=FIRST_EXCEPTION)
            for party, future in futures.items():
                if future.done() and future.exception() is not None:
                    fed.fail(f"{party}: {future.exception()}")
            replies = {p: f.result(timeout=120) for p, f in futures.items()}
            if crash_after is not None and iteration == crash_after:
                fed.fail("node lost")
                return sent
            payloads = arbiter.handle(replies)
    finally:
        pool.shutdown(wait=False)
    return sent


def _lr_iteration(payloads: dict[str, RoundPayload]) -> int | None:
    bank = payloads.get("bank")
    return bank.instruction.iteration if isinstance(bank, LrRound) else None
