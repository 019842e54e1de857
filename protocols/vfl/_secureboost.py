"""SecureBoost (Cheng et al. 2019): gradient-boosted trees over vertically split data, no arbiter.

Parties:
    * ``active_party`` (bank): labels, its features, and its own Paillier key pair.
    * ``passive_party`` (telco): its features.

Rounds of tree ``t`` (depth ``D``; one round trip per level, ``D + 1`` per tree):
    1. ``SbTreeStart`` active → passive: one packed ciphertext ``[[g_i | h_i | 0]]`` per row (public key
       and packing layout with tree 0).
    2. ``SbHistograms`` passive → active: for every open node of the level, the *cumulative* encrypted
       sums ``(G_L, H_L, count_L)`` of every candidate split (quantile bins of each passive feature),
       several candidates packed per ciphertext, candidates shuffled behind opaque ``split_id``s, and
       every ciphertext re-randomised. The larger child of a split is derived as parent minus the
       smaller child (histogram subtraction). The same message carries the left sets of the
       passive's winning splits of the previous level.
    3. ``SbLevelSplits`` active → passive: per node, either the passive ``split_id`` that won or the
       left set of the active's own winning split; unlisted nodes became leaves. Back to 2 for the
       next level; after the last level the passive answers with left sets only and the active starts
       the next tree (``SbTreeStart``) or ends (``SbTrainingDone``).

    Scoring: ``SbPredictRequest`` active → passive; ``SbPredictReply`` passive → active with, for each
    passive split of the model, the bitmap of scoring rows it sends left.

What each party learns:
    * active party: for each candidate of each node, the passive's left sums ``(G_L, H_L)`` and left
      *count*, without the feature or threshold (split ids are shuffled per node and meaningless
      across nodes). It learns, however, which of the shuffled candidates form a monotone chain, so the
      grouping of candidates into features could be guessed; and for each winning passive split the
      exact left set, hence the partition of the training rows (and of scoring rows) by the passive's
      splits. It holds every leaf weight.
    * passive party: the packed ciphertexts only, and the instance space of every node (which rows
      reach it) — the standard SecureBoost leakage. It never sees a gradient, a label or a leaf weight.

Threat model: semi-honest parties. The active party holds the private key; the passive re-randomises
every ciphertext it returns so that their randomness does not reveal which rows were summed. Inputs
are validated on entry (codec unit checks, lengths, known node and split ids, bitmap sizes), and
out-of-stage messages raise before any work.
"""

from __future__ import annotations

import math
import sys
from enum import StrEnum

import numpy as np
import numpy.typing as npt
import phe
from gmpy2 import mpz

from protocols.crypto.paillier import (
    DEFAULT_PARALLEL_THRESHOLD,
    Decryptor,
    EncryptedVector,
    Encryptor,
    PackingScheme,
    ParallelPaillier,
)
from protocols.vfl._binning import QuantileBins
from protocols.vfl._crypto import decode_vector, encode_vector, public_key_from_bytes, public_key_to_bytes
from protocols.vfl._sb_tree import (
    GH_EXPONENT,
    CandidateSums,
    SbActiveModel,
    SbConfig,
    SbPassiveModel,
    TreeNode,
    base_margin,
    best_split,
    canonical_bin,
    gh_mantissas,
    leaf_weight,
    own_candidate_sums,
    predict_margin,
)
from protocols.wire.errors import LocalProtocolError, RemoteProtocolError
from protocols.wire.stages import dispatch
from protocols.wire.training import (
    SbHistograms,
    SbLeftSet,
    SbLevelSplits,
    SbNodeDecision,
    SbNodeHistogram,
    SbPacking,
    SbPredictReply,
    SbPredictRequest,
    SbRoute,
    SbTrainingDone,
    SbTreeStart,
    VflRole,
)

__all__ = [
    "SB_RECEIVER",
    "SbActiveParty",
    "SbActiveStage",
    "SbMessage",
    "SbPassiveParty",
    "SbPassiveStage",
    "sb_active_predict_proba",
    "sb_passive_routes",
]

SbMessage = SbTreeStart | SbHistograms | SbLevelSplits | SbTrainingDone | SbPredictRequest | SbPredictReply

