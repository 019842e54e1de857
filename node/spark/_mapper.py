"""A :class:`psi.BatchMapper` whose batches run on the node's Spark executors (``mapInPandas``).

The PSI sessions stay in the driver, unchanged; every per-batch call they make through their mapper
(``blind_batch``, ``evaluate_batch``, ``seal_batch``) becomes one row of a small DataFrame whose
``mapInPandas`` function unpickles the call, runs the same pure function and returns its bytes. The
results come back ordered by batch index, so the session's output is byte for byte what the serial
and pool mappers give. Exceptions raised by the pure function (e.g. ``InvalidPoint``) are re-raised
in the driver as themselves, so sessions handle them exactly as with a pool.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from psi import serial_map

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["SparkMapper"]

_SCHEMA = "i long, out binary, err binary"


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


class SparkMapper:
    """Maps the pure PSI batch functions over the node's Spark cluster, preserving order.

    Args:
        spark: The node's session (:func:`node.spark.spark_session`).
        min_calls: Below this many calls the work runs in the driver (a Spark job costs tens of ms).

    The arguments, secret scalar included, travel to the executors inside the task data of this
    node's own cluster (see :mod:`node.spark`); results come back to the driver only.
    """

    def __init__(self, spark: SparkSession, *, min_calls: int = 2) -> None:
        self._spark = spark
        self._min_calls = min_calls
        self.jobs = 0
        """Spark jobs run so far (tests check that the work really went through Spark)."""

    def __call__(self, fn: Callable[..., bytes], arg_tuples: Sequence[tuple[Any, ...]]) -> list[bytes]:
        """Run ``fn(*args)`` for every tuple on the executors; results in input order."""
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
        """Nothing to release: the session belongs to the node process (stopped at exit)."""

    def __enter__(self) -> SparkMapper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
