"""End to end: both training jobs through a real SuperLink (coordinator) and real SuperNodes (nodes).

Coordinator, bank node and telco node run as separate processes (as in the demo); the coordinator's
launcher starts the SuperLink and one ServerApp run per job; each node starts its own SuperNode.
Small synthetic population and test-only 512-bit Paillier keys keep it short.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from demo import run as demo
from demo.processes import ProcessGroup
from demo.synthetic import generate
from protocols.messages.control import JobStatus
from protocols.signing import SigningKey

pytestmark = pytest.mark.flower


def _federation(state: Path, group: ProcessGroup) -> demo.Federation:
    training, node_training = demo._training_env(state, 512)
    coord_url, bootstrap = demo._start_coordinator(state, group, training)
    auditor = SigningKey.generate()
    tokens = demo._create_users(coord_url, bootstrap, auditor)
    env = {p: {**demo._node_env(state, coord_url, p, tokens[f"{p}-admin"]), **node_training[p]}
           for p in ("bank", "telco")}
    fed = demo.Federation(state, coord_url, tokens, auditor, env, group)
    demo._setup(fed, state / "data", Path(demo.__file__).parent / "governance")
    demo._start_nodes(fed)
    return fed


def _train(fed: demo.Federation, body: dict[str, object]) -> tuple[int, dict[str, dict[str, float]]]:
    job = demo._submit(fed, body)
    demo._approve(fed, job)
    done = demo._wait_job(fed, job.id, timeout=300)
    assert done.status == JobStatus.SUCCEEDED, done.status_detail
    return job.id, done.outputs


def test_both_training_jobs_through_flower(tmp_path: Path) -> None:
    # Prepare
    generate(tmp_path / "data", n=2000, seed=11)
    group = ProcessGroup(tmp_path / "logs")
    with group.running():
        fed = _federation(tmp_path, group)
        jobs = dict(demo._jobs(demo._datasets(fed))[2:])
        risk, propensity = list(jobs.values())
        risk["params"] = {"output_mode": "model"}  # the recommended LR settings: 6 full-batch Newton iterations
        propensity["params"] = {"output_mode": "model", "trees": 2, "max_depth": 2}

        # Execute
        outcomes = [_train(fed, risk), _train(fed, propensity)]
        trails = {job_id: demo._job_trail(fed, job_id) for job_id, _ in outcomes}

    # Assert
    for (job_id, outputs), algorithm in zip(outcomes, ("hetero_lr", "secureboost"), strict=True):
        bank = outputs["bank"]
        assert 0.5 < bank["auc_federated"] <= 1.0 and 0.0 <= bank["ks_federated"] <= 1.0
        assert (tmp_path / "bank" / "jobs" / str(job_id) / "roc.png").stat().st_size > 0
        for party in ("bank", "telco"):
            card = json.loads((tmp_path / party / "models" / str(job_id) / "card.json").read_text())
            assert card["algo"] == algorithm and card["job_id"] == job_id and card["policy_version"]
            assert card["data"]["keys_sha256"] and (card["label"] is not None) == (party == "bank")
        started = [e for e in trails[job_id] if e["action"] == "training.run_started"]
        assert len(started) == 1
    risk_bank = outcomes[0][1]["bank"]
    assert risk_bank["iterations"] == 6 and risk_bank["resumed_from"] == 0 and risk_bank["flower_rounds_here"] == 8
