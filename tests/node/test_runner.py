"""The job runner against a fake coordinator: dispatch, refusal, waiting, failure, attempts."""

from __future__ import annotations

import pytest

from node.approval import sign_approval
from node.ledger import LedgerUnwritable
from node.runtime import NodeRuntime
from node.settings import NodeSettings
from protocols.crypto.signing import SigningKey
from protocols.wire.control import JobKind, JobStatus
from protocols.wire.errors import ProtocolError
from tests.support.fake_coordinator import FakeCoordinator, make_job


@pytest.fixture
def coordinator():
    return FakeCoordinator()


@pytest.fixture
def runtime(tmp_path, coordinator):
    settings = NodeSettings(party="bank", kind="bank", api_token="t0k3n-for-tests", state_dir=tmp_path / "bank")
    rt = NodeRuntime.open(settings, create_keys=True, transport=coordinator.transport())
    yield rt
    rt.close()


def _approved(coordinator, runtime, job_id, **kw):
    job = make_job(job_id, **kw)
    coordinator.jobs[job_id] = job
    coordinator.add_approval(job_id, sign_approval(job, runtime.keys.signing, "bank"))


def test_dispatches_to_the_handler_and_reports_the_result(coordinator, runtime):
    _approved(coordinator, runtime, 5)
    seen = []

    def handler(ctx):
        seen.append(ctx.job.id)
        ctx.progress("psi", 0.5)
        (ctx.workdir / "model.bin").write_bytes(b"m")
        return {"overlap": 1234}

    runner = runtime.runner({JobKind.AUDIENCE_OVERLAP: handler})
    outcomes = runner.run_once()
    assert [(o.job_id, o.state) for o in outcomes] == [(5, "succeeded")]
    assert seen == [5]
    assert coordinator.progress[0][1].stage == "psi"
    job_id, result = coordinator.results[0]
    assert (job_id, result.status, result.outputs) == (5, "succeeded", {"overlap": 1234})
    assert result.messages_sent == 1 and result.bytes_sent > 0  # the progress report
    assert (runtime.settings.state_path / "jobs" / "5" / "model.bin").exists()
    assert runner.run_once() == []  # done once, never again
    assert runtime.ledger.verify().ok


def test_forged_approval_is_refused_and_handler_never_runs(coordinator, runtime):
    job = make_job(6)
    coordinator.jobs[6] = job
    coordinator.add_approval(6, sign_approval(job, SigningKey.generate(), "bank"))  # a key the coordinator swapped in
    ran = []
    runner = runtime.runner({JobKind.AUDIENCE_OVERLAP: lambda ctx: ran.append(1) or {}})
    outcomes = runner.run_once()
    assert [(o.job_id, o.state) for o in outcomes] == [(6, "refused")]
    assert ran == []
    progress = coordinator.progress[-1][1]
    assert progress.status == "failed"
    assert progress.detail == "refused: approval signature for party:bank does not verify"
    assert runtime.journal.get(6).state == "refused"
    assert runner.run_once() == []  # refused once, recorded locally


def test_terms_changed_after_approval_are_refused(coordinator, runtime):
    _approved(coordinator, runtime, 7)
    coordinator.jobs[7] = coordinator.jobs[7].model_copy(update={"title": "a different job"})
    outcomes = runtime.runner({JobKind.AUDIENCE_OVERLAP: lambda ctx: {}}).run_once()
    assert outcomes[0].state == "refused"


def test_no_handler_reports_waiting_once(coordinator, runtime):
    _approved(coordinator, runtime, 8, kind=JobKind.TRAIN_RISK)
    runner = runtime.runner({})
    assert runner.run_once()[0].state == "waiting"
    assert runner.run_once()[0].state == "waiting"
    waiting = [p for _, p in coordinator.progress if p.stage == "waiting"]
    assert len(waiting) == 1 and waiting[0].detail == "waiting: no protocol implementation for train_risk yet"
    assert coordinator.results == []
    runner.register(JobKind.TRAIN_RISK, lambda ctx: {"auc": 0.8})
    assert runner.run_once()[0].state == "succeeded"


def test_handler_exception_fails_the_job_and_keeps_nothing(coordinator, runtime):
    _approved(coordinator, runtime, 9)

    def handler(ctx):
        ctx.progress("blinding", 0.1)
        (ctx.workdir / "partial.bin").write_bytes(b"half")
        raise ValueError("could not convert '13800138000'")

    outcomes = runtime.runner({JobKind.AUDIENCE_OVERLAP: handler}).run_once()
    assert outcomes[0].state == "failed"
    _, result = coordinator.results[-1]
    assert result.status == "failed"
    assert "blinding" in result.detail and "ValueError" in result.detail
    assert "13800138000" not in result.detail  # exception text can quote rows; it stays home
    jobs_dir = runtime.settings.state_path / "jobs"
    assert not any(jobs_dir.iterdir())


