"""Demand aggregation: k-suppression (property test) and the calibration of the noise."""

from __future__ import annotations

import math

import h3
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from node.jobs.sites import (
    DemandSpec,
    Measure,
    aggregate_demand,
    assign_km_cells,
    expand_demand,
    two_sided_geometric_noise,
)
from tests.node.jobs.sites._population import X0, Y0, km_cells, population


def true_fine_cells(frame: pd.DataFrame, column: str) -> np.ndarray:
    a = assign_km_cells(frame[column])
    return np.array([a.cells[i] if i >= 0 else "" for i in a.codes], dtype=object)


def people_behind(release, measure: Measure, fine: np.ndarray) -> dict[str, int]:
    """Independently recount the people behind every released cell of one measure."""
    released = release.values(measure)
    own = {c for c in released if h3.get_resolution(c) == release.fine_resolution}
    counts: dict[str, int] = {}
    for cell in fine[fine != ""]:
        key = cell if cell in own else h3.cell_to_parent(cell, release.coarse_resolution)
        if key in released:
            counts[key] = counts.get(key, 0) + 1
    return counts


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 4000), k=st.integers(1, 80),
       spread=st.floats(0.3, 12.0), clusters=st.integers(1, 6), weighted=st.booleans())
def test_no_released_cell_below_k(seed, n, k, spread, clusters, weighted):
    frame = population(seed, n, spread, clusters)
    spec = DemandSpec(epsilon=1.0, k=k, weight_column="score" if weighted else None)
    result = aggregate_demand(frame, spec, np.random.default_rng(seed))
    release = result.release
    for measure, column in ((Measure.RESIDENTS, "home_cell"), (Measure.WORKERS, "work_cell")):
        behind = people_behind(release, measure, true_fine_cells(frame, column))
        assert set(behind) == set(release.values(measure))  # every released cell has people behind it
        assert min(behind.values(), default=k) >= k
        # Each person lands in at most one released cell: the L1 sensitivity of the vector is 1.
        assert sum(behind.values()) <= n
    assert all(c.value >= 0 for c in release.cells)
    # Aliases share one noised vector.
    assert release.values(Measure.RESIDENTS) == release.values(Measure.NIGHT_POPULATION)
    assert release.values(Measure.WORKERS) == release.values(Measure.DAY_POPULATION)


def dense_population(cells_per_side: int = 6, people: int = 60) -> tuple[pd.DataFrame, dict[str, int]]:
    """Every km cell holds `people` residents and workers, so no cell is merged and truth is known exactly."""
    xs, ys = np.meshgrid(np.arange(cells_per_side) * 3 + X0, np.arange(cells_per_side) * 3 + Y0)
    cells = np.repeat(km_cells(xs.ravel(), ys.ravel()), people)
    frame = pd.DataFrame({"home_cell": cells, "work_cell": cells})
    fine = true_fine_cells(frame, "home_cell")
    return frame, dict(zip(*np.unique(fine, return_counts=True), strict=True))


def pmf(z: np.ndarray, epsilon: float) -> np.ndarray:
    alpha = math.exp(-epsilon)
    return (1 - alpha) / (1 + alpha) * alpha ** np.abs(z)


def gof_pvalue(residuals: np.ndarray, epsilon: float) -> float:
    """Chi-square goodness of fit of integer residuals against the two-sided geometric with ε."""
    edges = np.arange(-6, 7)
    observed = np.array([(residuals < edges[0]).sum(), *[(residuals == z).sum() for z in edges],
                         (residuals > edges[-1]).sum()])
    inner = pmf(edges, epsilon)
    tail = (1 - inner.sum()) / 2
    expected = np.concatenate([[tail], inner, [tail]]) * residuals.size
    return float(stats.chisquare(observed, expected).pvalue)


