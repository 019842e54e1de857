"""Benchmark: offline verification of an audit export, as compliance runs it (one CLI process).

For each size, writes a synthetic export (streamed, realistic small event bodies) to a temporary file,
then times ``python -m coordinator.audit.chain verify`` on it in a child process and reads that child's
peak resident memory. Prints a table; ``--json PATH`` also writes the rows.

    .venv/bin/python bench/audit_verify_bench.py --events 10000 100000 1000000 --json /tmp/audit_bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from coordinator.audit.chain import append_event, export_lines, sign_head
from protocols.crypto.hashchain import ChainRecord
from protocols.crypto.signing import SigningKey
from protocols.wire.canonical import canonical_json

ACTIONS = ("job.create", "approval.add", "job.progress", "message.relay", "policy.decision")


def _records(n: int, sink: list[ChainRecord]) -> Iterator[ChainRecord]:
    prev: ChainRecord | None = None
    for i in range(n):
        details = {"bytes": 4096 + i % 1000, "digest": f"{i:064x}", "stage": "psi", "job_id": i % 997}
        prev = append_event(prev, f"2026-11-27T10:{i // 60 % 60:02d}:{i % 60:02d}.{i % 10**6:06d}Z",
                            f"party:{'bank-a' if i % 2 else 'telco-x'}", ACTIONS[i % len(ACTIONS)],
                            f"job:{i % 997}", details)
        sink[:] = [prev]
        yield prev


def write_export(path: Path, n: int, key: SigningKey) -> None:
    """Write an n-event export to ``path`` in constant memory (record lines as ``export_lines`` writes them)."""
    last: list[ChainRecord] = []
    with path.open("wb") as fh:
        for rec in _records(n, last):
            fh.write(canonical_json(rec.to_dict()) + b"\n")
        head = sign_head(key, last[0], signed_at="2026-11-27T12:00:00Z")
        fh.write(list(export_lines(last, head))[-1].encode("utf-8"))


def time_cli(path: Path, key: SigningKey) -> tuple[float, float, int]:
    """Wall seconds, child CPU seconds (user + system) and child peak RSS (KiB on Linux).

    CPU time is reported beside wall time because a shared machine can stretch wall time severalfold.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "coordinator.audit.chain", "verify", str(path), "--key",
                          key.public_hex], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"verification failed: {out.stdout}{out.stderr}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, after.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    key = SigningKey.from_seed(bytes(32))
    rows = []
    print(f"{'events':>10} {'file_MB':>8} {'wall_s':>8} {'cpu_s':>8} {'events_per_s':>13} "
          f"{'events_per_cpu_s':>17} {'peak_rss_MB':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in sorted(args.events):  # ascending: RUSAGE_CHILDREN reports the largest child so far
            path = Path(tmp) / f"audit-{n}.jsonl"
            write_export(path, n, key)
            wall, cpu, rss_kib = time_cli(path, key)
            row = {"events": n, "file_mb": round(os.path.getsize(path) / 2**20, 1), "wall_s": round(wall, 2),
                   "cpu_s": round(cpu, 2), "events_per_s": round(n / wall), "events_per_cpu_s": round(n / cpu),
                   "peak_rss_mb": round(rss_kib / 1024, 1), "load_avg_1m": round(os.getloadavg()[0], 2)}
            rows.append(row)
            print(f"{n:>10} {row['file_mb']:>8} {row['wall_s']:>8} {row['cpu_s']:>8} {row['events_per_s']:>13} "
                  f"{row['events_per_cpu_s']:>17} {row['peak_rss_mb']:>12}")
            path.unlink()
    if args.json:
        args.json.write_text(json.dumps({"benchmark": "audit_verify", "cpu_count": os.cpu_count(), "rows": rows},
                                        indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