def test_protocol_errors_are_reported_verbatim(coordinator, runtime):
    _approved(coordinator, runtime, 10)

    def handler(ctx):
        raise ProtocolError("peer telco sent a message out of stage")

    runtime.runner({JobKind.AUDIENCE_OVERLAP: handler}).run_once()
    assert "peer telco sent a message out of stage" in coordinator.results[-1][1].detail


def test_jobs_of_other_parties_are_ignored(coordinator, runtime):
    coordinator.jobs[11] = make_job(11, approvers=("party:telco",))
    assert runtime.runner({JobKind.AUDIENCE_OVERLAP: lambda ctx: {}}).run_once() == []
    assert coordinator.progress == [] and coordinator.results == []


def test_running_jobs_are_picked_up_too(coordinator, runtime):
    _approved(coordinator, runtime, 12)
    coordinator.jobs[12] = coordinator.jobs[12].model_copy(update={"status": JobStatus.RUNNING})
    assert runtime.runner({JobKind.AUDIENCE_OVERLAP: lambda ctx: {}}).run_once()[0].state == "succeeded"


def test_context_gives_local_datasets(coordinator, runtime, tmp_path):
    csv = tmp_path / "c.csv"
    csv.write_text("mobile\n13800000000\n")
    gov = tmp_path / "g.yaml"
    gov.write_text("dataset: c\nfields:\n  mobile: {type: string, category: identifier, security_level: 3, "
                   "key_type: mobile}\n")
    runtime.datasets.put(1, "c", f"csv://{csv}", gov)
    coordinator.jobs[13] = make_job(13, approvers=("party:telco",))  # ours through dataset 1 only, unsigned
    got = {}

    def handler(ctx):
        got["inputs"] = [i.dataset_id for i in ctx.own_inputs()]
        source, governance = ctx.open_dataset(1)
        with source:
            got["rows"] = len(source.read())
        got["governed"] = list(governance.fields)
        return {}

    outcomes = runtime.runner({JobKind.AUDIENCE_OVERLAP: handler}).run_once()
    # It concerns us (our dataset) but we never approved it: refuse rather than run.
    assert outcomes[0].state == "refused"
    assert got == {}
    coordinator.jobs[14] = make_job(14)
    coordinator.add_approval(14, sign_approval(coordinator.jobs[14], runtime.keys.signing, "bank"))
    runtime.runner({JobKind.AUDIENCE_OVERLAP: handler}).run_once()
    assert got == {"inputs": [1], "rows": 1, "governed": ["mobile"]}


def test_coordinator_down_raises_a_clear_error(coordinator, runtime):
    from node.coordinator_client import CoordinatorUnavailable

    coordinator.down = True
    with pytest.raises(CoordinatorUnavailable, match="cannot reach the coordinator"):
        runtime.runner({}).run_once()


def _fail_at_coordinator(coordinator, job_id):
    coordinator.jobs[job_id] = coordinator.jobs[job_id].model_copy(update={"status": JobStatus.FAILED})


def test_a_retried_job_runs_again_as_its_new_attempt(coordinator, runtime):
    # Prepare: attempt 1 failed here and at the coordinator
    _approved(coordinator, runtime, 15)
    calls = []

    def handler(ctx):
        calls.append(ctx.job.attempt)
        ctx.progress("psi", 0.5)
        if len(calls) == 1:
            raise ProtocolError("peer vanished")
        return {"overlap": 77}

    runner = runtime.runner({JobKind.AUDIENCE_OVERLAP: handler})
    assert [o.state for o in runner.run_once()] == ["failed"]
    _fail_at_coordinator(coordinator, 15)
    assert runner.run_once() == []  # failed is failed, until the coordinator retries the job

    # Execute: the coordinator retried it and this party signed attempt 2
    retried = coordinator.jobs[15].model_copy(update={"status": JobStatus.APPROVED, "attempt": 2, "approvals": []})
    coordinator.jobs[15] = retried
    coordinator.add_approval(15, sign_approval(retried, runtime.keys.signing, "bank"))
    outcomes = runner.run_once()

    # Assert: run again once, every report naming its attempt
    assert [(o.job_id, o.state) for o in outcomes] == [(15, "succeeded")] and calls == [1, 2]
    assert [(r.status, r.attempt) for _, r in coordinator.results] == [("failed", 1), ("succeeded", 2)]
    assert [p.attempt for _, p in coordinator.progress] == [1, 2]
    note = runtime.journal.get(15)
    assert (note.state, note.attempt) == ("succeeded", 2)
    assert runner.run_once() == []  # attempt 2 done once, never again


