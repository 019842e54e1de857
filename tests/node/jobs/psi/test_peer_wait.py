"""The receiver's wait for a sender that has not opened its side: it ends when the job ends at the coordinator."""

from __future__ import annotations

from typing import Any

import pytest

from node.coordinator_client import CoordinatorUnavailable
from node.jobs.psi._link import PeerFrameTransport
from node.peer import PeerError
from node.runner import JobEndedElsewhere


class NotOpen:
    """A sender's node that answers 409 (job not active here) to every frame, counting them."""

    def __init__(self) -> None:
        self.calls = 0

    def exchange(self, job_id: int, channel: str, seq: int, frame: bytes, *, kind: str) -> bytes:
        self.calls += 1
        raise PeerError("job 7 is not active on this node", http_status=409)


class Clock:
    """A monotonic clock that the transport's sleep advances (the test takes no wall time)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1000.0
        monkeypatch.setattr("node.jobs.psi._link.time.monotonic", lambda: self.now)

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_wait_ends_when_the_coordinator_shows_the_job_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: the coordinator can't be reached once, then answers "running", then shows the job failed
    clock, peer = Clock(monkeypatch), NotOpen()
    answers: list[Any] = [CoordinatorUnavailable("down", status_code=503), None,
                          JobEndedElsewhere("the job was failed elsewhere: telco: params.segments names a field")]
    checks: list[float] = []

    def still_running() -> None:
        checks.append(clock.now)
        answer = answers.pop(0)
        if answer is not None:
            raise answer

    transport = PeerFrameTransport(peer, 7, ready_timeout=600, still_running=still_running, check_interval=3.0,
                                   sleep=clock.sleep)  # type: ignore[arg-type]

    # Execute
    with pytest.raises(JobEndedElsewhere, match="telco: params.segments"):
        transport.exchange("psi.id_number", 1, b"frame")

    # Assert: three checks, 3 s apart; ended after about 9 s of waiting, not the 600 s ready timeout
    assert len(checks) == 3 and checks[1] - checks[0] >= 3.0
    assert clock.now - 1000.0 < 15 and peer.calls < 15


def test_without_a_check_the_wait_lasts_the_ready_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, peer = Clock(monkeypatch), NotOpen()
    transport = PeerFrameTransport(peer, 7, ready_timeout=60, sleep=clock.sleep)  # type: ignore[arg-type]

    with pytest.raises(PeerError, match="not active"):
        transport.exchange("psi.id_number", 1, b"frame")

    assert clock.now - 1000.0 >= 60


def test_the_senders_wait_ends_when_the_receiver_failed_the_job() -> None:
    """The telco's wait for a bank that failed before its first frame: over at the next check, not in 600 s."""
    from node.jobs.psi._sender import Patience, SenderJob, SenderRegistry
    from protocols.wire.psi import PsiJobSummary

    now = [0.0]
    job = SenderJob("7", {}, meter=None, summarise=lambda s, m: PsiJobSummary(job_id="7"),  # type: ignore[arg-type]
                    clock=lambda: now[0])
    answers: list[Exception | None] = [CoordinatorUnavailable("down", status_code=503), None,
                                       JobEndedElsewhere("the job was failed elsewhere: bank: no propensity column")]

    def still_running() -> None:
        answer = answers.pop(0)
        if answer is not None:
            raise answer

    registry = SenderRegistry()
    original = job._finished.wait

    def tick(timeout: float | None = None) -> bool:  # every poll advances the job's clock by a second
        now[0] += 1.0
        return original(0)

    job._finished.wait = tick  # type: ignore[method-assign]
    with registry.bound("7", "bank", still_running=still_running), registry.opened(job), \
            pytest.raises(JobEndedElsewhere, match="bank: no propensity column"):
        job.wait(Patience(start=600.0, idle=120.0))

    assert answers == [] and now[0] < 15
