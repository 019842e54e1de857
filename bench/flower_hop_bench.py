"""Seconds per Flower round trip (ServerApp -> both ClientApps -> node services -> back).

Starts a real LocalFederation (SuperLink with TLS + SuperNode auth, two SuperNodes) per setting,
runs the toy sum arbiter for --rounds rounds against two loopback toy node services, and takes the
time between consecutive arrivals of a round at the bank's service: one full round trip through
Flower. Every Tandem SuperNode runs the pinned, long-lived node.flower.warm_clientapp runner
(--isolation process; stock Flower's fresh flwr-clientapp per message would run a FAB's own code,
so it is no longer a setting).

Settings:
  stock  Flower 1.42's sleeps: SuperNode sleeps 3 s after an empty pull, SuperExec polls every
         1 s, and the ServerApp pulls replies every 3 s (what Grid.send_and_receive does).
  warm   SuperNode poll capped at --poll s (node.flower.fastpoll), SuperExec
         FLWR_SUPEREXEC_TASK_POLL_INTERVAL=--poll, ServerApp grid-poll-interval=--poll.

Usage: python bench/flower_hop_bench.py [--rounds N] [--poll 0.1] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo.federation import LocalFederation  # noqa: E402
from demo.flower_toy import ToyService, adder, sink  # noqa: E402


def measure(rounds: int, poll: float | None, grid_poll: float, state: Path) -> dict[str, object]:
    """Run one federation; return round-trip gaps and start-up figures."""
    t0 = time.monotonic()
    with ToyService(adder(1)) as bank, ToyService(adder(2)) as telco, ToyService(sink) as report:
        with LocalFederation(
            {"bank": bank.url, "telco": telco.url}, state, poll_interval=poll
        ) as fed:
            started = time.monotonic()
            run_id = fed.run(
                {
                    "arbiter": "demo.flower_toy:sum_arbiter",
                    "job-id": "bench",
                    "report-url": report.url,
                    "arbiter-config": json.dumps({"rounds": rounds}),
                    "grid-poll-interval": grid_poll,
                }
            )
            status = fed.wait(run_id, timeout=120 + 60 * rounds)
            if not status.succeeded:
                raise SystemExit(f"run failed: {status}")
    arrivals = [c.at for c in bank.calls]
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    return {
        "federation_start_s": started - t0,
        "run_start_to_round1_s": arrivals[0] - started,
        "round_trip_s": gaps,
        "median_s": statistics.median(gaps),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4, help="rounds per setting (>= 2)")
    parser.add_argument("--poll", type=float, default=0.1, help="tuned poll interval, seconds")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be >= 2 (a round trip is the gap between two rounds)")
    results = {}
    with TemporaryDirectory(prefix="flower-hop-") as tmp:
        settings = (
            ("stock", None, 3.0),
            ("warm", args.poll, args.poll),
        )
        for name, poll, grid_poll in settings:
            results[name] = measure(args.rounds, poll, grid_poll, Path(tmp) / name)
    load = os.getloadavg()
    print(f"Flower 1.42 hop, {args.rounds} rounds per setting, {os.cpu_count()} CPUs, load {load[0]:.1f}")
    print(f"{'setting':8} {'median s':>9} {'min s':>7} {'max s':>7} {'start s':>8} {'run->r1 s':>10}")
    for name, r in results.items():
        gaps = r["round_trip_s"]
        print(
            f"{name:8} {r['median_s']:9.2f} {min(gaps):7.2f} {max(gaps):7.2f} "
            f"{r['federation_start_s']:8.1f} {r['run_start_to_round1_s']:10.1f}"
        )
    if args.json:
        payload = {
            "hop_s_stock": results["stock"]["median_s"],
            "hop_s_warm": results["warm"]["median_s"],
            "rounds": args.rounds,
            "poll_s": args.poll,
            "cpus": os.cpu_count(),
            "loadavg_1m": load[0],
            "detail": results,
        }
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