def test_a_refusal_is_final_for_its_attempt_only(coordinator, runtime):
    job = make_job(16)
    coordinator.jobs[16] = job
    coordinator.add_approval(16, sign_approval(job, SigningKey.generate(), "bank"))
    runner = runtime.runner({JobKind.AUDIENCE_OVERLAP: lambda ctx: {}})
    assert runner.run_once()[0].state == "refused"

    # the job was retried and approved again, this time with this party's real signature of attempt 2
    retried = job.model_copy(update={"attempt": 2})
    coordinator.jobs[16] = retried
    coordinator.add_approval(16, sign_approval(retried, runtime.keys.signing, "bank"))

    assert [o.state for o in runner.run_once()] == ["succeeded"]
    assert coordinator.progress[0][1].attempt == 1 and coordinator.results[-1][1].attempt == 2


def test_an_old_journal_gains_the_attempt_column(tmp_path):
    import sqlite3

    from node.node_state import JobJournal

    db = tmp_path / "node.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE job_journal (job_id INTEGER PRIMARY KEY, state TEXT NOT NULL, "
                     "detail TEXT NOT NULL, updated_at TEXT NOT NULL)")
        conn.execute("INSERT INTO job_journal VALUES (3, 'failed', 'x', '2025-01-01')")
    conn.close()

    journal = JobJournal(db)
    before = journal.get(3)
    journal.set(3, "running", attempt=2)
    after = journal.get(3)
    journal.close()

    assert (before.state, before.attempt) == ("failed", 1) and (after.state, after.attempt) == ("running", 2)


def test_one_signature_authorises_one_run_a_retry_without_a_new_signature_is_refused(coordinator, runtime):
    # Prepare: attempt 1, signed by this party, ran and failed
    _approved(coordinator, runtime, 17)
    calls = []

    def handler(ctx):
        calls.append(ctx.job.attempt)
        if len(calls) == 1:
            raise ProtocolError("the bank reported a failure")
        return {"overlap": 1}

    runner = runtime.runner({JobKind.AUDIENCE_OVERLAP: handler})
    assert [o.state for o in runner.run_once()] == ["failed"]

    # Execute: the job comes back as attempt 2 still carrying the signature of attempt 1 (a replay)
    coordinator.jobs[17] = coordinator.jobs[17].model_copy(update={"status": JobStatus.APPROVED, "attempt": 2})
    outcomes = runner.run_once()

    # Assert: refused, the handler never ran again
    assert [(o.job_id, o.state) for o in outcomes] == [(17, "refused")] and calls == [1]
    assert "approval signature for party:bank does not verify" in outcomes[0].detail


def test_a_job_that_succeeded_here_never_runs_again_even_if_signed_again(coordinator, runtime):
    _approved(coordinator, runtime, 18)
    calls = []
    runner = runtime.runner({JobKind.AUDIENCE_OVERLAP: lambda ctx: calls.append(1) or {"overlap": 1}})
    assert [o.state for o in runner.run_once()] == ["succeeded"]

    again = coordinator.jobs[18].model_copy(update={"attempt": 2, "approvals": []})
    coordinator.jobs[18] = again
    coordinator.add_approval(18, sign_approval(again, runtime.keys.signing, "bank"))

    assert runner.run_once() == [] and calls == [1]


def test_a_run_interrupted_by_a_restart_is_failed_not_started_again(coordinator, runtime):
    _approved(coordinator, runtime, 19)
    runtime.journal.set(19, "running", attempt=1)  # this node stopped while running attempt 1
    calls = []

    outcomes = runtime.runner({JobKind.AUDIENCE_OVERLAP: lambda ctx: calls.append(1) or {}}).run_once()

    assert [(o.job_id, o.state) for o in outcomes] == [(19, "failed")] and calls == []
    assert coordinator.results[-1][1].status == "failed" and "interrupted" in coordinator.results[-1][1].detail


def test_an_interrupted_run_leaves_no_half_written_work_directory(coordinator, runtime):
    _approved(coordinator, runtime, 23)
    runtime.journal.set(23, "running", attempt=1)  # killed mid-run: its work directory is still there
    partial = runtime.settings.state_path / "jobs" / "23.partial"
    (partial / "psi").mkdir(parents=True)
    (partial / "psi" / "encrypted.bin").write_bytes(b"half")

    outcomes = runtime.runner({JobKind.AUDIENCE_OVERLAP: lambda ctx: {}}).run_once()

    assert [(o.job_id, o.state) for o in outcomes] == [(23, "failed")]
    assert not partial.exists() and not (runtime.settings.state_path / "jobs" / "23").exists()


