"""The parts of a vertically trained model each party keeps, and the model card that describes them.

A vertically trained model is split between the parties; each party stores only its own part (the
node's :mod:`node.model_store` keeps them on disk). Parts, by algorithm and role:

* ``hetero_lr``, either role: :class:`LrPart` — own weights in ``card.features`` order, the active
  party's intercept, and the party's own feature scaling (applied before the weights).
* ``secureboost`` active: :class:`SbActivePart` — every tree's nodes with the leaf weights, the active
  party's own splits, and for a passive split only the reference ``(tree, node)`` that the passive
  party resolves; the boosting settings needed to route rows.
* ``secureboost`` passive: :class:`SbPassivePart` — ``(tree, node) → (feature, threshold)`` of its splits.

The bank-only model trained alongside (for the uplift figure and the scoring fallback of customers the
telco does not know) is described by ``ModelCard.fallback`` (active party only) and stored inside the
active part's JSON under the key ``"fallback"`` as an :class:`LrPart` or a passive-free
:class:`SbActivePart` over ``fallback.features``. Pure data: nothing here reads or writes files.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Annotated, Any, Literal, Self

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from protocols.vfl._lr import LrActiveModel, LrPassiveModel
from protocols.vfl._sb_tree import SbActiveModel, SbConfig, SbPassiveModel, TreeNode
from protocols.wire.canonical import canonical_json, sha256_hex
from protocols.wire.control import JobKind

__all__ = [
    "DataDigests",
    "FallbackModel",
    "FeatureColumn",
    "FeatureScaling",
    "LrPart",
    "ModelCard",
    "ModelMetrics",
    "SbActivePart",
    "SbNodePart",
    "SbPassivePart",
    "SbSplitPart",
    "feature_schema_digest",
    "key_list_digest",
    "model_id_for",
]

Algo = Literal["hetero_lr", "secureboost"]
Role = Literal["active", "passive"]
FeatureType = Literal["string", "integer", "float", "boolean", "date"]
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
ModelId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_\-]{0,62}$")]
FloatArray = npt.NDArray[np.float64]


def model_id_for(job_id: int) -> str:
    """The model id both parties use for the model trained by ``job_id`` (e.g. ``"m42"``)."""
    return f"m{job_id}"


def feature_schema_digest(features: Sequence[FeatureColumn]) -> str:
    """SHA-256 of the canonical JSON of ``[[name, type], ...]`` in model column order.

    Scoring recomputes it from the scoring dataset's governance; any renamed, re-typed, reordered,
    added or missing column changes it.
    """
    return sha256_hex(canonical_json([[f.name, f.type] for f in features]))


def key_list_digest(keys: Sequence[str]) -> str:
    """SHA-256 of the ordered training key list (newline-joined), stored as a data digest.

    The digest commits to the aligned rows without revealing them; only the node that holds the keys
    can recompute it.
    """
    return sha256_hex("\n".join(keys).encode("utf-8"))


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureColumn(_Frozen):
    """One model input column of this party: its name and governance type."""

    name: Name
    type: FeatureType = "float"


class ModelMetrics(_Frozen):
    """Held-out evaluation (computed federatedly), as the active party reports it."""

    auc: float | None = Field(default=None, ge=0.0, le=1.0)
    ks: float | None = Field(default=None, ge=0.0, le=1.0)
    bank_only_auc: float | None = Field(default=None, ge=0.0, le=1.0)
    n_train: int = Field(default=0, ge=0)
    n_test: int = Field(default=0, ge=0)


class DataDigests(_Frozen):
    """What the model was trained on, as digests only.

    Attributes:
        keys_sha256: :func:`key_list_digest` of the ordered aligned training keys (this party's view).
        dataset_schema_digest: the catalog schema digest of the training dataset.
        dataset_id: the catalog id of the training dataset.
    """

    keys_sha256: Hex64
    dataset_schema_digest: str
    dataset_id: int | None = None


class FallbackModel(_Frozen):
    """The bank-only model stored beside the federated one (active party only).

    Used when the telco has no data for a customer: the outcome is then ``no_telco_data`` with this
    model's score, never a silent default. Its part lives in the active part under ``"fallback"``.
    """

    algo: Algo
    features: list[FeatureColumn] = Field(min_length=1)
    auc: float | None = Field(default=None, ge=0.0, le=1.0)

    @property
    def feature_names(self) -> list[str]:
        """Column names in model order."""
        return [f.name for f in self.features]


class ModelCard(_Frozen):
    """What a party knows and records about its part of a federated model."""

    job_id: int = Field(ge=1)
    model_id: ModelId = ""
    kind: JobKind
    algo: Algo
    party: str
    peer_party: str
    role: Role
    features: list[FeatureColumn] = Field(min_length=1)
    feature_schema_digest: Hex64 = ""
    label: Name | None = None
    metrics: ModelMetrics = Field(default_factory=ModelMetrics)
    data: DataDigests
    policy_version: str
    created_at: dt.datetime = Field(default_factory=lambda: dt.datetime.now(dt.UTC))
    fallback: FallbackModel | None = None

    @model_validator(mode="before")
    @classmethod
    def _fill(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if not data.get("model_id") and "job_id" in data:
                data["model_id"] = model_id_for(int(data["job_id"]))
            if not data.get("feature_schema_digest") and "features" in data:
                cols = [FeatureColumn.model_validate(c) for c in data["features"]]
                data["feature_schema_digest"] = feature_schema_digest(cols)
        return data

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.kind not in (JobKind.TRAIN_RISK, JobKind.TRAIN_PROPENSITY):
            raise ValueError("a model comes from a train_risk or train_propensity job")
        if self.feature_schema_digest != feature_schema_digest(self.features):
            raise ValueError("feature_schema_digest does not match the feature list")
        if (self.role == "active") != (self.label is not None):
            raise ValueError("the active party's card names its label; a passive card never does")
        if self.fallback is not None and self.role != "active":
            raise ValueError("only the active party holds a bank-only fallback model")
        if self.fallback is not None and not set(self.fallback.feature_names) <= set(self.feature_names):
            raise ValueError("the fallback model's features must be among the card's own features")
        if len({f.name for f in self.features}) != len(self.features):
            raise ValueError("feature names repeat")
        return self

    @property
    def feature_names(self) -> list[str]:
        """Own feature names in model column order."""
        return [f.name for f in self.features]


# --- parts -----------------------------------------------------------------------------------------


class FeatureScaling(_Frozen):
    """Per-column standardisation ``(x - mean) / scale`` the party fitted on its own training rows."""

    mean: list[float]
    scale: list[float]

    @model_validator(mode="after")
    def _check(self) -> Self:
        if len(self.mean) != len(self.scale) or any(s == 0.0 for s in self.scale):
            raise ValueError("scaling needs one non-zero scale per mean")
        return self

    @classmethod
    def fit(cls, features: npt.ArrayLike) -> FeatureScaling:
        """Fit mean and standard deviation per column (a constant column gets scale 1)."""
        x = np.asarray(features, dtype=np.float64)
        std = x.std(axis=0)
        return cls(mean=x.mean(axis=0).tolist(), scale=np.where(std > 0, std, 1.0).tolist())

    def apply(self, features: npt.ArrayLike) -> FloatArray:
        """Standardise ``features`` (columns in model order)."""
        x: FloatArray = (np.asarray(features, dtype=np.float64) - np.asarray(self.mean)) / np.asarray(self.scale)
        return x


class LrPart(_Frozen):
    """A party's share of a hetero LR model (or the bank-only LR fallback)."""

    part: Literal["hetero_lr"] = "hetero_lr"
    weights: list[float]
    intercept: float | None = None
    scaling: FeatureScaling | None = None

    @classmethod
    def from_active(cls, model: LrActiveModel, scaling: FeatureScaling | None = None) -> LrPart:
        """The active party's part: its weights and the intercept."""
        return cls(weights=model.weights.tolist(), intercept=float(model.intercept), scaling=scaling)

    @classmethod
    def from_passive(cls, model: LrPassiveModel, scaling: FeatureScaling | None = None) -> LrPart:
        """The passive party's part: its weights only."""
        return cls(weights=model.weights.tolist(), scaling=scaling)

    def prepare(self, features: npt.ArrayLike) -> FloatArray:
        """Apply the stored scaling (if any) to raw feature rows."""
        x = np.asarray(features, dtype=np.float64)
        return x if self.scaling is None else self.scaling.apply(x)

    def active_model(self) -> LrActiveModel:
        """As the :mod:`protocols.vfl` active model (for ``lr_active_predict_proba``)."""
        return LrActiveModel(np.asarray(self.weights), float(self.intercept or 0.0), (), 0, True)

    def passive_model(self) -> LrPassiveModel:
        """As the :mod:`protocols.vfl` passive model (for ``lr_passive_partial_scores``)."""
        return LrPassiveModel(np.asarray(self.weights))


class SbNodePart(_Frozen):
    """One tree node as the active party stores it (a passive split is a bare reference)."""

    node: int = Field(ge=0)
    kind: Literal["leaf", "active_party", "passive_party"]
    feature: int | None = None
    threshold: float | None = None
    weight: float | None = None


class SbActivePart(_Frozen):
    """The active party's SecureBoost part: tree shapes, own splits, every leaf weight."""

    part: Literal["secureboost_active"] = "secureboost_active"
    base_margin: float
    max_depth: int = Field(ge=1)
    learning_rate: float
    trees: list[list[SbNodePart]]

    @classmethod
    def from_model(cls, model: SbActiveModel, config: SbConfig) -> SbActivePart:
        """From the trained active model and the job's settings."""
        trees = [[SbNodePart(**vars(n)) for n in tree] for tree in model.trees]
        return cls(base_margin=model.base_margin, max_depth=config.max_depth, learning_rate=config.learning_rate,
                   trees=trees)

    def model(self) -> SbActiveModel:
        """As the :mod:`protocols.vfl` active model."""
        trees = tuple(tuple(TreeNode(**n.model_dump(exclude_none=False)) for n in t) for t in self.trees)
        return SbActiveModel(self.base_margin, trees)

    def config(self) -> SbConfig:
        """The settings routing needs (depth; the rest do not affect prediction)."""
        return SbConfig(n_trees=len(self.trees), max_depth=self.max_depth, learning_rate=self.learning_rate)

    def passive_refs(self) -> set[tuple[int, int]]:
        """``(tree, node)`` of every passive split (what the passive party must route)."""
        return {(t, n.node) for t, tree in enumerate(self.trees) for n in tree if n.kind == "passive_party"}


class SbSplitPart(_Frozen):
    """One passive split: the reference the active party knows and what only the passive knows."""

    tree: int = Field(ge=0)
    node: int = Field(ge=0)
    feature: int = Field(ge=0)
    threshold: float


class SbPassivePart(_Frozen):
    """The passive party's SecureBoost part: its split lookup table."""

    part: Literal["secureboost_passive"] = "secureboost_passive"
    splits: list[SbSplitPart]

    @classmethod
    def from_model(cls, model: SbPassiveModel) -> SbPassivePart:
        """From the trained passive model."""
        return cls(splits=[SbSplitPart(tree=t, node=n, feature=f, threshold=v)
                           for (t, n), (f, v) in sorted(model.splits.items())])

    def model(self) -> SbPassiveModel:
        """As the :mod:`protocols.vfl` passive model."""
        return SbPassiveModel({(s.tree, s.node): (s.feature, s.threshold) for s in self.splits})


