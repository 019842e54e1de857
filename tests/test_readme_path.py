"""The README's "Using it" path as a test: its shell blocks, literally, in order, in a scratch directory.

A coordinator, a bank node and a telco node run as separate processes on their documented ports;
users, datasets from the synthetic generator, an overlap and a recovery job from the example YAML files,
approvals by both parties and compliance, results, the audit export and its offline verification —
only the commands the README shows. A README change that breaks the path breaks this test.

The scratch directory stands for the repository's root (the README's starting point): it links
``examples/`` and ``demo/`` from the checkout and nothing else. Every process the script starts is in
the script's own process group, which the test ends when the script finishes or times out.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PORTS = (8600, 8443, 8444)
SCRIPT_TIMEOUT_S = 900


def using_it_blocks(readme: str) -> list[str]:
    """The ```bash blocks of the README's "Using it" section, in order."""
    section = readme.split("\n## Using it\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, re.S)


def _port_busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_the_readme_path_runs_as_written(tmp_path):
    busy = [p for p in PORTS if _port_busy(p)]
    if busy:
        pytest.skip(f"the README's ports {busy} are in use on this machine")
    blocks = using_it_blocks((ROOT / "README.md").read_text())
    assert len(blocks) >= 5, "the Using it section lost its shell blocks"
    for name in ("examples", "demo"):
        (tmp_path / name).symlink_to(ROOT / name)
    script = tmp_path / "readme.sh"
    script.write_text("set -euo pipefail\n" + "\n".join(blocks))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    env |= {"PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}", "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_UPDATE_CHECK": "1"}

    proc = subprocess.Popen(["bash", str(script)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=SCRIPT_TIMEOUT_S)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the script's own group: coordinator and nodes it started
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
    logs = "".join(f"\n--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(tmp_path.glob("*.log")))

    assert proc.returncode == 0, out[-6000:] + logs
    assert len(re.findall(r"job \d+ approved by auditor: approved", out)) == 2, out
    assert re.search(r"^  overlap: \d+$", out, re.M), out  # the overlap job's result at the bank
    assert re.search(r"^recovered_contacts\.csv: \d+ rows$", out, re.M), out  # psi-results, numbers masked
    assert re.search(r"^OK: \d+ events", out, re.M), out  # audit verify
    assert out.count("ledger ok") == 2, out
    assert not (tmp_path / ".tandem").exists()  # all state where TANDEM_COORD_STATE_DIR and the nodes say