def test_a_full_state_disk_fails_the_attempt_cleanly_and_the_runner_keeps_polling(coordinator, runtime, monkeypatch):
    import sqlite3
    import threading

    _approved(coordinator, runtime, 24)
    real_set = runtime.journal.set

    def full(job_id, state, detail="", *, attempt=1):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(runtime.journal, "set", full)
    calls = []
    runner = runtime.runner({JobKind.AUDIENCE_OVERLAP: lambda ctx: calls.append(1) or {}})

    outcomes = runner.run_once()

    assert [(o.job_id, o.state) for o in outcomes] == [(24, "failed")] and calls == []
    report = coordinator.results[-1][1]
    assert report.status == "failed" and "cannot write its state directory" in report.detail
    assert "database or disk is full" in report.detail
    assert not (runtime.settings.state_path / "jobs" / "24.partial").exists()

    ticks = []  # a tick that cannot write the state does not end the runner's thread
    stop = threading.Event()

    def tick():
        ticks.append(1)
        if len(ticks) == 1:
            raise OSError(28, "No space left on device")
        if len(ticks) == 2:  # a report the egress ledger cannot record (its disk is full)
            raise LedgerUnwritable("this node cannot record a message in its egress ledger (database or disk is full)")
        monkeypatch.setattr(runtime.journal, "set", real_set)
        stop.set()

    runner.run_forever(stop, on_tick=tick)
    assert len(ticks) == 3


def test_a_final_report_the_coordinator_missed_is_sent_again_once_it_is_back(coordinator, runtime):
    _approved(coordinator, runtime, 25)

    def handler(ctx):
        coordinator.down = True  # the coordinator restarts while the job runs: the result cannot be delivered
        return {"overlap": 7}

    runner = runtime.runner({JobKind.AUDIENCE_OVERLAP: handler})
    assert [(o.job_id, o.state) for o in runner.run_once()] == [(25, "succeeded")]
    assert coordinator.results == []

    coordinator.down = False
    runner.run_once()
    runner.run_once()

    assert [(j, r.status, r.outputs) for j, r in coordinator.results] == [(25, "succeeded", {"overlap": 7})]


# --- attempts (issue 10, item 4): a stale attempt is reported before the new one runs, and the new
# attempt's peer clients are bound to it (tests/node/peer/test_attack_stale_attempt.py: what the peer does)

class _Peer:
    """What the runner needs of a peer client here: the attempt it is bound to."""

    def __init__(self) -> None:
        self.attempt: int | None = None

    def bind_attempt(self, attempt: int) -> None:
        self.attempt = attempt

    def close(self) -> None:
        pass


def test_an_attempt_killed_here_and_retried_meanwhile_is_reported_before_the_new_one_runs(coordinator, runtime):
    # Prepare: this node was killed running attempt 1; meanwhile the job failed, was retried and attempt 2 signed
    job = make_job(31)
    runtime.journal.set(31, "running", attempt=1)
    runtime.ledger.record(peer="telco", kind="psi", payload=b"sent by the killed attempt", job_id=31, attempt=1)
    retried = job.model_copy(update={"status": JobStatus.APPROVED, "attempt": 2, "approvals": []})
    coordinator.jobs[31] = retried
    coordinator.add_approval(31, sign_approval(retried, runtime.keys.signing, "bank"))
    seen: list[tuple[int, int | None]] = []
    runner = runtime.runner()
    peers: list[_Peer] = []
    runner.peer_factory = lambda party: peers.append(_Peer()) or peers[-1]  # type: ignore[assignment,func-returns-value]

    def handler(ctx):
        seen.append((ctx.job.attempt, ctx.peer("telco").attempt))
        return {"overlap": 5}

    runner.register(JobKind.AUDIENCE_OVERLAP, handler)

    # Execute
    outcomes = runner.run_once()

    # Assert: attempt 1's failure (with its ledger receipts) first, then attempt 2 ran once, bound to attempt 2
    assert [(o.job_id, o.state) for o in outcomes] == [(31, "succeeded")]
    reports = [(r.status, r.attempt, r.messages_sent) for _, r in coordinator.results]
    assert reports[0][:2] == ("failed", 1) and reports[0][2] >= 1 and reports[1][:2] == ("succeeded", 2)
    assert "interrupted" in coordinator.results[0][1].detail
    assert seen == [(2, 2)]
    assert runner.run_once() == []
