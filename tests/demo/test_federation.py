"""End to end: real SuperLink and SuperNode processes drive the toy arbiter's rounds."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from coordinator.flower.superlink import APP_DIR
from demo.federation import LocalFederation
from demo.flower_toy import ToyService, adder, sink
from protocols.flower_processes import alive

pytestmark = pytest.mark.flower

ROUNDS = 3


def _wait_report(report: ToyService, timeout: float, count: int = 1) -> None:
    deadline = time.monotonic() + timeout
    while len(report.calls) < count and time.monotonic() < deadline:
        time.sleep(0.2)


@dataclass
class Federation:
    """One SuperLink and two SuperNodes (bank and telco) over three toy services, shared by this module's tests."""

    fed: LocalFederation
    bank: ToyService
    telco: ToyService
    report: ToyService
    stack: ExitStack
    pids: list[int]

    def fresh(self) -> Federation:
        """Forget what the services saw so far (each test checks only its own runs' calls)."""
        for service in (self.bank, self.telco, self.report):
            service.calls.clear()
        return self

    def close(self) -> list[int]:
        """Stop everything (idempotent); every process id the federation ever started."""
        descendants = [pid for c in self.fed.processes for pid in c.known_pids]
        self.stack.close()
        return self.pids + descendants


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """Started once for the module (a SuperLink and two SuperNodes are the expensive part); stopped at the end."""
    state = tmp_path_factory.mktemp("federation") / "fed"
    with ExitStack() as stack:
        bank, telco, report = (stack.enter_context(ToyService(b)) for b in (adder(100), adder(200), sink))
        fed = stack.enter_context(
            LocalFederation({"bank": bank.url, "telco": telco.url}, state, poll_interval=0.1))
        shared = Federation(fed, bank, telco, report, stack.pop_all(), [c.process.pid for c in fed.processes])
    try:
        yield shared
    finally:
        shared.close()


def test_rounds_travel_through_real_flower_processes(federation: Federation) -> None:
    fed, bank, telco, report = federation.fresh().fed, federation.bank, federation.telco, federation.report
    run_id = fed.run(
        {
            "arbiter": "demo.flower_toy:sum_arbiter",
            "job-id": "job-e2e",
            "report-url": f"{report.url}/report",
            "arbiter-config": json.dumps({"rounds": ROUNDS}),
        }
    )
    status = fed.wait(run_id, timeout=90)
    _wait_report(report, timeout=10)

    assert status.succeeded, status
    # Each party's service saw exactly the 3 rounds, in order, on the documented URL, with routing headers.
    for service, party in ((bank, "bank"), (telco, "telco")):
        assert [c.path for c in service.calls] == [f"/flower/v1/{run_id}/{r}" for r in range(1, ROUNDS + 1)]
        assert {c.headers["X-Tandem-Party"] for c in service.calls} == {party}
        assert {c.headers["X-Tandem-Job-Id"] for c in service.calls} == {"job-e2e"}
    # What the arbiter sent in round r+1 carries the sum of what the services returned up to round r.
    pairs = list(zip(bank.calls, telco.calls, strict=True))
    answers = [json.loads(b.answer)["value"] + json.loads(t.answer)["value"] for b, t in pairs]
    sent_totals = [json.loads(c.body)["total"] for c in bank.calls]
    assert sent_totals == [0, answers[0], answers[0] + answers[1]]
    # The arbiter's result holds byte for byte what the services returned.
    assert len(report.calls) == 1
    call = report.calls[0]
    assert call.headers["X-Tandem-Status"] == "succeeded"
    assert call.headers["X-Tandem-Rounds"] == str(ROUNDS)
    result = json.loads(call.body)
    assert result["total"] == sum(answers)
    assert result["replies"] == [{"bank": b.answer.decode(), "telco": t.answer.decode()} for b, t in pairs]


def _rogue_app(tmp_path: Path) -> Path:
    """A copy of the Tandem app whose FAB names a ClientApp the parties never installed."""
    app = tmp_path / "rogue-app"
    app.mkdir()
    text = (APP_DIR / "pyproject.toml").read_text()
    app.joinpath("pyproject.toml").write_text(text.replace("node.flower.client_app:app", "rogue.module:app"))
    return app


def test_warm_runner_serves_rounds_and_refuses_foreign_clientapps(federation: Federation, tmp_path: Path) -> None:
    fed, bank, telco, report = federation.fresh().fed, federation.bank, federation.telco, federation.report
    config = {
        "arbiter": "demo.flower_toy:sum_arbiter",
        "job-id": "job-warm",
        "report-url": report.url,
        "arbiter-config": json.dumps({"rounds": 2}),
    }
    good = fed.wait(fed.run(config), timeout=60)
    _wait_report(report, timeout=10)
    rogue = fed.wait(fed.run({**config, "job-id": "job-rogue"}, app_dir=_rogue_app(tmp_path)), timeout=60)
    _wait_report(report, timeout=10, count=2)

    assert good.succeeded, good
    assert json.loads(report.calls[0].body)["total"] == (101 + 201) + (102 + 202)
    assert not rogue.succeeded
    assert report.calls[1].headers["X-Tandem-Status"] == "failed"
    assert b"runs only 'node.flower.client_app:app'" in report.calls[1].body
    assert len(bank.calls) == len(telco.calls) == 2  # the rogue run never reached a node service


def test_nothing_the_federation_started_outlives_it(federation: Federation) -> None:
    """Runs last in the module: stops the shared federation and checks every process it started is gone."""
    started = federation.close()

    assert len(started) >= 3  # the SuperLink and both SuperNodes, at least
    assert not [pid for pid in started if alive(pid)]
    assert (federation.fed.state_dir / "logs").is_dir()
