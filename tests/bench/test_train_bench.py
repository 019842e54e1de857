"""bench/train_bench.py through Flower on a small default_credit subset with 512-bit test keys.

Checks that the bench's Flower runtime starts the whole federation, runs the job and reports sane
figures (not timings): AUC, round trips, CPU of all processes, bytes, peak RSS by process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from demo.public_data import fate_path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "train_bench.py"
DATA = fate_path("default_credit", "guest")


def test_key_mapping_makes_the_job_hold_out_the_benchmark_test_rows() -> None:
    # Prepare
    sys.path.insert(0, str(BENCH.parent))
    try:
        from _train_flower import aligned_keys
    finally:
        sys.path.remove(str(BENCH.parent))
    from node.jobs.training.alignment import split_rows

    ids = np.arange(1000, 2000)
    test_ids = np.random.default_rng(3).choice(ids, size=300, replace=False)
    train_ids = np.setdiff1d(ids, test_ids)
    digest = "ab" * 32

    # Execute
    keys = aligned_keys(digest, train_ids, test_ids)

    # Assert: the job orders rows by key and holds out the digest-seeded positions
    ordered = sorted(keys, key=keys.__getitem__)
    _, test_pos = split_rows(len(ids), digest)
    assert sorted(ordered[p] for p in test_pos) == sorted(test_ids.tolist())
    assert len(set(keys.values())) == len(ids)


@pytest.mark.flower
@pytest.mark.slow
@pytest.mark.parametrize("algo, extra", [("lr", ["--iterations", "2"]),
                                         ("secureboost", ["--trees", "2", "--depth", "2"])])
def test_bench_runs_the_job_through_flower(tmp_path: Path, algo: str, extra: list[str]) -> None:
    # Prepare
    out = tmp_path / "out.json"
    argv = [sys.executable, str(BENCH), "--algo", algo, "--rows", "2000", "--bits", "512", "--json", str(out),
            "--state", str(tmp_path / "state"), "--timeout", "300", *extra]

    # Execute
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=ROOT)

    # Assert
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["runtime"] == "flower" and figures["key_bits"] == 512
    assert 0.6 < figures["auc"] <= 1.0 and 0.6 < figures["central_auc"] <= 1.0
    assert 0.5 < figures["bank_only_auc"] <= 1.0 and 0.0 < figures["ks"] <= 1.0
    assert figures["n_test"] == figures["test_rows"] == 600
    assert figures["round_trips"] >= 3 and figures["bytes_relayed"] > 0
    assert figures["bytes_bank_to_telco"] > 0 and figures["bytes_telco_to_bank"] > 0
    assert figures["ours_cpu_s"] > 0 and figures["ours_wall_s"] > 0
    assert figures["cpu_s_by_process"]["bank/node"] > 0
    rss = figures["peak_rss_mb_by_process"]
    roles = ("coordinator", "coordinator/superlink", "coordinator/serverapp", "bank/node", "telco/node",
             "bank/supernode", "telco/supernode")
    assert all(rss.get(role, 0) > 50 for role in roles), rss
    assert f"== {algo} via flower" in proc.stdout


_METER_SCRIPT = """
import json, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
from _proc_meter import ProcessTreeMeter, cpu_delta

burn = "import time\\nt = time.process_time()\\nwhile time.process_time() - t < 0.6: pass"
with ProcessTreeMeter(interval=5.0) as meter:   # far longer than either process lives
    before = meter.cpu()
    subprocess.run([sys.executable, "-c", burn], check=True)                   # a child that exits
    subprocess.run(["sh", "-c", f"{sys.executable} -c '{burn}' & exit 0"], check=True)  # an orphaned grandchild
    time.sleep(2.0)
    meter.cpu()  # the poll that reaps the re-parented orphan
    print(json.dumps(cpu_delta(before, meter.cpu())))
"""


def test_meter_counts_processes_that_exit_between_polls(tmp_path: Path) -> None:
    # Execute
    proc = subprocess.run([sys.executable, "-c", _METER_SCRIPT, str(BENCH.parent)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)

    # Assert: both burners' 0.6 CPU-s, though the meter never saw either alive
    assert proc.returncode == 0, proc.stderr
    assert sum(json.loads(proc.stdout).values()) >= 1.1
