"""A party's training rows: key, features and (bank only) label, checked against its governance file.

Nothing here leaves the party.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from node.governance import Governance
from protocols.vfl.rounds import TrainingError
from protocols.wire.control import JobInput, KeyType

__all__ = ["PartyData", "read_party_data"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class PartyData:
    """One party's rows for a training job, in source order."""

    key_type: KeyType
    keys: list[str | None]
    feature_names: list[str]
    features: FloatArray
    labels: FloatArray | None
    digest: str
    """SHA-256 over the feature (and label) values read: which data the model was trained on."""


def _check_fields(governance: Governance, inp: JobInput) -> KeyType:
    if len(inp.key_fields) != 1:
        raise TrainingError("a training job aligns on exactly one key field")
    key_rule = governance.fields.get(inp.key_fields[0])
    if key_rule is None or key_rule.category != "identifier" or key_rule.key_type is None:
        raise TrainingError(f"key field {inp.key_fields[0]!r} is not an identifier with a key type")
    for name in inp.feature_fields:
        rule = governance.fields.get(name)
        if rule is None or rule.category != "feature":
            raise TrainingError(f"field {name!r} is not a feature of {governance.dataset}")
    if inp.label_field is not None:
        rule = governance.fields.get(inp.label_field)
        if rule is None or rule.category != "label":
            raise TrainingError(f"field {inp.label_field!r} is not a label of {governance.dataset}")
    if not inp.feature_fields:
        raise TrainingError(f"the {governance.dataset} input names no feature fields")
    return KeyType(key_rule.key_type)


def _numeric(frame: pd.DataFrame, names: list[str]) -> FloatArray:
    try:
        values: FloatArray = frame[names].apply(pd.to_numeric, errors="raise").to_numpy(dtype=np.float64)
    except (ValueError, TypeError):
        raise TrainingError("a feature column holds non-numeric values") from None
    if not np.isfinite(values).all():
        raise TrainingError("a feature column holds missing or infinite values")
    return values


def read_party_data(frame: pd.DataFrame, governance: Governance, inp: JobInput) -> PartyData:
    """Check ``inp`` against the governance rules and extract keys, features and label.

    Raises:
        TrainingError: a field is missing, of the wrong category, non-numeric or the label not 0/1.
    """
    key_type = _check_fields(governance, inp)
    missing = [c for c in [inp.key_fields[0], *inp.feature_fields, inp.label_field] if c and c not in frame]
    if missing:
        raise TrainingError(f"columns {missing} are missing from the dataset")
    features = _numeric(frame, list(inp.feature_fields))
    labels = None
    if inp.label_field is not None:
        labels = _numeric(frame, [inp.label_field])[:, 0]
        if not np.isin(labels, (0.0, 1.0)).all():
            raise TrainingError(f"label {inp.label_field!r} must be 0 or 1 in every row")
    digest = hashlib.sha256(features.tobytes() + (labels.tobytes() if labels is not None else b"")).hexdigest()
    keys = [None if pd.isna(v) else str(v) for v in frame[inp.key_fields[0]].tolist()]
    return PartyData(key_type, keys, list(inp.feature_fields), features, labels, digest)
