"""End to end: training jobs through a real SuperLink (coordinator) and real SuperNodes (nodes).

Coordinator, bank node and telco node run as separate processes (as in the demo); the coordinator's
launcher starts the SuperLink and one ServerApp run per job attempt; each node starts its own SuperNode.
Small synthetic population and test-only 512-bit Paillier keys keep it short. The test kills a node
mid-training, retries the failed job through the API and checks that it resumed. (Both training jobs
through Flower on an undisturbed federation, with their stored models, are checked on the session's one
demo run: tests/demo/test_demo_training.py.)
"""

from __future__ import annotations

import functools
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
