"""bench/marketing_bench.py runs tiny end to end and writes its figures under plain names (not timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_marketing_bench_runs_tiny_and_writes_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "marketing_bench.py"), "--n", "20000",
                          "--batch", "7000", "--psi-n", "300", "--people", "6000", "--workers", "1",
                          "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    figures = json.loads(out.read_text())
    for key in ("ours_lr_rows_per_s", "ours_sb_rows_per_s", "ours_lr_peak_mb", "ours_sb_peak_mb", "ours_psi_wall_s",
                "reference_psi_wall_s", "psi_wall_ratio", "bank_only_auc", "federated_auc", "telco_alone_auc",
                "true_uplift"):
        assert key in figures, key
    assert figures["n"] == 20000 and figures["psi_excluded"] == 150  # psi_bench data: half of each side shared
    assert 0.5 <= figures["bank_only_auc"] <= 1 and 0.5 <= figures["federated_auc"] <= 1
    assert "LR rows/s" in run.stdout and "balanced PSI" in run.stdout
