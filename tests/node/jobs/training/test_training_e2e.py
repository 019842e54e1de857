"""End to end: training jobs through a real SuperLink (coordinator) and real SuperNodes (nodes).

Coordinator, bank node and telco node run as separate processes (as in the demo); the coordinator's
launcher starts the SuperLink and one ServerApp run per job attempt; each node starts its own SuperNode.
Small synthetic population and test-only 512-bit Paillier keys keep it short. The second test kills a
node mid-training, retries the failed job through the API and checks that it resumed.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import time
from pathlib import Path

import pytest

from demo import steps
from demo.processes import ProcessGroup, wait_until
from demo.scenario import training_jobs
from demo.synthetic import generate
from protocols.crypto.signing import SigningKey
from protocols.wire.control import JobPublic, JobStatus

pytestmark = pytest.mark.flower


def _federation(state: Path, group: ProcessGroup, bank_env: dict[str, str] | None = None) -> steps.Federation:
    training, node_training = steps.training_env(state, 512)
    coord_url, bootstrap = steps.start_coordinator(state, group, training)
    auditor = SigningKey.generate()
    tokens = steps.create_users(coord_url, bootstrap, auditor)
    env = {p: {**steps.node_env(state, coord_url, p, tokens[f"{p}-admin"], [auditor.public_hex]),
               **node_training[p]}
           for p in ("bank", "telco")}
    env["bank"].update(bank_env or {})
    fed = steps.Federation(state, coord_url, tokens, auditor, env, group)
    steps.register_demo_datasets(fed, state / "data")
    steps.start_nodes(fed)
    return fed


def _train(fed: steps.Federation, body: dict[str, object]) -> tuple[int, dict[str, dict[str, float]]]:
    job = steps.submit(fed, body)
    steps.approve(fed, job)
    done = steps.wait_job(fed, job.id, timeout=300)
    assert done.status == JobStatus.SUCCEEDED, done.status_detail
    return job.id, done.outputs


def test_both_training_jobs_through_flower(tmp_path: Path) -> None:
    # Prepare
    generate(tmp_path / "data", n=2000, seed=11)
    group = ProcessGroup(tmp_path / "logs")
    with group.running():
        fed = _federation(tmp_path, group)
        jobs = training_jobs(steps.datasets(fed))
        risk, propensity = list(jobs.values())
        risk["params"] = {"output_mode": "model"}  # the recommended LR settings: 6 full-batch Newton iterations
        propensity["params"] = {"output_mode": "model", "trees": 2, "max_depth": 2}

        # Execute
        outcomes = [_train(fed, risk), _train(fed, propensity)]
        trails = {job_id: steps.job_trail(fed, job_id) for job_id, _ in outcomes}

    # Assert
    for (job_id, outputs), algorithm in zip(outcomes, ("hetero_lr", "secureboost"), strict=True):
        bank = outputs["bank"]
        assert 0.5 < bank["auc_federated"] <= 1.0 and 0.0 <= bank["ks_federated"] <= 1.0
        assert (tmp_path / "bank" / "jobs" / str(job_id) / "roc.png").stat().st_size > 0
        for party in ("bank", "telco"):
            card = json.loads((tmp_path / party / "models" / str(job_id) / "card.json").read_text())
            assert card["algo"] == algorithm and card["job_id"] == job_id and card["policy_version"]
            assert card["data"]["keys_sha256"] and (card["label"] is not None) == (party == "bank")
            if party == "bank":  # both model kinds store a bank-only fallback for customers the telco lacks
                fallback = card["fallback"]
                assert fallback["algo"] == "hetero_lr" and fallback["features"] and 0.5 < fallback["auc"] <= 1.0
                part = json.loads((tmp_path / party / "models" / str(job_id) / "part.json").read_text())
                assert len(part["fallback"]["weights"]) == len(fallback["features"])
        started = [e for e in trails[job_id] if e["action"] == "training.run_started"]
        assert len(started) == 1
    risk_bank = outcomes[0][1]["bank"]
    assert risk_bank["iterations"] == 6 and risk_bank["resumed_from"] == 0 and risk_bank["flower_rounds_here"] == 8


def _wait_for(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear in {timeout:.0f} s")
        time.sleep(0.05)


def _kill(fed: steps.Federation, party: str) -> None:
    """Kill ``party``'s node process (and with it its SuperNode) mid-job."""
    (node,) = [s for s in fed.group.services if s.name == f"{party}-node"]
    os.killpg(node.proc.pid, signal.SIGKILL)
    node.proc.wait(timeout=30)
    fed.group.services.remove(node)


