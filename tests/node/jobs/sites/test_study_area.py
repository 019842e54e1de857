"""The job's study area: only locations inside it are counted; a malformed area is refused by name."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from node.jobs.sites.demand import aggregate_demand
from node.jobs.sites.grid import KmGrid
from node.jobs.sites.job import CellFields, site_terms
from protocols.wire.control import JobParams

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
