"""Branch site selection benchmark: telco aggregation, greedy and MILP coverage, telco vs bank-only plans.

Usage::

    .venv/bin/python bench/site_bench.py [--n 10000000] [--cells 10000] [--milp-cells 500]
                                          [--people 200000] [--json PATH]

1. Aggregation at the telco: n subscribers' home and work km cells ("Gxxxxyyyy", drawn like
   demo.synthetic: 54 district centres, N(0, 2.5 km) homes, log-normal commutes) into k-suppressed,
   ε-DP counts per H3 resolution-8 cell. Input arrives dictionary-encoded (as a Parquet read gives it,
   ``categorical``) and, separately, as plain Arrow strings (``string``). Each run is in a fresh child
   process; peak memory is the child's RSS above its RSS before the call, sampled every 5 ms.
2. Optimisation: greedy maximum coverage for N = 10 and 50 new sites over a city of ~``--cells``
   resolution-8 cells (the cover matrix build is timed separately), and the exact MILP (HiGHS) on a
   ~``--milp-cells`` instance with the greedy gap.
3. Quality: on the synthetic population (``--people``; subscribers split in a released and a held-out
   half), the share of held-out true home + work demand covered by plans made from the telco's release,
   from the bank's own data (ID-number district), from exact customer homes (a generous bank) and from
   the truth itself.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _proc_meter import in_child  # noqa: E402

RADIUS_KM = 1.5


# --- 1. aggregation -----------------------------------------------------------------------------


def make_cells(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Home and work km-cell codes into a table of distinct cell ids (int32 codes, as in a Parquet dictionary)."""
    from demo import _synthetic_ids as ids

    rng = np.random.default_rng(seed)
    district = rng.choice(ids.DISTRICT_P.size, n, p=ids.DISTRICT_P)
    hx = ids.DISTRICT_X[district] + rng.normal(0, 2.5, n)
    hy = ids.DISTRICT_Y[district] + rng.normal(0, 2.5, n)
    del district
    dist = np.exp(1.5 + 0.6 * rng.standard_normal(n)) * (rng.random(n) > 0.3)
    ang = rng.random(n) * 2 * np.pi
    wx, wy = hx + dist * np.cos(ang), hy + dist * np.sin(ang)
    del dist, ang
    keys = np.concatenate([np.floor(hx).astype(np.int64) * 10_000 + np.floor(hy).astype(np.int64),
                           np.floor(wx).astype(np.int64) * 10_000 + np.floor(wy).astype(np.int64)])
    del hx, hy, wx, wy
    uniq, codes = np.unique(keys, return_inverse=True)
    names = np.array([f"G{k // 10_000:04d}{k % 10_000:04d}" for k in uniq.tolist()], dtype=object)
    codes = codes.astype(np.int32)
    return codes[:n], codes[n:], names


def _frame(home: np.ndarray, work: np.ndarray, names: np.ndarray, kind: str) -> Any:
    import pandas as pd
    import pyarrow as pa

    if kind == "categorical":
        cat = pd.CategoricalDtype(list(names))
        return pd.DataFrame({"home_cell": pd.Categorical.from_codes(home, dtype=cat),
                             "work_cell": pd.Categorical.from_codes(work, dtype=cat)})
    dictionary = pa.array(list(names), pa.string())
    cols = {c: pd.Series(pa.DictionaryArray.from_arrays(pa.array(v), dictionary).dictionary_decode(),
                         dtype=pd.ArrowDtype(pa.string()))
            for c, v in (("home_cell", home), ("work_cell", work))}
    return pd.DataFrame(cols)


