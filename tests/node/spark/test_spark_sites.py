"""Site-selection demand on Spark partitions releases the same bytes as the in-process engine.

The release (the ``SiteDemandRelease`` JSON the telco sends the bank) and the telco's diagnostics are
compared byte for byte, for the same seeded noise, over populations with every kind of bad row:
nulls, blanks, malformed and out-of-area km cells, and weights that are missing, negative, above 1 or
not numbers. The partial sums are additive by construction; a pure test checks it without Spark.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from node.adapters import open_source
from node.jobs.sites import DemandSpec, Measure, SiteInputError, aggregate_demand, release_to_wire
from node.jobs.sites.demand import WEIGHT_SCALE, demand_from_partials, merge_partials, partial_demand
from node.jobs.sites.grid import GridArea, KmGrid
from node.jobs.sites.job import _aggregate_on_spark
from node.spark import aggregate_demand_spark, frame_to_spark, open_spark_source
from tests.node.jobs.sites._population import X0, Y0, km_cells, population

BAD_CELLS = [None, "", "   ", "garbage", "G12345", "g10001000", "G99999999", "G00000000"]
BAD_WEIGHTS = [np.nan, -0.5, 1.7, np.inf, -np.inf, 1 / 3, 2 / 3]


def subscribers(seed: int, n: int) -> pd.DataFrame:
    """A clustered population with ~6% bad home cells, ~6% bad work cells and odd weights."""
    frame = population(seed, n, spread_km=3.0, clusters=4)
    rng = np.random.default_rng(seed + 1)
    for column in ("home_cell", "work_cell"):
        bad = np.flatnonzero(rng.random(n) < 0.06)
        frame.loc[bad, column] = rng.choice(np.array(BAD_CELLS, dtype=object), bad.size)
    odd = np.flatnonzero(rng.random(n) < 0.1)
    frame.loc[odd, "score"] = rng.choice(np.array(BAD_WEIGHTS), odd.size)
    return frame


def released_bytes(result) -> bytes:
    return release_to_wire(result.release, "job-1").model_dump_json().encode()


SPECS = {
    "unweighted": DemandSpec(epsilon=1.0, k=20),
    "weighted": DemandSpec(epsilon=0.7, k=15, weight_column="score"),
    "home only, pooled at 5": DemandSpec(epsilon=2.0, k=30, measures=(Measure.RESIDENTS, Measure.NIGHT_POPULATION),
                                         coarse_resolution=5),
}


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return subscribers(3, 12_000)


@pytest.mark.parametrize("name", list(SPECS))
def test_spark_release_equals_the_in_process_release_byte_for_byte(spark, table, name):
    spec = SPECS[name]
    expected = aggregate_demand(table, spec, np.random.default_rng(42))
    frame = frame_to_spark(spark, table).repartition(5)

    got = aggregate_demand_spark(frame, spec, np.random.default_rng(42))

    assert released_bytes(got) == released_bytes(expected)
    assert got.diagnostics == expected.diagnostics
    refused = expected.diagnostics.refused
    assert refused["home"].keys() >= {"missing", "malformed", "outside_area"}  # the bad rows were really there
    assert expected.diagnostics.rows == len(table) and len(expected.release.cells) > 20


def test_row_order_and_partitioning_do_not_change_the_release(spark, table):
    spec = SPECS["weighted"]
    shuffled = table.sample(frac=1.0, random_state=5).reset_index(drop=True)
    expected = released_bytes(aggregate_demand(table, spec, np.random.default_rng(9)))
    assert released_bytes(aggregate_demand(shuffled, spec, np.random.default_rng(9))) == expected
    for partitions in (1, 7):
        frame = frame_to_spark(spark, shuffled).repartition(partitions)
        assert released_bytes(aggregate_demand_spark(frame, spec, np.random.default_rng(9))) == expected


def test_a_parquet_table_read_by_spark_and_a_study_area(spark, tmp_path: Path):
    frame = subscribers(8, 6_000)
    path = tmp_path / "subscribers.parquet"
    frame.to_parquet(path, index=False)
    grid = KmGrid(area=GridArea(min_lat=31.0, max_lat=31.3, min_lng=121.2, max_lng=121.6))
    spec = SPECS["weighted"]
    expected = aggregate_demand(pd.read_parquet(path), spec, np.random.default_rng(1), grid)

    got = aggregate_demand_spark(spark.read.parquet(str(path)), spec, np.random.default_rng(1), grid)

    assert released_bytes(got) == released_bytes(expected)
    assert got.diagnostics == expected.diagnostics
    assert expected.diagnostics.refused["home"]["outside_area"] > 0


def test_the_job_on_engine_spark_reads_csv_and_spark_sources_alike(spark, tmp_path: Path):
    """The telco job's Spark path (``engine = spark``): a CSV source handed to Spark, a Parquet one left in it."""
    frame = subscribers(4, 5_000)
    csv, parquet = tmp_path / "subs.csv", tmp_path / "subs"
    frame.to_csv(csv, index=False)
    parquet.mkdir()
    frame.to_parquet(parquet / "part-0.parquet", index=False)
    ctx = SimpleNamespace(settings=SimpleNamespace(spark_master="local[2]", spark_conf={}))
    spec, columns = SPECS["weighted"], ["home_cell", "work_cell", "score"]
    grid = KmGrid()
    with open_source(f"csv://{csv}") as source:
        expected = aggregate_demand(source.read(columns), spec, np.random.default_rng(2), grid)
        from_csv = _aggregate_on_spark(ctx, source, columns, spec, np.random.default_rng(2), grid)
    with open_spark_source(f"spark+parquet://{parquet}") as source:
        from_spark = _aggregate_on_spark(ctx, source, columns, spec, np.random.default_rng(2), grid)
    assert released_bytes(from_csv) == released_bytes(expected)
    assert released_bytes(from_spark) == released_bytes(expected)
    assert from_spark.diagnostics == expected.diagnostics


