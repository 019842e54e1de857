"""The training launcher's bookkeeping of Flower runs per job attempt (a stand-in SuperLink, no processes)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from coordinator.context import Context
from coordinator.flower.control_api import RunStatus
from coordinator.flower.launcher import TrainingLauncher, TrainingSettings, _Report
from coordinator.policy import load_policy
from coordinator.store import JobUpdate, MemoryStore
from protocols.crypto.signing import SigningKey
from protocols.wire.control import Decision, JobStatus
from tests.support.coordinator import NOW, job_create


class FakeSuperLink:
    """Records the runs started and stopped."""

    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []
        self.stopped: list[int] = []
        self.finished: dict[int, RunStatus] = {}  # runs whose ServerApp exited, as the SuperLink shows them

    def status(self, run_id: int) -> RunStatus:
        return self.finished.get(run_id, RunStatus(run_id, "running", "", ""))

    def run(self, config: dict[str, Any], app_dir: Any) -> int:
        self.started.append(config)
        return 100 + len(self.started)

    def stop_run(self, run_id: int) -> None:
        self.stopped.append(run_id)


def _launcher() -> tuple[TrainingLauncher, FakeSuperLink, int]:
    ctx = Context(store=MemoryStore(), policy=load_policy(), audit_key=SigningKey.generate(), clock=lambda: NOW)
    decision = Decision(allowed=True, policy_version="v1", rules=[], required_approvals=[])
    with ctx.store.write() as tx:
        job = tx.jobs.create_job(job_create(1, 2, kind="train_risk", purpose="risk"), created_by="a",
                                 parties=["bank", "telco"], decision=decision, now=NOW)
        tx.jobs.update_job(job.id, JobUpdate(status=JobStatus.APPROVED, digest="ab" * 32), NOW)
    launcher = TrainingLauncher(ctx, TrainingSettings())
    superlink = FakeSuperLink()
    launcher._superlink = superlink
    launcher._server = SimpleNamespace(server_address=("127.0.0.1", 9))  # type: ignore[assignment]
    return launcher, superlink, job.id


def _set(launcher: TrainingLauncher, job_id: int, **changes: Any) -> None:
    with launcher.ctx.store.write() as tx:
        tx.jobs.update_job(job_id, JobUpdate(**changes), NOW)


def _report(launcher: TrainingLauncher, job_id: int, run_id: int, status: str = "failed") -> None:
    launcher._reports.append(_Report(job_id, status, 3, b"RoundFailedError: telco failed", run_id))
    launcher.tick()


def _job(launcher: TrainingLauncher, job_id: int) -> Any:
    with launcher.ctx.store.read() as tx:
        return tx.jobs.get_job(job_id)


def _actions(launcher: TrainingLauncher) -> list[tuple[str, dict[str, Any]]]:
    with launcher.ctx.store.read() as tx:
        return [(r.body["action"], r.body["details"]) for r in tx.audit.events(limit=1000)
                if r.body["action"].startswith("training.")]


def test_a_retried_job_gets_a_new_run_and_the_old_one_is_stopped_and_ignored() -> None:
    # Prepare: attempt 1 runs, then a node reports the failure while its ServerApp still waits
    launcher, superlink, job_id = _launcher()
    launcher.tick()
    launcher.tick()  # one run per attempt
    _set(launcher, job_id, status=JobStatus.FAILED)
    launcher.tick()

    # Execute: the job is retried (attempt 2, approved again); the old run's failure report arrives late
    _set(launcher, job_id, status=JobStatus.APPROVED, attempt=2)
    launcher.tick()
    _report(launcher, job_id, run_id=101)

    # Assert
    assert [c["job-id"] for c in superlink.started] == [str(job_id), str(job_id)]
    assert [c["attempt"] for c in superlink.started] == [1, 2]  # every instruction of a run names its attempt
    assert superlink.stopped == [101]
    assert _job(launcher, job_id).status == JobStatus.APPROVED  # the stale report decided nothing
    actions = _actions(launcher)
    assert [a for a, _ in actions] == ["training.run_started", "training.run_stopped", "training.run_started",
                                       "training.run_failed"]
    assert actions[1][1] == {"run_id": 101, "attempt": 1, "why": "the job is failed"}
    assert actions[2][1]["attempt"] == 2 and actions[3][1]["stale"] is True


def test_the_current_runs_failure_fails_the_job() -> None:
    launcher, superlink, job_id = _launcher()
    launcher.tick()

    _report(launcher, job_id, run_id=101)

    job = _job(launcher, job_id)
    assert job.status == JobStatus.FAILED and "training run failed after 3 round(s)" in job.status_detail
    assert superlink.stopped == []  # it ended by itself
    assert _actions(launcher)[-1][1]["attempt"] == 1


def test_a_retry_while_the_old_run_is_still_live_stops_it_first() -> None:
    launcher, superlink, job_id = _launcher()
    launcher.tick()
    _set(launcher, job_id, attempt=2)  # failed and retried between two scans

    launcher.tick()

    assert superlink.stopped == [101] and len(superlink.started) == 2
    assert _actions(launcher)[1][1]["why"] == "attempt 2 replaces it"


def test_a_run_lost_in_a_coordinator_restart_fails_its_attempt_and_a_retry_runs_anew() -> None:
    # Prepare: attempt 1's run started under the first coordinator process, which then died with its SuperLink
    first, _, job_id = _launcher()
    first.tick()
    _set(first, job_id, status=JobStatus.RUNNING)
    restarted = TrainingLauncher(first.ctx, TrainingSettings())
    superlink = FakeSuperLink()
    restarted._superlink = superlink
    restarted._server = SimpleNamespace(server_address=("127.0.0.1", 9))  # type: ignore[assignment]

    # Execute: the restarted process scans
    restarted.tick()
    restarted.tick()

    # Assert: no second run of attempt 1 (its nodes are rounds further on); the attempt failed, named why
    assert superlink.started == []
    job = _job(restarted, job_id)
    assert job.status == JobStatus.FAILED
    assert "coordinator restarted during Flower run 101 of attempt 1" in job.status_detail
    assert [a for a, _ in _actions(restarted)] == ["training.run_started", "training.run_lost"]

    # A retry (attempt 2) gets a run of its own
    _set(restarted, job_id, status=JobStatus.APPROVED, attempt=2)
    restarted.tick()
    assert [c["attempt"] for c in superlink.started] == [2]


def test_a_run_whose_serverapp_died_without_a_report_fails_its_job_instead_of_leaving_it_running() -> None:
    launcher, superlink, job_id = _launcher()
    launcher.tick()
    _set(launcher, job_id, status=JobStatus.RUNNING)
    launcher.tick()
    assert _job(launcher, job_id).status == JobStatus.RUNNING  # a live run: nothing to do

    superlink.finished[101] = RunStatus(101, "finished", "failed", "Task failed with unknown error.")
    launcher.tick()

    job = _job(launcher, job_id)
    assert job.status == JobStatus.FAILED
    assert job.status_detail == ("training run failed: its ServerApp ended without a report (the SuperLink says "
                                 "failed: Task failed with unknown error.)")
    assert _actions(launcher)[-1] == ("training.run_failed", {"run_id": 101, "rounds": None, "attempt": 1,
                                                              "reason": job.status_detail.split(": ", 1)[1]})
    launcher.tick()  # once
    assert [a for a, _ in _actions(launcher)].count("training.run_failed") == 1


def test_a_run_that_reported_before_it_finished_is_judged_by_its_report() -> None:
    launcher, superlink, job_id = _launcher()
    launcher.tick()
    _set(launcher, job_id, status=JobStatus.RUNNING)
    superlink.finished[101] = RunStatus(101, "finished", "completed", "")
    launcher._reports.append(_Report(job_id, "succeeded", 8, b'{"auc": 0.8}', 101))

    launcher.tick()

    assert _job(launcher, job_id).status == JobStatus.RUNNING  # success is the nodes' to decide
    assert [a for a, _ in _actions(launcher)] == ["training.run_started", "training.run_finished"]
