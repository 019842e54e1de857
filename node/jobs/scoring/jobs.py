"""The batch ``score`` job: the bank scores a dataset's rows with a stored model, the telco answers.

Job: kind ``score``, inputs = the bank dataset to score and the telco dataset whose features answer,
``params.model_job_id`` = the training job whose model parts both nodes stored (``output_mode``
``scores`` or unset). Each node checks that its model card exists, that its role fits, and that its
input's feature schema equals the card's (else the job fails with the mismatch named).

Data plane (job-scoped, chunked, resumable: :meth:`node.peer.PeerClient.exchange`):
    * ``score.rows`` seq ``i``: one :class:`ScoreRequest` per chunk of ``chunk_rows`` bank rows →
      :class:`ScoreReply` (the real-time protocol of :mod:`protocols.vfl.scoring`, batched);
    * ``score.close`` seq 0: :class:`ScoreBatchClose` → :class:`ScoreBatchAck` (counts must agree).

Outputs. The scores stay at the bank node (``<state>/jobs/<job_id>/scores.csv``: customer key, score,
outcome). The coordinator gets counts (rows, scored with telco data, ``no_telco_data``, without any
score) and the score distribution's deciles (suppressed below ``MIN_ROWS_FOR_DECILES`` scored rows);
the telco reports the requests and rows it answered. What each party learns is as in real-time scoring.

Row cap. The telco answers at most as many rows in one job as the bank's input datasets have in the
catalog (the datasets the signed terms name; their row counts as registered, which the telco saw
when it approved): a bank that sends more pseudonyms than its dataset holds — using the job as a
membership oracle — is refused (429) and answered nothing more, and the telco's job fails naming the
cap. (The real-time caps per call and per day are :mod:`node.jobs.scoring._quota`'s.)
"""

from __future__ import annotations

import csv
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from node.adapters import open_source
from node.governance import Governance, coerce_types, load_governance
from node.jobs.scoring._features import check_schema, feature_matrix, governance_columns
from node.jobs.scoring._quota import ScoringCapExceeded
from node.jobs.scoring.service import BankScoring, identifier_values, key_column, load_rows, passive_scorer
from node.model_store import ModelStore
from node.peer import PeerInbox, PeerMessage
from node.runner import JobContext, JobHandler
from protocols.vfl.model_parts import ModelCard
from protocols.vfl.scoring import ActiveScorer, PassiveScorer, ScoredRows
from protocols.wire.control import JobKind, KeyType
from protocols.wire.errors import ConfigError, ProtocolError, RemoteProtocolError
from protocols.wire.scoring import ScoreBatchAck, ScoreBatchClose, ScoreReply, ScoreRequest
from protocols.wire.training import LrPartialScores

__all__ = ["CHUNK_ROWS", "MIN_ROWS_FOR_DECILES", "BankBatchScoring", "BatchPatience", "TelcoBatchScoring",
           "bank_score"]

logger = logging.getLogger(__name__)

CHUNK_ROWS = 20_000
MIN_ROWS_FOR_DECILES = 50
_ONE_INPUT = "score job needs exactly one input dataset of this node, found {count}"
ROWS_CHANNEL, CLOSE_CHANNEL = "score.rows", "score.close"


@dataclass(frozen=True)
class BatchPatience:
    """How long the telco waits: for the bank's first message (``start``) and through silences (``idle``)."""

    start: float = 600.0
    idle: float = 120.0


def _model_card(ctx: JobContext, role: str) -> tuple[ModelStore, ModelCard]:
    params = ctx.job.params
    if params.model_job_id is None:
        raise ConfigError("score job without params.model_job_id (the training job whose model to use)")
    if params.output_mode not in (None, "scores"):
        raise ConfigError(f"score jobs produce scores, not {params.output_mode}")
    store = ModelStore(ctx.settings.state_path)
    card = store.card(params.model_job_id)
    if card.role != role:
        raise ConfigError(f"model of job {params.model_job_id} on this node is a {card.role} part, not {role}")
    return store, card


def _own_source(ctx: JobContext) -> tuple[str, Governance]:
    local = ctx.dataset(ctx.own_input(refusal=_ONE_INPUT).dataset_id)
    return local.source_uri, load_governance(local.governance_path)


# --- bank -----------------------------------------------------------------------------------------


def _deciles(scores: list[np.ndarray]) -> list[float] | None:
    values = np.concatenate(scores) if scores else np.zeros(0)
    values = values[~np.isnan(values)]
    if len(values) < MIN_ROWS_FOR_DECILES:
        return None
    return [round(float(q), 4) for q in np.quantile(values, np.linspace(0.1, 0.9, 9))]


