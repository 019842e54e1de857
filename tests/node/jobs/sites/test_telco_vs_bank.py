"""Sites chosen with the telco's released demand beat sites chosen from the bank's own customer data alone.

Ground truth is the synthetic population (demo.synthetic's model): telco subscribers are split at random
into a released half and a held-out half; where people live and work does not depend on which half, so
the held-out half's exact home + work cells are the true demand surface. Both plans run the same greedy
and are scored on the held-out truth.

- *telco-informed*: the released half's k-suppressed, ε-DP residents + workers (ε = 1, k = 50);
- *bank only*: what the synthetic bank table actually holds about location — the registration district
  in each customer's ID number (the residence district for 55% of people, another of 74 codes otherwise),
  each customer spread evenly over H3 cells within ~4.6 km of that district's centre;
- printed, not asserted: a *generous* bank that knew its customers' exact home km cells (the synthetic
  bank does not hold them), and the oracle that plans on the truth itself.
"""

from __future__ import annotations

import h3
import numpy as np
import pandas as pd
import pytest

from demo import _synthetic_ids as ids
from demo._synthetic_model import State, Streams, SynthConfig, build_chunk
from node.jobs.sites import (
    DemandSpec,
    KmGrid,
    Measure,
    aggregate_demand,
    assign_km_cells,
    build_problem,
    coverage_fraction,
    expand_demand,
    greedy_sites,
)

PEOPLE = 200_000
RADIUS_KM = 1.5
DISTRICT_RINGS = 5  # grid_disk(k=5): 91 resolution-8 cells, ≈ 4.6 km around the district centre


def counts(*columns: pd.Series) -> dict[str, float]:
    out: dict[str, float] = {}
    for column in columns:
        a = assign_km_cells(column)
        per_cell = np.bincount(a.codes[a.codes >= 0], minlength=len(a.cells))
        for cell, n in zip(a.cells, per_cell.tolist(), strict=True):
            out[cell] = out.get(cell, 0.0) + n
    return {c: v for c, v in out.items() if v > 0}


def district_demand(id_numbers: pd.Series) -> dict[str, float]:
    """Customers per ID-number district, spread over the cells around the district centre."""
    per_code = pd.to_numeric(id_numbers.str[:6]).value_counts()
    lat, lng = KmGrid().to_latlng(np.floor(ids.DISTRICT_X), np.floor(ids.DISTRICT_Y))
    out: dict[str, float] = {}
    for d, la, ln in zip(ids.DISTRICTS, lat.tolist(), lng.tolist(), strict=True):
        disk = h3.grid_disk(h3.latlng_to_cell(la, ln, 8), DISTRICT_RINGS)
        for cell in disk:
            out[cell] = out.get(cell, 0.0) + float(per_code.get(d.code, 0)) / len(disk)
    return out  # codes of the 20 other registration regions have no place on the map: dropped


@pytest.fixture(scope="module")
def world():
    tables = build_chunk(State(Streams(7), SynthConfig()), PEOPLE)
    telco = tables["telco_subscribers"].select(["id_number", "home_cell", "work_cell"]).to_pandas()
    bank = tables["bank_customers"].select(["id_number"]).to_pandas()
    released = np.random.default_rng(13).random(len(telco)) < 0.5
    return telco[released].reset_index(drop=True), telco[~released].reset_index(drop=True), bank


def plan_cells(demand: dict[str, float], n_sites: int) -> list[str]:
    return [s.cell for s in greedy_sites(build_problem(demand, n_sites, RADIUS_KM)).sites]


@pytest.mark.parametrize("n_sites", [30, 100])
def test_telco_informed_sites_cover_more_true_demand(world, n_sites):
    released, held_out, bank = world
    truth = counts(held_out["home_cell"], held_out["work_cell"])
    spec = DemandSpec(epsilon=1.0, k=50, measures=(Measure.RESIDENTS, Measure.WORKERS))
    telco_demand = expand_demand(aggregate_demand(released, spec, np.random.default_rng(1)).release)
    customers_home = released.loc[released["id_number"].isin(set(bank["id_number"])), "home_cell"]

    scores = {
        "telco release (eps=1, k=50)": coverage_fraction(truth, plan_cells(telco_demand, n_sites), RADIUS_KM),
        "bank only (ID-number district)": coverage_fraction(truth, plan_cells(district_demand(bank["id_number"]),
                                                                               n_sites), RADIUS_KM),
        "generous bank (exact home cells)": coverage_fraction(truth, plan_cells(counts(customers_home), n_sites),
                                                              RADIUS_KM),
        "oracle (plans on the truth)": coverage_fraction(truth, plan_cells(truth, n_sites), RADIUS_KM),
    }
    print(f"\nN = {n_sites} sites, radius {RADIUS_KM} km; share of true home+work demand covered")
    for name, value in scores.items():
        print(f"  {name:<36}{value:>8.4f}")
    assert scores["telco release (eps=1, k=50)"] > scores["bank only (ID-number district)"]
    assert scores["telco release (eps=1, k=50)"] <= scores["oracle (plans on the truth)"] + 1e-9