@pytest.fixture(scope="module")
def residuals() -> tuple[np.ndarray, float]:
    frame, truth = dense_population()
    spec = DemandSpec(epsilon=1.0, k=50, measures=(Measure.RESIDENTS, Measure.WORKERS))
    out = []
    for seed in range(150):
        release = aggregate_demand(frame, spec, np.random.default_rng(seed)).release
        assert {c.resolution for c in release.cells} == {8}
        out += [c.value - truth[c.cell] for c in release.cells]
    return np.array(out), spec.epsilon_per_source


def test_released_minus_true_follows_the_two_sided_geometric_of_the_stated_epsilon(residuals):
    res, eps_v = residuals
    assert eps_v == 0.5  # ε = 1 split over the home and work vectors
    assert res.size >= 5000
    assert gof_pvalue(res, eps_v) > 1e-3
    alpha = math.exp(-eps_v)
    assert res.var() == pytest.approx(2 * alpha / (1 - alpha) ** 2, rel=0.1)
    assert abs(res.mean()) < 0.15


def test_the_fit_rejects_missing_or_misscaled_noise(residuals):
    res, eps_v = residuals
    assert gof_pvalue(res, 2 * eps_v) < 1e-6  # half the noise the stated ε needs
    assert gof_pvalue(res, eps_v / 2) < 1e-6  # twice the noise
    assert gof_pvalue(np.zeros_like(res), eps_v) < 1e-6  # no noise at all


def test_sampler_matches_the_pmf_for_several_epsilons():
    for eps in (0.1, 0.5, 2.0):
        draws = two_sided_geometric_noise(eps, 20_000, np.random.default_rng(11))
        assert gof_pvalue(draws, eps) > 1e-3
        assert two_sided_geometric_noise(eps, 20_000, np.random.default_rng(11)).tolist() == draws.tolist()


def test_epsilon_split_and_aliases_are_reported():
    frame, _ = dense_population(3)
    release = aggregate_demand(frame, DemandSpec(epsilon=0.8), np.random.default_rng(0)).release
    assert release.epsilon == 0.8
    assert release.epsilon_per_measure == dict.fromkeys([m.value for m in Measure], 0.4)
    only_home = aggregate_demand(frame, DemandSpec(epsilon=0.8, measures=(Measure.RESIDENTS,)),
                                 np.random.default_rng(0)).release
    assert only_home.epsilon_per_measure == {"residents": 0.8}


def test_sparse_cells_merge_into_their_parent_and_weights_never_exceed_people():
    # 30 people in each of 4 km cells near each other: each below k = 50, together above it.
    cells = np.repeat(km_cells(np.array([X0, X0 + 1, X0, X0 + 1]), np.array([Y0, Y0, Y0 + 1, Y0 + 1])), 30)
    frame = pd.DataFrame({"home_cell": cells, "work_cell": cells, "score": 0.5})
    result = aggregate_demand(frame, DemandSpec(epsilon=50.0, weight_column="score", measures=(Measure.RESIDENTS,)),
                              np.random.default_rng(0))
    (cell,) = result.release.cells
    assert cell.resolution == 6 and result.release.weighted
    assert cell.value == pytest.approx(60, abs=2)  # 120 people × 0.5, near-zero noise at ε = 50
    assert result.diagnostics.fine_cells_released == {"home": 0}
    demand = expand_demand(result.release)
    assert sum(demand.values()) == pytest.approx(cell.value)
    assert {h3.cell_to_parent(c, 6) for c in demand} == {cell.cell}


def test_suppressed_people_are_counted_and_stay_local():
    frame = pd.DataFrame({"home_cell": km_cells(np.array([X0] * 10), np.array([Y0] * 10)),
                          "work_cell": ["garbage"] * 10})
    result = aggregate_demand(frame, DemandSpec(epsilon=1.0), np.random.default_rng(0))
    assert result.release.cells == ()
    assert result.diagnostics.people_suppressed["home"] == 10
    assert result.diagnostics.refused["work"] == {"malformed": 10}
