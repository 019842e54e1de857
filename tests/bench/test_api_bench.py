"""bench/api_bench.py end to end with tiny sizes: both backends, the table and the JSON names (not timings).

Runs the real ``tandem-coordinator serve`` on SQLite and on a scratch PostgreSQL database for a second of
light load, and a 300-event verification; checks that every figure the issue asks for is there under its
plain name, that no request failed, and that the scratch database was dropped.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "api_bench.py"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.mark.postgres
def test_a_tiny_run_writes_every_figure_for_both_backends(tmp_path: Path) -> None:
    out = tmp_path / "api.json"
    run = subprocess.run([sys.executable, str(BENCH), "--json", str(out), "--pg-url", PG_ADMIN, "--duration", "1",
                          "--nodes", "4", "--view-rate", "12", "--submit-rate", "3", "--approved-jobs", "1",
                          "--verify-events", "300"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]

    result = json.loads(out.read_text())
    for prefix in ("pg", "sqlite"):
        for scenario in ("views", "poll", "pages", "submit"):
            for name in ("rate", "sent", "errors", "p50_ms", "p99_ms"):
                assert f"{prefix}_{scenario}_{name}" in result, f"{prefix}_{scenario}_{name}"
            assert result[f"{prefix}_{scenario}_errors"] == 0
            assert result[f"{prefix}_{scenario}_sent"] >= 1
        assert isinstance(result[f"{prefix}_views_pass"], bool) and isinstance(result[f"{prefix}_submit_pass"], bool)
    assert result["pg_views_sent"] == result["pg_poll_sent"] + result["pg_pages_sent"]
    for name in ("verify_1e6_s", "verify_s", "goal_views_p99_ms", "goal_submit_p99_ms", "goal_verify_1e6_s",
                 "reference_verify_1e6_s", "reference_submit_p99_ms"):
        assert isinstance(result[name], float | int), name
    assert result["verify_events"] == 300
    assert "polls + pages (goal)" in run.stdout and "job submission (goal)" in run.stdout
    assert "postgres" in run.stdout and "sqlite" in run.stdout and "verify 300 events" in run.stdout
    scratch = re.search(r"scratch database (tandem_bench_\d+) dropped", run.stderr)
    assert scratch is not None, run.stderr[-2000:]
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test") as conn:
        left = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (scratch.group(1),)).fetchall()
    assert left == []


def test_with_two_workers_every_request_succeeds_and_both_workers_count(tmp_path: Path) -> None:
    """``--workers 2``: the pages' session cookie works in both workers, and the CPU figures sum both."""
    out = tmp_path / "api.json"
    run = subprocess.run([sys.executable, str(BENCH), "--json", str(out), "--backends", "sqlite", "--workers", "2",
                          "--duration", "2", "--nodes", "4", "--view-rate", "30", "--page-share", "0.5",
                          "--submit-rate", "3", "--approved-jobs", "1", "--verify-events", "300"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["workers"] == 2 and "coordinator: 2 API worker processes" in run.stdout
    for scenario in ("poll", "pages", "submit"):
        assert result[f"sqlite_{scenario}_errors"] == 0 and result[f"sqlite_{scenario}_sent"] >= 1, scenario
    assert result["sqlite_server_cpu_ms_per_request"] > 0
