"""Federated scoring, sans I/O: the bank (active party) asks, the telco (passive party) answers, once.

Parties and the one round trip per request (any number of rows):
    1. ``ScoreRequest`` bank → telco: the model id and one keyed pseudonym per row
       (:class:`Pseudonymiser`; the nodes derive the key in :mod:`node.jobs.scoring`); rows whose
       identifier is missing or invalid are not sent.
    2. ``ScoreReply`` telco → bank: a bitmap of the rows it knows and its share for every row —
       hetero LR: the plain partial score ``u_p = x_p · w_p`` (0 for unknown rows); SecureBoost: for each
       of its splits, the bitmap of rows going left (0 bits for unknown rows).
    The bank finishes: ``sigmoid(u_a + u_p)``, or routes the rows through its trees. A row the telco
    does not know (or whose identifier is unusable) gets the outcome ``no_telco_data`` and the score of
    the bank-only fallback model of the card (``None`` if the card has none) — never a silent default.

What each party learns:
    * telco: which of its subscribers the bank scores, for which model, and when (it holds the pseudonym
      key); that the bank asked for some non-subscribers (how many); nothing of the bank's features,
      weights, trees, leaf weights or scores.
    * bank: whether the customer is a telco subscriber (the ``known`` bit; inherent to the fallback),
      and — hetero LR — the exact plain partial score ``u_p`` of each scored subscriber: over many
      customers with structured features this can expose the telco's weights ``w_p`` and, for a known
      customer, constrain their telco features (documented leakage, as in
      :func:`protocols.vfl.lr_passive_partial_scores`); — SecureBoost — for each passive split whether
      the customer goes left, i.e. which side of the telco's (unknown) thresholds they fall on.

Threat model: semi-honest nodes over mutual TLS; the coordinator sees nothing of scoring traffic.
Inputs are validated on entry (model id, sizes, bitmaps, finite partial scores).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from protocols.vfl import lr_active_predict_proba, lr_passive_partial_scores, sb_active_predict_proba, sb_passive_routes
from protocols.vfl.model_parts import LrPart, ModelCard, SbActivePart, SbPassivePart
from protocols.wire.errors import ConfigError, RemoteProtocolError
from protocols.wire.scoring import PSEUDONYM_BYTES, ScoreReply, ScoreRequest
from protocols.wire.training import LrPartialScores, SbPredictReply, SbRoute

__all__ = ["ActiveScorer", "Outcome", "PassiveScorer", "Pseudonymiser", "ScoredRows"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Outcome = Literal["scored", "no_telco_data"]


class Pseudonymiser(Protocol):
    """Turns raw identifiers into keyed pseudonyms (``None`` for a missing or invalid one).

    The nodes pass a ``node.jobs.scoring.PseudonymKey``; the core needs nothing else of it.
    """

    def pseudonyms(self, raw_ids: Iterable[object]) -> list[bytes | None]:
        """One pseudonym (or ``None``) per identifier, in order."""
        ...


def _bits(mask: BoolArray) -> bytes:
    return np.packbits(mask).tobytes()


def _unbits(data: bytes, count: int) -> BoolArray:
    if len(data) != (count + 7) // 8:
        raise RemoteProtocolError("bitmap has the wrong size")
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    if bits[count:].any():
        raise RemoteProtocolError("bitmap has stray padding bits")
    out: BoolArray = bits[:count].astype(bool)
    return out


def _lr_prepare(part: LrPart, x: FloatArray) -> FloatArray:
    """Scale with the stored scaling; a missing cell becomes the training mean (0 after scaling)."""
    prepared = part.prepare(x)
    return np.where(np.isnan(prepared), 0.0, prepared)


def _check_width(card: ModelCard, x: FloatArray) -> None:
    if x.ndim != 2 or x.shape[1] != len(card.features):
        raise ConfigError(f"model {card.model_id} needs {len(card.features)} feature columns, got "
                          f"{x.shape[1] if x.ndim == 2 else 'a non-matrix'}")


# --- passive party (telco) -------------------------------------------------------------------------


class PassiveScorer:
    """The telco's scorer of one model: its part, preloaded, and an index pseudonym → subscriber row.

    Args:
        card: the telco's model card (role ``passive``).
        part: the telco's stored part (``LrPart`` or ``SbPassivePart`` JSON).
        key: the per-model pseudonym key shared with the bank.
        raw_ids: the subscribers' identifiers (``id_number``), one per row of ``features``.
        features: the subscribers' feature matrix, columns in ``card.features`` order.

    The index holds the first row of a repeated identifier. Building it pseudonymises every subscriber
    once (at load time); answering is a dictionary lookup plus one small matrix product or routing.
    """

    def __init__(self, card: ModelCard, part: dict[str, Any], key: Pseudonymiser, raw_ids: Sequence[object],
                 features: FloatArray) -> None:
        if card.role != "passive":
            raise ConfigError(f"model {card.model_id} on this node is not a passive part")
        _check_width(card, features)
        self.card = card
        self._index: dict[bytes, int] = {}
        for row, p in enumerate(key.pseudonyms(raw_ids)):
            if p is not None:
                self._index.setdefault(p, row)
        if card.algo == "hetero_lr":
            lr = LrPart.model_validate(part)
            share = lr_passive_partial_scores(lr.passive_model(), _lr_prepare(lr, features))
            self._u: FloatArray | None = np.frombuffer(share.scores, dtype="<f8").copy()
            self._sb = None
        else:
            self._u, self._sb = None, SbPassivePart.model_validate(part).model()
            self._x = features

    @property
    def subscribers(self) -> int:
        """Distinct pseudonyms indexed."""
        return len(self._index)

    def answer(self, request: ScoreRequest) -> ScoreReply:
        """Answer one scoring request.

        Raises:
            RemoteProtocolError: the request names another model or its pseudonyms are malformed.
        """
        if request.model_id != self.card.model_id:
            raise RemoteProtocolError(f"this scorer serves model {self.card.model_id}, not {request.model_id}")
        if len(request.pseudonyms) % PSEUDONYM_BYTES:
            raise RemoteProtocolError("pseudonyms are not a whole number of entries")
        data, n = request.pseudonyms, request.n_rows
        rows = np.fromiter((self._index.get(data[i : i + PSEUDONYM_BYTES], -1)
                            for i in range(0, len(data), PSEUDONYM_BYTES)), dtype=np.int64, count=n)
        known = rows >= 0
        return ScoreReply(model_id=self.card.model_id, n_rows=n, known=_bits(known), share=self._share(rows, known))

    def _share(self, rows: npt.NDArray[np.int64], known: BoolArray) -> LrPartialScores | SbPredictReply:
        if self._u is not None:
            u = np.where(known, self._u[np.where(known, rows, 0)], 0.0) if len(self._u) else np.zeros(len(rows))
            return LrPartialScores(scores=u.astype("<f8").tobytes())
        assert self._sb is not None
        x = self._x[np.where(known, rows, 0)] if len(self._x) else np.zeros((len(rows), self._x.shape[1]))
        reply = sb_passive_routes(self._sb, x)
        routes = [SbRoute(tree=r.tree, node=r.node,
                          left_bits=_bits(_unbits(r.left_bits, len(rows)) & known)) for r in reply.routes]
        return SbPredictReply(routes=routes)


# --- active party (bank) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoredRows:
    """Scores and outcomes of a batch of rows, in input order (``score`` NaN where none exists)."""

    scores: FloatArray
    outcomes: list[Outcome]

    @property
    def federated(self) -> int:
        """Rows scored with the telco's share."""
        return sum(1 for o in self.outcomes if o == "scored")


