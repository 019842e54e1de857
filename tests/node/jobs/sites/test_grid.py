"""The km grid → H3 mapping and the refusal of bad rows."""

from __future__ import annotations

import h3
import numpy as np
import pandas as pd
import pytest

from demo import _synthetic_ids as ids
from node.jobs.sites import FINE_RESOLUTION, GridArea, KmGrid, SiteInputError, assign_km_cells, great_circle_km


def test_projection_inverts_the_synthetic_grid_at_district_centres():
    grid = KmGrid()
    # The synthetic generator put district centres at these km coordinates; they must map back to the real place.
    lat, lng = grid.to_latlng(np.floor(ids.DISTRICT_X), np.floor(ids.DISTRICT_Y))
    true_lat = np.array([d.lat for d in ids.DISTRICTS])
    true_lng = np.array([d.lon for d in ids.DISTRICTS])
    assert great_circle_km(lat, lng, true_lat, true_lng).max() < 1.5  # within the 1 km square's diagonal


def test_projection_round_trips_and_agrees_with_h3_distance():
    grid = KmGrid()
    x, y = np.array([4700, 4701, 4700]), np.array([1450, 1450, 1460])
    lat, lng = grid.to_latlng(x, y)
    bx, by = grid.from_latlng(lat, lng)
    assert (bx == x).all() and (by == y).all()
    # 1 km east at ~31° N is about 1 km (true scale at 30° N); 10 km north is 10 km to within the 0.6% between
    # the grid's ellipsoidal degree length (110.57 km) and the sphere h3 measures on (111.19 km)
    assert h3.great_circle_distance((lat[0], lng[0]), (lat[1], lng[1]), "km") == pytest.approx(1.0, rel=0.02)
    assert great_circle_km(lat[0], lng[0], lat[2], lng[2]) == pytest.approx(10.0, rel=0.01)
    assert great_circle_km(lat[0], lng[0], lat[2], lng[2]) == pytest.approx(
        h3.great_circle_distance((lat[0], lng[0]), (lat[2], lng[2]), "km"), rel=1e-9)


def test_bad_rows_are_refused_by_reason_not_fatal():
    values = pd.Series(["G47001450", "G47001450", "bad", "G4700145", None, "", "G99999999", "G00009000",
                        "G47011451"], dtype=object)
    got = assign_km_cells(values)
    assert got.refused == {"missing": 2, "malformed": 2, "outside_area": 2}
    assert got.accepted == 3
    assert (got.codes[:2] >= 0).all() and got.codes[0] == got.codes[1]
    assert all(h3.get_resolution(c) == FINE_RESOLUTION for c in got.cells)
    assert (got.codes[[2, 3, 4, 5, 6, 7]] == -1).all()


def test_categorical_and_string_input_agree():
    rng = np.random.default_rng(3)
    cells = np.array([f"G{4690 + a:04d}{1440 + b:04d}" for a, b in rng.integers(0, 20, (5000, 2))], dtype=object)
    plain = assign_km_cells(pd.Series(cells))
    cat = assign_km_cells(pd.Series(cells, dtype="category"))
    arrow = assign_km_cells(pd.Series(cells, dtype="string[pyarrow]"))
    for other in (cat, arrow):
        assert [plain.cells[i] for i in plain.codes] == [other.cells[i] for i in other.codes]


def test_area_must_be_an_ordered_box():
    with pytest.raises(SiteInputError, match="area"):
        GridArea(min_lat=50, max_lat=10)


def test_small_categorical_codes_count_nulls_and_bad_values_like_strings():
    values = ["G47001450", "bad", None, "G47001450", "G00009000"]
    as_cat = pd.Series(pd.Categorical(values))
    assert as_cat.cat.codes.dtype == np.int8
    for got in (assign_km_cells(as_cat), assign_km_cells(pd.Series(values, dtype=object))):
        assert got.refused == {"missing": 1, "malformed": 1, "outside_area": 1}
        assert got.accepted == 2
