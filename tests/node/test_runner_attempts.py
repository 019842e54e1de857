"""The runner and attempts (issue 10, item 4): a stale attempt is reported before the new one runs, and the
new attempt's peer clients are bound to it (tests/node/peer/test_attack_stale_attempt.py: what the peer does)."""

from __future__ import annotations

import pytest

from node.approval import sign_approval
from node.runtime import NodeRuntime
from node.settings import NodeSettings
from protocols.wire.control import JobKind, JobStatus
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
