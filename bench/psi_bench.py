"""PSI benchmark: our ECDH-PSI (ristretto255, two worker processes) against OpenMined PSI, same data, same run.

Usage::

    .venv/bin/python bench/psi_bench.py --n 100000 [--json PATH] [--workers 2] [--skip-reference]

Data: 11-digit mobile numbers, n per side, half of them shared. Each implementation runs in a fresh
child process; wall time covers both parties end to end (ours includes identifier normalisation and
the wire codec), bytes are the serialised messages each way, peak memory is the child's max RSS
(ours: the driver process and, separately, the largest worker).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _proc_meter import in_child  # noqa: E402


def make_data(n: int, seed: int = 20240601) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    pool: set[str] = set()
    while len(pool) < n + n // 2:
        pool.add(f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}")
    values = sorted(pool)
    rng.shuffle(values)
    half = n // 2
    return values[:n], values[n - half : 2 * n - half]


def _ours(receiver: list[str], sender: list[str], workers: int) -> dict[str, Any]:
    from psi.engine import ProcessPoolMapper, run_local

    start = time.perf_counter()
    with ProcessPoolMapper(workers) as mapper:
        run = run_local(receiver, sender, "intersection", mapper=mapper)
    wall = time.perf_counter() - start
    return {
        "wall_s": wall,
        "intersection": len(run.receiver.intersection),
        "bytes_r2s": run.bytes_r2s,
        "bytes_s2r": run.bytes_s2r,
        "round_trips": run.round_trips,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def _reference(receiver: list[str], sender: list[str]) -> dict[str, Any]:
    import private_set_intersection.python as psi

    start = time.perf_counter()
    client = psi.client.CreateWithNewKey(True)
    server = psi.server.CreateWithNewKey(True)
    setup = server.CreateSetupMessage(1e-9, len(receiver), sender, psi.DataStructure.RAW)
    request = client.CreateRequest(receiver)
    response = server.ProcessRequest(request)
    intersection = client.GetIntersection(setup, response)
    wall = time.perf_counter() - start
    return {
        "wall_s": wall,
        "intersection": len(intersection),
        "bytes_r2s": len(request.SerializeToString()),
        "bytes_s2r": len(setup.SerializeToString()) + len(response.SerializeToString()),
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="elements per side")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-reference", action="store_true", help="do not run openmined-psi")
    args = parser.parse_args(argv)

    receiver, sender = make_data(args.n)
    ours = in_child(_ours, receiver, sender, args.workers)
    ref = None if args.skip_reference else in_child(_reference, receiver, sender)
    if ref is not None and ref["intersection"] != ours["intersection"]:
        print(f"MISMATCH: ours {ours['intersection']} reference {ref['intersection']}", file=sys.stderr)
        return 1

    n = args.n
    rows = [
        ("wall time (s)", f"{ours['wall_s']:.2f}", ref and f"{ref['wall_s']:.2f}"),
        ("bytes R→S", ours["bytes_r2s"], ref and ref["bytes_r2s"]),
        ("bytes S→R", ours["bytes_s2r"], ref and ref["bytes_s2r"]),
        ("bytes/element R→S", f"{ours['bytes_r2s'] / n:.2f}", ref and f"{ref['bytes_r2s'] / n:.2f}"),
        ("bytes/element S→R", f"{ours['bytes_s2r'] / (2 * n):.2f}", ref and f"{ref['bytes_s2r'] / (2 * n):.2f}"),
        ("peak RSS (MB)", f"{ours['peak_mb']:.0f}", ref and f"{ref['peak_mb']:.0f}"),
        ("worker peak RSS (MB)", f"{ours['worker_peak_mb']:.0f}", None),
        ("intersection", ours["intersection"], ref and ref["intersection"]),
    ]
    print(f"n = {n} per side, overlap {n // 2}, ours with {args.workers} workers")
    print(f"{'':22} {'ours':>24} {'openmined-psi':>16}")
    for name, a, b in rows:
        print(f"{name:22} {a!s:>24} {'-' if b is None else b!s:>16}")
    if ref is not None:
        print(f"wall ratio ours/reference: {ours['wall_s'] / ref['wall_s']:.3f}")

    figures = {
        "n": n,
        "workers": args.workers,
        "ours_wall_s": ours["wall_s"],
        "ours_bytes_r2s": ours["bytes_r2s"],
        "ours_bytes_s2r": ours["bytes_s2r"],
        "ours_bytes_per_element_r2s": ours["bytes_r2s"] / n,
        "ours_bytes_per_element_s2r": ours["bytes_s2r"] / (2 * n),
        "ours_peak_mb": ours["peak_mb"],
        "ours_worker_peak_mb": ours["worker_peak_mb"],
        "ours_round_trips": ours["round_trips"],
        "intersection": ours["intersection"],
    }
    if ref is not None:
        figures |= {
            "reference_wall_s": ref["wall_s"],
            "reference_bytes_r2s": ref["bytes_r2s"],
            "reference_bytes_s2r": ref["bytes_s2r"],
            "reference_peak_mb": ref["peak_mb"],
            "wall_ratio": ours["wall_s"] / ref["wall_s"],
        }
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
