"""Attack: a run whose FAB ships its own ClientApp code, against a node's SuperNode as deployed.

A real SuperLink (the coordinator's, behind its gate) and the bank's real SuperNode, started the way the
node's ``serve`` starts it: ``python -m node.flower.supernode_keeper`` with the round token in its
environment. Whoever can start a run (here the coordinator itself, the strongest such party) submits
FABs whose ClientApp would copy the node's SuperNode private key into a marker file. The node must never
execute them: no marker, the refusal in the run's failure report and in the runner's log, and the node
service never reached. A run of Tandem's own app first shows the node does serve rounds (with the token).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.flower.certs import generate_supernode_key, generate_tls
from coordinator.flower.superlink import APP_DIR, SuperLinkService
from demo.flower_toy import ToyService, adder, sink
from node.flower.supernode_keeper import command
from protocols.flower_processes import free_port
from protocols.wire.flower_round import HEADER_ROUND_TOKEN, ROUND_TOKEN_ENV

pytestmark = pytest.mark.flower

TOKEN = "round-token-of-this-test-0123456789"


def _hostile_app(root: Path, clientapp: str, module: str, marker: Path, key: Path) -> Path:
    """Tandem's app manifest naming ``clientapp``, plus ``module`` (a file path) that steals ``key`` on import."""
    app = root / f"app-{clientapp.replace(':', '-').replace('.', '-')}"
    text = (APP_DIR / "pyproject.toml").read_text().replace("node.flower.client_app:app", clientapp)
    (app / module).parent.mkdir(parents=True)
    (app / "pyproject.toml").write_text(text)
    for parent in (app / module).relative_to(app).parents:
        if parent != Path("."):
            (app / parent / "__init__.py").touch()
    (app / module).write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_bytes(Path({str(key)!r}).read_bytes())\n"
        "from flwr.clientapp import ClientApp\n"
        "app = ClientApp()\n"
    )
    return app


def _wait_calls(service: ToyService, count: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while len(service.calls) < count and time.monotonic() < deadline:
        time.sleep(0.2)


@pytest.fixture
def deployed_bank(tmp_path: Path) -> Iterator[tuple[SuperLinkService, Path, Path]]:
    """The SuperLink plus the bank's SuperNode kept by its keeper; yields (superlink, key, keeper state dir)."""
    superlink = SuperLinkService(tmp_path / "coordinator", free_port(), generate_tls(tmp_path / "tls"))
    keys = generate_supernode_key(tmp_path / "bank-keys", "bank")
    try:
        superlink.start()
        superlink.register("bank", keys.public_key)
        yield superlink, keys.private_key, tmp_path / "bank-flower"
    finally:
        superlink.stop()


def _start_keeper(superlink: SuperLinkService, key: Path, state: Path, service_url: str) -> subprocess.Popen[bytes]:
    args = command("bank", state, service_url, superlink.address, superlink.tls_files.ca_cert, key, 0.1)
    env = {**os.environ, ROUND_TOKEN_ENV: TOKEN, "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}
    return subprocess.Popen([sys.executable, "-m", "node.flower.supernode_keeper", *args],  # noqa: S603
                            env=env, stdin=subprocess.DEVNULL)


def test_a_fab_shipping_its_own_clientapp_never_runs_on_the_node(
    tmp_path: Path, deployed_bank: tuple[SuperLinkService, Path, Path]
) -> None:
    # Prepare: the bank's SuperNode as its node starts it, online and serving Tandem's own app
    superlink, key, state = deployed_bank
    marker = tmp_path / "stolen-key"
    hostile = [
        # another ClientApp module, shipped in the FAB
        _hostile_app(tmp_path, "tandem_evil.client:app", "tandem_evil/client.py", marker, key),
        # Tandem's own component name, with a module in the FAB that would shadow the installed shim
        _hostile_app(tmp_path, "node.flower.client_app:app", "node/flower/client_app.py", marker, key),
    ]
    with ToyService(adder(100)) as bank, ToyService(sink) as report:
        keeper = _start_keeper(superlink, key, state, bank.url)
        try:
            deadline = time.monotonic() + 60
            while "bank" not in superlink.online() and time.monotonic() < deadline:
                time.sleep(0.2)
            config = {"arbiter": "demo.flower_toy:sum_arbiter", "parties": "bank", "report-url": report.url,
                      "arbiter-config": json.dumps({"rounds": 1}), "nodes-timeout": 60.0}
            good = superlink.wait(superlink.run({**config, "job-id": "own-app"}), timeout=90)
            _wait_calls(report, 1)

            # Execute: runs of the hostile FABs
            outcomes = [superlink.wait(superlink.run({**config, "job-id": f"hostile-{i}"}, app), timeout=90)
                        for i, app in enumerate(hostile)]
            _wait_calls(report, 3)
        finally:
            keeper.terminate()
            keeper.wait(timeout=60)
        log = state / "logs" / "clientapp-bank.log"
        runner_log = log.read_text() if log.exists() else ""

    # Assert: Tandem's own app ran, with the node's round token
    assert good.succeeded, good
    assert bank.calls[0].headers[HEADER_ROUND_TOKEN] == TOKEN
    # ... and no hostile FAB's code ran: no key copied, the node service never reached
    assert not marker.exists()
    assert len(bank.calls) == 1
    assert not any(outcome.succeeded for outcome in outcomes), outcomes
    # ... and the refusals are visible: in the runs' failure reports and in the node's runner log
    reasons = [call.body.decode() for call in report.calls[1:]]
    assert [call.headers["X-Tandem-Status"] for call in report.calls[1:]] == ["failed", "failed"]
    assert "FabRefusedError" in reasons[0] and "names 'tandem_evil.client:app'" in reasons[0], reasons[0]
    assert "FabRefusedError" in reasons[1] and "carries" in reasons[1] and "node/flower/client_app.py" in reasons[1]
    assert runner_log.count("refused run") == 2
