"""The job's terms at the nodes: the study area counts only locations inside it, a malformed area is
refused by name, and the bank refuses a release that does not match the signed terms."""

from types import SimpleNamespace

import h3
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from node.jobs.sites.demand import aggregate_demand, release_to_wire
from node.jobs.sites.grid import KmGrid
from node.jobs.sites.job import CellFields, check_release, site_terms
from protocols.wire.control import JobParams
from protocols.wire.errors import RemoteProtocolError
from protocols.wire.sites import SiteDemandRelease

SHANGHAI = (30.6, 120.8, 31.6, 122.1)


def _km_cell(lat: float, lng: float) -> str:
    x, y = KmGrid().from_latlng(np.array([lat]), np.array([lng]))
    return f"G{int(x[0]):04d}{int(y[0]):04d}"


def _terms(**params):
    return site_terms(SimpleNamespace(id=3, params=JobParams.model_validate(
        {"epsilon": 1.0, "n_sites": 2, "radius_km": 2.0, "min_cell": 50, **params})))


def test_locations_outside_the_study_area_are_refused_and_the_rest_counted() -> None:
    # Prepare: 300 people at home in central Shanghai, 200 in Beijing
    terms = _terms(area=list(SHANGHAI), pool_resolution=6)
    cells = [_km_cell(31.23, 121.47)] * 300 + [_km_cell(39.90, 116.40)] * 200
    frame = pd.DataFrame({"home_cell": cells})
    spec = CellFields("home_cell", None, None).spec(terms)

    # Execute
    result = aggregate_demand(frame, spec, np.random.default_rng(0), terms.grid)

    # Assert: Beijing is outside the area, Shanghai's people make at least one released cell
    assert result.diagnostics.refused["home"] == {"outside_area": 200}
    assert result.release.cells and all(c.value >= 0 for c in result.release.cells)
    everywhere = aggregate_demand(frame, spec, np.random.default_rng(0), _terms(pool_resolution=6).grid)
    assert everywhere.diagnostics.refused["home"] == {}


@pytest.mark.parametrize("area", [(31.6, 120.8, 30.6, 122.1), (30.6, 122.1, 31.6, 120.8), (95.0, 0.0, 96.0, 1.0)])
def test_a_malformed_area_is_refused_naming_the_field(area) -> None:
    with pytest.raises(ValidationError) as err:
        JobParams.model_validate({"area": list(area)})
    assert err.value.errors()[0]["loc"] == ("area",)
    assert "south < north and west < east" in str(err.value)


@pytest.mark.parametrize(("change", "said"), [
    ({"k": 20}, "below the job's k=50"),
    ({"coarse_resolution": 5}, "not the job's 8/6"),
    ({"epsilon_spent": 2.0, "epsilon_per_measure": {"residents": 2.0, "night_population": 2.0}}, "not the job's 1"),
])
def test_the_bank_refuses_a_release_that_is_not_the_signed_terms(change, said) -> None:
    # Prepare: a release made under the job's terms, then one term changed as a dishonest telco might
    terms = _terms(pool_resolution=6)
    frame = pd.DataFrame({"home_cell": [_km_cell(31.23, 121.47)] * 300})
    result = aggregate_demand(frame, CellFields("home_cell", None, None).spec(terms), np.random.default_rng(0))
    honest = release_to_wire(result.release, terms.job_id)
    assert check_release(honest, terms).k == 50
    forged = SiteDemandRelease.model_validate({**honest.model_dump(), **change})

    # Execute / Assert
    with pytest.raises(RemoteProtocolError, match=said):
        check_release(forged, terms)


def _honest():
    terms = _terms(pool_resolution=6)
    frame = pd.DataFrame({"home_cell": [_km_cell(31.23, 121.47)] * 300})
    result = aggregate_demand(frame, CellFields("home_cell", None, None).spec(terms), np.random.default_rng(0))
    return terms, release_to_wire(result.release, terms.job_id)


@pytest.mark.parametrize("claimed", [{"residents": 1.0, "workers": 1.0},  # two sources at the full ε each
                                     {"residents": 1.0, "night_population": 0.5}])  # one source, two ε
def test_the_bank_refuses_more_epsilon_than_the_job_spent_split_over_aliases(claimed) -> None:
    terms, honest = _honest()
    assert set(honest.epsilon_per_measure) == {"residents"}
    forged = SiteDemandRelease.model_validate({**honest.model_dump(), "epsilon_per_measure": claimed})
    with pytest.raises(RemoteProtocolError, match="adds up to more than the job's 1"):
        check_release(forged, terms)


@pytest.mark.parametrize("bad_cell", ["coarser", "fffffffffffffff"])
def test_the_bank_refuses_a_cell_that_is_not_what_it_claims(bad_cell) -> None:
    terms, honest = _honest()
    first = honest.cells[0].model_dump()
    assert first["resolution"] == 8
    cell = h3.cell_to_parent(first["cell"], 4) if bad_cell == "coarser" else bad_cell  # 2,401 children at 8
    forged = SiteDemandRelease.model_validate({**honest.model_dump(), "cells": [{**first, "cell": cell}]})
    with pytest.raises(RemoteProtocolError, match="is not an H3 cell of resolution 8"):
        check_release(forged, terms)