class ActiveScorer:
    """The bank's scorer of one model: its part, the fallback, and the pseudonym key.

    Args:
        card: the bank's model card (role ``active``).
        part: the bank's stored part (``LrPart`` or ``SbActivePart`` JSON, with ``"fallback"`` when the
            card names a fallback model).
        key: the per-model pseudonym key shared with the telco.
    """

    def __init__(self, card: ModelCard, part: dict[str, Any], key: Pseudonymiser) -> None:
        if card.role != "active":
            raise ConfigError(f"model {card.model_id} on this node is not an active part")
        self.card, self._key = card, key
        self._lr = LrPart.model_validate(_without_fallback(part)) if card.algo == "hetero_lr" else None
        self._sb = SbActivePart.model_validate(_without_fallback(part)) if card.algo == "secureboost" else None
        self._fallback = _load_fallback(card, part)
        names = card.fallback.feature_names if card.fallback else []
        self._fallback_cols = [card.feature_names.index(n) for n in names]

    def request(self, raw_ids: Sequence[object]) -> tuple[ScoreRequest, BoolArray]:
        """The request for rows with identifiers ``raw_ids``, and which rows it carries (usable ids)."""
        pseudonyms = self._key.pseudonyms(raw_ids)
        sent = np.array([p is not None for p in pseudonyms], dtype=bool)
        body = b"".join(p for p in pseudonyms if p is not None)
        return ScoreRequest(model_id=self.card.model_id, pseudonyms=body), sent

    def combine(self, features: FloatArray, sent: BoolArray, reply: ScoreReply) -> ScoredRows:
        """Finish the scores of all rows (``features`` in ``card.features`` order) from the telco's reply.

        Raises:
            RemoteProtocolError: the reply does not match the request.
        """
        _check_width(self.card, features)
        n_sent = int(sent.sum())
        if reply.model_id != self.card.model_id or reply.n_rows != n_sent:
            raise RemoteProtocolError("the telco's reply does not match the request")
        known = np.zeros(len(sent), dtype=bool)
        known[sent] = _unbits(reply.known, n_sent)
        scores = np.full(len(sent), np.nan)
        if known.any():
            scores[known] = self._federated(features[known], _subset(reply.share, known[sent], n_sent))
        if (~known).any() and self._fallback is not None:
            scores[~known] = self._fallback_proba(features[~known])
        outcomes: list[Outcome] = ["scored" if k else "no_telco_data" for k in known]
        return ScoredRows(scores, outcomes)

    def _federated(self, x: FloatArray, share: LrPartialScores | SbPredictReply) -> FloatArray:
        if self._lr is not None:
            if not isinstance(share, LrPartialScores):
                raise RemoteProtocolError("expected LR partial scores")
            return lr_active_predict_proba(self._lr.active_model(), _lr_prepare(self._lr, x), share)
        assert self._sb is not None
        if not isinstance(share, SbPredictReply):
            raise RemoteProtocolError("expected SecureBoost routes")
        return sb_active_predict_proba(self._sb.model(), self._sb.config(), x, share)

    def _fallback_proba(self, x: FloatArray) -> FloatArray:
        fb = self._fallback
        x = x[:, self._fallback_cols]
        if isinstance(fb, LrPart):
            z = _lr_prepare(fb, x) @ np.asarray(fb.weights) + float(fb.intercept or 0.0)
            proba: FloatArray = 1.0 / (1.0 + np.exp(-z))
            return proba
        assert isinstance(fb, SbActivePart)
        return sb_active_predict_proba(fb.model(), fb.config(), x, SbPredictReply(routes=[]))


