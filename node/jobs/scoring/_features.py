"""Feature columns at scoring time: the schema check against the model card, and the numeric matrix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from node.governance import Governance
from protocols.vfl.model_parts import FeatureColumn, ModelCard, feature_schema_digest
from protocols.wire.errors import ConfigError

__all__ = ["SchemaMismatch", "check_schema", "feature_matrix", "governance_columns"]

FloatArray = npt.NDArray[np.float64]
_NUMERIC = frozenset({"integer", "float", "boolean"})


class SchemaMismatch(ConfigError):
    """The scoring data's feature schema differs from the one the model was trained on."""

    status_hint = 422


def governance_columns(governance: Governance) -> dict[str, str]:
    """``name -> type`` of the dataset's fields that may serve as model features (category ``feature``)."""
    return {name: rule.type for name, rule in governance.fields.items() if rule.category == "feature"}


def check_schema(card: ModelCard, available: Mapping[str, str], *, where: str = "the scoring data") -> None:
    """Refuse to score unless ``available`` has every model feature with its training type.

    Args:
        card: the model card (feature names, types and their digest).
        available: ``name -> type`` of the feature columns at hand (e.g. :func:`governance_columns`).
        where: how to name the data in the error.

    Raises:
        SchemaMismatch: naming the missing and re-typed columns.
    """
    missing = [f.name for f in card.features if f.name not in available]
    retyped = [f"{f.name} ({f.type} at training, {available[f.name]} now)"
               for f in card.features if f.name in available and available[f.name] != f.type]
    now = [FeatureColumn(name=f.name, type=available.get(f.name, f.type)) for f in card.features]  # type: ignore[arg-type]
    if missing or retyped or feature_schema_digest(now) != card.feature_schema_digest:
        parts = ([f"missing feature columns: {', '.join(missing)}"] if missing else []) + (
            [f"re-typed columns: {', '.join(retyped)}"] if retyped else [])
        raise SchemaMismatch(
            f"{where} does not match the feature schema model {card.model_id} was trained on "
            f"(digest {card.feature_schema_digest[:16]}…): {'; '.join(parts) or 'columns differ'}"
        )
    textual = [f.name for f in card.features if f.type not in _NUMERIC]
    if textual:
        raise SchemaMismatch(f"model {card.model_id} uses non-numeric feature columns {', '.join(textual)}; "
                             "scoring supports integer, float and boolean features")


def feature_matrix(frame: pd.DataFrame, names: Sequence[str]) -> FloatArray:
    """The ``names`` columns of ``frame`` as a float matrix (unparseable or missing cells become NaN)."""
    cols = [pd.to_numeric(frame[n].map(_boolish), errors="coerce").to_numpy(dtype=np.float64) for n in names]
    if not cols:
        return np.zeros((len(frame), 0))
    return np.stack(cols, axis=1)


def _boolish(value: object) -> object:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return 1.0 if value.strip().lower() == "true" else 0.0
    return value
