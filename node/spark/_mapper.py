"""A :class:`psi.BatchMapper` whose batches run on the node's Spark executors (``mapInPandas``).

The PSI sessions stay in the driver, unchanged; every per-batch call they make through their mapper
(``blind_batch``, ``evaluate_batch``, ``seal_batch``) becomes one row of a small DataFrame whose
``mapInPandas`` function unpickles the call, runs the same pure function and returns its bytes. The
results come back ordered by batch index, so the session's output is byte for byte what the serial
and pool mappers give. Exceptions raised by the pure function (e.g. ``InvalidPoint``) are re-raised
in the driver as themselves, so sessions handle them exactly as with a pool.

A session's own set is blinded chunk by chunk as the peer pulls it; one Spark job per chunk would
cost a job's fixed price a hundred times over at 10⁷ elements. :meth:`SparkMapper.blind_ahead`
instead blinds the whole set in **one** Spark job before the session starts (the values are written
to Parquet under the node's storage in slices, blinded by ``psi._batch.blind_batch`` over the
partitions, written back as one blob per Arrow batch) and then answers the session's
``blind_batch`` calls, in order, from that output, read one row group at a time: the bytes the peer
receives in each data-plane chunk are exactly those the serial mapper would compute, and the driver
holds one row group of blinded points at a time, never the whole blinded set.
"""

from __future__ import annotations

import pickle
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from node.adapters import open_parquet
from protocols.wire.control import KeyType
from psi import serial_map
from psi._batch import blind_batch
from psi.group import POINT_BYTES, Scalar

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from psi._session import SetParty

__all__ = ["SparkMapper"]

_SCHEMA = "i long, out binary, err binary"
_BLINDED = "start long, n long, blob binary"
_SLICE = 1 << 20
_ROW_GROUP = 1 << 17
BLIND_AHEAD_MIN = 4096
"""Below this many values a session's set is blinded call by call (one job would not pay off)."""


