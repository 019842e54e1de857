"""Plaintext tree logic shared by the SecureBoost parties and its plain reference implementation.

Gradients and hessians are fixed-point integers (mantissas at exponent ``GH_EXPONENT``, base 16), so
the federated path (sums decrypted from ciphertexts) and the plain reference (sums in numpy) see the
very same integers and pick the very same splits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from protocols.vfl._binning import QuantileBins

__all__ = [
    "GH_EXPONENT",
    "CandidateSums",
    "SbActiveModel",
    "SbConfig",
    "SbPassiveModel",
    "TreeNode",
    "best_split",
    "canonical_bin",
    "gh_mantissas",
    "leaf_weight",
    "own_candidate_sums",
    "predict_margin",
    "train_plain_secureboost",
]

GH_EXPONENT = -8
"""Fixed-point exponent (base 16) of gradients and hessians: precision ``2**-32``."""

_SCALE = 2.0 ** (4 * GH_EXPONENT)
_EPS = 1e-6  # XGBoost's kRtEps: a split must reduce the loss by more than this

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class SbConfig:
    """SecureBoost hyper-parameters (XGBoost names and meaning).

    Attributes:
        n_trees: boosting rounds.
        max_depth: depth of every tree (levels of splits).
        n_bins: quantile bins per feature.
        learning_rate: shrinkage ``eta``.
        reg_lambda: L2 penalty on leaf weights.
        min_child_weight: least hessian sum in a child.
        gamma: least loss reduction of a split.
        allow_insecure_test_key: accept Paillier keys under 2048 bits. Tests only.
    """

    n_trees: int = 30
    max_depth: int = 3
    n_bins: int = 32
    learning_rate: float = 0.3
    reg_lambda: float = 1.0
    min_child_weight: float = 1.0
    gamma: float = 0.0
    allow_insecure_test_key: bool = False


@dataclass(frozen=True)
class TreeNode:
    """One node as the active party stores it; passive splits keep only their owner."""

    node: int
    kind: Literal["leaf", "active_party", "passive_party"]
    feature: int | None = None
    threshold: float | None = None
    weight: float | None = None


@dataclass(frozen=True)
class SbActiveModel:
    """The active party's model: every tree's shape, its own splits and all leaf weights."""

    base_margin: float
    trees: tuple[tuple[TreeNode, ...], ...]


@dataclass(frozen=True)
class SbPassiveModel:
    """The passive party's model: ``(tree, node) -> (feature, threshold)`` of its splits."""

    splits: dict[tuple[int, int], tuple[int, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class CandidateSums:
    """Left-child sums ``(G_L, H_L, count_L)`` of candidate splits, as mantissas."""

    g: IntArray
    h: IntArray
    count: IntArray

    @classmethod
    def concat(cls, parts: list[CandidateSums]) -> CandidateSums:
        """Join candidate lists in order."""
        return cls(*(np.concatenate([getattr(p, a) for p in parts]) for a in ("g", "h", "count")))


def gh_mantissas(margin: FloatArray, labels: FloatArray) -> tuple[IntArray, IntArray]:
    """Logistic-loss gradient and hessian at ``margin``, as mantissas at :data:`GH_EXPONENT`."""
    p = 1.0 / (1.0 + np.exp(-margin))
    g = p - labels
    h = np.maximum(p * (1.0 - p), 1e-16)
    return np.rint(g / _SCALE).astype(np.int64), np.rint(h / _SCALE).astype(np.int64)


def own_candidate_sums(
    bins: npt.NDArray[np.int32], n_candidates: tuple[int, ...], g: IntArray, h: IntArray
) -> CandidateSums:
    """Cumulative left sums of every ``(feature, bin)`` candidate over the given rows (plaintext)."""
    parts: list[CandidateSums] = []
    for j, k in enumerate(n_candidates):
        b = bins[:, j]
        sums = [np.bincount(b, weights=w, minlength=k + 1)[:k] for w in (g, h, None)]
        parts.append(CandidateSums(*(np.cumsum(np.rint(s).astype(np.int64)) for s in sums)))
    if not parts:
        empty = np.zeros(0, np.int64)
        return CandidateSums(empty, empty, empty)
    return CandidateSums.concat(parts)


def _score(g: FloatArray, h: FloatArray, lam: float) -> FloatArray:
    return g * g / (h + lam)


def best_split(total: tuple[int, int, int], cands: CandidateSums, config: SbConfig) -> tuple[int, float] | None:
    """Return ``(index, gain)`` of the best admissible candidate (first on ties), or ``None``."""
    if len(cands.g) == 0:
        return None
    g_all, h_all, n_all = total
    gl, hl = cands.g.astype(np.float64) * _SCALE, cands.h.astype(np.float64) * _SCALE
    gr = (g_all - cands.g).astype(np.float64) * _SCALE
    hr = (h_all - cands.h).astype(np.float64) * _SCALE
    lam = config.reg_lambda
    parent = float(g_all * _SCALE) ** 2 / (h_all * _SCALE + lam)
    gain = 0.5 * (_score(gl, hl, lam) + _score(gr, hr, lam) - parent) - config.gamma
    ok = (hl >= config.min_child_weight) & (hr >= config.min_child_weight)
    ok &= (cands.count > 0) & (cands.count < n_all) & (gain > _EPS)
    if not ok.any():
        return None
    gain = np.where(ok, gain, -np.inf)
    index = int(np.argmax(gain))
    return index, float(gain[index])


def leaf_weight(g_sum: int, h_sum: int, config: SbConfig) -> float:
    """Shrunk Newton step ``-eta * G / (H + lambda)``."""
    return -config.learning_rate * (g_sum * _SCALE) / (h_sum * _SCALE + config.reg_lambda)


def canonical_bin(column_bins: npt.NDArray[np.int32], b: int) -> int:
    """The largest bin ``<= b`` that a row of the node falls in: same left set, one canonical cut.

    Candidates between the same two observed bins split the node's rows identically and tie; taking
    the largest observed bin makes the chosen threshold independent of the (shuffled) candidate order.
    """
    observed = column_bins[column_bins <= b]
    return int(observed.max()) if observed.size else b


def predict_margin(
    model: SbActiveModel,
    active_features: npt.ArrayLike,
    go_left_passive: dict[tuple[int, int], npt.NDArray[np.bool_]],
    config: SbConfig,
) -> FloatArray:
    """Route rows through every tree (passive decisions given as per-node row masks)."""
    x = np.asarray(active_features, dtype=np.float64)
    margin = np.full(x.shape[0], model.base_margin)
    for t, tree in enumerate(model.trees):
        nodes = {n.node: n for n in tree}
        position = np.zeros(x.shape[0], dtype=np.int64)
        for _ in range(config.max_depth + 1):
            for node_id in np.unique(position):
                node = nodes[int(node_id)]
                at = position == node_id
                if node.kind == "leaf":
                    continue
                if node.kind == "active_party":
                    assert node.feature is not None and node.threshold is not None
                    left = x[:, node.feature] <= node.threshold
                else:
                    left = go_left_passive[(t, node.node)]
                position[at] = np.where(left[at], 2 * node_id + 1, 2 * node_id + 2)
        margin += np.array([nodes[int(p)].weight for p in position])
    return margin


def base_margin(labels: FloatArray) -> float:
    """Log-odds of the label mean (XGBoost's ``base_score`` for logistic loss)."""
    p = float(np.clip(labels.mean(), 1e-6, 1 - 1e-6))
    return math.log(p / (1 - p))


def train_plain_secureboost(
    config: SbConfig, active_features: npt.ArrayLike, labels: npt.ArrayLike, passive_features: npt.ArrayLike
) -> tuple[SbActiveModel, SbPassiveModel]:
    """Reference: the same algorithm without encryption (one process holds everything).

    Candidates are evaluated active first, then passive in ``(feature, bin)`` order; ties within a
    feature resolve through :func:`canonical_bin`, so the federated run yields identical trees.
    """
    xa, xp = np.asarray(active_features, np.float64), np.asarray(passive_features, np.float64)
    y = np.asarray(labels, np.float64)
    sides = [QuantileBins.fit(xa, config.n_bins), QuantileBins.fit(xp, config.n_bins)]
    bins = [sides[0].transform(xa), sides[1].transform(xp)]
    margin = np.full(len(y), base_margin(y))
    trees: list[tuple[TreeNode, ...]] = []
    passive = SbPassiveModel()
    for t in range(config.n_trees):
        g, h = gh_mantissas(margin, y)
        nodes: list[TreeNode] = []
        open_nodes = {0: np.arange(len(y))}
        for depth in range(config.max_depth + 1):
            next_nodes: dict[int, npt.NDArray[np.int64]] = {}
            for node_id, rows in open_nodes.items():
                total = (int(g[rows].sum()), int(h[rows].sum()), len(rows))
                found = None
                if depth < config.max_depth:
                    per_side = [
                        own_candidate_sums(b[rows], s.n_candidates, g[rows], h[rows])
                        for b, s in zip(bins, sides, strict=True)
                    ]
                    found = best_split(total, CandidateSums.concat(per_side), config)
                if found is None:
                    nodes.append(TreeNode(node_id, "leaf", weight=leaf_weight(total[0], total[1], config)))
                    margin[rows] += nodes[-1].weight or 0.0
                    continue
                side, feature, b = _locate(found[0], [s.n_candidates for s in sides])
                cb = canonical_bin(bins[side][rows, feature], b)
                threshold = float(sides[side].edges[feature][cb])
                left = bins[side][rows, feature] <= cb
                kind: Literal["active_party", "passive_party"] = "active_party" if side == 0 else "passive_party"
                nodes.append(TreeNode(node_id, kind, feature if side == 0 else None, threshold if side == 0 else None))
                if side == 1:
                    passive.splits[(t, node_id)] = (feature, threshold)
                next_nodes[2 * node_id + 1], next_nodes[2 * node_id + 2] = rows[left], rows[~left]
            open_nodes = next_nodes
        trees.append(tuple(sorted(nodes, key=lambda n: n.node)))
    return SbActiveModel(base_margin(y), tuple(trees)), passive


def _locate(index: int, n_candidates: list[tuple[int, ...]]) -> tuple[int, int, int]:
    """Map a flat candidate index to ``(side, feature, bin)``."""
    for side, counts in enumerate(n_candidates):
        for feature, k in enumerate(counts):
            if index < k:
                return side, feature, index
            index -= k
    raise IndexError("candidate index out of range")
