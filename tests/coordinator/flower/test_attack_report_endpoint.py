"""Attack: another local process POSTs a forged "failed" report to the training launcher's loopback endpoint.

The launcher's real report endpoint (its ThreadingHTTPServer) in front of an approved ``train_risk`` job
whose Flower run is live (a stand-in SuperLink records runs). A forged report without the launcher's
report token is refused with 403 and decides nothing; the ServerApp's own report function, with the
token in its environment as the SuperLink hands it down, is accepted.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from coordinator.flower.launcher import TrainingLauncher
from coordinator.flower.server_app import RunSettings, _report
from protocols.wire.control import JobStatus
from protocols.wire.flower_round import HEADER_REPORT_TOKEN, REPORT_TOKEN_ENV
from tests.coordinator.flower.test_coord_training_launcher import FakeSuperLink, _actions, _job, _launcher


@pytest.fixture
def launched() -> Iterator[tuple[TrainingLauncher, FakeSuperLink, int]]:
    """A launcher with its real report endpoint up and the job's run started."""
    launcher, superlink, job_id = _launcher()
    server = launcher._server = launcher._report_server()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    launcher.tick()
    try:
        yield launcher, superlink, job_id
    finally:
        server.shutdown()
        server.server_close()


def test_a_forged_report_is_refused_and_the_servers_own_is_applied(
    launched: tuple[TrainingLauncher, FakeSuperLink, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    launcher, superlink, job_id = launched
    forged = {"X-Tandem-Job-Id": str(job_id), "X-Tandem-Run-Id": "101", "X-Tandem-Status": "failed",
              "X-Tandem-Rounds": "0"}

    # Execute: forged reports, without the token and with a guessed one
    answers = [httpx.post(launcher.report_url, content=b"forged", headers=h, timeout=10)
               for h in (forged, {**forged, HEADER_REPORT_TOKEN: "guess"})]
    launcher.tick()

    # Assert: the job is untouched and nothing was audited
    assert _job(launcher, job_id).status == JobStatus.APPROVED
    assert [a for a, _ in _actions(launcher)] == ["training.run_started"]
    assert [a.status_code for a in answers] == [403, 403]
    assert HEADER_REPORT_TOKEN in answers[0].text

    # Execute: the ServerApp reports, its token in its environment
    monkeypatch.setenv(REPORT_TOKEN_ENV, launcher._report_token)
    settings = RunSettings.from_run_config({"arbiter": "m:f", "job-id": str(job_id), "report-url": launcher.report_url})
    _report(settings, 101, "failed", b"RoundFailedError: telco failed", 3)
    launcher.tick()

    # Assert: that one decides the job
    job = _job(launcher, job_id)
    assert job.status == JobStatus.FAILED and "telco failed" in job.status_detail
    assert superlink.started and [a for a, _ in _actions(launcher)][-1] == "training.run_failed"
