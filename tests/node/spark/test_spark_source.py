"""``spark+parquet://`` and ``spark+table://`` sources: schema, counts and coarse statistics from Spark."""

from __future__ import annotations

import pandas as pd
import pytest

from node.adapters import open_source
from node.spark import ColumnStats, SparkSource
from protocols.wire.errors import ConfigError


@pytest.fixture
def subscribers_dir(tmp_path):
    frame = pd.DataFrame({"msisdn": [f"138{i:08d}" if i % 7 else None for i in range(1000)],
                          "age": [20 + i % 50 for i in range(1000)]})
    folder = tmp_path / "subs"
    folder.mkdir()
    for part in range(3):  # a directory of Parquet files, as Spark writes them
        frame.iloc[part::3].to_parquet(folder / f"part-{part}.parquet", index=False)
    return folder, frame


def test_parquet_source_counts_and_stats_come_from_spark(spark, subscribers_dir):
    folder, frame = subscribers_dir
    with open_source(f"spark+parquet://{folder}") as source:
        assert isinstance(source, SparkSource)
        assert source.columns == ["msisdn", "age"]
        assert source.row_count() == 1000
        rows, stats = source.coarse_stats()
        read = pd.concat(list(source.iter_batches(["msisdn", "age"], batch_size=300)), ignore_index=True)
    assert rows == 1000
    assert stats["msisdn"].nulls == int(frame["msisdn"].isna().sum())
    assert stats["age"] == ColumnStats(0, stats["age"].distinct_approx) and 45 <= stats["age"].distinct_approx <= 55
    key = ["msisdn", "age"]
    assert read.sort_values(key).reset_index(drop=True).equals(frame.sort_values(key).reset_index(drop=True))


def test_table_source_reads_the_catalog(spark, subscribers_dir):
    folder, _ = subscribers_dir
    spark.read.parquet(str(folder)).createOrReplaceTempView("subscribers")
    with open_source("spark+table://subscribers") as source:
        assert source.row_count() == 1000
        assert source.frame(["age"]).columns == ["age"]
        with pytest.raises(ConfigError, match="column 'nope' is not in"):
            source.frame(["nope"])


@pytest.mark.parametrize(("uri", "message"), [
    ("spark+table://no_such.table", "is not in the Spark catalog"),
    ("spark+table://bad name", "spark\\+table://db.table"),
    ("spark+parquet://relative/path", "absolute path"),
    ("spark+parquet:///no/such/dir", "does not exist"),
])
def test_bad_spark_uris_name_the_fix(spark, uri, message):
    with pytest.raises(ConfigError, match=message):
        open_source(uri)
