"""Greedy maximum coverage against the exact MILP, existing branches and closures."""

from __future__ import annotations

import math

import h3
import numpy as np
import pytest

from node.jobs.sites import (
    build_problem,
    cell_centres,
    coverage_fraction,
    greedy_sites,
    rank_closures,
    read_branches,
    solve_milp,
)

CENTRE = h3.latlng_to_cell(31.22, 121.47, 8)


def random_instance(seed: int, rings: int = 9, n_sites: int = 4, radius_km: float = 1.0):
    rng = np.random.default_rng(seed)
    cells = list(h3.grid_disk(CENTRE, rings))
    # Lumpy demand: a few hot spots on an exponential background, so greedy has something to get wrong.
    hot = rng.choice(len(cells), 4, replace=False)
    weight = rng.exponential(1.0, len(cells))
    weight[hot] *= rng.uniform(10, 40, 4)
    demand = dict(zip(cells, weight.tolist(), strict=True))
    candidates = [cells[i] for i in rng.choice(len(cells), len(cells) // 2, replace=False)]
    return build_problem(demand, n_sites, radius_km, candidates=candidates)


@pytest.mark.parametrize("seed", range(12))
def test_greedy_is_within_one_minus_one_over_e_of_the_milp(seed):
    problem = random_instance(seed, n_sites=2 + seed % 5, radius_km=0.8 + 0.1 * (seed % 4))
    greedy = greedy_sites(problem)
    exact = solve_milp(problem, time_limit_s=60)
    assert exact.optimal
    assert len(exact.cells) == problem.n_sites
    assert greedy.gain <= exact.gain + 1e-6
    assert greedy.gain >= (1 - 1 / math.e) * exact.gain - 1e-9
    assert greedy.gain >= 0.9 * exact.gain  # typically much closer than the worst-case bound
    print(f"seed {seed}: greedy/optimum = {greedy.gain / exact.gain:.4f}")


def test_demand_already_covered_by_a_branch_earns_nothing():
    cells = list(h3.grid_disk(CENTRE, 6))
    demand = dict.fromkeys(cells, 1.0)
    lat, lng = cell_centres([CENTRE])
    problem = build_problem(demand, 1, 1.0, branches=[{"lat": lat[0], "lng": lng[0], "capacity": 10}])
    plan = greedy_sites(problem)
    assert plan.covered_before > 0
    assert plan.sites[0].nearest_branch_km > 1.0  # it opens away from the branch
    assert plan.sites[0].gain == pytest.approx(plan.covered_after - plan.covered_before)
    branches = read_branches([{"lat": lat[0], "lng": lng[0]}])
    assert coverage_fraction(demand, [s.cell for s in plan.sites], 1.0, branches) == pytest.approx(
        plan.coverage_fraction)


def test_competitors_discount_contested_demand():
    cells = list(h3.grid_disk(CENTRE, 4))
    lat, lng = cell_centres([CENTRE])
    plain = build_problem(dict.fromkeys(cells, 1.0), 1, 0.8)
    contested = build_problem(dict.fromkeys(cells, 1.0), 1, 0.8, competitors=[{"lat": lat[0], "lng": lng[0]}],
                              competitor_discount=0.5)
    assert contested.total_demand < plain.total_demand
    assert greedy_sites(contested).sites[0].cell != CENTRE


def test_closures_rank_the_redundant_branch_first():
    cells = list(h3.grid_disk(CENTRE, 10))
    far = h3.grid_disk(CENTRE, 10)[-1]
    (lat_c, lat_f), (lng_c, lng_f) = cell_centres([CENTRE, far])
    branches = [{"lat": lat_c, "lng": lng_c}, {"lat": lat_c + 0.001, "lng": lng_c}, {"lat": lat_f, "lng": lng_f}]
    problem = build_problem(dict.fromkeys(cells, 1.0), 1, 1.0, branches=branches)
    plan = greedy_sites(problem)
    ranks = rank_closures(problem, plan)
    assert {r.branch for r in ranks[:2]} == {0, 1}  # the two branches side by side cover nothing uniquely
    assert ranks[-1].branch == 2 and ranks[-1].unique_demand > 0


def test_greedy_scales_to_ten_thousand_cells():
    rng = np.random.default_rng(0)
    cells = list(h3.grid_disk(CENTRE, 58))
    assert len(cells) > 10_000
    problem = build_problem(dict(zip(cells, rng.exponential(1, len(cells)).tolist(), strict=True)), 50, 2.0)
    plan = greedy_sites(problem)
    assert len({s.cell for s in plan.sites}) == 50
    gains = [s.gain for s in plan.sites]
    assert gains == sorted(gains, reverse=True)  # submodular: marginal gains never increase