class _PeakRss:
    """Samples this process's RSS in a thread; ``extra_mb`` is the peak above the RSS at start."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.start = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def extra_mb(self) -> float:
        return (self.peak - self.start) / 2**20


def _aggregate(n: int, seed: int, kind: str) -> dict[str, Any]:
    from node.jobs.sites import DemandSpec, aggregate_demand

    home, work, names = make_cells(n, seed)
    frame = _frame(home, work, names, kind)
    del home, work
    input_mb = float(frame.memory_usage(deep=True).sum()) / 2**20
    import gc

    gc.collect()
    with _PeakRss() as mem:
        start = time.perf_counter()
        result = aggregate_demand(frame, DemandSpec(epsilon=1.0, k=50), np.random.default_rng(seed))
        wall = time.perf_counter() - start
    return {"wall_s": wall, "rows_per_s": n / wall, "points_per_s": 2 * n / wall, "extra_mb": mem.extra_mb,
            "input_mb": input_mb, "rss_mb": mem.peak / 2**20, "distinct_km_cells": int(names.size),
            "released_cells": len(result.release.cells) // 2}  # every measure is reported under two names


# --- 2. optimisation ----------------------------------------------------------------------------


def city(n_cells: int, seed: int) -> dict[str, float]:
    """A city of ~n_cells resolution-8 cells: a few Gaussian centres on a light background."""
    import h3

    rings = int(np.ceil((-3 + np.sqrt(9 - 12 * (1 - n_cells))) / 6))  # 3r(r+1)+1 >= n_cells
    cells = list(h3.grid_disk(h3.latlng_to_cell(31.22, 121.47, 8), rings))
    rng = np.random.default_rng(seed)
    pts = np.array([h3.cell_to_latlng(c) for c in cells])
    centres = pts[rng.choice(len(cells), 8, replace=False)]
    dens = 2 + sum(rng.uniform(50, 300) * np.exp(-((pts - c) ** 2).sum(1) / (2 * rng.uniform(0.01, 0.03) ** 2))
                   for c in centres)
    return dict(zip(cells, rng.poisson(dens).astype(float).tolist(), strict=True))


def optimisation(n_cells: int, milp_cells: int, seed: int) -> dict[str, Any]:
    from node.jobs.sites import build_problem, greedy_sites, solve_milp

    demand = city(n_cells, seed)
    out: dict[str, Any] = {"city_cells": len(demand)}
    for n_sites in (10, 50):
        start = time.perf_counter()
        problem = build_problem(demand, n_sites, RADIUS_KM)
        built = time.perf_counter()
        plan = greedy_sites(problem)
        out[f"greedy_n{n_sites}"] = {"build_s": built - start, "greedy_s": time.perf_counter() - built,
                                     "coverage": plan.coverage_fraction}
    small = city(milp_cells, seed + 1)
    problem = build_problem(small, 10, 1.0)
    start = time.perf_counter()
    greedy = greedy_sites(problem)
    greedy_s = time.perf_counter() - start
    exact = solve_milp(problem, time_limit_s=120)
    out["milp"] = {"cells": len(small), "n_sites": 10, "radius_km": 1.0, "milp_s": exact.seconds,
                   "optimal": exact.optimal, "greedy_s": greedy_s, "greedy_gain": greedy.gain,
                   "milp_gain": exact.gain, "greedy_gap": 1 - greedy.gain / exact.gain if exact.gain else 0.0}
    return out


# --- 3. quality ---------------------------------------------------------------------------------


def _counts(*columns: Any) -> dict[str, float]:
    from node.jobs.sites import assign_km_cells

    out: dict[str, float] = {}
    for column in columns:
        a = assign_km_cells(column)
        for cell, k in zip(a.cells, np.bincount(a.codes[a.codes >= 0], minlength=len(a.cells)).tolist(), strict=True):
            out[cell] = out.get(cell, 0.0) + k
    return {c: v for c, v in out.items() if v > 0}


def _district_demand(id_numbers: Any) -> dict[str, float]:
    """Bank-only: customers per ID-number district, spread over ~4.6 km around the district centre."""
    import h3
    import pandas as pd

    from demo import _synthetic_ids as ids
    from node.jobs.sites import KmGrid

    per_code = pd.to_numeric(id_numbers.str[:6]).value_counts()
    lat, lng = KmGrid().to_latlng(np.floor(ids.DISTRICT_X), np.floor(ids.DISTRICT_Y))
    out: dict[str, float] = {}
    for d, la, ln in zip(ids.DISTRICTS, lat.tolist(), lng.tolist(), strict=True):
        disk = h3.grid_disk(h3.latlng_to_cell(la, ln, 8), 5)
        for cell in disk:
            out[cell] = out.get(cell, 0.0) + float(per_code.get(d.code, 0)) / len(disk)
    return out


def quality(people: int, n_sites: int, seed: int) -> dict[str, float]:
    from demo._synthetic_model import State, Streams, SynthConfig, build_chunk
    from node.jobs.sites import (
        DemandSpec,
        Measure,
        aggregate_demand,
        build_problem,
        coverage_fraction,
        expand_demand,
        greedy_sites,
    )

    tables = build_chunk(State(Streams(7), SynthConfig()), people)
    telco = tables["telco_subscribers"].select(["id_number", "home_cell", "work_cell"]).to_pandas()
    bank = tables["bank_customers"].select(["id_number"]).to_pandas()
    mask = np.random.default_rng(seed).random(len(telco)) < 0.5
    released, held_out = telco[mask], telco[~mask]
    truth = _counts(held_out["home_cell"], held_out["work_cell"])
    spec = DemandSpec(epsilon=1.0, k=50, measures=(Measure.RESIDENTS, Measure.WORKERS))
    surfaces = {
        "telco_release": expand_demand(aggregate_demand(released, spec, np.random.default_rng(seed)).release),
        "bank_id_district": _district_demand(bank["id_number"]),
        "bank_exact_homes": _counts(released.loc[released["id_number"].isin(set(bank["id_number"])), "home_cell"]),
        "oracle": truth,
    }
    return {name: coverage_fraction(truth, [s.cell for s in greedy_sites(build_problem(d, n_sites, RADIUS_KM)).sites],
                                    RADIUS_KM) for name, d in surfaces.items()}


# --- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000, help="subscribers aggregated (home + work each)")
    parser.add_argument("--cells", type=int, default=10_000, help="city size for the greedy timing")
    parser.add_argument("--milp-cells", type=int, default=500, help="instance size for the MILP")
    parser.add_argument("--people", type=int, default=200_000, help="synthetic people for the quality comparison")
    parser.add_argument("--sites", type=int, default=50, help="new sites in the quality comparison")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)

    agg = {kind: in_child(_aggregate, args.n, args.seed, kind) for kind in ("categorical", "string")}
    opt = optimisation(args.cells, args.milp_cells, args.seed)
    qual = quality(args.people, args.sites, args.seed)

    print(f"aggregation of n = {args.n:,} subscribers (2n points), eps = 1, k = 50, resolution 8/6")
    print(f"{'input':12} {'wall s':>8} {'rows/s':>12} {'points/s':>12} {'input MB':>9} {'extra MB':>9} "
          f"{'RSS MB':>8} {'cells out':>9}")
    for kind, a in agg.items():
        print(f"{kind:12} {a['wall_s']:8.2f} {a['rows_per_s']:12,.0f} {a['points_per_s']:12,.0f} "
              f"{a['input_mb']:9.0f} {a['extra_mb']:9.0f} {a['rss_mb']:8.0f} {a['released_cells']:9}")
    print(f"\noptimisation, radius {RADIUS_KM} km, city of {opt['city_cells']:,} cells")
    for n_sites in (10, 50):
        g = opt[f"greedy_n{n_sites}"]
        print(f"  greedy N={n_sites:<3} cover matrix {g['build_s']:.2f} s, greedy {g['greedy_s']:.3f} s, "
              f"coverage {g['coverage']:.3f}")
    m = opt["milp"]
    print(f"  MILP {m['cells']} cells, N={m['n_sites']}, radius {m['radius_km']} km: {m['milp_s']:.2f} s "
          f"(optimal: {m['optimal']}), greedy {m['greedy_s'] * 1000:.1f} ms, greedy gap {m['greedy_gap']:.2%}")
    print(f"\nplan quality, {args.people:,} synthetic people, N = {args.sites}: share of held-out true demand covered")
    for name, value in qual.items():
        print(f"  {name:20} {value:.4f}")

    figures = {"n": args.n, "aggregation": agg, "optimisation": opt, "quality_people": args.people,
               "quality_sites": args.sites, "quality_coverage": qual}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