SB_RECEIVER: dict[str, VflRole] = {
    "sb_tree_start": VflRole.PASSIVE_PARTY,
    "sb_level_splits": VflRole.PASSIVE_PARTY,
    "sb_training_done": VflRole.PASSIVE_PARTY,
    "sb_predict_request": VflRole.PASSIVE_PARTY,
    "sb_histograms": VflRole.ACTIVE_PARTY,
    "sb_predict_reply": VflRole.ACTIVE_PARTY,
}
"""Who receives each SecureBoost message kind."""


class SbActiveStage(StrEnum):
    """Stages of the active party."""

    START = "start"
    AWAIT_HISTOGRAMS = "await_histograms"
    DONE = "done"


class SbPassiveStage(StrEnum):
    """Stages of the passive party."""

    AWAIT_TREE = "await_tree"
    AWAIT_SPLITS = "await_splits"
    DONE = "done"


def _dispatch(party: object, table: dict[tuple[StrEnum, str], str], stage: StrEnum, msg: SbMessage) -> list[SbMessage]:
    replies: list[SbMessage] = dispatch(party, table, stage, msg.kind, msg)
    return replies


def _bits(mask: npt.NDArray[np.bool_]) -> bytes:
    return np.packbits(mask).tobytes()


def _unbits(data: bytes, count: int) -> npt.NDArray[np.bool_]:
    """Decode a bitmap of exactly ``count`` entries (padding bits must be zero)."""
    if len(data) != (count + 7) // 8:
        raise RemoteProtocolError("bitmap has the wrong size")
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    if bits[count:].any():
        raise RemoteProtocolError("bitmap has stray padding bits")
    out: npt.NDArray[np.bool_] = bits[:count].astype(bool)
    return out


