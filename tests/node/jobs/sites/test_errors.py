"""Bad input raises SiteInputError naming the field and the fix; nothing is half-written."""

from __future__ import annotations

import math

import h3
import numpy as np
import pandas as pd
import pytest

from node.jobs.sites import DemandSpec, SiteInputError, aggregate_demand, build_problem, read_branches
from node.jobs.sites import maps as site_maps

CELLS = list(h3.grid_disk(h3.latlng_to_cell(31.22, 121.47, 8), 2))
DEMAND = dict.fromkeys(CELLS, 1.0)


def test_more_sites_than_eligible_cells():
    with pytest.raises(SiteInputError, match="n_sites") as err:
        build_problem(DEMAND, len(CELLS) + 1, 1.0)
    assert err.value.field == "n_sites" and "lower n_sites" in str(err.value)


@pytest.mark.parametrize("radius", [0, -1.0, math.nan, math.inf])
def test_radius_must_be_positive_and_finite(radius):
    with pytest.raises(SiteInputError, match="radius_km") as err:
        build_problem(DEMAND, 1, radius)
    assert err.value.field == "radius_km"


@pytest.mark.parametrize("n", [0, -3, 1.5, True])
def test_n_sites_must_be_a_positive_integer(n):
    with pytest.raises(SiteInputError, match="n_sites"):
        build_problem(DEMAND, n, 1.0)


def test_bad_branch_rows_are_listed_by_line_number():
    rows = pd.DataFrame({"lat": [31.2, "x", 31.3, None, 95.0, 31.1], "lng": [121.4, 121.4, math.inf, 121.4, 121.4,
                                                                               121.5],
                         "capacity": [3, None, 2, 1, 1, -4]})
    with pytest.raises(SiteInputError) as err:
        build_problem(DEMAND, 1, 1.0, branches=rows)
    assert err.value.field == "branches"
    assert err.value.rows == (3, 4, 5, 6, 7)  # CSV lines: the header is line 1, the first row line 2
    assert "lines 3, 4, 5, 6, 7" in str(err.value)


def test_competitor_rows_and_missing_columns_name_their_field():
    with pytest.raises(SiteInputError, match="competitors") as err:
        build_problem(DEMAND, 1, 1.0, competitors=[{"lat": 31.2, "lng": 500}])
    assert err.value.rows == (2,)
    with pytest.raises(SiteInputError, match="'lng'"):
        read_branches([{"lat": 31.2, "lon": 121.4}])


def test_demand_and_candidates_must_be_cells_with_sane_values():
    with pytest.raises(SiteInputError, match="demand"):
        build_problem({}, 1, 1.0)
    with pytest.raises(SiteInputError, match="demand"):
        build_problem({CELLS[0]: -1.0}, 1, 1.0)
    with pytest.raises(SiteInputError, match="demand"):
        build_problem({"G47001450": 1.0}, 1, 1.0)
    with pytest.raises(SiteInputError, match="candidates"):
        build_problem(DEMAND, 1, 1.0, candidates=["nope"])


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"epsilon": 0}, "epsilon"), ({"epsilon": math.nan}, "epsilon"), ({"epsilon": 1, "k": 0}, "k"),
    ({"epsilon": 1, "measures": ()}, "measures"), ({"epsilon": 1, "coarse_resolution": 9}, "coarse_resolution"),
])
def test_demand_spec_names_the_bad_field(kwargs, field):
    with pytest.raises(SiteInputError) as err:
        DemandSpec(**kwargs)
    assert err.value.field == field


def test_missing_column_names_the_column():
    with pytest.raises(SiteInputError, match="work_cell"):
        aggregate_demand(pd.DataFrame({"home_cell": ["G47001450"]}), DemandSpec(epsilon=1.0),
                         np.random.default_rng(0))


def test_a_failing_map_write_leaves_no_file(tmp_path, monkeypatch):
    layers = site_maps.MapLayers(DEMAND)
    target = tmp_path / "map.html"

    def broken(data):
        raise OSError("disk full")

    real_fdopen = site_maps.os.fdopen

    class Half:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            self.fh.write(data[:10])
            broken(data)

    monkeypatch.setattr(site_maps.os, "fdopen", lambda fd, mode: Half(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match="disk full"):
        site_maps.write_html(target, layers)
    assert list(tmp_path.iterdir()) == []
