"""Random km-cell populations around central Shanghai for the site-selection tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from node.jobs.sites import KmGrid

SHANGHAI_X, SHANGHAI_Y = KmGrid().from_latlng(np.array([31.22]), np.array([121.47]))
X0, Y0 = int(SHANGHAI_X[0]), int(SHANGHAI_Y[0])


def km_cells(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.array([f"G{a:04d}{b:04d}" for a, b in zip(x.tolist(), y.tolist(), strict=True)], dtype=object)


def population(seed: int, n: int, spread_km: float = 4.0, clusters: int = 5) -> pd.DataFrame:
    """n subscribers whose homes cluster around a few centres; work is home moved by a few km."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(0, 8, (clusters, 2))
    which = rng.integers(0, clusters, n)
    home = centre[which] + rng.normal(0, spread_km, (n, 2))
    work = home + rng.normal(0, 3, (n, 2)) * (rng.random((n, 1)) < 0.7)
    hx, hy = np.floor(home[:, 0]).astype(int) + X0, np.floor(home[:, 1]).astype(int) + Y0
    wx, wy = np.floor(work[:, 0]).astype(int) + X0, np.floor(work[:, 1]).astype(int) + Y0
    return pd.DataFrame({"home_cell": km_cells(hx, hy), "work_cell": km_cells(wx, wy),
                         "score": rng.random(n)})
