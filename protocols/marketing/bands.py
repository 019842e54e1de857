"""Churn-risk bands from a subscriber's telco signals: the rule ``churn_warning`` applies at the telco.

Signals (telco columns): ``number_changed_90d`` (bool), ``silent_days`` (int, days without activity),
``home_cell_moved_90d`` (bool), ``bank_app_stopped_30d`` (bool: stopped using the bank's app),
``competitor_app_started_30d`` (bool: started a competitor's app). Points::

    number changed in 90 days        3
    silent 30 days or more           3     (14 to 29 days: 2; 7 to 13 days: 1)
    stopped using the bank's app     2
    started a competitor's app       2
    moved home cell in 90 days       1

Band: ``high`` from :data:`HIGH_FROM` points, ``medium`` from :data:`MEDIUM_FROM`, else ``low``. Only the
band leaves the telco (as the label of a labeled-PSI record), never the points or the signals.

What each party learns: nothing here — a pure function of one subscriber's signals.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["BANDS", "HIGH_FROM", "MEDIUM_FROM", "SIGNALS", "BandInputError", "band_of", "bands", "risk_points"]

SIGNALS = ("number_changed_90d", "silent_days", "home_cell_moved_90d", "bank_app_stopped_30d",
           "competitor_app_started_30d")
"""The telco columns the rule reads, in this order."""
BANDS = ("low", "medium", "high")
MEDIUM_FROM, HIGH_FROM = 2, 4


class BandInputError(ValueError):
    """A signal column is missing or holds a value the rule cannot read; the message names it and the fix."""

    def __init__(self, field: str, problem: str, fix: str) -> None:
        super().__init__(f"{field}: {problem}; {fix}")
        self.field = field


def _flags(values: Any, name: str) -> npt.NDArray[np.int64]:
    array = np.asarray(values)
    if array.dtype == bool:
        return array.astype(np.int64)
    try:
        numeric = array.astype(np.float64)
    except (TypeError, ValueError):
        raise BandInputError(name, "holds values that are not booleans or 0/1", "give true/false or 0/1") from None
    if np.isnan(numeric).any() or not np.isin(numeric, (0.0, 1.0)).all():
        raise BandInputError(name, "holds values other than 0/1 (or missing values)", "give true/false or 0/1")
    return numeric.astype(np.int64)


def risk_points(signals: Mapping[str, Any]) -> npt.NDArray[np.int64]:
    """Points per subscriber (module docstring) from column arrays of equal length.

    Raises:
        BandInputError: A signal is missing, or holds a negative, missing or non-0/1 value.
    """
    missing = [s for s in SIGNALS if s not in signals]
    if missing:
        raise BandInputError(missing[0], "is not among the telco's columns",
                             f"give all of {list(SIGNALS)} (demo/SYNTHETIC.md)")
    try:
        silent = np.asarray(signals["silent_days"], dtype=np.float64)
    except (TypeError, ValueError):
        raise BandInputError("silent_days", "holds non-numeric values", "give whole days ≥ 0") from None
    if np.isnan(silent).any() or (silent < 0).any():
        raise BandInputError("silent_days", "holds negative or missing values", "give whole days ≥ 0")
    points = np.where(silent >= 30, 3, np.where(silent >= 14, 2, np.where(silent >= 7, 1, 0))).astype(np.int64)
    points += 3 * _flags(signals["number_changed_90d"], "number_changed_90d")
    points += 2 * _flags(signals["bank_app_stopped_30d"], "bank_app_stopped_30d")
    points += 2 * _flags(signals["competitor_app_started_30d"], "competitor_app_started_30d")
    points += _flags(signals["home_cell_moved_90d"], "home_cell_moved_90d")
    return points


def band_of(points: int) -> str:
    """The band of a points total."""
    if points >= HIGH_FROM:
        return "high"
    return "medium" if points >= MEDIUM_FROM else "low"


def bands(signals: Mapping[str, Any]) -> list[str]:
    """The band of every subscriber."""
    return [band_of(int(p)) for p in risk_points(signals)]
