"""Labeled-PSI sender tables built on Spark from a DataFrame, streamed into the node's table file.

Pipeline (every per-record step is a ``mapInPandas`` over partitions calling the same pure functions
the serial and pool engines call); two Spark jobs, one shuffle each::

    job 1  raw (key, number) rows ─ normalise_labels + pair_records ─► (canonical key, number) rows
           and per-batch refusal counts ─ shuffle by key ─ group: distinct numbers, rows (cached)
           ─ one aggregation ─► refusal counts, keys left out as shared, the longest label encoding
    job 2  cached groups ─ psi.labeled.seal_batch ─► records (tag ‖ AES-GCM ‖ tag), each tagged with
           its part (the first two tag bytes cut into P ranges) ─ shuffle by part, sort within part
           ─ P ordered Parquet files under the node's work directory
    driver reads part 0…P-1 in order, a row group at a time, and appends to the table file

P is sized to the data (:func:`partitions_for`), not Spark's 200. Records sorted by part then by
bytes are sorted by bytes, so the file is byte for byte the table
:func:`psi.labeled.prepare_sender_table` builds from the same records and key, and the driver never
holds more than one row group. Only counts are collected to the driver.
"""

from __future__ import annotations

import heapq
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from node.adapters import open_parquet
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

__all__ = ["SparkTable", "build_table", "iter_part_records", "partitions_for"]