def _activations(fed: steps.Federation, party: str) -> int:
    """How often ``party``'s SuperNode was accepted by the SuperLink (each activation logs its node id)."""
    log = fed.state / party / "flower" / "logs" / f"supernode-{party}.log"
    return log.read_text(errors="replace").count("SuperNode ID:") if log.exists() else 0


def _start(fed: steps.Federation, party: str) -> None:
    """Start ``party``'s node again (its SuperNode comes back once the SuperLink lets the old one go)."""
    fed.group.start(f"{party}-node", [steps.script(f"tandem-{party}"), "-v", "serve"], fed.node_env[party])
    port = fed.node_env[party][f"TANDEM_{party.upper()}_LISTEN_PORT"]
    cert = fed.state / party / "tls" / "cert.pem"
    wait_until(functools.partial(steps.node_up, port, cert), timeout=60, what=f"the {party} node again")


@pytest.mark.slow
def test_a_training_job_that_lost_a_node_is_retried_and_resumes(tmp_path: Path) -> None:
    # Prepare: the bank gives up on a silent peer after 15 s (default 600 s)
    generate(tmp_path / "data", n=2000, seed=11)
    group = ProcessGroup(tmp_path / "logs")
    with group.running():
        fed = _federation(tmp_path, group, bank_env={"TANDEM_BANK_TRAINING_WAIT_TIMEOUT": "15"})
        risk = training_jobs(steps.datasets(fed))["credit-risk model (hetero logistic regression)"]
        risk["params"] = {"output_mode": "model"}
        job = steps.submit(fed, risk)
        steps.approve(fed, job)
        _wait_for(tmp_path / "telco" / "training" / "checkpoints" / str(job.id) / "lr-passive-2.json", 240)

        # Execute: the telco's node dies after two completed iterations; the job fails; the node comes back
        _kill(fed, "telco")
        failed = steps.wait_job(fed, job.id, timeout=240)
        before = _activations(fed, "telco")
        _start(fed, "telco")
        # the SuperLink counts the dead SuperNode online until its heartbeats lapse (up to 60 s) and refuses
        # the new one meanwhile; the node keeps restarting it until it is let in
        wait_until(lambda: _activations(fed, "telco") > before, timeout=180, what="the telco's SuperNode back online")
        with fed.api("bank-analyst") as c:
            r = c.post(f"/jobs/{job.id}/retry", json={"reason": "telco node restarted"})
        steps.approve(fed, JobPublic.model_validate(r.json()))  # an approval signs one attempt: sign the rerun
        done = steps.wait_job(fed, job.id, timeout=300)
        trail = steps.job_trail(fed, job.id)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len([e for e in trail if e["action"] == "training.run_finished"]) < 1:
            time.sleep(0.5)  # the launcher audits the ServerApp's report a moment after the nodes' results
            trail = steps.job_trail(fed, job.id)

    # Assert
    assert failed.status == JobStatus.FAILED and failed.attempt == 1, failed.status_detail
    assert r.status_code == 200 and r.json()["status"] == "pending_approval" and r.json()["attempt"] == 2, r.text
    assert done.status == JobStatus.SUCCEEDED and done.attempt == 2, done.status_detail
    bank, telco = done.outputs["bank"], done.outputs["telco"]
    assert bank["resumed_from"] == telco["resumed_from"] >= 2
    assert bank["iterations"] == 6 and 0.5 < bank["auc_federated"] <= 1.0
    assert bank["flower_rounds_here"] == 8 - bank["resumed_from"]  # setup, the remaining iterations, stop
    actions = [e["action"] for e in trail]
    assert actions.count("training.run_started") == 2 and "job.retried" in actions
    (finished,) = [e for e in trail if e["action"] == "training.run_finished"]
    assert finished["details"]["summary"]["resumed_from"] == bank["resumed_from"]
    assert finished["details"]["attempt"] == 2
    assert not (tmp_path / "telco" / "training" / "checkpoints" / str(job.id)).exists()  # model stored: dropped
