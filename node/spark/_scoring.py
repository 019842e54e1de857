"""Telco-side scoring over Spark partitions: the pure scorer of ``protocols.vfl.standalone`` in ``mapInPandas``.

:func:`score_partitions` — app promotion: ``score_standalone`` (the telco's part plus the bank's one
released offset, LR or SecureBoost) for every subscriber row, one Arrow batch at a time.

The model part reaches the executors in the task closure (it is the telco's own part; no secret key);
scores stay in Spark (write them to the node's storage, or aggregate) unless the job releases them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from protocols.vfl.standalone import StandalonePart, score_standalone

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["score_partitions"]

Scorer = Callable[[np.ndarray], np.ndarray]


def _features(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """The feature matrix of a batch, missing cells as NaN (the scorers treat NaN as the training mean)."""
    matrix: np.ndarray = frame[list(columns)].apply(pd.to_numeric, errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan)
    return matrix


def _mapped(frame: DataFrame, id_column: str, columns: Sequence[str], scorer: Scorer) -> DataFrame:
    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            yield pd.DataFrame({"id": batch[id_column].astype(str), "score": scorer(_features(batch, columns))})

    return frame.select(id_column, *columns).mapInPandas(score, "id string, score double")


def score_partitions(frame: DataFrame, part: StandalonePart, *, id_column: str,
                     feature_columns: Sequence[str]) -> DataFrame:
    """``(id, propensity)`` of every row of ``frame``: ``score_standalone(part, x)`` per partition batch."""
    return _mapped(frame, id_column, feature_columns, lambda x: score_standalone(part, x))