SEAL_BATCH = 8192
_SEP = "\x00"
"""Joins a key's sorted labels for the sealer (one Arrow string, not a list per row); never in a canonical number."""
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
        timings: Wall seconds of each step: ``group`` (job 1), ``seal_sort`` (job 2), ``append``
            (the driver's copy into the table file).
    """

    path: Path
    count: int
    record_size: int
    key_id: str
    invalid_keys: Counter[tuple[str, str]] = field(default_factory=Counter)
    invalid_labels: Counter[tuple[str, str]] = field(default_factory=Counter)
    shared: SharedKeys = SharedKeys()
    timings: dict[str, float] = field(default_factory=dict)


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


def _sealer(key_type: KeyType, key: Scalar, size: int, parts: int) -> PartitionFn:
    """The executor function: seal one partition's key groups; the OPRF key arrives in this closure.

    Each record is tagged with its output part: the first two bytes of its (pseudo-random) tag cut
    into ``parts`` equal ranges, so part ``p``'s records all sort before part ``p + 1``'s.
    """
    record_size = TAG_BYTES + size + GCM_TAG_BYTES

    def seal(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in batches:
            keys = frame["key"].tolist()
            groups = [g if _SEP not in g else tuple(g.split(_SEP)) for g in frame["labels"].tolist()]
            for start in range(0, len(keys), SEAL_BATCH):
                packed = seal_batch(str(key_type), keys[start:start + SEAL_BATCH], groups[start:start + SEAL_BATCH],
                                    key, size)
                heads = np.frombuffer(packed, dtype=np.uint8).reshape(-1, record_size)[:, :2].astype(np.int64)
                part = ((heads[:, 0] << 8 | heads[:, 1]) * parts) >> 16
                records = [packed[i:i + record_size] for i in range(0, len(packed), record_size)]
                yield pd.DataFrame({"part": part.astype(np.int32), "record": records})

    return seal


def _encoded_size_sql() -> str:
    """``psi.labeled._encoded_size`` of a key's sorted distinct labels, as a Spark SQL expression."""
    return "aggregate(labels, 1, (acc, x) -> acc + 1 + octet_length(x))"


def partitions_for(frame: DataFrame) -> int:
    """Partitions for the group and sort stages: the input's, at least twice the cluster's cores.

    Sized to the data through the input's own split (Spark cuts files into ~128 MB splits), never
    Spark's default 200: each task costs a fixed few tens of ms and a Python worker round trip.
    """
    cores = frame.sparkSession.sparkContext.defaultParallelism
    return max(2 * cores, frame.rdd.getNumPartitions())


def build_table(frame: DataFrame, *, key_type: KeyType, key: Scalar, path: Path, workdir: Path,
                key_column: str = "key", label_column: str = "label", partitions: int | None = None) -> SparkTable:
    """Build the labeled table of ``frame``'s ``(key, number)`` rows on Spark and write it to ``path``.

    Two Spark jobs: (1) normalise, group by key and gather the table's statistics and the refusal
    counts in one aggregation over the cached groups; (2) seal, range-partition by tag, sort and
    write ``partitions`` ordered Parquet files, which the driver appends to the table file in order.

    Args:
        frame: Raw rows (any source Spark reads); only the two named columns are used.
        key_type: Identifier kind of ``key_column``.
        key: The epoch's OPRF key k. **Secret**: it reaches the executors in the sealing closure.
        path: The table file to write (replaced atomically).
        workdir: Node storage for Spark's sorted output (removed afterwards).
        key_column: Column of raw keys.
        label_column: Column of raw numbers.
        partitions: Partitions of the group and sort stages (default :func:`partitions_for`).
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    kind = KeyType(key_type)
    parts = partitions or partitions_for(frame)
    raw = frame.select(F.col(key_column).cast("string").alias("key"), F.col(label_column).cast("string").alias("label"))
    grouped = (raw.mapInPandas(_normaliser(kind), _NORMALISED).repartition(parts, "key")
               .groupBy("kind", "reason", "key")
               .agg(F.array_sort(F.collect_set("label")).alias("labels"), F.sum("n").alias("rows"))
               .persist(StorageLevel.MEMORY_AND_DISK))
    try:
        return _seal_and_write(grouped, kind, key, path, workdir, parts)
    finally:
        grouped.unpersist()


def _seal_and_write(grouped: DataFrame, kind: KeyType, key: Scalar, path: Path, workdir: Path,
                    parts: int) -> SparkTable:
    from pyspark.sql import functions as F

    started = time.perf_counter()
    valid = F.col("kind").isNull()
    too_many = F.size("labels") > MAX_LABELS_PER_KEY
    rows = grouped.groupBy("kind", "reason").agg(
        F.max(F.when(valid & ~too_many, F.expr(_encoded_size_sql()))).alias("longest"),
        F.sum(F.when(valid & too_many, 1).otherwise(0)).alias("shared_values"),
        F.sum(F.when(valid & too_many, F.col("rows")).otherwise(0)).alias("shared_rows"),
        F.sum(F.when(valid & ~too_many, 1).otherwise(0)).alias("kept"),
        F.sum("rows").alias("n"),
    ).collect()
    invalid_keys: Counter[tuple[str, str]] = Counter()
    invalid_labels: Counter[tuple[str, str]] = Counter()
    stats = {"longest": 0, "shared_values": 0, "shared_rows": 0, "kept": 0}
    for row in rows:
        if row["kind"] is None:
            stats = {name: int(row[name] or 0) for name in stats}
        else:
            target, name = (invalid_keys, str(kind)) if row["kind"] == "key" else (invalid_labels, str(KeyType.MOBILE))
            target[(name, row["reason"])] += int(row["n"])
    timings = {"group": time.perf_counter() - started}
    size = _plaintext_size(stats["longest"])
    record_size = TAG_BYTES + size + GCM_TAG_BYTES
    sorted_dir = workdir / f"{path.name}.spark"
    shutil.rmtree(sorted_dir, ignore_errors=True)
    (grouped.where(valid & ~too_many).select("key", F.concat_ws(_SEP, "labels").alias("labels"))
     .mapInPandas(_sealer(kind, key, size, parts), "part int, record binary")
     .repartition(parts, "part").sortWithinPartitions("part", "record")
     .write.option("compression", "none").option("parquet.enable.dictionary", "false")
     .partitionBy("part").parquet(str(sorted_dir)))
    timings["seal_sort"] = time.perf_counter() - started - timings["group"]
    tmp = path.with_suffix(".partial")
    count = 0
    try:
        with open(tmp, "wb") as handle:
            handle.write(table_header(kind, key_id(key), record_size))
            for block in iter_part_records(sorted_dir, parts):
                count += len(block) // record_size
                handle.write(block)
        if count != stats["kept"]:
            raise RuntimeError(f"Spark wrote {count} records for {stats['kept']} keys; the table was not kept")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
        shutil.rmtree(sorted_dir, ignore_errors=True)
    timings["append"] = time.perf_counter() - started - timings["group"] - timings["seal_sort"]
    shared = SharedKeys(stats["shared_values"], stats["shared_rows"])
    return SparkTable(path, count, record_size, key_id(key), invalid_keys, invalid_labels, shared, timings)


def _binary_block(column: pa.Array) -> bytes:
    """The concatenated values of a non-null binary Arrow array, without a Python object per value."""
    column = column.cast(pa.binary()) if column.type != pa.binary() else column
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32)[column.offset:column.offset + len(column) + 1]
    data = column.buffers()[2]
    return b"" if data is None or not len(column) else data.to_pybytes()[offsets[0]:offsets[-1]]


def _file_records(path: Path, batch_rows: int) -> Iterator[bytes]:
    handle = open_parquet(path)
    try:
        for batch in handle.iter_batches(batch_size=batch_rows, columns=["record"]):
            yield _binary_block(batch.column(0))
    finally:
        handle.close()


def iter_part_records(sorted_dir: Path, parts: int, batch_rows: int = 65536) -> Iterator[bytes]:
    """Blocks of packed records from a part-partitioned, sorted Spark output, in global byte order.

    Parts are read 0…``parts - 1``; a part written as several files (each sorted) is merged.
    """
    for part in range(parts):
        files = sorted((sorted_dir / f"part={part}").glob("*.parquet"))
        if len(files) == 1:
            yield from _file_records(files[0], batch_rows)
        elif files:
            yield from _merged(files, batch_rows)


def _merged(files: list[Path], batch_rows: int) -> Iterator[bytes]:
    def records(path: Path) -> Iterator[bytes]:
        for batch in open_parquet(path).iter_batches(batch_size=batch_rows, columns=["record"]):
            yield from (bytes(v) for v in batch.column(0).to_pylist())

    block: list[bytes] = []
    for record in heapq.merge(*(records(f) for f in files)):
        block.append(record)
        if len(block) == batch_rows:
            yield b"".join(block)
            block = []
    if block:
        yield b"".join(block)