def _per_ciphertext(packing: PackingScheme, public_key: phe.PaillierPublicKey) -> int:
    return max(1, (int(public_key.n).bit_length() - 2) // (3 * packing.slot_bits))


def _check_tree(got: int, expected: int, depth: int | None = None, expected_depth: int | None = None) -> None:
    if got != expected or depth != expected_depth:
        raise RemoteProtocolError("message for another tree or level", status_hint=409)


def _split_children(
    rows: npt.NDArray[np.int64], left: npt.NDArray[np.bool_], node: int
) -> dict[int, npt.NDArray[np.int64]]:
    return {2 * node + 1: rows[left], 2 * node + 2: rows[~left]}


# --- passive party ---------------------------------------------------------------------------------


class SbPassiveParty:
    """The telco: builds encrypted histograms and keeps its splits secret."""

    role = VflRole.PASSIVE_PARTY

    _TRANSITIONS: dict[tuple[StrEnum, str], str] = {
        (SbPassiveStage.AWAIT_TREE, "sb_tree_start"): "_on_tree_start",
        (SbPassiveStage.AWAIT_TREE, "sb_training_done"): "_on_done",
        (SbPassiveStage.AWAIT_SPLITS, "sb_level_splits"): "_on_level_splits",
        (SbPassiveStage.AWAIT_SPLITS, "sb_tree_start"): "_on_tree_start",
        (SbPassiveStage.AWAIT_SPLITS, "sb_training_done"): "_on_done",
        (SbPassiveStage.DONE, "sb_predict_request"): "_on_predict_request",
    }

    def __init__(
        self,
        config: SbConfig,
        features: npt.ArrayLike,
        *,
        rng: np.random.Generator | None = None,
        scoring_features: npt.ArrayLike | None = None,
    ) -> None:
        """Hold the aligned training ``features`` (and optionally aligned ``scoring_features``).

        Args:
            config: shared hyper-parameters.
            features: training rows, aligned with the active party's.
            rng: shuffles split ids; ``None`` seeds from the OS. A predictable shuffle lets the active
                party map split ids back to features.
            scoring_features: rows to route on an ``SbPredictRequest`` (may be set later).
        """
        self.config = config
        self._x = np.asarray(features, dtype=np.float64)
        self._bins = QuantileBins.fit(self._x, config.n_bins)
        self._binned = self._bins.transform(self._x)
        self._rng = rng if rng is not None else np.random.default_rng()
        self.scoring_features = scoring_features
        self.stage = SbPassiveStage.AWAIT_TREE
        self._encryptor: Encryptor | None = None
        self._packing: PackingScheme | None = None
        self._gh: EncryptedVector | None = None
        self._tree = -1
        self._depth = 0
        self._members: dict[int, npt.NDArray[np.int64]] = {}
        self._hists: dict[int, EncryptedVector] = {}
        self._lookup: dict[int, dict[int, tuple[int, int]]] = {}
        self._model = SbPassiveModel()
        self._candidates = [(f, b) for f, k in enumerate(self._bins.n_candidates) for b in range(k)]

    def handle(self, msg: SbMessage) -> list[SbMessage]:
        """Process one message; raise :class:`RemoteProtocolError` if it is out of stage."""
        return _dispatch(self, self._TRANSITIONS, self.stage, msg)

    @property
    def _enc(self) -> Encryptor:
        if self._encryptor is None:
            raise LocalProtocolError("no public key yet")
        return self._encryptor

    def _on_tree_start(self, msg: SbMessage) -> list[SbMessage]:
        assert isinstance(msg, SbTreeStart)
        _check_tree(msg.tree, self._tree + 1)
        if msg.tree == 0:
            self._receive_setup(msg)
        self._gh = decode_vector(msg.encrypted_gh, self._enc.public_key, max_count=len(self._x))
        if len(self._gh) != len(self._x) or self._gh.exponent != 0:
            raise RemoteProtocolError("encrypted gradients do not match the training rows")
        self._tree, self._depth = msg.tree, 0
        self._members = {0: np.arange(len(self._x))}
        self._hists = {0: self._histogram(self._members[0])}
        self.stage = SbPassiveStage.AWAIT_SPLITS
        return [self._reply([])]

    def _receive_setup(self, msg: SbTreeStart) -> None:
        if msg.public_key is None or msg.packing is None:
            raise RemoteProtocolError("first tree lacks the public key or packing")
        allow = self.config.allow_insecure_test_key
        public_key = public_key_from_bytes(msg.public_key, allow_insecure_test_key=allow)
        p = msg.packing
        if p.max_summands < len(self._x) or p.slots * p.slot_bits >= int(public_key.n).bit_length() - 1:
            raise RemoteProtocolError("packing layout does not fit the key or the rows")
        self._packing = PackingScheme(p.slots, p.slot_bits, p.exponent, p.offset, p.max_summands)
        self._encryptor = Encryptor(public_key, allow_insecure_test_key=allow)

    def _histogram(self, rows: npt.NDArray[np.int64]) -> EncryptedVector:
        """Cumulative encrypted sums of every candidate, in ``(feature, bin)`` order."""
        assert self._gh is not None
        cts = self._gh.ciphertexts
        out: list[mpz] = []
        for f, k in enumerate(self._bins.n_candidates):
            b = self._binned[rows, f]
            order = rows[np.argsort(b, kind="stable")]
            bounds = np.searchsorted(np.sort(b), np.arange(k + 1), side="right")
            acc = EncryptedVector(self._gh.public_key, (mpz(1),), 0)  # the trivial [[0]], never sent alone
            start = 0
            for stop in bounds[:k]:
                part = EncryptedVector(self._gh.public_key, tuple(cts[i] for i in order[start:stop]), 0)
                acc = acc + part.sum() if len(part) else acc
                out.append(acc.ciphertexts[0])
                start = int(stop)
        return EncryptedVector(self._gh.public_key, tuple(out), 0)

    def _node_histogram(self, node: int) -> SbNodeHistogram:
        """Shuffle, pack and re-randomise one node's candidates; remember the id lookup."""
        vector = self._hists[node]
        perm = self._rng.permutation(len(vector))
        self._lookup[node] = {i: self._candidates[int(c)] for i, c in enumerate(perm)}
        shuffled = EncryptedVector(vector.public_key, tuple(vector.ciphertexts[int(c)] for c in perm), 0)
        assert self._packing is not None
        per = _per_ciphertext(self._packing, vector.public_key)
        packed = self._enc.rerandomize(self._compress(shuffled, per))
        ids = np.arange(len(perm), dtype=">u4").tobytes()
        return SbNodeHistogram(node=node, split_ids=ids, per_ciphertext=per, encrypted_sums=encode_vector(packed))

    def _compress(self, vector: EncryptedVector, per: int) -> EncryptedVector:
        """Pack ``per`` candidates per ciphertext: ``c_0 * c_1**(2**w) * ...`` (Horner, ``w`` bits apart)."""
        assert self._packing is not None
        width = 3 * self._packing.slot_bits
        groups = math.ceil(len(vector) / per)
        zero = self._enc.encrypt_mantissas([0], 0)
        padded = vector.concat(EncryptedVector(vector.public_key, zero.ciphertexts * (groups * per - len(vector)), 0))
        acc = padded[per - 1 :: per]
        shift = np.array([1 << width] * groups, dtype=object)
        for j in range(per - 2, -1, -1):
            acc = acc.mul(shift, exponent=0) + padded[j::per]
        return acc

    def _on_level_splits(self, msg: SbMessage) -> list[SbMessage]:
        assert isinstance(msg, SbLevelSplits)
        _check_tree(msg.tree, self._tree, msg.depth, self._depth)
        left_sets: list[SbLeftSet] = []
        children: dict[int, npt.NDArray[np.int64]] = {}
        parents: dict[int, int] = {}
        for decision in msg.decisions:
            left = self._apply_decision(decision, left_sets)
            children |= _split_children(self._members[decision.node], left, decision.node)
            parents |= {2 * decision.node + 1: decision.node, 2 * decision.node + 2: decision.node}
        self._depth += 1
        self._members = children
        self._hists = self._child_histograms(children, parents) if self._depth < self.config.max_depth else {}
        self.stage = SbPassiveStage.AWAIT_SPLITS if self._hists else SbPassiveStage.AWAIT_TREE
        return [self._reply(left_sets)]

    def _apply_decision(self, decision: SbNodeDecision, left_sets: list[SbLeftSet]) -> npt.NDArray[np.bool_]:
        rows = self._members.get(decision.node)
        if rows is None or decision.node in {s.node for s in left_sets}:
            raise RemoteProtocolError("decision for an unknown or repeated node")
        if decision.owner is VflRole.ACTIVE_PARTY:
            if decision.left_bits is None:
                raise RemoteProtocolError("active split without a left set")
            return _unbits(decision.left_bits, len(rows))
        lookup = self._lookup.get(decision.node, {})
        if decision.split_id is None or decision.split_id not in lookup:
            raise RemoteProtocolError("unknown split id")
        feature, b = lookup[decision.split_id]
        cut = canonical_bin(self._binned[rows, feature], b)
        self._model.splits[(self._tree, decision.node)] = (feature, float(self._bins.edges[feature][cut]))
        left: npt.NDArray[np.bool_] = np.asarray(self._binned[rows, feature] <= cut, dtype=bool)
        left_sets.append(SbLeftSet(node=decision.node, left_bits=_bits(left)))
        return left

    def _child_histograms(
        self, children: dict[int, npt.NDArray[np.int64]], parents: dict[int, int]
    ) -> dict[int, EncryptedVector]:
        """Build the smaller child of each split; the larger is parent minus smaller."""
        hists: dict[int, EncryptedVector] = {}
        for left in sorted(c for c in children if c % 2 == 1):
            right = left + 1
            small, large = (left, right) if len(children[left]) <= len(children[right]) else (right, left)
            hists[small] = self._histogram(children[small])
            hists[large] = self._hists[parents[left]] - hists[small]
        return hists

    def _reply(self, left_sets: list[SbLeftSet]) -> SbHistograms:
        histograms = [self._node_histogram(node) for node in sorted(self._hists)]
        return SbHistograms(tree=self._tree, depth=self._depth, left_sets=left_sets, histograms=histograms)

    def _on_done(self, msg: SbMessage) -> list[SbMessage]:
        assert isinstance(msg, SbTrainingDone)
        if msg.n_trees != self._tree + 1:
            raise RemoteProtocolError("training ended with an unexpected tree count")
        self.stage = SbPassiveStage.DONE
        self._gh, self._hists, self._lookup = None, {}, {}
        return []

    def _on_predict_request(self, msg: SbMessage) -> list[SbMessage]:
        assert isinstance(msg, SbPredictRequest)
        if self.scoring_features is None:
            raise LocalProtocolError("no scoring rows set")
        reply = sb_passive_routes(self.result(), self.scoring_features)
        if len(np.asarray(self.scoring_features)) != msg.n_rows:
            raise RemoteProtocolError("scoring row counts differ")
        return [reply]

    def result(self) -> SbPassiveModel:
        """Return the passive's split table.

        Raises:
            LocalProtocolError: training has not finished.
        """
        if self.stage is not SbPassiveStage.DONE:
            raise LocalProtocolError("training has not finished")
        return self._model


def sb_passive_routes(model: SbPassiveModel, features: npt.ArrayLike) -> SbPredictReply:
    """Passive side of scoring: for each of its splits, which rows go left."""
    x = np.asarray(features, dtype=np.float64)
    routes = [
        SbRoute(tree=t, node=node, left_bits=_bits(x[:, feature] <= threshold))
        for (t, node), (feature, threshold) in sorted(model.splits.items())
    ]
    return SbPredictReply(routes=routes)


# --- active party ----------------------------------------------------------------------------------


class SbActiveParty:
    """The bank: holds labels and the private key, chooses every split, keeps every leaf weight."""

    role = VflRole.ACTIVE_PARTY

    _TRANSITIONS: dict[tuple[StrEnum, str], str] = {
        (SbActiveStage.AWAIT_HISTOGRAMS, "sb_histograms"): "_on_histograms",
    }

    def __init__(
        self,
        config: SbConfig,
        features: npt.ArrayLike,
        labels: npt.ArrayLike,
        private_key: phe.PaillierPrivateKey,
        *,
        workers: int = 0,
    ) -> None:
        """Hold aligned ``features``, 0/1 ``labels`` and the active party's own private key.

        Args:
            config: shared hyper-parameters.
            features: aligned feature rows.
            labels: 0/1 labels.
            private_key: the active party's own key pair (it encrypts with the CRT fast path).
            workers: worker processes for the per-tree encryption of ``(g, h)`` (0: all in this process).
        """
        self.config = config
        self._x = np.asarray(features, dtype=np.float64)
        self._y = np.asarray(labels, dtype=np.float64).reshape(-1)
        if self._x.shape[0] != len(self._y) or not np.isin(self._y, (0.0, 1.0)).all():
            raise LocalProtocolError("labels must be one 0/1 value per row")
        allow = config.allow_insecure_test_key
        self._public_key = private_key.public_key
        self._encryptor = Encryptor(
            self._public_key, window_bits=11, allow_insecure_test_key=allow, private_key=private_key
        )
        self._decryptor = Decryptor(private_key, allow_insecure_test_key=allow)
        self._pool = ParallelPaillier(
            self._encryptor,
            self._decryptor,
            workers=max(1, workers),
            threshold=DEFAULT_PARALLEL_THRESHOLD if workers > 0 else sys.maxsize,
        )
        self._packing = PackingScheme.create(
            self._public_key, slots=3, max_abs=1.0, exponent=GH_EXPONENT, max_summands=len(self._y)
        )
        self._bins = QuantileBins.fit(self._x, config.n_bins)
        self._binned = self._bins.transform(self._x)
        self._base = base_margin(self._y)
        self._margin = np.full(len(self._y), self._base)
        self.stage = SbActiveStage.START
        self._trees: list[tuple[TreeNode, ...]] = []
        self._tree = 0
        self._depth = 0
        self._nodes: list[TreeNode] = []
        self._members: dict[int, npt.NDArray[np.int64]] = {}
        self._pending: dict[int, SbNodeDecision] = {}
        self._g = self._h = np.zeros(0, np.int64)

    def start(self) -> list[SbMessage]:
        """Return the first tree's ``SbTreeStart`` (with the public key and packing layout).

        Raises:
            LocalProtocolError: called twice.
        """
        if self.stage is not SbActiveStage.START:
            raise LocalProtocolError("active party already started")
        self.stage = SbActiveStage.AWAIT_HISTOGRAMS
        return [self._tree_start()]

    def handle(self, msg: SbMessage) -> list[SbMessage]:
        """Process one message; raise :class:`RemoteProtocolError` if it is out of stage."""
        return _dispatch(self, self._TRANSITIONS, self.stage, msg)

    def _tree_start(self) -> SbTreeStart:
        self._g, self._h = gh_mantissas(self._margin, self._y)
        scale = 2.0 ** (4 * GH_EXPONENT)
        rows = np.stack([self._g * scale, self._h * scale, np.zeros(len(self._g))], axis=1)
        encrypted = self._pool.encrypt_mantissas(self._packing.pack(rows), 0)
        self._depth, self._nodes, self._pending = 0, [], {}
        self._members = {0: np.arange(len(self._y))}
        first = self._tree == 0
        p = self._packing
        return SbTreeStart(
            tree=self._tree,
            public_key=public_key_to_bytes(self._public_key) if first else None,
            packing=SbPacking(slot_bits=p.slot_bits, exponent=p.exponent, offset=p.offset, max_summands=p.max_summands)
            if first
            else None,
            encrypted_gh=encode_vector(encrypted),
        )

    def _on_histograms(self, msg: SbMessage) -> list[SbMessage]:
        assert isinstance(msg, SbHistograms)
        _check_tree(msg.tree, self._tree, msg.depth, self._depth)
        if self._depth > 0:
            self._members = self._open_children(msg.left_sets)
        hists = {h.node: h for h in msg.histograms}
        expected = set(self._members) if self._depth < self.config.max_depth else set()
        if set(hists) != expected or len(hists) != len(msg.histograms):
            raise RemoteProtocolError("histograms do not match the open nodes")
        decisions = [d for node in sorted(self._members) if (d := self._decide(node, hists.get(node)))]
        if not decisions:
            return self._finish_tree()
        self._pending = {d.node: d for d in decisions}
        self._depth += 1
        return [SbLevelSplits(tree=self._tree, depth=self._depth - 1, decisions=decisions)]

    def _open_children(self, left_sets: list[SbLeftSet]) -> dict[int, npt.NDArray[np.int64]]:
        passive_nodes = {n for n, d in self._pending.items() if d.owner is VflRole.PASSIVE_PARTY}
        given = {s.node: s.left_bits for s in left_sets}
        if set(given) != passive_nodes or len(given) != len(left_sets):
            raise RemoteProtocolError("left sets do not match the passive splits")
        children: dict[int, npt.NDArray[np.int64]] = {}
        for node, decision in self._pending.items():
            bits = given.get(node, decision.left_bits)
            assert bits is not None
            children |= _split_children(self._members[node], _unbits(bits, len(self._members[node])), node)
        return children

    def _decide(self, node: int, histogram: SbNodeHistogram | None) -> SbNodeDecision | None:
        """Best split of ``node`` across both parties, or ``None`` (the node becomes a leaf)."""
        rows = self._members[node]
        total = (int(self._g[rows].sum()), int(self._h[rows].sum()), len(rows))
        found = None
        if histogram is not None:
            own = own_candidate_sums(self._binned[rows], self._bins.n_candidates, self._g[rows], self._h[rows])
            theirs = self._decrypt_histogram(histogram)
            found = best_split(total, CandidateSums.concat([own, theirs]), self.config)
        if found is None:
            self._nodes.append(TreeNode(node, "leaf", weight=leaf_weight(total[0], total[1], self.config)))
            self._margin[rows] += self._nodes[-1].weight or 0.0
            return None
        index, n_own = found[0], len(own.g)
        if index >= n_own:
            self._nodes.append(TreeNode(node, "passive_party"))
            split_id = int(np.frombuffer(histogram.split_ids, dtype=">u4")[index - n_own])  # type: ignore[union-attr]
            return SbNodeDecision(node=node, owner=VflRole.PASSIVE_PARTY, split_id=split_id)
        feature, b = self._own_candidate(index)
        cut = canonical_bin(self._binned[rows, feature], b)
        self._nodes.append(TreeNode(node, "active_party", feature, float(self._bins.edges[feature][cut])))
        left = self._binned[rows, feature] <= cut
        return SbNodeDecision(node=node, owner=VflRole.ACTIVE_PARTY, left_bits=_bits(left))

    def _own_candidate(self, index: int) -> tuple[int, int]:
        for feature, k in enumerate(self._bins.n_candidates):
            if index < k:
                return feature, index
            index -= k
        raise IndexError("candidate index out of range")

    def _decrypt_histogram(self, histogram: SbNodeHistogram) -> CandidateSums:
        """Decrypt and unpack one node's candidates (in split-id order)."""
        ids = np.frombuffer(histogram.split_ids, dtype=">u4") if len(histogram.split_ids) % 4 == 0 else None
        per = histogram.per_ciphertext
        if ids is None or per > _per_ciphertext(self._packing, self._public_key) or len(set(ids.tolist())) != len(ids):
            raise RemoteProtocolError("invalid histogram layout")
        vector = decode_vector(histogram.encrypted_sums, self._public_key, max_count=len(ids))
        if len(vector) != math.ceil(len(ids) / per) or vector.exponent != 0:
            raise RemoteProtocolError("invalid histogram layout")
        raw = self._decryptor.decrypt_raw_vector(vector)
        if any(p.bit_length() > per * 3 * self._packing.slot_bits for p in raw):
            raise RemoteProtocolError("histogram does not decode")
        slots = [s for p in raw for s in _chunks(p, 3 * self._packing.slot_bits, per)][: len(ids)]
        return self._unpack_candidates(slots)

    def _unpack_candidates(self, packed: list[int]) -> CandidateSums:
        sb, offset = self._packing.slot_bits, self._packing.offset
        mask = (1 << sb) - 1
        g, h, count = [], [], []
        for value in packed:
            zero = (value >> (2 * sb)) & mask
            k, rest = divmod(zero, offset)
            gm, hm = (value & mask) - k * offset, ((value >> sb) & mask) - k * offset
            if rest or k > self._packing.max_summands or abs(gm) > k * (offset - 1) or not 0 <= hm <= k * (offset - 1):
                raise RemoteProtocolError("histogram does not decode")
            g.append(gm)
            h.append(hm)
            count.append(k)
        return CandidateSums(np.array(g, np.int64), np.array(h, np.int64), np.array(count, np.int64))

    def _finish_tree(self) -> list[SbMessage]:
        for node in sorted(set(self._members) - {n.node for n in self._nodes}):
            self._decide(node, None)
        self._trees.append(tuple(sorted(self._nodes, key=lambda n: n.node)))
        self._tree += 1
        if self._tree >= self.config.n_trees:
            self.stage = SbActiveStage.DONE
            self.close()
            return [SbTrainingDone(n_trees=self._tree)]
        return [self._tree_start()]

    def close(self) -> None:
        """Stop the worker processes, if any (idempotent; also done when training ends)."""
        self._pool.close()

    def result(self) -> SbActiveModel:
        """Return the trees (own splits, passive placeholders, leaf weights).

        Raises:
            LocalProtocolError: training has not finished.
        """
        if self.stage is not SbActiveStage.DONE:
            raise LocalProtocolError("training has not finished")
        return SbActiveModel(self._base, tuple(self._trees))

    @property
    def train_margin(self) -> npt.NDArray[np.float64]:
        """The training rows' current margins (the active party's own view)."""
        return self._margin.copy()


def _chunks(value: int, width: int, count: int) -> list[int]:
    mask = (1 << width) - 1
    return [(value >> (j * width)) & mask for j in range(count)]


def sb_active_predict_proba(
    model: SbActiveModel, config: SbConfig, features: npt.ArrayLike, reply: SbPredictReply
) -> npt.NDArray[np.float64]:
    """Active side of scoring: route rows with its own splits and the passive's bitmaps.

    Raises:
        RemoteProtocolError: a passive split of the model has no (or a malformed) route.
    """
    x = np.asarray(features, dtype=np.float64)
    routes = {(r.tree, r.node): _unbits(r.left_bits, x.shape[0]) for r in reply.routes}
    needed = {(t, n.node) for t, tree in enumerate(model.trees) for n in tree if n.kind == "passive_party"}
    if set(routes) != needed:
        raise RemoteProtocolError("routes do not match the model's passive splits")
    return 1.0 / (1.0 + np.exp(-predict_margin(model, x, routes, config)))
