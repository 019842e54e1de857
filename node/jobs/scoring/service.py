"""Node-side scoring services: the telco answers ``score`` calls, the bank scores customers in real time.

The telco's :class:`TelcoScoring` is the handler of the one-shot peer call ``score``
(``POST /peer/v1/calls/score``, mutual TLS): per model it loads its card and part once, reads the
subscribers of the model's training dataset, and builds the pseudonym index (see
:class:`~protocols.vfl.scoring.PassiveScorer`), so a request costs a dictionary lookup. Each call is
admitted by the telco's row caps first (:mod:`node.jobs.scoring._quota`: rows per call, rows per
model per UTC day, persisted); over a cap it is refused with 429 and answered with nothing. The bank's
:class:`BankScoring` keeps, per model, its part, its fallback and an index ``customer_id → row`` of the
training dataset, pseudonymises, calls the telco once and combines. What each party learns is in
:mod:`protocols.vfl.scoring`; identifiers never leave either node.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from node.adapters import open_source
from node.governance import Governance, coerce_types, load_governance
from node.jobs.scoring._caller import PeerCaller
from node.jobs.scoring._features import check_schema, feature_matrix, governance_columns
from node.jobs.scoring._pseudonyms import derive_pseudonym_key
from node.jobs.scoring._quota import RowQuota
from node.keys import NodeKeys
from node.model_store import ModelStore
from node.node_state import LocalDatasets
from protocols.vfl.model_parts import ModelCard
from protocols.vfl.scoring import ActiveScorer, Outcome, PassiveScorer, ScoredRows
from protocols.wire.control import KeyType
from protocols.wire.errors import ConfigError, ProtocolError, RemoteProtocolError
from protocols.wire.scoring import ScoreReply, ScoreRequest
from protocols.wire.training import LrPartialScores

__all__ = ["SCORE_CALL", "BankScoring", "PartyRows", "TelcoScoring", "identifier_values", "key_column", "load_rows",
           "passive_scorer"]

logger = logging.getLogger(__name__)

SCORE_CALL = "score"
"""Name of the one-shot peer call the telco serves."""

FloatArray = npt.NDArray[np.float64]
PeerKeyLookup = Callable[[str], str]
"""Party name → its registered public sealing key (hex), from the coordinator's registry."""


@dataclass(frozen=True)
class PartyRows:
    """One party's rows for scoring: identifiers, optional customer keys, features in model order."""

    ids: list[object]
    customers: list[str] | None
    features: FloatArray


def key_column(governance: Governance, key_type: KeyType) -> str:
    """The dataset's identifier column of ``key_type``.

    Raises:
        ConfigError: the dataset has no such identifier.
    """
    for name, rule in governance.fields.items():
        if rule.category == "identifier" and rule.key_type == key_type:
            return name
    raise ConfigError(f"dataset {governance.dataset} has no identifier of key type {key_type.value}")


def identifier_values(values: Any) -> list[object]:
    """A pandas column of identifiers as Python objects, missing values as ``None``."""
    return [None if v is None or v is np.nan or (isinstance(v, float) and np.isnan(v)) or str(v) == "<NA>" else v
            for v in values.astype(object).tolist()]


def load_rows(source_uri: str, governance: Governance, card: ModelCard, *, customers: bool) -> PartyRows:
    """Read ``card``'s feature columns, the ``id_number`` column and (``customers``) the customer key.

    Raises:
        SchemaMismatch: the dataset's features differ from the card's.
        ConfigError: an identifier column is missing.
    """
    check_schema(card, governance_columns(governance), where=f"dataset {governance.dataset}")
    id_col = key_column(governance, KeyType.ID_NUMBER)
    cust_col = key_column(governance, KeyType.CUSTOMER_ID) if customers else None
    columns = list(dict.fromkeys([id_col, *([cust_col] if cust_col else []), *card.feature_names]))
    with open_source(source_uri) as source:
        frame = coerce_types(source.read(columns), governance)
    cust = [str(v) for v in frame[cust_col].astype(object).tolist()] if cust_col else None
    return PartyRows(identifier_values(frame[id_col]), cust, feature_matrix(frame, card.feature_names))


