"""Both training jobs of the demo run went through the real SuperLink and SuperNodes and stored their models.

Reads the session's one demo run (``demo_run`` in tests/demo/conftest.py: coordinator, bank and telco node
processes, the coordinator's SuperLink, each node's SuperNode, 512-bit test keys) instead of starting a
federation of its own: the coordinator's database gives each job's outputs, the exported audit log its
trail, and each node's state directory the stored model card, parts and ROC chart. (The resume after a
lost node is tests/node/jobs/training/test_training_e2e.py.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from coordinator.store import SqlStore
from protocols.wire.control import JobKind, JobPublic, JobStatus

pytestmark = [pytest.mark.flower, pytest.mark.slow]

ALGORITHM = {JobKind.TRAIN_RISK: "hetero_lr", JobKind.TRAIN_PROPENSITY: "secureboost"}


def _jobs(state: Path) -> list[JobPublic]:
    store = SqlStore.from_url(f"sqlite:///{state / 'coordinator.db'}")
    try:
        with store.read() as tx:
            return tx.jobs.list_jobs()
    finally:
        store.close()


def _trail(state: Path, job_id: int) -> list[dict[str, Any]]:
    """Every event about ``job_id`` in the exported audit log, in order."""
    bodies = [json.loads(line) for line in (state / "audit.jsonl").read_text().splitlines()]
    return [b for b in (r.get("body", r) for r in bodies) if b.get("object") == f"job:{job_id}"]


@pytest.mark.parametrize("kind", list(ALGORITHM))
def test_every_training_job_succeeded_once_through_flower_and_both_nodes_stored_the_model(
        demo_run: Path, kind: JobKind) -> None:
    jobs = [j for j in _jobs(demo_run) if j.kind == kind]
    assert jobs, f"the demo ran no {kind} job"
    for job in jobs:  # the scenario's model, and for propensity also the marketing loop's app-propensity model
        _check_trained(demo_run, job)


def _check_trained(state: Path, job: JobPublic) -> None:
    assert job.status == JobStatus.SUCCEEDED and job.attempt == 1, job.status_detail
    bank = job.outputs["bank"]
    assert 0.5 < bank["auc_federated"] <= 1.0 and 0.0 <= bank["ks_federated"] <= 1.0
    assert (state / "bank" / "jobs" / str(job.id) / "roc.png").stat().st_size > 0
    for party in ("bank", "telco"):
        card = json.loads((state / party / "models" / str(job.id) / "card.json").read_text())
        assert card["algo"] == ALGORITHM[job.kind] and card["job_id"] == job.id and card["policy_version"]
        assert card["data"]["keys_sha256"] and (card["label"] is not None) == (party == "bank")
        if party == "bank":  # both model kinds store a bank-only fallback for customers the telco lacks
            fallback = card["fallback"]
            assert fallback["algo"] == "hetero_lr" and fallback["features"] and 0.5 < fallback["auc"] <= 1.0
            part = json.loads((state / party / "models" / str(job.id) / "part.json").read_text())
            assert len(part["fallback"]["weights"]) == len(fallback["features"])
    started = [e for e in _trail(state, job.id) if e["action"] == "training.run_started"]
    assert len(started) == 1, started
    if job.kind == JobKind.TRAIN_RISK:  # the recommended LR settings: 6 full-batch Newton iterations
        assert bank["iterations"] == 6 and bank["resumed_from"] == 0 and bank["flower_rounds_here"] == 8
