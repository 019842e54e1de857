"""Labeled-PSI sender tables built on Spark from a DataFrame, streamed into the node's table file.

Pipeline (every per-record step is a ``mapInPandas`` over partitions calling the same pure functions
the serial and pool engines call)::

    raw (key, number) rows ─ normalise_labels + pair_records ─► (canonical key, number) + refusal counts
      ─ groupBy(key): distinct numbers, rows ─► keys with > MAX_LABELS_PER_KEY numbers left out, counted
      ─ one aggregate: the longest label encoding ─► the table's plaintext size
      ─ psi.labeled.seal_batch ─► records (tag ‖ AES-GCM ‖ tag), bucketed by their first byte
      ─ shuffle by bucket, sort within bucket, Parquet under the node's work directory
    driver: reads bucket 0…255 in order, a row group at a time, and appends to the table file

Records sorted by bucket (first byte) then by bytes are sorted by bytes, so the file is byte for byte
the table :func:`psi.labeled.prepare_sender_table` builds from the same records and key, and the driver
never holds more than one row group. Only counts are collected to the driver.
"""

from __future__ import annotations

import heapq
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from node.jobs.psi.recovery import normalise_labels, pair_records
from protocols.wire.control import KeyType
from psi.engine import table_header
from psi.group import Scalar
from psi.labeled import (
    GCM_TAG_BYTES,
    MAX_LABELS_PER_KEY,
    TAG_BYTES,
    SharedKeys,
    _plaintext_size,
    key_id,
    seal_batch,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["SparkTable", "build_table", "iter_bucket_records"]

SEAL_BATCH = 8192
_BUCKETS = 256
_NORMALISED = "key string, label string, kind string, reason string, n long"


@dataclass(frozen=True)
class SparkTable:
    """A table file written from Spark, and what the telco reports about it (counts only).

    Attributes:
        path: The table file (``psi.engine.save_table`` format; ``psi.engine.load_table`` reads it).
        count: Records in the table.
        record_size: Bytes per record.
        key_id: Fingerprint of the OPRF key.
        invalid_keys: Refused keys by ``(key type, reason)``.
        invalid_labels: Refused numbers by ``(mobile, reason)``.
        shared: Key values left out as shared by more than ``MAX_LABELS_PER_KEY`` numbers.
    """

    path: Path
    count: int
    record_size: int
    key_id: str
    invalid_keys: Counter[tuple[str, str]] = field(default_factory=Counter)
    invalid_labels: Counter[tuple[str, str]] = field(default_factory=Counter)
    shared: SharedKeys = SharedKeys()


def _cells(series: pd.Series) -> list[str | None]:
    """A pandas column as Python values, missing cells as ``None`` (pandas may hand NaN)."""
    return [None if v is None or (isinstance(v, float) and v != v) else v for v in series.tolist()]


PartitionFn = Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]


