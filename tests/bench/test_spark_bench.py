"""bench/spark_bench.py runs end to end on tiny sizes and writes its JSON (keys and sanity, not time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from node.spark import spark_available

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "spark_bench.py"


def test_spark_bench_smoke(tmp_path: Path) -> None:
    missing = spark_available()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the Spark bench cannot run under CI: {missing}")
        pytest.skip(f"Spark bench skipped: {missing}")
    out = tmp_path / "bench.json"

    proc = subprocess.run([sys.executable, str(BENCH), "--sizes", "3000", "--overlap", "3000x600",
                           "--calibration-records", "2000", "--data", str(tmp_path), "--json", str(out)],
                          capture_output=True, text=True, timeout=1800, check=False)

    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    (recovery,), (overlap,) = report["recovery"], report["overlap"]
    for row in (recovery, overlap):
        assert {"ours_wall_s", "reference_wall_s", "wall_ratio", "ours_peak_driver_rss_mb",
                "reference_peak_driver_rss_mb", "ours_peak_jvm_rss_mb", "ours_cpu_s", "reference_cpu_s"} <= set(row)
        assert row["identical"] is True
    assert recovery["n"] == 3000 and overlap["n"] == "3000x600"
    assert {r["engine"] for r in report["runs"]} == {"pool", "spark"}
    assert all(r["records"] > 2900 for r in report["runs"] if r["task"] == "recovery")
    assert [r["intersection"] for r in report["runs"] if r["task"] == "overlap"] == [300, 300]
    assert report["calibration"]["task_overhead_ms"] > 0 and report["calibration"]["records_per_core_s"] > 0
    assert "pool wall s" in proc.stdout and "spark wall s" in proc.stdout
    assert [(p["executors"], p["cores"]) for p in report["projection"]] == [(16, 4), (64, 4)]
    assert all(p["projected_wall_s"] > p["compute_s"] > 0 for p in report["projection"])
    assert "PROJECTION" in proc.stdout