def _without_fallback(part: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in part.items() if k != "fallback"}


def _load_fallback(card: ModelCard, part: dict[str, Any]) -> LrPart | SbActivePart | None:
    if card.fallback is None:
        return None
    raw = part.get("fallback")
    if raw is None:
        raise ConfigError(f"model {card.model_id}: the card names a fallback model but the part holds none")
    fb: LrPart | SbActivePart = (LrPart.model_validate(raw) if card.fallback.algo == "hetero_lr"
                                 else SbActivePart.model_validate(raw))
    if isinstance(fb, SbActivePart) and fb.passive_refs():
        raise ConfigError(f"model {card.model_id}: the bank-only fallback must not use passive splits")
    return fb


def _subset(share: LrPartialScores | SbPredictReply, keep: BoolArray, n: int) -> LrPartialScores | SbPredictReply:
    """The share restricted to the rows the telco knows (validated sizes)."""
    if isinstance(share, LrPartialScores):
        if len(share.scores) != 8 * n:
            raise RemoteProtocolError("partial scores do not match the request")
        u = np.frombuffer(share.scores, dtype="<f8")[keep]
        return LrPartialScores(scores=u.astype("<f8").tobytes())
    return SbPredictReply(routes=[SbRoute(tree=r.tree, node=r.node, left_bits=_bits(_unbits(r.left_bits, n)[keep]))
                                  for r in share.routes])
