"""The bank's existing branches for the demo's site selection: a small deterministic table.

Branches sit in the districts of the synthetic population's densest city (Shanghai: the city, first
four digits of the district code, with the largest total weight in ``demo._synthetic_ids.DISTRICTS``),
as many per district as its share of the city's weight, scattered about 1.5 km around the district
centre on the same national km grid the population lives on (``node.jobs.sites.grid.KmGrid`` maps it
to latitude and longitude). The table is the bank's own business data: ``branch_id``, ``lat``, ``lng``,
``capacity`` (customers a branch serves); it never leaves the bank's node.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from demo import _synthetic_ids as ids
from node.jobs.sites.grid import KmGrid

__all__ = ["BRANCHES", "branch_rows", "densest_city", "write_branches"]

BRANCHES = 30
SPREAD_KM = 1.5
_SEED = 20_261_204


def densest_city() -> np.ndarray:
    """Indices (into ``DISTRICTS``) of the districts of the city with the largest total weight."""
    city = ids.DISTRICT_CODES // 100
    totals = {c: float(ids.DISTRICT_P[city == c].sum()) for c in np.unique(city).tolist()}
    return np.flatnonzero(city == max(totals, key=lambda c: totals[c]))


def branch_rows(n: int = BRANCHES, seed: int = _SEED) -> list[dict[str, object]]:
    """``n`` branches over the districts of the densest city, deterministic for a seed.

    Args:
        n: Number of branches (at least one per district of the city).
        seed: Seed of the scatter and the capacities.

    Returns:
        One row per branch: ``branch_id``, ``lat``, ``lng`` (6 decimals), ``capacity``.
    """
    dense = densest_city()
    dense = dense[np.argsort(-ids.DISTRICT_P[dense], kind="stable")]  # densest district first
    if n < dense.size:
        raise ValueError(f"need at least {dense.size} branches, one per district of the city")
    rng = np.random.default_rng(seed)
    share = ids.DISTRICT_P[dense] / ids.DISTRICT_P[dense].sum()
    per = 1 + np.floor(share * (n - dense.size)).astype(int)
    per[: n - int(per.sum())] += 1  # hand out the remainder to the densest districts
    where = np.repeat(dense, per)
    x = ids.DISTRICT_X[where] + rng.normal(0.0, SPREAD_KM, where.size)
    y = ids.DISTRICT_Y[where] + rng.normal(0.0, SPREAD_KM, where.size)
    lat, lng = KmGrid().to_latlng(x - 0.5, y - 0.5)  # to_latlng takes a square's corner and adds ½
    capacity = rng.integers(20, 81, where.size) * 100
    return [{"branch_id": f"B{i + 1:03d}", "lat": round(float(a), 6), "lng": round(float(b), 6), "capacity": int(c)}
            for i, (a, b, c) in enumerate(zip(lat, lng, capacity, strict=True))]


def write_branches(out_dir: Path, n: int = BRANCHES) -> Path:
    """Write ``bank_branches.csv`` to ``out_dir`` (same bytes every time) and return its path."""
    path = Path(out_dir) / "bank_branches.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = branch_rows(n)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["branch_id", "lat", "lng", "capacity"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path
