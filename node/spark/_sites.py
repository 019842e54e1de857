"""Site-selection demand aggregation over Spark partitions: the pure ``partial_demand`` in ``mapInPandas``.

:func:`aggregate_demand_spark` — each partition turns its rows into exact per-cell sums with
``node.jobs.sites.demand.partial_demand`` (the function the in-process engine runs over the whole
table), Spark sums them with one ``groupBy``, and only those sums — one line per H3 cell with people,
per refusal reason and source, a few thousand lines for a national table — reach the driver, which
applies the merge rule and the noise with ``demand_from_partials``. Sums are integers (weights in
fixed-point units), so the release is byte for byte the in-process one for the same noise source,
however Spark partitioned or ordered the rows.

What executors see: the subscribers' cell (and weight) columns of their partition, which the telco
already holds; they return exact counts that stay in the telco's cluster and driver. Noise is drawn in
the driver only, after the sums; no key is involved.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from node.jobs.sites.demand import (
    DemandResult,
    DemandSpec,
    check_demand_columns,
    demand_from_partials,
    merge_partials,
    partial_demand,
)
from node.jobs.sites.grid import KmGrid

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["aggregate_demand_spark", "frame_to_spark", "partial_demand_spark"]

_PARTIAL_SCHEMA = "source string, kind string, key string, people long, weight long"


def _columns(spec: DemandSpec) -> list[str]:
    """The input columns ``spec`` reads, each once."""
    wanted = [spec.column_of(s) for s in spec.sources] + ([spec.weight_column] if spec.weight_column else [])
    return list(dict.fromkeys(wanted))


def partial_demand_spark(frame: DataFrame, spec: DemandSpec, grid: KmGrid | None = None) -> DataFrame:
    """The summed partial of ``frame`` as a Spark DataFrame (``partial_demand`` per partition, then ``groupBy``).

    Raises:
        SiteInputError: A column ``spec`` names is not in ``frame`` (checked on the schema, before any job).
    """
    from pyspark.sql import functions as F

    check_demand_columns(list(frame.columns), spec)

    def per_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        partial = merge_partials(partial_demand(batch, spec, grid) for batch in batches)
        if not partial.empty:
            yield partial

    partials = frame.select(*_columns(spec)).mapInPandas(per_partition, _PARTIAL_SCHEMA)
    return partials.groupBy("source", "kind", "key").agg(F.sum("people").alias("people"),
                                                         F.sum("weight").alias("weight"))


def aggregate_demand_spark(frame: DataFrame, spec: DemandSpec, rng: np.random.Generator,
                           grid: KmGrid | None = None) -> DemandResult:
    """``aggregate_demand`` with the per-row work on Spark: the same release and diagnostics, byte for byte.

    Args:
        frame: The subscriber table on Spark (e.g. ``SparkSource.frame``), with the columns ``spec`` names.
        spec: Measures, ε, k and resolutions.
        rng: Source of the noise, drawn in the driver (seedable for tests).
        grid: The km grid's projection and area (default :class:`KmGrid`).

    Raises:
        SiteInputError: A named column is missing (bad rows are refused and counted, never raised).
    """
    sums = partial_demand_spark(frame, spec, grid).toPandas()
    return demand_from_partials(sums, spec, rng)


def frame_to_spark(spark: SparkSession, frame: pd.DataFrame) -> DataFrame:
    """A pandas table the node already read, handed to Spark with an explicit schema (text stays text).

    For sources that are not Spark's own (CSV, Parquet, SQL) when the node's engine is spark: numeric
    columns become ``long``/``double``, every other column ``string`` (categories as their values, nulls
    as nulls), so the partitions see the values the in-process engine sees.
    """
    from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

    fields, data = [], {}
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_integer_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
            fields.append(StructField(str(name), LongType()))
            data[name] = column.astype("Int64").astype(object).where(column.notna(), None)
        elif pd.api.types.is_float_dtype(column.dtype):
            fields.append(StructField(str(name), DoubleType()))
            data[name] = column.astype(np.float64)
        else:
            fields.append(StructField(str(name), StringType()))
            data[name] = column.astype(object).where(column.notna(), None).map(
                lambda v: v if v is None or isinstance(v, str) else str(v))
    table = pd.DataFrame(data, index=range(len(frame)))
    return spark.createDataFrame(table, StructType(fields))
