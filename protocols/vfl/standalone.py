"""Telco-alone scoring of people who are not the bank's customers (app promotion, step c), sans I/O.

A ``train_propensity`` model is split: the bank (active party) holds its weights or splits, the
intercept and every leaf weight; the telco (passive party) holds its weights or its split table. A
non-customer has no bank features at all, so nothing of the bank's part can be evaluated on them; what
the telco needs is the bank side *at the bank population's average*, released once, in aggregate.

Parties and the one release (a signed, audited step of the ``app_promotion`` job, bank → telco):
    * hetero LR — :func:`release_lr`: ONE scalar ``offset = intercept + mean over the bank's customers
      of (bank features · bank weights)`` (bank features after the stored scaling, a missing cell at the
      training mean). The telco scores ``sigmoid(offset + x_telco · w_telco)`` with the weights it
      already holds. Chosen over a telco-features-only model because it needs no second training run,
      scores with the very weights whose lift the model card reports, and releases one number; the
      ranking of non-customers is the telco part's ranking exactly, the calibration is
      ``sigmoid(E[z])`` (not ``E[sigmoid(z)]``) — thresholds are set on that scale.
    * SecureBoost — :func:`release_sb`: per tree, the tree with every subtree that holds no telco split
      collapsed by the bank to its expected value (one leaf), the remaining bank splits replaced by the
      share of bank customers that go left (conditional on the bank splits above them, ignoring the
      telco splits, which the bank cannot route), leaf values and shares rounded
      (``weight_decimals``, ``share_decimals``). The telco routes its own splits exactly and mixes at a
      bank split: the expected margin over the bank side given its own features.

What each party learns:
    * telco: LR — one scalar (the intercept plus the bank side's mean contribution); nothing of the
      bank's weights, features, labels or of any single customer. SecureBoost — where in each tree the
      bank's splits sit relative to its own (not their feature or threshold), the rounded share of bank
      customers going left at a bank split that has a telco split below it, and rounded leaf values /
      expected values of bank-only subtrees: aggregates over the bank's training population, which
      (like any released model) say something about the label rate in regions cut by the telco's own
      features. Never a row, an identifier or a score of anyone.
    * bank: nothing from this module (it sends the release and receives nothing back here).

Scoring is vectorised numpy over row batches (:func:`iter_standalone_scores` streams, holding one batch
at a time). A missing telco feature is the training mean for LR (0 after scaling) and goes right at a
SecureBoost split (NaN ``<=`` threshold is false), as in federated scoring.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from protocols.vfl.model_parts import FeatureScaling, LrPart, ModelCard, SbActivePart, SbNodePart, SbPassivePart
from protocols.wire.errors import ConfigError, RemoteProtocolError

__all__ = [
    "LrRelease",
    "SbRelease",
    "SbReleaseNode",
    "StandaloneLr",
    "StandalonePart",
    "StandaloneRelease",
    "StandaloneSb",
    "iter_standalone_scores",
    "release_for",
    "release_lr",
    "release_sb",
    "score_standalone",
    "standalone_part",
]

FloatArray = npt.NDArray[np.float64]
DEFAULT_WEIGHT_DECIMALS = 3
DEFAULT_SHARE_DECIMALS = 2


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- the release (bank → telco) --------------------------------------------------------------------


class LrRelease(_Frozen):
    """Hetero LR: the one scalar the telco needs besides its own weights."""

    algo: Literal["hetero_lr"] = "hetero_lr"
    model_id: str
    offset: float = Field(allow_inf_nan=False)


class SbReleaseNode(_Frozen):
    """One node of a released tree.

    ``leaf``: ``weight`` (a leaf, or a collapsed bank-only subtree's expected value); ``telco_split``: the
    telco routes with its own ``(feature, threshold)`` for ``(tree, node)``; ``bank_share``: a bank split,
    ``p_left`` of the bank's customers (reaching it by the bank splits above) go left.
    """

    node: int = Field(ge=0)
    kind: Literal["leaf", "telco_split", "bank_share"]
    weight: float | None = Field(default=None, allow_inf_nan=False)
    p_left: float | None = Field(default=None, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if (self.kind == "leaf") != (self.weight is not None):
            raise ValueError("a leaf (and only a leaf) carries a weight")
        if (self.kind == "bank_share") != (self.p_left is not None):
            raise ValueError("a bank split (and only one) carries p_left")
        return self


class SbRelease(_Frozen):
    """SecureBoost: the trees as the telco may route them alone."""

    algo: Literal["secureboost"] = "secureboost"
    model_id: str
    base_margin: float = Field(allow_inf_nan=False)
    trees: list[list[SbReleaseNode]]

    @model_validator(mode="after")
    def _check(self) -> Self:
        for t, tree in enumerate(self.trees):
            ids = {n.node for n in tree}
            if len(ids) != len(tree) or 0 not in ids:
                raise ValueError(f"tree {t}: node ids repeat or the root is missing")
            for n in tree:
                children = {2 * n.node + 1, 2 * n.node + 2}
                if n.kind != "leaf" and not children <= ids:
                    raise ValueError(f"tree {t}: node {n.node} lacks a child")
        return self

    def telco_splits(self) -> set[tuple[int, int]]:
        """``(tree, node)`` of every split the telco routes."""
        return {(t, n.node) for t, tree in enumerate(self.trees) for n in tree if n.kind == "telco_split"}


StandaloneRelease = Annotated[LrRelease | SbRelease, Field(discriminator="algo")]


def release_lr(model_id: str, part: LrPart, bank_features: npt.ArrayLike) -> LrRelease:
    """The bank's release for an LR model: ``intercept + mean(prepared bank features) · weights``.

    Args:
        model_id: the model's id (both parties' cards carry it).
        part: the bank's active part (weights, intercept, scaling).
        bank_features: the bank population's rows, columns in the card's feature order (the bank's
            customers; its training rows give the mean the model was fitted around).
    """
    x = _lr_prepared(part, bank_features)
    if x.shape[0] == 0:
        raise ConfigError("the release needs at least one bank row")
    mean_u = float(x.mean(axis=0) @ np.asarray(part.weights, dtype=np.float64))
    return LrRelease(model_id=model_id, offset=float(part.intercept or 0.0) + mean_u)


def release_sb(model_id: str, part: SbActivePart, bank_features: npt.ArrayLike, *,
               weight_decimals: int = DEFAULT_WEIGHT_DECIMALS,
               share_decimals: int = DEFAULT_SHARE_DECIMALS) -> SbRelease:
    """The bank's release for a SecureBoost model (see the module docstring).

    Args:
        model_id: the model's id.
        part: the bank's active part.
        bank_features: the bank population's rows, columns in the card's feature order.
        weight_decimals: decimals kept of a released leaf value.
        share_decimals: decimals kept of a released share ``p_left``.
    """
    x = np.asarray(bank_features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ConfigError("the release needs a non-empty matrix of bank rows")
    trees = [_release_tree(tree, x, weight_decimals, share_decimals) for tree in part.trees]
    return SbRelease(model_id=model_id, base_margin=round(part.base_margin, weight_decimals), trees=trees)


def release_for(card: ModelCard, part: dict[str, Any], bank_features: npt.ArrayLike, *,
                weight_decimals: int = DEFAULT_WEIGHT_DECIMALS,
                share_decimals: int = DEFAULT_SHARE_DECIMALS) -> LrRelease | SbRelease:
    """The bank's release for its stored active part (JSON as the model store keeps it).

    Raises:
        ConfigError: the card is not the bank's (active) part.
    """
    if card.role != "active":
        raise ConfigError(f"model {card.model_id}: only the active party (the bank) releases")
    own = {k: v for k, v in part.items() if k != "fallback"}
    if card.algo == "hetero_lr":
        return release_lr(card.model_id, LrPart.model_validate(own), bank_features)
    return release_sb(card.model_id, SbActivePart.model_validate(own), bank_features,
                      weight_decimals=weight_decimals, share_decimals=share_decimals)


@dataclass
class _Sub:
    """A subtree while the bank builds the release: its expected value and whether the telco splits in it."""

    value: float
    has_telco: bool


def _release_tree(tree: Sequence[SbNodePart], x: FloatArray, wd: int, sd: int) -> list[SbReleaseNode]:
    nodes = {n.node: n for n in tree}
    out: list[SbReleaseNode] = []

    def walk(node_id: int, rows: npt.NDArray[np.bool_]) -> _Sub:
        n = nodes[node_id]
        if n.kind == "leaf":
            return _Sub(float(n.weight or 0.0), False)
        if n.kind == "passive_party":
            left, right = walk(2 * node_id + 1, rows), walk(2 * node_id + 2, rows)
            for child, sub in ((2 * node_id + 1, left), (2 * node_id + 2, right)):
                _emit_if_collapsed(child, sub)
            out.append(SbReleaseNode(node=node_id, kind="telco_split"))
            return _Sub(0.5 * (left.value + right.value), True)
        assert n.feature is not None and n.threshold is not None
        goes_left = x[:, n.feature] <= n.threshold
        reach = int(rows.sum())
        p = float((rows & goes_left).sum() / reach) if reach else 0.5
        left, right = walk(2 * node_id + 1, rows & goes_left), walk(2 * node_id + 2, rows & ~goes_left)
        if not (left.has_telco or right.has_telco):
            return _Sub(p * left.value + (1.0 - p) * right.value, False)
        for child, sub in ((2 * node_id + 1, left), (2 * node_id + 2, right)):
            _emit_if_collapsed(child, sub)
        out.append(SbReleaseNode(node=node_id, kind="bank_share", p_left=round(p, sd)))
        return _Sub(p * left.value + (1.0 - p) * right.value, True)

    def _emit_if_collapsed(child: int, sub: _Sub) -> None:
        if not sub.has_telco:
            out.append(SbReleaseNode(node=child, kind="leaf", weight=round(sub.value, wd)))

    root = walk(0, np.ones(x.shape[0], dtype=bool))
    if not root.has_telco:
        out.append(SbReleaseNode(node=0, kind="leaf", weight=round(root.value, wd)))
    return sorted(out, key=lambda n: n.node)


# --- what the telco holds for scoring --------------------------------------------------------------


@dataclass(frozen=True)
class StandaloneLr:
    """The telco's LR scorer: its own weights and scaling, plus the bank's released offset."""

    weights: FloatArray
    offset: float
    scaling: FeatureScaling | None = None

    @property
    def width(self) -> int:
        """Telco feature columns expected."""
        return len(self.weights)


@dataclass(frozen=True)
class _SbTree:
    """One compiled tree: the telco splits it routes on and its expected value per outcome of them.

    ``splits[j]`` indexes the part's distinct telco splits; ``table[code]`` is the tree's expected leaf
    value when bit ``j`` of ``code`` says split ``j`` goes left (bank splits mixed in with their shares).
    """

    splits: tuple[int, ...]
    table: FloatArray


@dataclass(frozen=True)
class StandaloneSb:
    """The telco's SecureBoost scorer: released trees with its own splits filled in, compiled to tables.

    Attributes:
        base_margin: the released base margin.
        features: feature index of each distinct telco split.
        thresholds: threshold of each distinct telco split.
        trees: the compiled trees.
        width: telco feature columns expected.
    """

    base_margin: float
    features: tuple[int, ...]
    thresholds: tuple[float, ...]
    trees: tuple[_SbTree, ...]
    width: int



StandalonePart = StandaloneLr | StandaloneSb


def standalone_part(card: ModelCard, part: dict[str, Any], release: LrRelease | SbRelease) -> StandalonePart:
    """The telco's scorer from its own stored passive part and the bank's release.

    Raises:
        ConfigError: the card is not the telco's passive part.
        RemoteProtocolError: the release names another model or does not match the telco's part.
    """
    if card.role != "passive":
        raise ConfigError(f"model {card.model_id} on this node is not a passive part")
    if release.model_id != card.model_id:
        raise RemoteProtocolError(f"the release is for model {release.model_id}, not {card.model_id}")
    if card.algo == "hetero_lr":
        if not isinstance(release, LrRelease):
            raise RemoteProtocolError("an LR model needs an LR release")
        lr = LrPart.model_validate(part)
        if len(lr.weights) != len(card.features):
            raise ConfigError(f"model {card.model_id}: the part's weights do not match the card")
        return StandaloneLr(np.asarray(lr.weights, dtype=np.float64), release.offset, lr.scaling)
    if not isinstance(release, SbRelease):
        raise RemoteProtocolError("a SecureBoost model needs a SecureBoost release")
    own = SbPassivePart.model_validate(part).model().splits
    unknown = release.telco_splits() - set(own)
    if unknown:
        raise RemoteProtocolError(f"the release names telco splits this part does not hold: {sorted(unknown)[:3]}")
    distinct: dict[tuple[int, float], int] = {}
    trees = tuple(_compile(t, tree, own, distinct) for t, tree in enumerate(release.trees))
    return StandaloneSb(release.base_margin, tuple(f for f, _ in distinct), tuple(v for _, v in distinct), trees,
                        len(card.features))


_MAX_TREE_SPLITS = 16
"""Telco splits one tree may route on (its table has 2**this entries); depth <= 4 always fits."""


def _compile(t: int, tree: list[SbReleaseNode], own: dict[tuple[int, int], tuple[int, float]],
             distinct: dict[tuple[int, float], int]) -> _SbTree:
    nodes = {n.node: n for n in tree}
    order = sorted(n.node for n in tree if n.kind == "telco_split")
    if len(order) > _MAX_TREE_SPLITS:
        raise ConfigError(f"tree {t} routes on {len(order)} telco splits; telco-alone scoring takes at most "
                          f"{_MAX_TREE_SPLITS} per tree (train with max_depth <= 4)")
    position = {node: j for j, node in enumerate(order)}
    splits = tuple(distinct.setdefault(own[(t, node)], len(distinct)) for node in order)

    def value(node_id: int, code: int) -> float:
        n = nodes[node_id]
        if n.kind == "leaf":
            return float(n.weight or 0.0)
        if n.kind == "telco_split":
            return value(2 * node_id + (1 if (code >> position[node_id]) & 1 else 2), code)
        p = float(n.p_left or 0.0)
        return p * value(2 * node_id + 1, code) + (1.0 - p) * value(2 * node_id + 2, code)

    table = np.array([value(0, code) for code in range(1 << len(order))], dtype=np.float64)
    return _SbTree(splits, table)


# --- scoring ---------------------------------------------------------------------------------------


def score_standalone(part: StandalonePart, x: npt.ArrayLike) -> FloatArray:
    """Propensity of each row (telco features in the card's column order), at the telco alone.

    Raises:
        ConfigError: ``x`` is not a matrix of the part's width.
    """
    rows = np.asarray(x, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != part.width:
        got = rows.shape[1] if rows.ndim == 2 else "a non-matrix"
        raise ConfigError(f"telco-alone scoring needs {part.width} feature columns, got {got}")
    margin = _lr_margin(part, rows) if isinstance(part, StandaloneLr) else _sb_margin(part, rows)
    out: FloatArray = 1.0 / (1.0 + np.exp(-margin))
    return out


def iter_standalone_scores(part: StandalonePart, batches: Iterable[npt.ArrayLike]) -> Iterator[FloatArray]:
    """Score a stream of row batches, one batch in memory at a time."""
    for batch in batches:
        yield score_standalone(part, batch)


def _lr_prepared(part: LrPart, features: npt.ArrayLike) -> FloatArray:
    x = part.prepare(features)
    if x.ndim != 2 or x.shape[1] != len(part.weights):
        raise ConfigError(f"the LR part needs {len(part.weights)} feature columns")
    return np.where(np.isnan(x), 0.0, x)


_CHUNK_ROWS = 16_384
"""Rows scored at a time inside one call: the working set stays in cache."""


def _dot_rows(x: FloatArray, w: FloatArray) -> FloatArray:
    """``x · w`` per row, one column at a time: the same bits for a row whatever batch it is scored in.

    A BLAS matrix-vector product may add in another order depending on the matrix's size and alignment,
    which changes the last bit of some rows between batchings (pool, Spark partitions, one call).
    """
    out: FloatArray = np.zeros(x.shape[0], dtype=np.float64)
    for j in range(x.shape[1]):
        out += x[:, j] * w[j]
    return out


def _lr_margin(part: StandaloneLr, x: FloatArray) -> FloatArray:
    """``offset + ((x - mean) / scale) · w``, folded into one product; a missing cell contributes 0."""
    w, shift = part.weights, 0.0
    if part.scaling is not None:
        w = part.weights / np.asarray(part.scaling.scale)
        shift = float(np.asarray(part.scaling.mean) @ w)
    margin: FloatArray = _dot_rows(x, w) + (part.offset - shift)
    bad = np.isnan(margin)
    if bad.any():
        rows = x[bad]
        mean = np.zeros(part.width) if part.scaling is None else np.asarray(part.scaling.mean)
        margin[bad] = _dot_rows(np.where(np.isnan(rows), 0.0, rows - mean), w) + part.offset
    return margin


def _sb_margin(part: StandaloneSb, x: FloatArray) -> FloatArray:
    """Each tree's table entry at the code its telco splits give (bit ``j``: split ``j`` goes left).

    Every distinct split is compared once per chunk of rows; codes are built with in-place integer ops
    (no temporary per split), so the working set stays in cache and no BLAS threads are involved.
    """
    margin = np.full(x.shape[0], part.base_margin)
    for start in range(0, x.shape[0], _CHUNK_ROWS):
        cols = np.ascontiguousarray(x[start : start + _CHUNK_ROWS].T)
        m = cols.shape[1]
        left = np.empty((len(part.features), m), dtype=np.uint16)
        for u, (f, v) in enumerate(zip(part.features, part.thresholds, strict=True)):
            np.less_equal(cols[f], v, out=left[u], casting="unsafe")
        out = margin[start : start + m]
        code, shifted = np.empty(m, dtype=np.uint16), np.empty(m, dtype=np.uint16)
        for tree in part.trees:
            code.fill(0)
            for j, u in enumerate(tree.splits):
                np.left_shift(left[u], j, out=shifted)
                np.bitwise_or(code, shifted, out=code)
            out += tree.table[code]
    return margin