def test_a_missing_column_is_named_before_any_spark_job(spark, table):
    frame = frame_to_spark(spark, table.drop(columns=["work_cell"]))
    with pytest.raises(SiteInputError, match="work_cell: column missing"):
        aggregate_demand_spark(frame, SPECS["unweighted"], np.random.default_rng(0))


def test_an_empty_table_releases_nothing_on_either_engine(spark):
    empty = pd.DataFrame({"home_cell": pd.Series([], dtype=object), "work_cell": pd.Series([], dtype=object),
                          "score": pd.Series([], dtype=np.float64)})
    expected = aggregate_demand(empty, SPECS["weighted"], np.random.default_rng(0))
    got = aggregate_demand_spark(frame_to_spark(spark, empty), SPECS["weighted"], np.random.default_rng(0))
    assert released_bytes(got) == released_bytes(expected)
    assert got.release.cells == () and got.diagnostics == expected.diagnostics


@pytest.mark.parametrize("name", list(SPECS))
def test_partials_of_any_split_sum_to_the_partial_of_the_whole(name):
    """Pure (no Spark): ``partial_demand`` is additive, so the merge of per-part partials is the whole's."""
    spec, frame = SPECS[name], subscribers(11, 4_000)
    whole = merge_partials([partial_demand(frame, spec)])
    bounds = [0, 1, 1000, 1001, 2500, 4000]
    parts = [partial_demand(frame.iloc[a:b], spec) for a, b in zip(bounds, bounds[1:], strict=False)]
    pd.testing.assert_frame_equal(merge_partials(parts), whole)
    one = released_bytes(demand_from_partials(whole, spec, np.random.default_rng(3)))
    assert released_bytes(demand_from_partials(pd.concat(parts), spec, np.random.default_rng(3))) == one


def test_weights_are_summed_exactly_and_one_person_adds_at_most_one():
    """Three people of weight 1/3 make one; a weight above 1 counts 1; non-numbers and NaN count 0."""
    cells = list(km_cells(np.array([X0] * 12), np.array([Y0] * 12)))
    weights: list[object] = [1 / 3] * 3 + [5.0, -1.0, np.nan] + ["x", None, "0.5"] + [0.1] * 3
    frame = pd.DataFrame({"home_cell": cells, "work_cell": cells, "score": weights})
    spec = DemandSpec(epsilon=1.0, k=1, weight_column="score", measures=(Measure.RESIDENTS,))
    partial = partial_demand(frame, spec)
    (cell,) = partial[partial["kind"] == "cell"].itertuples()
    units = [round(w * WEIGHT_SCALE) for w in [1 / 3] * 3 + [1.0, 0.5] + [0.1] * 3]
    assert cell.people == 12 and cell.weight == sum(units)
    # 3 × 1/3 + 1 (5.0 clipped) + 0.5 + 3 × 0.1 = 2.8 people of weight, floored to 2 before the noise.
    release = demand_from_partials(partial, DemandSpec(epsilon=60.0, k=1, weight_column="score",
                                                       measures=(Measure.RESIDENTS,)), np.random.default_rng(0))
    assert [c.value for c in release.release.cells] == [2]