def _run_calls(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Executor side: each row holds a pickled ``(fn, args)``; answer its bytes or its pickled exception."""
    for frame in batches:
        outs: list[bytes | None] = []
        errs: list[bytes | None] = []
        for blob in frame["call"]:
            fn, args = pickle.loads(blob)  # noqa: S301 - written by this node's own driver a moment ago
            try:
                outs.append(fn(*args))
                errs.append(None)
            except Exception as exc:  # noqa: BLE001 - carried back to the driver and re-raised there
                outs.append(None)
                errs.append(pickle.dumps(exc))
        yield pd.DataFrame({"i": frame["i"], "out": outs, "err": errs})


def _blinder(key_type: str, scalar: Scalar) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """Executor function: blind each run of consecutive indices into one packed blob; the scalar rides in here."""

    def blind(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in batches:
            index = frame["i"].to_numpy()
            values = frame["v"].tolist()
            cuts = [0, *(np.flatnonzero(np.diff(index) != 1) + 1).tolist(), len(index)]
            starts, counts, blobs = [], [], []
            for lo, hi in zip(cuts, cuts[1:], strict=False):
                if hi > lo:
                    starts.append(int(index[lo]))
                    counts.append(hi - lo)
                    blobs.append(blind_batch(key_type, values[lo:hi], scalar))
            yield pd.DataFrame({"start": starts, "n": counts, "blob": blobs})

    return blind


class _Blinded:
    """One set blinded ahead by Spark, answered in order: which values, with what, and the reader's position."""

    def __init__(self, key_type: str, values: Sequence[str], scalar: Scalar, directory: Path) -> None:
        self.key_type, self.values, self.scalar, self.directory = key_type, values, scalar.to_bytes(), directory
        self.position = 0
        self._buffer = bytearray()
        self._blobs = self._read()

    def _read(self) -> Iterator[bytes]:
        """The blobs in index order (files ordered by their first index; each file holds one contiguous run)."""
        files = []
        for path in (self.directory / "out").glob("*.parquet"):
            starts = pq.read_table(path, columns=["start"]).column(0)
            if len(starts):
                files.append((int(starts[0].as_py()), path))
        expected = 0
        for _, path in sorted(files):
            with open_parquet(path) as handle:
                for table in handle.iter_batches(batch_size=16, columns=["start", "n", "blob"]):
                    for start, n, blob in zip(*(table.column(c).to_pylist() for c in ("start", "n", "blob")),
                                              strict=True):
                        if start != expected:
                            raise RuntimeError(f"Spark's blinded output skips from element {expected} to {start}")
                        expected += n
                        yield blob
        if expected != len(self.values):
            raise RuntimeError(f"Spark blinded {expected} of {len(self.values)} elements")

    def answers(self, key_type: str, values: Sequence[str], scalar: Scalar) -> bool:
        """Whether ``blind_batch(key_type, values, scalar)`` is the next call this plan answers."""
        stop = self.position + len(values)
        return (key_type == self.key_type and scalar.to_bytes() == self.scalar and stop <= len(self.values)
                and list(values) == list(self.values[self.position:stop]))

    def take(self, n: int) -> bytes:
        """The next ``n`` blinded points, packed."""
        want = n * POINT_BYTES
        while len(self._buffer) < want:
            self._buffer += next(self._blobs)
        out = bytes(self._buffer[:want])
        del self._buffer[:want]
        self.position += n
        return out

    @property
    def done(self) -> bool:
        return self.position == len(self.values)


class SparkMapper:
    """Maps the pure PSI batch functions over the node's Spark cluster, preserving order.

    Args:
        spark: The node's session (:func:`node.spark.spark_session`).
        min_calls: Below this many calls the work runs in the driver (a Spark job costs tens of ms).
        workdir: Node storage for sets blinded ahead (a private temporary directory by default).
        ahead_min: Sets smaller than this are not blinded ahead (:meth:`blind_ahead` leaves them).

    The arguments, secret scalar included, travel to the executors inside the task data of this
    node's own cluster (see :mod:`node.spark`); results come back to the driver only.
    """

    def __init__(self, spark: SparkSession, *, min_calls: int = 2, workdir: Path | None = None,
                 ahead_min: int = BLIND_AHEAD_MIN) -> None:
        self._spark = spark
        self._ahead_min = ahead_min
        self._min_calls = min_calls
        self._workdir = workdir
        self._plans: list[_Blinded] = []
        self.jobs = 0
        """Spark jobs run so far (tests check that the work really went through Spark)."""

    def blind_ahead(self, session: SetParty[Any]) -> None:
        """Blind ``session``'s whole set in one Spark job; its later ``blind_batch`` calls are read from the output.

        ``session`` is a ``psi`` set party (:class:`psi.cardinality.CardinalitySender`, an ECDH
        sender or receiver) not yet started. Small sets are left to call-by-call mapping.
        """
        values, scalar = session.blinding_plan()  # the scalar stays in this node: driver and its own executors
        if len(values) < self._ahead_min:
            return
        base = Path(tempfile.mkdtemp(prefix="spark-blind-", dir=self._workdir))
        try:
            self._blind_to(base, str(session.key_type), values, scalar)
        except BaseException:
            shutil.rmtree(base, ignore_errors=True)
            raise
        self._plans.append(_Blinded(str(session.key_type), values, scalar, base))

    def _blind_to(self, base: Path, key_type: str, values: Sequence[str], scalar: Scalar) -> None:
        source = base / "in.parquet"
        schema = pa.schema([("i", pa.int64()), ("v", pa.string())])
        with pq.ParquetWriter(source, schema, compression="none") as writer:
            for start in range(0, len(values), _SLICE):
                chunk = values[start:start + _SLICE]
                writer.write_table(pa.table({"i": np.arange(start, start + len(chunk)), "v": list(chunk)},
                                            schema=schema), row_group_size=_ROW_GROUP)
        (self._spark.read.parquet(str(source)).mapInPandas(_blinder(key_type, scalar), _BLINDED)
         .write.option("compression", "none").option("parquet.block.size", str(8 << 20))
         .parquet(str(base / "out")))
        source.unlink()
        self.jobs += 1

    def table_file(self, records: Sequence[tuple[str, str]], key_type: str, key: Scalar, path: Path) -> None:
        """Write the labeled table of canonical ``records`` to ``path`` with :func:`node.spark.build_table`.

        The records go to Parquet under the node's storage in slices, then two Spark jobs group, seal
        and sort them (no session-by-session mapping); the file is the one ``prepare_sender_table``
        and ``save_table`` give. The OPRF key ``key`` reaches only this node's executors.
        """
        from ._tables import build_table

        base = Path(tempfile.mkdtemp(prefix="spark-table-", dir=self._workdir))
        try:
            source = base / "records.parquet"
            schema = pa.schema([("key", pa.string()), ("label", pa.string())])
            with pq.ParquetWriter(source, schema, compression="none") as writer:
                for start in range(0, len(records), _SLICE):
                    chunk = records[start:start + _SLICE]
                    writer.write_table(pa.table({"key": [k for k, _ in chunk], "label": [v for _, v in chunk]},
                                                schema=schema), row_group_size=_ROW_GROUP)
            build_table(self._spark.read.parquet(str(source)), key_type=KeyType(key_type), key=key, path=path,
                        workdir=base)
            self.jobs += 2
        finally:
            shutil.rmtree(base, ignore_errors=True)

    def _from_plan(self, fn: Callable[..., bytes], arg_tuples: Sequence[tuple[Any, ...]]) -> list[bytes] | None:
        if fn is not blind_batch:
            return None
        for plan in self._plans:
            if arg_tuples and plan.answers(*arg_tuples[0]):
                answers = []
                for args in arg_tuples:
                    if not plan.answers(*args):
                        raise RuntimeError("a session asked for its set out of order after blind_ahead")
                    answers.append(plan.take(len(args[1])))
                if plan.done:
                    self._plans.remove(plan)
                    shutil.rmtree(plan.directory, ignore_errors=True)
                return answers
        return None

    def __call__(self, fn: Callable[..., bytes], arg_tuples: Sequence[tuple[Any, ...]]) -> list[bytes]:
        """Run ``fn(*args)`` for every tuple on the executors; results in input order."""
        planned = self._from_plan(fn, arg_tuples)
        if planned is not None:
            return planned
        if len(arg_tuples) < self._min_calls:
            return serial_map(fn, arg_tuples)
        calls = pd.DataFrame({"i": range(len(arg_tuples)),
                              "call": [pickle.dumps((fn, args)) for args in arg_tuples]})
        frame = self._spark.createDataFrame(calls)  # sliced over the default parallelism
        answers: pd.DataFrame = frame.mapInPandas(_run_calls, _SCHEMA).toPandas()
        answers = answers.sort_values("i")
        self.jobs += 1
        for err in answers["err"]:
            if err is not None:
                raise pickle.loads(err)  # noqa: S301 - produced by our own executors
        return [bytes(out) for out in answers["out"]]

    def close(self) -> None:
        """Remove any blinded output not yet read; the session belongs to the node process (stopped at exit)."""
        for plan in self._plans:
            shutil.rmtree(plan.directory, ignore_errors=True)
        self._plans.clear()

    def __enter__(self) -> SparkMapper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
