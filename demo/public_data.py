"""Public benchmark data shipped with the repository: FATE's vertically split UCI credit data.

The files under ``demo/data/fate/`` are copied unchanged from FederatedAI/FATE (provenance, licences
and checksums in ``demo/data/fate/PROVENANCE.md``; the underlying UCI datasets are CC BY 4.0). Tests
and benchmarks read them through :func:`fate_path` so that a clone of the repository stands alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

__all__ = ["FATE_DIR", "FATE_DATASETS", "fate_path"]

FATE_DIR = Path(__file__).resolve().parent / "data" / "fate"
"""Where the shipped FATE files are."""

FATE_DATASETS = ("breast", "default_credit")
"""The guest/host pairs the repository ships."""


def fate_path(name: str, side: Literal["guest", "host"]) -> Path:
    """The CSV of one half of a shipped FATE dataset (``guest`` holds ``y``, ``host`` does not).

    Raises:
        ValueError: ``name`` is not one of :data:`FATE_DATASETS` (the others are not shipped).
    """
    if name not in FATE_DATASETS:
        raise ValueError(f"dataset {name!r} is not shipped; use one of {', '.join(FATE_DATASETS)}")
    return FATE_DIR / f"{name}_hetero_{side}.csv"
