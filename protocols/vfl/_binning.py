"""Quantile binning of one party's features (each party bins only its own columns)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["QuantileBins"]


@dataclass(frozen=True)
class QuantileBins:
    """Per-feature cut points; ``bin(x) = #{edges < x}``, so bin ``b`` goes left of ``x <= edges[b]``.

    Attributes:
        edges: one increasing array of cut points per feature (at most ``n_bins - 1`` each).
    """

    edges: tuple[npt.NDArray[np.float64], ...]

    @classmethod
    def fit(cls, features: npt.ArrayLike, n_bins: int) -> QuantileBins:
        """Cut each column at its ``n_bins``-quantiles (duplicates merged)."""
        x = np.asarray(features, dtype=np.float64)
        qs = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
        return cls(tuple(np.unique(np.quantile(x[:, j], qs)) for j in range(x.shape[1])))

    @property
    def n_candidates(self) -> tuple[int, ...]:
        """Split candidates per feature (one per cut point)."""
        return tuple(len(e) for e in self.edges)

    def transform(self, features: npt.ArrayLike) -> npt.NDArray[np.int32]:
        """Return the bin index of every value (shape of ``features``)."""
        x = np.asarray(features, dtype=np.float64)
        cols = [np.searchsorted(e, x[:, j], side="left") for j, e in enumerate(self.edges)]
        return np.stack(cols, axis=1).astype(np.int32) if cols else np.zeros((x.shape[0], 0), np.int32)
