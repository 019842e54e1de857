"""Spark as a node data source: ``spark+parquet:///path`` and ``spark+table://db.table``.

The rows stay in Spark: :meth:`SparkSource.frame` hands Spark jobs (``node.spark.build_table``, the
scorers) a DataFrame, and :meth:`SparkSource.coarse_stats` computes what registration needs — row
count, nulls and an approximate distinct count per column — in one Spark aggregation, collecting one
row. :meth:`iter_batches` exists for consumers that need pandas batches; it streams partitions through
``toLocalIterator`` in bounded driver memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import pandas as pd

from node.adapters import DataSource
from protocols.wire.errors import ConfigError

from ._session import spark_session

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["ColumnStats", "SparkSource", "open_spark_source"]

_TABLE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)?$")


@dataclass(frozen=True)
class ColumnStats:
    """Coarse statistics of one column (counts only)."""

    nulls: int
    distinct_approx: int


class SparkSource(DataSource):
    """A Parquet path or a catalog table read by the node's Spark session."""

    def __init__(self, frame: DataFrame, uri: str) -> None:
        self._frame, self.uri = frame, uri

    @property
    def columns(self) -> list[str]:
        """Schema names."""
        return list(self._frame.columns)

    def row_count(self) -> int:
        """``count()`` on Spark."""
        return int(self._frame.count())

    def frame(self, columns: Sequence[str] | None = None) -> DataFrame:
        """The source as a Spark DataFrame (optionally only ``columns``), for jobs that run on Spark."""
        return self._frame.select(*self._check_columns(columns))

    def coarse_stats(self, columns: Sequence[str] | None = None) -> tuple[int, dict[str, ColumnStats]]:
        """Row count and per-column nulls and approximate distinct count, from one Spark aggregation."""
        from pyspark.sql import functions as F

        cols = self._check_columns(columns)
        aggs = [F.count(F.lit(1)).alias("__rows")]
        for i, name in enumerate(cols):
            aggs += [F.sum(F.col(name).isNull().cast("long")).alias(f"n{i}"),
                     F.approx_count_distinct(F.col(name)).alias(f"d{i}")]
        row = self._frame.agg(*aggs).collect()[0]
        stats = {name: ColumnStats(int(row[f"n{i}"] or 0), int(row[f"d{i}"] or 0)) for i, name in enumerate(cols)}
        return int(row["__rows"]), stats

    def _batches(self, columns: list[str], batch_size: int) -> Iterator[pd.DataFrame]:
        rows: list[tuple[object, ...]] = []
        for row in self._frame.select(*columns).toLocalIterator(prefetchPartitions=False):
            rows.append(tuple(row))
            if len(rows) == batch_size:
                yield pd.DataFrame.from_records(rows, columns=columns)
                rows = []
        if rows:
            yield pd.DataFrame.from_records(rows, columns=columns)


def open_spark_source(uri: str) -> SparkSource:
    """Open ``spark+parquet:///abs/path`` or ``spark+table://db.table`` with the node's Spark session.

    Raises:
        ConfigError: a malformed URI, a missing path or table, or Spark unavailable.
    """
    parts = urlsplit(uri)
    if parts.scheme == "spark+parquet":
        path = Path(unquote(parts.path))
        if parts.netloc not in ("", "localhost") or not path.is_absolute():
            raise ConfigError(f"{uri}: use an absolute path with three slashes, e.g. spark+parquet:///data/subs")
        if not path.exists():
            raise ConfigError(f"{uri}: {path} does not exist; give a Parquet file or directory Spark can read")
        return SparkSource(spark_session().read.parquet(str(path)), uri)
    if parts.scheme == "spark+table":
        name = parts.netloc + unquote(parts.path).strip("/")
        if not _TABLE.match(name):
            raise ConfigError(f"{uri}: name a catalog table as spark+table://db.table (letters, digits, _)")
        spark = spark_session()
        if not spark.catalog.tableExists(name):
            raise ConfigError(f"{uri}: table {name!r} is not in the Spark catalog of {spark.conf.get('spark.master')}")
        return SparkSource(spark.table(name), uri)
    raise ConfigError(f"unknown Spark source {uri!r}: use spark+parquet:///abs/path or spark+table://db.table")