def _dataset_rows(datasets: LocalDatasets, card: ModelCard, *, customers: bool) -> PartyRows:
    if card.data.dataset_id is None:
        raise ConfigError(f"model {card.model_id}'s card names no training dataset")
    local = datasets.get(card.data.dataset_id)
    return load_rows(local.source_uri, load_governance(local.governance_path), card, customers=customers)


def passive_scorer(store: ModelStore, keys: NodeKeys, peer_sealing_key: str, card: ModelCard,
                   rows: PartyRows) -> PassiveScorer:
    """A passive scorer of ``card`` over ``rows`` (the model's training dataset, or a batch job's own).

    Raises:
        ConfigError: the stored part is not a JSON part.
    """
    _, part = store.load(card.job_id)
    if not isinstance(part, dict):
        raise ConfigError(f"model {card.model_id}'s part is not a JSON part")
    key = derive_pseudonym_key(keys.sealing, peer_sealing_key, card.model_id)
    return PassiveScorer(card, part, key, rows.ids, rows.features)


class TelcoScoring:
    """The telco's side: preloaded passive scorers, served as the ``score`` peer call under row caps.

    What the telco learns from a call: the model, how many rows the bank asks about (counted per call
    and per model and UTC day in ``quota``), and which of them are its subscribers (see
    :mod:`protocols.vfl.scoring`).

    Args:
        store: this node's model store.
        keys: this node's keys (the sealing key derives the pseudonym key).
        datasets: local datasets (where each model's training dataset lives).
        peer_key: registered sealing key of a party.
        quota: the per-call and per-day row caps every call is charged against before it is answered.
    """

    def __init__(self, store: ModelStore, keys: NodeKeys, datasets: LocalDatasets, peer_key: PeerKeyLookup,
                 quota: RowQuota) -> None:
        self.store, self.keys, self.datasets, self.peer_key = store, keys, datasets, peer_key
        self.quota = quota
        self._scorers: dict[str, PassiveScorer] = {}
        self._lock = threading.Lock()

    def scorer(self, model_id: str) -> PassiveScorer:
        """The loaded scorer of ``model_id`` (loaded and indexed on first use; raises ``ModelNotFound``)."""
        with self._lock:
            if model_id not in self._scorers:
                card = self.store.find(model_id)
                rows = _dataset_rows(self.datasets, card, customers=False)
                self._scorers[model_id] = passive_scorer(self.store, self.keys, self.peer_key(card.peer_party), card,
                                                         rows)
                logger.info("scoring model %s loaded: %d subscribers indexed", model_id,
                            self._scorers[model_id].subscribers)
            return self._scorers[model_id]

    def preload(self) -> list[str]:
        """Load every passive model this node stores (failures are logged and skipped)."""
        loaded = []
        for card in self.store.list():
            if card.role != "passive":
                continue
            try:
                self.scorer(card.model_id)
                loaded.append(card.model_id)
            except ProtocolError as exc:
                logger.warning("cannot load scoring model %s: %s", card.model_id, exc)
        return loaded

    def handle_call(self, sender: str, body: bytes) -> bytes:
        """The ``score`` call: one :class:`ScoreRequest` in, one :class:`ScoreReply` out, within the row caps.

        Raises:
            RemoteProtocolError: the request is malformed.
            ProtocolError: (403) the sender is not the model's peer; ``ModelNotFound`` (404).
            ScoringCapExceeded: (429) over the per-call or the model's daily row cap; nothing is answered.
        """
        try:
            request = ScoreRequest.model_validate_json(body)
        except ValidationError as exc:
            raise RemoteProtocolError("malformed score request") from exc
        scorer = self.scorer(request.model_id)
        if sender != scorer.card.peer_party:
            raise ProtocolError(f"model {request.model_id} is not shared with party {sender}", status_hint=403)
        self.quota.charge(request.model_id, request.n_rows)
        return scorer.answer(request).model_dump_json().encode()

    def close(self) -> None:
        """Close the row caps' database connection."""
        self.quota.close()


@dataclass
class _BankModel:
    scorer: ActiveScorer
    rows: PartyRows | None
    index: dict[str, int]