@dataclass
class _Tally:
    rows: int = 0
    scored: int = 0
    no_telco_data: int = 0
    unscored: int = 0
    requests: int = 0
    scores: list[np.ndarray] = field(default_factory=list)

    def add(self, result: ScoredRows) -> None:
        self.rows += len(result.outcomes)
        self.scored += result.federated
        self.no_telco_data += len(result.outcomes) - result.federated
        self.unscored += int(np.isnan(result.scores).sum())
        self.scores.append(result.scores)


def bank_score(ctx: JobContext, *, chunk_rows: int = CHUNK_ROWS) -> dict[str, Any]:
    """``JobHandler`` of the bank (active party) for ``score`` jobs."""
    ctx.progress("loading model", 0.0)
    store, card = _model_card(ctx, "active")
    uri, governance = _own_source(ctx)
    check_schema(card, governance_columns(governance), where=f"dataset {governance.dataset}")
    peer_key = ctx.coordinator.party(card.peer_party).sealing_key
    scorer = BankScoring(store, ctx.keys, ctx.datasets, lambda _: peer_key, _no_caller).active_scorer(card)
    tally = _score_dataset(ctx, scorer, uri, governance, chunk_rows, ctx.workdir / "scores.csv")
    ctx.progress("closing", 0.95)
    close = ScoreBatchClose(model_id=card.model_id, requests=tally.requests, rows=tally.rows)
    ack = ScoreBatchAck.model_validate_json(ctx.peer(card.peer_party).exchange(
        ctx.job.id, CLOSE_CHANNEL, 0, close.model_dump_json().encode(), kind="score_close"))
    if (ack.requests, ack.rows) != (close.requests, close.rows):
        raise RemoteProtocolError("the telco's counts differ from what the bank sent")
    logger.info("job %s: scored %d rows (%d with telco data)", ctx.job.id, tally.rows, tally.scored)
    return {"model_id": card.model_id, "rows": tally.rows, "scored": tally.scored,
            "no_telco_data": tally.no_telco_data, "without_score": tally.unscored,
            "score_deciles": _deciles(tally.scores), "scores_stored_at": "bank node"}


def _no_caller(party: str) -> Any:
    raise ProtocolError("batch scoring uses the job data plane")


def _score_dataset(ctx: JobContext, scorer: ActiveScorer, uri: str, governance: Governance, chunk_rows: int,
                   out: Path) -> _Tally:
    id_col = key_column(governance, KeyType.ID_NUMBER)
    cust_col = key_column(governance, KeyType.CUSTOMER_ID)
    names = scorer.card.feature_names
    tally = _Tally()
    peer = ctx.peer(scorer.card.peer_party)
    with open_source(uri) as source, out.open("w", newline="") as fh:
        total = max(source.row_count(), 1)
        writer = csv.writer(fh)
        writer.writerow([cust_col, "score", "outcome"])
        for seq, raw in enumerate(source.iter_batches(list(dict.fromkeys([cust_col, id_col, *names])), chunk_rows)):
            frame = coerce_types(raw, governance)
            request, sent = scorer.request(identifier_values(frame[id_col]))
            reply = ScoreReply(model_id=request.model_id, n_rows=0, known=b"", share=LrPartialScores(scores=b""))
            if sent.any():
                body = peer.exchange(ctx.job.id, ROWS_CHANNEL, seq, request.model_dump_json().encode(),
                                     kind="score_request")
                reply, tally.requests = _reply(body), tally.requests + 1
            result = scorer.combine(feature_matrix(frame, names), sent, reply)
            tally.add(result)
            writer.writerows(zip(frame[cust_col].astype(str), [_fmt(s) for s in result.scores], result.outcomes,
                                 strict=True))
            ctx.progress("scoring", min(0.9, 0.05 + 0.85 * tally.rows / total))
    return tally


def _reply(body: bytes) -> ScoreReply:
    try:
        return ScoreReply.model_validate_json(body)
    except ValidationError as exc:
        raise RemoteProtocolError("malformed score reply") from exc


def _fmt(score: float) -> str:
    return "" if np.isnan(score) else f"{score:.6f}"


class BankBatchScoring:
    """The bank's ``score`` job (``node.runner.JobFamily``)."""

    def handlers(self) -> dict[JobKind, JobHandler]:
        """The bank's batch scoring handler."""
        return {JobKind.SCORE: bank_score}


# --- telco ----------------------------------------------------------------------------------------


@dataclass
class _Session:
    scorer: PassiveScorer
    peer: str
    max_rows: int
    requests: int = 0
    rows: int = 0
    refusal: str = ""
    last_seen: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)


