"""Maps (PNG, offline HTML, GeoJSON of the release only) and the wire models."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pydantic import ValidationError

from node.jobs.sites import (
    DemandSpec,
    MapLayers,
    aggregate_demand,
    build_problem,
    expand_demand,
    greedy_sites,
    read_branches,
    release_from_wire,
    release_to_wire,
    write_geojson,
    write_html,
    write_png,
)
from protocols.wire.sites import BranchLocation, BranchShare, SiteDemandRelease
from tests.node.jobs.sites._population import population


@pytest.fixture(scope="module")
def release():
    return aggregate_demand(population(5, 20_000, 3.0), DemandSpec(epsilon=1.0, k=50), np.random.default_rng(5)).release


def test_maps_are_written_and_need_no_network(release, tmp_path):
    demand = expand_demand(release)
    branches = read_branches([{"lat": 31.22, "lng": 121.47}])
    plan = greedy_sites(build_problem(demand, 3, 1.5, branches=branches))
    layers = MapLayers(demand, branches, plan.sites, 1.5, "test map")
    png = write_png(tmp_path / "map.png", layers)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = write_html(tmp_path / "map.html", layers).read_text()
    assert page.count("<polygon") >= len(demand)
    assert "<title>" in page and "site #1" in page
    stripped = page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "http" not in stripped and "src=" not in stripped  # self-contained: no CDN, no tiles


def test_geojson_holds_the_released_cells_only(release, tmp_path):
    data = json.loads(write_geojson(tmp_path / "release.geojson", release).read_text())
    assert data["type"] == "FeatureCollection" and data["release"]["k"] == 50
    keys = {(c.cell, c.resolution) for c in release.cells}
    assert len(data["features"]) == len(keys)
    allowed = {"cell", "resolution", "residents", "workers", "night_population", "day_population"}
    for feature in data["features"]:
        assert set(feature["properties"]) <= allowed
        ring = feature["geometry"]["coordinates"][0]
        assert ring[0] == ring[-1] and len(ring) == 7
        area2 = sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(ring, ring[1:], strict=False))
        assert area2 > 0  # counter-clockwise exterior ring (RFC 7946)


def test_release_round_trips_through_the_wire(release):
    message = release_to_wire(release, "job-13")
    again = SiteDemandRelease.model_validate_json(message.model_dump_json())
    assert release_from_wire(again) == release


def test_wire_refuses_extra_fields_bad_cells_and_non_finite_numbers(release):
    good = json.loads(release_to_wire(release, "job-13").model_dump_json())
    with pytest.raises(ValidationError):
        SiteDemandRelease.model_validate({**good, "people": []})
    with pytest.raises(ValidationError):
        SiteDemandRelease.model_validate({**good, "cells": [{**good["cells"][0], "cell": "G47001450"}]})
    with pytest.raises(ValidationError):
        SiteDemandRelease.model_validate({**good, "cells": [{**good["cells"][0], "value": -1}]})
    with pytest.raises(ValidationError):
        SiteDemandRelease.model_validate({**good, "epsilon_spent": math.inf})
    with pytest.raises(ValidationError):
        SiteDemandRelease.model_validate({**good, "cells": [{**good["cells"][0], "resolution": 7}]})
    with pytest.raises(ValidationError):
        SiteDemandRelease.model_validate({**good, "k": "50"})  # strict: no coercion


def test_branch_share_bounds():
    share = BranchShare(job_id="j", branches=[BranchLocation(lat=31.2, lng=121.4, capacity=5.0)])
    assert BranchShare.model_validate_json(share.model_dump_json()) == share
    for bad in ({"lat": 91.0, "lng": 0.0}, {"lat": math.nan, "lng": 0.0}, {"lat": 0.0, "lng": 0.0, "capacity": -1.0}):
        with pytest.raises(ValidationError):
            BranchLocation(**bad)
