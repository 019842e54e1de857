"""Faults in the three-organisation namespace topology (deploy/netns_harness.py), nothing lost (issue 10, item 4).

One topology for the module, set up as the operators' READMEs say (deploy/three_orgs.py); the faults run
one after another on it, each on its own job (deploy/faults.py):

1. ``kill -9`` of the telco's node service mid-PSI (a reveal-mode recovery), mid-training (after the
   Flower run started) and mid-scoring (a batch score job with the model trained under fault 1b). For PSI
   and scoring the node is first frozen inside the job, after its first message of it to the bank, so
   the kill lands mid-protocol however fast the job runs;
2. the telco's link cut for 30 s mid-job (a training job after its Flower run started), then restored;
3. the coordinator restarted mid-job (a training job, as 2: a PSI job over the small population can finish
   before a restart takes effect);
4. the coordinator's PostgreSQL "restarted" mid-job (a training job, as 2): every backend of the run's
   database terminated (``pg_terminate_backend``) and its service restarted. The machine's cluster is shared with other
   tests, so ``pg_ctlcluster 15 main restart`` is not used; the coordinator sees the same thing;
5. the telco's state volume on a 64 MiB tmpfs, filled to the last byte, then a job.

Each ends with the job failed cleanly (its reason in the audit log's ``job.status`` event), then retried
with fresh approvals and succeeded (the runtime allows one run per signature, see node/runner.py), or
succeeded without help; no ``jobs/<id>.partial`` or ``*.tmp`` left in either node's state; the audit chain
verified offline, both egress ledgers verified and cross-checked against the audit log. The retry, or
a follow-up job, succeeding shows the node serving again without manual repair. Run with ``-s`` to see
each fault's end state in one line (also printed together at the end of the module).

Needs root, ``ip`` and ``mount`` (skipped otherwise, FAILS when ``CI`` is set) and the PostgreSQL at
127.0.0.1:5432. CI runs every fault. A retried training job is bound to its own Flower run: every round
instruction names the job's attempt and a node refuses a round of a stale attempt (410), so a message of
the killed attempt's run still queued at a SuperNode cannot bind or hold up the retry
(tests/node/flower/test_attack_stale_round.py).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from deploy import faults, three_orgs
from deploy.faults import EndState
from deploy.netns_harness import HarnessError, Topology, preflight
from protocols.wire.control import JobPublic, JobStatus

pytestmark = pytest.mark.postgres

TIMEOUT = 480.0  # seconds per attempt: a hung job fails the test instead of the whole run
N = 4000  # people: a recovery over four identifiers runs for several seconds across the namespaces
LOG: list[EndState] = []
MODEL: dict[str, int] = {}


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the fault tests: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[three_orgs.Deployment]:
    why = preflight() or faults.ensure_root_tools()
    if why:
        _unavailable(why)
    with Topology(tmp_path_factory.mktemp("faults")) as topo:
        yield three_orgs.bring_up(topo, n=N, seed=11, test_key_bits=512)
    print("\n\nfault end states:\n" + faults.dumps(LOG))


def _body(dep: three_orgs.Deployment, kind: str) -> dict[str, Any]:
    from demo.scenario import demo_jobs, score_job

    if kind == "score":
        return score_job(dep.datasets, MODEL["train_risk"])
    return next(b for _, b in demo_jobs(dep.datasets) if b["kind"] == kind)


def _running(dep: three_orgs.Deployment, kind: str) -> JobPublic:
    """Submit and approve a ``kind`` job; return it once the coordinator shows it running (polled every 50 ms)."""
    job = faults.submit(dep, _body(dep, kind))
    deadline = time.monotonic() + 600
    with dep.api("compliance") as c:
        while time.monotonic() < deadline:
            job = JobPublic.model_validate(c.get(f"/jobs/{job.id}").raise_for_status().json())
            if job.status in three_orgs.FINAL or job.status == JobStatus.RUNNING:
                break
            time.sleep(0.05)
    assert job.status == JobStatus.RUNNING, f"the job ended before the fault: {job.status} {job.status_detail}"
    return job


def _training(dep: three_orgs.Deployment) -> JobPublic:
    """A training job, returned once its Flower run has started (it then runs for many seconds, across rounds).

    The faults that must land mid-job whatever the job's speed use it: a PSI job over the small
    population may finish before a coordinator or database restart takes effect.
    """
    job = _running(dep, "train_risk")
    actions: list[str] = []
    for _ in range(1200):
        actions = [e["action"] for e in faults.job_events(dep, job.id)]
        if "training.run_started" in actions or faults.status(dep, job.id).status in three_orgs.FINAL:
            break
        time.sleep(0.5)
    assert "training.run_started" in actions, f"job {job.id} ended before its Flower run started"
    return job


def _check(state: EndState) -> None:
    LOG.append(state)
    print("\n" + state.line())
    if state.retried:
        assert state.audit_reason, "a failed job must have its reason in the audit log"
    assert state.final.status == JobStatus.SUCCEEDED, state.final.status_detail
    assert state.half_written == [], state.half_written
    assert state.check.ok, state.check.text
    assert state.check.text.count("ledger ok:") == 2


def _follow_up(dep: three_orgs.Deployment) -> None:
    """A quick job after a fault that needed no retry: both nodes and the coordinator serve."""
    job = faults.wait_final(dep, faults.submit(dep, _body(dep, "audience_overlap")).id, timeout=600)
    assert job.status == JobStatus.SUCCEEDED, job.status_detail


def _frozen_mid_job(dep: three_orgs.Deployment, kind: str) -> JobPublic:
    """Submit and approve a ``kind`` job; return it with the telco's node frozen inside it (mid-protocol).

    A PSI or scoring job over the small population can run from start to end before the last approving
    command returns (a CI run saw a scoring job succeed so; the telco's part took 55 ms), and a kill after
    it tests nothing. The telco's node is therefore watched from before the last approval and frozen
    (SIGSTOP) once it has started the job and sent the bank a message of it; the kill lands on the frozen
    node (deploy.faults.freeze_mid_job). A job that ended at the telco before the stop is let finish (it
    must succeed), and another is tried.
    """
    for _ in range(3):
        job = faults.submit(dep, _body(dep, kind), approved=False)
        stop = threading.Event()
        with ThreadPoolExecutor(1) as pool:  # watching before the approvals: the job may end before they return
            frozen = pool.submit(faults.freeze_mid_job, dep.topo, "telco", job.id, TIMEOUT, stop)
            try:
                faults.approve(dep, job)
            except BaseException:
                stop.set()  # the job will not run: end the watch
                raise
        if frozen.result():
            now = faults.status(dep, job.id)
            assert now.status not in three_orgs.FINAL, f"job {job.id} ended with the telco frozen inside it"
            return now
        missed = faults.wait_final(dep, job.id, timeout=TIMEOUT)
        assert missed.status == JobStatus.SUCCEEDED, missed.status_detail
    pytest.fail(f"in 3 {kind} jobs the telco's node finished each before it could be frozen inside it")


def test_kill_telco_mid_psi(dep: three_orgs.Deployment) -> None:
    job = _frozen_mid_job(dep, "recovery")
    faults.kill_node(dep.topo, "telco")
    state = faults.settle(dep, timeout=TIMEOUT, fault="kill -9 telco node mid-PSI (recovery)", job=job)
    _check(state)
    assert state.retried, "the telco was killed inside the PSI, so attempt 1 cannot have succeeded"


def test_kill_telco_mid_training(dep: three_orgs.Deployment) -> None:
    job = _training(dep)  # the Flower run has started: the kill lands mid-round, not before training
    faults.kill_node(dep.topo, "telco")
    state = faults.settle(dep, timeout=TIMEOUT, fault="kill -9 telco node mid-training", job=job)
    _check(state)
    MODEL["train_risk"] = job.id
    if not state.retried:
        _follow_up(dep)


def test_kill_telco_mid_scoring(dep: three_orgs.Deployment) -> None:
    if "train_risk" not in MODEL:
        pytest.fail("the scoring fault needs the model trained in test_kill_telco_mid_training")
    job = _frozen_mid_job(dep, "score")
    faults.kill_node(dep.topo, "telco")
    state = faults.settle(dep, timeout=TIMEOUT, fault="kill -9 telco node mid-scoring (batch score)", job=job)
    _check(state)
    assert state.retried, "the telco was killed inside the scoring, so attempt 1 cannot have succeeded"


def test_cut_bank_telco_link_30s(dep: three_orgs.Deployment) -> None:
    job = _training(dep)
    with faults.cut_link(dep.topo, "telco"):
        time.sleep(30)
    state = faults.settle(dep, timeout=TIMEOUT, fault="telco's link down 30 s mid-training", job=job)
    _check(state)
    if not state.retried:
        _follow_up(dep)


def test_restart_coordinator_mid_job(dep: three_orgs.Deployment) -> None:
    job = _training(dep)
    faults.restart_coordinator(dep.topo)
    state = faults.settle(dep, timeout=TIMEOUT, fault="coordinator restarted mid-training", job=job)
    _check(state)
    if not state.retried:
        _follow_up(dep)


def test_restart_postgres_mid_job(dep: three_orgs.Deployment) -> None:
    job = _training(dep)
    terminated = faults.restart_postgres(dep.topo)
    assert terminated >= 1, "the coordinator held no connection to terminate"
    state = faults.settle(dep, timeout=TIMEOUT, job=job,
                           fault=f"PostgreSQL backends terminated ({terminated}) + service restarted mid-training")
    _check(state)
    if not state.retried:
        _follow_up(dep)


def test_full_state_disk(dep: three_orgs.Deployment) -> None:
    with faults.small_state_disk(dep.topo, "telco", size_mib=64) as vol:
        job = faults.submit(dep, _body(dep, "audience_overlap"), approved=False)
        faults.approve(dep, job, skip=("party:bank",))  # the telco approves while it still has room
        filler = faults.fill(vol)
        faults.approve(dep, job, only=("party:bank",))  # the last approval: the job is the telco's to run now
        try:  # several polls of the telco's runner on the full disk: it fails the attempt cleanly (or keeps trying)
            during = faults.wait_for(dep, job.id, lambda j: j.status in three_orgs.FINAL, timeout=20)
        except HarnessError:
            during = faults.status(dep, job.id)
        assert during.status != JobStatus.SUCCEEDED
        assert faults.half_written(dep.topo) == []
        filler.unlink()  # the operator frees space; nothing else is repaired, the node is not restarted
        state = faults.settle(dep, job=job, timeout=TIMEOUT,
                              fault=f"telco state disk (64 MiB tmpfs) full [while full: {during.status} "
                                    f"{during.status_detail[:80]!r}]")
        _check(state)
        assert "free space" in (state.audit_reason or ""), f"the reason must name the fix: {state.audit_reason}"
        if not state.retried:
            _follow_up(dep)