def _peer_rows(ctx: JobContext) -> int:
    """Catalogued rows of the job's inputs that are not on this node (the bank's): the job's row cap."""
    theirs = [i.dataset_id for i in ctx.job.inputs if not ctx.datasets.has(i.dataset_id)]
    if not theirs:
        raise ConfigError(f"score job {ctx.job.id} names no input dataset of the bank")
    return sum(ctx.coordinator.dataset(d).row_count for d in theirs)


class TelcoBatchScoring:
    """The telco's ``score`` job handler; one instance per node process owns the ``score.*`` channels.

    Args:
        patience: how long to wait for the bank.
    """

    def __init__(self, *, patience: BatchPatience = BatchPatience()) -> None:
        self.patience = patience
        self._sessions: dict[int, _Session] = {}
        self._cond = threading.Condition()
        self._attached: set[int] = set()

    def attach(self, inbox: PeerInbox) -> None:
        """Route ``score.rows`` and ``score.close`` of ``inbox`` to the open sessions."""
        if id(inbox) not in self._attached:
            inbox.register_handler(ROWS_CHANNEL, self._on_rows)
            inbox.register_handler(CLOSE_CHANNEL, self._on_close)
            self._attached.add(id(inbox))

    def _session(self, msg: PeerMessage) -> _Session:
        with self._cond:
            self._cond.wait_for(lambda: msg.job_id in self._sessions, timeout=min(self.patience.start, 60.0))
            session = self._sessions.get(msg.job_id)
        if session is None:
            raise ProtocolError(f"job {msg.job_id} is not running on this node (yet)", status_hint=409)
        if msg.sender != session.peer:
            raise ProtocolError(f"job {msg.job_id} is not shared with party {msg.sender}", status_hint=403)
        session.last_seen = time.monotonic()
        return session

    def _on_rows(self, msg: PeerMessage) -> bytes:
        session = self._session(msg)
        try:
            request = ScoreRequest.model_validate_json(msg.body)
        except ValidationError as exc:
            raise RemoteProtocolError("malformed score request") from exc
        if session.rows + request.n_rows > session.max_rows:
            session.refusal = (f"score job {msg.job_id}: the bank asked about {session.rows + request.n_rows} rows, "
                               f"more than the {session.max_rows} rows its input dataset has in the catalog; "
                               "nothing more is answered")
            session.done.set()
            raise ScoringCapExceeded(session.refusal)
        reply = session.scorer.answer(request)
        session.requests, session.rows = session.requests + 1, session.rows + request.n_rows
        return reply.model_dump_json().encode()

    def _on_close(self, msg: PeerMessage) -> bytes:
        session = self._session(msg)
        close = ScoreBatchClose.model_validate_json(msg.body)
        session.done.set()
        if close.model_id != session.scorer.card.model_id:
            raise RemoteProtocolError("close names another model")
        return ScoreBatchAck(requests=session.requests, rows=session.rows).model_dump_json().encode()

    def handle(self, ctx: JobContext) -> dict[str, Any]:
        """``JobHandler`` of the telco (passive party) for ``score`` jobs."""
        ctx.progress("loading model and subscribers", 0.0)
        store, card = _model_card(ctx, "passive")
        uri, governance = _own_source(ctx)
        rows = load_rows(uri, governance, card, customers=False)
        peer_key = ctx.coordinator.party(card.peer_party).sealing_key
        scorer = passive_scorer(store, ctx.keys, peer_key, card, rows)
        if ctx.inbox is None:
            raise ConfigError("the telco needs the data plane to answer score jobs")
        self.attach(ctx.inbox)
        session = _Session(scorer, card.peer_party, _peer_rows(ctx))
        with self._cond:
            self._sessions[ctx.job.id] = session
            self._cond.notify_all()
        try:
            ctx.progress("answering the bank", 0.2)
            self._wait(session)
        finally:
            with self._cond:
                self._sessions.pop(ctx.job.id, None)
        if session.refusal:
            raise ScoringCapExceeded(session.refusal)
        return {"model_id": card.model_id, "requests": session.requests, "rows_answered": session.rows}

    def _wait(self, session: _Session) -> None:
        started = time.monotonic()
        while not session.done.wait(0.2):
            now = time.monotonic()
            if session.requests == 0 and now - started > self.patience.start:
                raise ProtocolError("the bank never started scoring")
            if session.requests and now - session.last_seen > self.patience.idle:
                raise ProtocolError("the bank went silent in the middle of the job")

    def handlers(self) -> dict[JobKind, JobHandler]:
        """The telco's batch scoring handler."""
        return {JobKind.SCORE: self.handle}