class BankScoring:
    """The bank's side: active scorers per model, one telco call per request.

    Args:
        store: this node's model store.
        keys: this node's keys.
        datasets: local datasets (customer lookup in the model's training dataset).
        peer_key: registered sealing key of a party.
        caller: a :class:`PeerCaller` to a party (created once per party and reused).
    """

    def __init__(self, store: ModelStore, keys: NodeKeys, datasets: LocalDatasets, peer_key: PeerKeyLookup,
                 caller: Callable[[str], PeerCaller]) -> None:
        self.store, self.keys, self.datasets, self.peer_key = store, keys, datasets, peer_key
        self._caller_factory = caller
        self._callers: dict[str, PeerCaller] = {}
        self._models: dict[str, _BankModel] = {}
        self._lock = threading.Lock()

    def active_scorer(self, card: ModelCard) -> ActiveScorer:
        """A fresh active scorer of ``card`` (its part and the pseudonym key)."""
        _, part = self.store.load(card.job_id)
        if not isinstance(part, dict):
            raise ConfigError(f"model {card.model_id}'s part is not a JSON part")
        key = derive_pseudonym_key(self.keys.sealing, self.peer_key(card.peer_party), card.model_id)
        return ActiveScorer(card, part, key)

    def _model(self, model_id: str) -> _BankModel:
        with self._lock:
            if model_id not in self._models:
                card = self.store.find(model_id)
                rows = (_dataset_rows(self.datasets, card, customers=True)
                        if card.data.dataset_id is not None and self.datasets.has(card.data.dataset_id) else None)
                index = {c: i for i, c in enumerate(rows.customers or [])} if rows else {}
                self._models[model_id] = _BankModel(self.active_scorer(card), rows, index)
            return self._models[model_id]

    def caller(self, party: str) -> PeerCaller:
        """The (cached) caller to ``party``."""
        with self._lock:
            if party not in self._callers:
                self._callers[party] = self._caller_factory(party)
            return self._callers[party]

    def score_rows(self, scorer: ActiveScorer, ids: list[object], features: FloatArray) -> ScoredRows:
        """Score rows (features in model order) with one telco call."""
        request, sent = scorer.request(ids)
        reply = ScoreReply(model_id=request.model_id, n_rows=0, known=b"", share=LrPartialScores(scores=b""))
        if sent.any():
            raw = self.caller(scorer.card.peer_party).call(SCORE_CALL, request.model_dump_json().encode(),
                                                            kind="score_request")
            try:
                reply = ScoreReply.model_validate_json(raw)
            except ValidationError as exc:
                raise RemoteProtocolError("malformed score reply") from exc
        return scorer.combine(features, sent, reply)

    def score(self, model_id: str, *, customer_id: str | None = None, id_number: str | None = None,
              features: Mapping[str, float | int | bool | None] | None = None) -> tuple[float | None, Outcome]:
        """Score one customer, by ``customer_id`` or by ``id_number`` with ``features``.

        A ``customer_id`` is looked up in the model's training dataset (``features``, if given, override
        the stored ones); an ``id_number`` needs ``features`` naming every model feature.

        Raises:
            ModelNotFound: no such model; ConfigError (404/422): unknown customer or wrong features.
        """
        model = self._model(model_id)
        row_id, x = self._inputs(model, customer_id, id_number, features)
        result = self.score_rows(model.scorer, [row_id], x)
        score = float(result.scores[0])
        return (None if np.isnan(score) else score), result.outcomes[0]

    def _inputs(self, model: _BankModel, customer_id: str | None, id_number: str | None,
                features: Mapping[str, float | int | bool | None] | None) -> tuple[object, FloatArray]:
        names = model.scorer.card.feature_names
        if features is not None:
            missing, extra = set(names) - set(features), set(features) - set(names)
            if missing or extra:
                raise ConfigError(f"features must be exactly the model's: missing {sorted(missing)}, "
                                  f"unknown {sorted(extra)}", status_hint=422)
            x = np.array([[np.nan if features[n] is None else float(features[n]) for n in names]])  # type: ignore[arg-type]
        if customer_id is not None:
            if model.rows is None or customer_id not in model.index:
                raise ConfigError("unknown customer for this model", status_hint=404)
            i = model.index[customer_id]
            return model.rows.ids[i], (model.rows.features[i : i + 1] if features is None else x)
        if id_number is None or features is None:
            raise ConfigError("give customer_id, or id_number with features", status_hint=422)
        return id_number, x

    def close(self) -> None:
        """Close the peer callers."""
        with self._lock:
            for c in self._callers.values():
                c.close()
            self._callers.clear()