def _normaliser(key_type: KeyType) -> PartitionFn:
    """The executor function: normalise one partition's rows, with per-partition refusal counts."""

    def normalise(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in batches:
            bad_labels: Counter[tuple[str, str]] = Counter()
            bad_keys: Counter[tuple[str, str]] = Counter()
            labels = normalise_labels(_cells(frame["label"]), bad_labels)
            records = pair_records(_cells(frame["key"]), key_type, labels, bad_keys)
            counts = [("label", r, n) for (_, r), n in bad_labels.items()] + [
                ("key", r, n) for (_, r), n in bad_keys.items()]
            yield pd.DataFrame({
                "key": [k for k, _ in records] + [None] * len(counts),
                "label": [lab for _, lab in records] + [None] * len(counts),
                "kind": [None] * len(records) + [c[0] for c in counts],
                "reason": [None] * len(records) + [c[1] for c in counts],
                "n": [1] * len(records) + [c[2] for c in counts],
            })

    return normalise


def _sealer(key_type: KeyType, key: Scalar, size: int) -> PartitionFn:
    """The executor function: seal one partition's key groups; the OPRF key arrives in this closure."""
    record_size = TAG_BYTES + size + GCM_TAG_BYTES

    def seal(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in batches:
            keys = frame["key"].tolist()
            groups = [g[0] if len(g) == 1 else tuple(g) for g in frame["labels"].tolist()]
            for start in range(0, len(keys), SEAL_BATCH):
                packed = seal_batch(str(key_type), keys[start:start + SEAL_BATCH], groups[start:start + SEAL_BATCH],
                                    key, size)
                records = [packed[i:i + record_size] for i in range(0, len(packed), record_size)]
                yield pd.DataFrame({"bucket": [r[0] for r in records], "record": records})

    return seal


def _encoded_size_sql() -> str:
    """``psi.labeled._encoded_size`` of a key's sorted distinct labels, as a Spark SQL expression."""
    return "aggregate(labels, 1, (acc, x) -> acc + 1 + octet_length(x))"


def build_table(frame: DataFrame, *, key_type: KeyType, key: Scalar, path: Path, workdir: Path,
                key_column: str = "key", label_column: str = "label") -> SparkTable:
    """Build the labeled table of ``frame``'s ``(key, number)`` rows on Spark and write it to ``path``.

    Args:
        frame: Raw rows (any source Spark reads); only the two named columns are used.
        key_type: Identifier kind of ``key_column``.
        key: The epoch's OPRF key k. **Secret**: it reaches the executors in the sealing closure.
        path: The table file to write (replaced atomically).
        workdir: Node storage for Spark's sorted output (removed afterwards).
        key_column: Column of raw keys.
        label_column: Column of raw numbers.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    kind = KeyType(key_type)
    raw = frame.select(F.col(key_column).cast("string").alias("key"), F.col(label_column).cast("string").alias("label"))
    normalised = raw.mapInPandas(_normaliser(kind), _NORMALISED).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        invalid_keys, invalid_labels = _refusals(normalised, kind)
        grouped = (normalised.where("kind IS NULL").groupBy("key")
                   .agg(F.array_sort(F.collect_set("label")).alias("labels"), F.count("*").alias("rows"))
                   .persist(StorageLevel.MEMORY_AND_DISK))
        try:
            return _seal_and_write(grouped, kind, key, path, workdir, invalid_keys, invalid_labels)
        finally:
            grouped.unpersist()
    finally:
        normalised.unpersist()


def _refusals(normalised: DataFrame, kind: KeyType) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    rows = normalised.where("kind IS NOT NULL").groupBy("kind", "reason").sum("n").collect()
    keys: Counter[tuple[str, str]] = Counter()
    labels: Counter[tuple[str, str]] = Counter()
    for row in rows:
        target, name = (keys, str(kind)) if row[0] == "key" else (labels, str(KeyType.MOBILE))
        target[(name, row[1])] += int(row[2])
    return keys, labels


def _seal_and_write(grouped: DataFrame, kind: KeyType, key: Scalar, path: Path, workdir: Path,
                    invalid_keys: Counter[tuple[str, str]], invalid_labels: Counter[tuple[str, str]]) -> SparkTable:
    from pyspark.sql import functions as F

    too_many = F.size("labels") > MAX_LABELS_PER_KEY
    stats = grouped.agg(
        F.max(F.when(~too_many, F.expr(_encoded_size_sql()))).alias("longest"),
        F.sum(F.when(too_many, 1).otherwise(0)).alias("shared_values"),
        F.sum(F.when(too_many, F.col("rows")).otherwise(0)).alias("shared_rows"),
        F.sum(F.when(~too_many, 1).otherwise(0)).alias("kept"),
    ).collect()[0]
    size = _plaintext_size(int(stats["longest"] or 0))
    record_size = TAG_BYTES + size + GCM_TAG_BYTES
    sorted_dir = workdir / f"{path.name}.spark"
    shutil.rmtree(sorted_dir, ignore_errors=True)
    (grouped.where(~too_many).select("key", "labels")
     .mapInPandas(_sealer(kind, key, size), "bucket int, record binary")
     .repartition("bucket").sortWithinPartitions("bucket", "record")
     .write.partitionBy("bucket").parquet(str(sorted_dir)))
    tmp = path.with_suffix(".partial")
    count = 0
    with open(tmp, "wb") as handle:
        handle.write(table_header(kind, key_id(key), record_size))
        for block in iter_bucket_records(sorted_dir):
            count += len(block) // record_size
            handle.write(block)
    tmp.replace(path)
    shutil.rmtree(sorted_dir, ignore_errors=True)
    if count != int(stats["kept"] or 0):
        raise RuntimeError(f"Spark wrote {count} records for {stats['kept']} keys; the table was not kept")
    shared = SharedKeys(int(stats["shared_values"] or 0), int(stats["shared_rows"] or 0))
    return SparkTable(path, count, record_size, key_id(key), invalid_keys, invalid_labels, shared)


def _binary_block(column: pa.Array) -> bytes:
    """The concatenated values of a non-null binary Arrow array, without a Python object per value."""
    column = column.cast(pa.binary()) if column.type != pa.binary() else column
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32)[column.offset:column.offset + len(column) + 1]
    data = column.buffers()[2]
    return b"" if data is None or not len(column) else data.to_pybytes()[offsets[0]:offsets[-1]]


def _file_records(path: Path, batch_rows: int) -> Iterator[bytes]:
    handle = pq.ParquetFile(path)
    try:
        for batch in handle.iter_batches(batch_size=batch_rows, columns=["record"]):
            yield _binary_block(batch.column(0))
    finally:
        handle.close()


def iter_bucket_records(sorted_dir: Path, batch_rows: int = 65536) -> Iterator[bytes]:
    """Blocks of packed records from a bucketed, sorted Spark output, in global byte order.

    Buckets are read 0…255; a bucket written as several files (each sorted) is merged.
    """
    for bucket in range(_BUCKETS):
        files = sorted((sorted_dir / f"bucket={bucket}").glob("*.parquet"))
        if len(files) == 1:
            yield from _file_records(files[0], batch_rows)
        elif files:
            yield from _merged(files, batch_rows)


def _merged(files: list[Path], batch_rows: int) -> Iterator[bytes]:
    def records(path: Path) -> Iterator[bytes]:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=["record"]):
            yield from (bytes(v) for v in batch.column(0).to_pylist())

    block: list[bytes] = []
    for record in heapq.merge(*(records(f) for f in files)):
        block.append(record)
        if len(block) == batch_rows:
            yield b"".join(block)
            block = []
    if block:
        yield b"".join(block)
