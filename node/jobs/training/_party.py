"""A party's side of one training job: Flower rounds in, data-plane exchanges out, its model part stored.

One :class:`PartyJob` per running job and node. The Flower endpoint calls :meth:`PartyJob.on_round`
(one call per Flower round addressed to this party) and the data-plane inbox calls
:meth:`PartyJob.on_peer`; both run on server threads, so the VFL core objects are only touched under
a lock and results are handed between threads through :class:`_Slots`.

Data plane per job (the telco's node is the server of LR and SecureBoost exchanges except where
noted)::

    train.psi.r / train.psi.s   bank → telco   row alignment (node.jobs.training.alignment)
    train.lr   seq t+1          telco → bank   LrForward of iteration t; response LrResidual
    train.eval (LR)             telco → bank   LrPartialScores of the held-out rows; response metrics
    train.sb   seq k            bank → telco   SbTreeStart / SbLevelSplits / SbTrainingDone /
                                               SbPredictRequest; response the passive's messages
    train.eval (SecureBoost)    bank → telco   the held-out metrics; response an acknowledgement

What each party learns is what the VFL cores state (:mod:`protocols.vfl`), plus: the telco learns the
held-out metrics (AUC, KS) the bank sends it for its model card; the bank learns the telco's plain
partial scores (LR) or split routes (SecureBoost) on the held-out rows only, as scoring would.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, TypeAdapter, ValidationError

from node.jobs.training._data import PartyData
from node.jobs.training.alignment import Aligned, split_rows
from node.jobs.training.checkpoints import LrCheckpoint, LrCheckpoints, Role
from node.jobs.training.evaluation import bank_only_scores, metrics, save_figures
from node.peer import PeerClient, PeerError, PeerMessage
from protocols.crypto.paillier import generate_keypair
from protocols.vfl import (
    LrActiveParty,
    LrPassiveParty,
    SbActiveParty,
    SbConfig,
    SbPassiveParty,
    lr_active_predict_proba,
    lr_passive_partial_scores,
    sb_active_predict_proba,
)
from protocols.vfl.model_parts import FeatureScaling, LrPart, key_list_digest
from protocols.vfl.rounds import (
    Finish,
    FinishReply,
    LrRound,
    LrRoundReply,
    SbRound,
    SbRoundReply,
    Setup,
    SetupReply,
    TrainingError,
    decode_payload,
)
from protocols.wire.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from protocols.wire.training import (
    LrForward,
    LrInstruction,
    LrMaskedUpdate,
    LrPartialScores,
    LrResidual,
    SbPredictReply,
    SbPredictRequest,
    SbTrainingDone,
    SbTreeStart,
    TrainingMessage,
)

__all__ = ["JobSpec", "PartyJob", "make_party_job"]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
_MESSAGES: TypeAdapter[list[Any]] = TypeAdapter(list[TrainingMessage])
_ONE: TypeAdapter[Any] = TypeAdapter(TrainingMessage)
_NOT_READY = frozenset({409, 503})


@dataclass(frozen=True)
class JobSpec:
    """What a party job is given by the handler (see :mod:`node.jobs.training.handlers`)."""

    job_id: int
    job_digest: str
    party: str
    algorithm: str
    data: PartyData
    peer: Callable[[], PeerClient]
    allow_insecure_test_key: bool
    wait_timeout: float
    store: Callable[[dict[str, Any], BaseModel, dict[str, Any]], None]
    """``store(metrics, part, extra)`` writes this party's model part and card (atomically)."""
    figures_dir: Path
    checkpoint_dir: Path | None = None
    """Where LR checkpoints of this job live (:func:`node.jobs.training.checkpoints.checkpoint_dir`); None: off."""


class _Slots:
    """Values handed between server threads, keyed by ``(what, index)``; waiters fail with the job."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._values: dict[tuple[str, int], Any] = {}
        self._error: BaseException | None = None

    def put(self, key: tuple[str, int], value: Any) -> None:
        with self._cond:
            self._values[key] = value
            self._cond.notify_all()

    def take(self, key: tuple[str, int], timeout: float) -> Any:
        with self._cond:
            ready = self._cond.wait_for(lambda: key in self._values or self._error is not None, timeout)
            if self._error is not None:
                raise TrainingError(f"training stopped: {self._error}")
            if not ready:
                raise TrainingError(f"timed out after {timeout:.0f} s waiting for {key[0]} {key[1]}")
            return self._values.pop(key)

    def fail(self, error: BaseException) -> None:
        with self._cond:
            if self._error is None:
                self._error = error
            self._cond.notify_all()


def exchange(client: PeerClient, job_id: int, channel: str, seq: int, body: bytes, timeout: float) -> bytes:
    """One data-plane request/response; waits while the peer has not registered the job yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.exchange(job_id, channel, seq, body, kind="training")
        except PeerError as exc:
            if exc.http_status not in _NOT_READY or time.monotonic() > deadline:
                raise TrainingError(f"data-plane exchange {channel}/{seq} failed: {exc}") from exc
            time.sleep(0.5)


class PartyJob:
    """Common state of a party's training job: aligned rows, split, slots, failure, completion."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.slots = _Slots()
        self.lock = threading.Lock()
        self.finished = threading.Event()
        self.error: BaseException | None = None
        self.last_activity = time.monotonic()
        self.outputs: dict[str, Any] = {}
        self.rounds = 0
        self.run_id: str | None = None
        self._run_lock = threading.Lock()
        self._aligned: Aligned | None = None
        self._aligned_event = threading.Event()
        self.train_rows: npt.NDArray[np.int64] = np.arange(0)
        self._train_positions: npt.NDArray[np.int64] = np.arange(0)
        self.test_rows: npt.NDArray[np.int64] = np.arange(0)

    # -- alignment --------------------------------------------------------------------------------
    def set_aligned(self, aligned: Aligned) -> None:
        """Record the aligned rows and derive the held-out split."""
        train, test = split_rows(len(aligned.rows), self.spec.job_digest)
        self.train_rows, self.test_rows = aligned.rows[train], aligned.rows[test]
        self._train_positions = train
        self._aligned = aligned
        self._aligned_event.set()

    @property
    def aligned(self) -> Aligned:
        """The aligned rows (after alignment)."""
        if not self._aligned_event.wait(self.spec.wait_timeout) or self._aligned is None:
            raise TrainingError("rows were not aligned in time")
        return self._aligned

    def features(self, rows: npt.NDArray[np.int64]) -> FloatArray:
        """Raw feature rows."""
        return self.spec.data.features[rows]

    # -- entry points ---------------------------------------------------------------------------
    def on_round(self, body: bytes, run_id: str | None = None) -> bytes:
        """Handle one Flower round payload; return the reply bytes. Failures fail the job.

        Args:
            body: the round payload.
            run_id: the Flower run it came from. The job binds to the run of its first ``Setup`` round and
                refuses rounds of any other run (e.g. a stale message of an earlier attempt's run) with a
                409, without failing.

        Raises:
            ProtocolError: the round belongs to another run (409), or it failed (the job fails too).
        """
        self.last_activity = time.monotonic()
        try:
            try:
                payload = decode_payload(body)
            except ValidationError:
                raise TrainingError("the arbiter sent a malformed round payload") from None
        except Exception as exc:
            self.fail(exc)
            raise
        self._check_run(payload, run_id)
        self.rounds += 1
        try:
            return self._round(payload).model_dump_json().encode()
        except Exception as exc:
            self.fail(exc)
            raise
        finally:
            self.last_activity = time.monotonic()

    def _check_run(self, payload: Setup | LrRound | SbRound | Finish, run_id: str | None) -> None:
        with self._run_lock:
            if run_id is None or run_id == self.run_id:
                return
            if self.run_id is None and isinstance(payload, Setup):
                self.run_id = run_id
                return
        raise ProtocolError(f"round of Flower run {run_id}, but job {self.spec.job_id} runs here as run "
                            f"{self.run_id or '(none yet: waiting for its setup round)'}; ignored", status_hint=409)

    def on_peer(self, message: PeerMessage) -> bytes:
        """Handle one data-plane message of this job. Failures fail the job."""
        self.last_activity = time.monotonic()
        try:
            return self._peer(message)
        except Exception as exc:
            self.fail(exc)
            raise
        finally:
            self.last_activity = time.monotonic()

    def fail(self, error: BaseException) -> None:
        """Stop the job: wake every waiter with ``error`` (the first error wins)."""
        if self.error is None:
            self.error = error
            logger.warning("job %s: training failed: %s", self.spec.job_id, type(error).__name__)
        self.slots.fail(error)
        self.finished.set()

    def _setup_reply(self, setup: Setup) -> SetupReply:
        aligned = self.aligned
        return SetupReply(n_train=len(self.train_rows), n_test=len(self.test_rows),
                          n_features=self.spec.data.features.shape[1], alignment_digest=aligned.digest,
                          resume_from=self._resumable())

    def _resumable(self) -> int:
        """Completed iterations this party can resume from (0: none); LR jobs only."""
        return 0

    def _complete(self, metrics_: dict[str, float], part: BaseModel, extra: dict[str, Any]) -> FinishReply:
        train_keys = [self.aligned.keys[i] for i in self._train_positions]
        self.spec.store({**metrics_, "n_train": float(len(self.train_rows))}, part,
                        {**extra, "keys_sha256": key_list_digest(train_keys)})
        self._stored()
        self.outputs = {"algorithm": self.spec.algorithm, "n_train": len(self.train_rows),
                        "n_test": len(self.test_rows), "aligned_rows": len(self.aligned.rows),
                        "flower_rounds_here": self.rounds, **self._run_outputs(),
                        **{k: round(v, 6) for k, v in metrics_.items()}}
        self.finished.set()
        return FinishReply(metrics=metrics_)

    def _stored(self) -> None:
        """Called once the model part is stored (LR: drop the checkpoints)."""

    def _run_outputs(self) -> dict[str, Any]:
        """Facts about this run for the coordinator (LR: the iteration it resumed from)."""
        return {}

    def _round(self, payload: Setup | LrRound | SbRound | Finish) -> BaseModel:
        raise NotImplementedError

    def _peer(self, message: PeerMessage) -> bytes:
        raise NotImplementedError


class _LrJob(PartyJob):
    """What both LR party jobs share: per-iteration checkpoints and resume (:mod:`node.jobs.training.checkpoints`)."""

    role: Role

    def __init__(self, spec: JobSpec) -> None:
        super().__init__(spec)
        self.checkpoints = None if spec.checkpoint_dir is None else LrCheckpoints(
            spec.checkpoint_dir, spec.job_id, spec.job_digest, self.role)
        self.resumed_from = 0

    def _resumable(self) -> int:
        return 0 if self.checkpoints is None else self.checkpoints.latest(self.aligned.digest)

    def _stored(self) -> None:
        if self.checkpoints is not None:
            self.checkpoints.clear()

    def _run_outputs(self) -> dict[str, Any]:
        return {"resumed_from": self.resumed_from}

    def _restore(self, party: LrActiveParty | LrPassiveParty, payload: LrRound) -> None:
        """Restore checkpoint ``payload.resume_from`` into a fresh ``party`` (no-op when not resuming)."""
        k = payload.resume_from
        if k == 0:
            return
        checkpoint = self.checkpoints.load(k) if self.checkpoints is not None else None
        if checkpoint is None or checkpoint.alignment_digest != self.aligned.digest:
            raise TrainingError(f"the arbiter resumes at iteration {k}, but this node has no checkpoint of it")
        if checkpoint.config != payload.config:
            raise TrainingError(f"the checkpoint of iteration {k} was written under other training settings")
        try:
            party.restore(checkpoint.state())
        except LocalProtocolError as exc:
            raise TrainingError(f"the checkpoint of iteration {k} does not fit this party ({exc}); "
                                "refusing to resume") from None
        self.resumed_from = k
        logger.info("job %s: %s party resumes after %d completed iterations", self.spec.job_id, self.role, k)

    def _open(self, party: LrActiveParty | LrPassiveParty, instruction: LrInstruction) -> list[Any]:
        """Apply the arbiter's instruction; a gradient that does not decode fails the job with a clear reason."""
        try:
            return party.handle(instruction)
        except RemoteProtocolError as exc:
            raise TrainingError(f"the decrypted gradient of iteration {instruction.iteration - 1} was refused: {exc} "
                                "(a ciphertext of that iteration was corrupted or out of range)") from exc

    def _checkpoint(self, party: LrActiveParty | LrPassiveParty, payload: LrRound) -> None:
        """Write the checkpoint after an instruction was applied (iterations >= 1, not the last)."""
        iteration = payload.instruction.iteration
        if self.checkpoints is None or iteration == 0 or payload.instruction.stop:
            return
        ids = {"job_id": self.spec.job_id, "job_digest": self.spec.job_digest,
               "alignment_digest": self.aligned.digest, "config": payload.config}
        state = party.state()
        if state.iteration != iteration:
            raise TrainingError(f"the party's state is of iteration {state.iteration}, not {iteration}")
        self.checkpoints.save(LrCheckpoint.of(state, role=self.role, ids=ids))


def _scaled(job: PartyJob) -> tuple[FeatureScaling, FloatArray, FloatArray]:
    scaling = FeatureScaling.fit(job.features(job.train_rows))
    return scaling, scaling.apply(job.features(job.train_rows)), scaling.apply(job.features(job.test_rows))


def _labels(job: PartyJob, rows: npt.NDArray[np.int64]) -> FloatArray:
    assert job.spec.data.labels is not None
    return job.spec.data.labels[rows]


# ---------------------------------------------------------------------------------------------- LR


class BankLrJob(_LrJob):
    """The bank (active party) of hetero LR."""

    role: Role = "active"

    def __init__(self, spec: JobSpec) -> None:
        super().__init__(spec)
        self._party: LrActiveParty | None = None
        self._party_ready = threading.Event()
        self._model_done = threading.Event()
        self._scaling: FeatureScaling | None = None
        self._x_test: FloatArray = np.zeros((0, 0))
        self._fallback: LrPart | None = None

    def _round(self, payload: Setup | LrRound | SbRound | Finish) -> BaseModel:
        if isinstance(payload, Setup):
            return self._setup_reply(payload)
        if not isinstance(payload, LrRound):
            raise TrainingError(f"unexpected round {payload.kind!r} in an LR job")
        if self._party is None:
            self._start(payload)
        self._deliver(payload.instruction, payload)
        self._party_ready.set()
        if payload.instruction.stop:
            self._model_done.set()
            metrics_ = self.slots.take(("metrics", 0), self.spec.wait_timeout)
            return self._finish(metrics_)
        update = self.slots.take(("lr_masked_update", payload.instruction.iteration), self.spec.wait_timeout)
        return LrRoundReply(update=update)

    def _start(self, payload: LrRound) -> None:
        self._scaling, x_train, self._x_test = _scaled(self)
        config = payload.config.to_config(allow_insecure_test_key=self.spec.allow_insecure_test_key)
        if config.n_rows != len(self.train_rows):
            raise TrainingError("the arbiter's row count differs from the aligned training rows")
        party = LrActiveParty(config, x_train, _labels(self, self.train_rows))
        self._restore(party, payload)
        self._party = party

    def _deliver(self, msg: Any, payload: LrRound | None = None) -> None:
        """Hand one message to the core; after an instruction (``payload`` set), write the checkpoint."""
        assert self._party is not None
        with self.lock:
            outs = self._party.handle(msg) if payload is None else self._open(self._party, msg)
            if payload is not None:
                self._checkpoint(self._party, payload)
        for out in outs:
            self.slots.put((out.kind, out.iteration), out)

    def _peer(self, message: PeerMessage) -> bytes:
        if message.channel == "train.lr":
            forward = _ONE.validate_json(message.body)
            if not isinstance(forward, LrForward):
                raise TrainingError("expected LrForward on train.lr")
            if not self._party_ready.wait(self.spec.wait_timeout):
                raise TrainingError("no LR instruction from the arbiter in time")
            try:
                self._deliver(forward)
            except RemoteProtocolError as exc:
                raise TrainingError(f"refused the telco's encrypted scores of iteration {forward.iteration}: {exc} "
                                    "(a ciphertext is malformed, out of range or under another key)") from exc
            residual = self.slots.take(("lr_residual", forward.iteration), self.spec.wait_timeout)
            return bytes(residual.model_dump_json().encode())
        if message.channel == "train.eval":
            return self._evaluate(_ONE.validate_json(message.body))
        raise TrainingError(f"unexpected channel {message.channel}")

    def _evaluate(self, share: Any) -> bytes:
        if not isinstance(share, LrPartialScores):
            raise TrainingError("expected LrPartialScores on train.eval")
        if not self._model_done.wait(self.spec.wait_timeout) or self._party is None:
            raise TrainingError("the final LR instruction did not arrive in time")
        model = self._party.result()
        y_test = _labels(self, self.test_rows)
        federated = lr_active_predict_proba(model, self._x_test, share)
        assert self._scaling is not None
        x_train = self._scaling.apply(self.features(self.train_rows))
        bank_only = bank_only_scores("lr", x_train, _labels(self, self.train_rows), self._x_test)
        result = metrics(y_test, federated, bank_only)
        result["iterations"] = float(model.iterations)
        save_figures(self.spec.figures_dir, y_test, federated, bank_only, "hetero LR")
        self._fallback = _fallback_lr(x_train, _labels(self, self.train_rows), self._scaling)
        self.slots.put(("metrics", 0), result)
        return json.dumps(result).encode()

    def _finish(self, metrics_: dict[str, float]) -> FinishReply:
        assert self._party is not None
        part = LrPart.from_active(self._party.result(), self._scaling)
        return self._complete(metrics_, part, {"fallback": self._fallback, "fallback_auc": metrics_["auc_bank_only"]})


def _fallback_lr(x_train: FloatArray, y_train: FloatArray, scaling: FeatureScaling) -> LrPart:
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    return LrPart(weights=lr.coef_[0].tolist(), intercept=float(lr.intercept_[0]), scaling=scaling)


class TelcoLrJob(_LrJob):
    """The telco (passive party) of hetero LR: drives the data-plane exchange of each iteration."""

    role: Role = "passive"

    def __init__(self, spec: JobSpec) -> None:
        super().__init__(spec)
        self._party: LrPassiveParty | None = None
        self._scaling: FeatureScaling | None = None
        self._x_test: FloatArray = np.zeros((0, 0))

    def _round(self, payload: Setup | LrRound | SbRound | Finish) -> BaseModel:
        if isinstance(payload, Setup):
            return self._setup_reply(payload)
        if not isinstance(payload, LrRound):
            raise TrainingError(f"unexpected round {payload.kind!r} in an LR job")
        if self._party is None:
            self._scaling, x_train, self._x_test = _scaled(self)
            config = payload.config.to_config(allow_insecure_test_key=self.spec.allow_insecure_test_key)
            party = LrPassiveParty(config, x_train)
            self._restore(party, payload)
            self._party = party
        instruction: LrInstruction = payload.instruction
        outs = self._open(self._party, instruction)
        self._checkpoint(self._party, payload)
        if instruction.stop:
            return self._finish()
        forward = outs[0]
        raw = exchange(self.spec.peer(), self.spec.job_id, "train.lr", instruction.iteration + 1,
                       forward.model_dump_json().encode(), self.spec.wait_timeout)
        residual = _ONE.validate_json(raw)
        if not isinstance(residual, LrResidual):
            raise TrainingError("the bank answered something other than LrResidual")
        (update,) = self._party.handle(residual)
        if not isinstance(update, LrMaskedUpdate):
            raise TrainingError("the LR core produced no masked update")
        return LrRoundReply(update=update)

    def _finish(self) -> FinishReply:
        assert self._party is not None
        model = self._party.result()
        share = lr_passive_partial_scores(model, self._x_test)
        raw = exchange(self.spec.peer(), self.spec.job_id, "train.eval", 1, share.model_dump_json().encode(),
                       self.spec.wait_timeout)
        metrics_ = {k: float(v) for k, v in json.loads(raw).items()}
        return self._complete(metrics_, LrPart.from_passive(model, self._scaling), {})

    def _peer(self, message: PeerMessage) -> bytes:
        raise TrainingError(f"the telco serves no {message.channel} messages in an LR job")


# ------------------------------------------------------------------------------------ SecureBoost


def _sb_config(trees: int, max_depth: int, n_bins: int, allow: bool) -> SbConfig:
    return SbConfig(n_trees=trees, max_depth=max_depth, n_bins=n_bins, allow_insecure_test_key=allow)


class BankSbJob(PartyJob):
    """The bank (active party) of SecureBoost: holds its own key, drives every level over the data plane."""

    def __init__(self, spec: JobSpec) -> None:
        super().__init__(spec)
        self._party: SbActiveParty | None = None
        self._config: SbConfig | None = None
        self._pending: list[Any] = []
        self._seq = 0
        self._trees_done = 0

    def _round(self, payload: Setup | LrRound | SbRound | Finish) -> BaseModel:
        if isinstance(payload, Setup):
            return self._setup_reply(payload)
        if isinstance(payload, SbRound):
            return self._trees(payload)
        if isinstance(payload, Finish):
            return self._finish()
        raise TrainingError("unexpected LR round in a SecureBoost job")

    def _send(self, msg: Any) -> list[Any]:
        self._seq += 1
        raw = exchange(self.spec.peer(), self.spec.job_id, "train.sb", self._seq, msg.model_dump_json().encode(),
                       self.spec.wait_timeout)
        return list(_MESSAGES.validate_json(raw))

    def _trees(self, payload: SbRound) -> SbRoundReply:
        if self._party is None:
            allow = self.spec.allow_insecure_test_key
            self._config = _sb_config(payload.total_trees, payload.max_depth, payload.n_bins, allow)
            _, key = generate_keypair(payload.key_bits, allow_insecure_test_key=allow)
            self._party = SbActiveParty(self._config, self.features(self.train_rows),
                                        _labels(self, self.train_rows), key)
            self._pending = list(self._party.start())
        if payload.first_tree != self._trees_done:
            raise TrainingError(f"the arbiter asked for tree {payload.first_tree}, {self._trees_done} are done")
        stop_at = payload.first_tree + payload.n_trees
        while self._pending:
            msg = self._pending[0]
            if isinstance(msg, SbTrainingDone) or (isinstance(msg, SbTreeStart) and msg.tree >= stop_at):
                break
            self._pending.pop(0)
            for reply in self._send(msg):
                self._pending += self._party.handle(reply)
        self._trees_done = stop_at
        return SbRoundReply(trees_done=self._trees_done)

    def _finish(self) -> FinishReply:
        if self._party is None or self._config is None or len(self._pending) != 1:
            raise TrainingError("finish before every tree was grown")
        self._send(self._pending.pop())
        x_test = self.features(self.test_rows)
        (reply,) = self._send(SbPredictRequest(n_rows=len(self.test_rows)))
        if not isinstance(reply, SbPredictReply):
            raise TrainingError("the telco did not answer the held-out routing request")
        model = self._party.result()
        y_test = _labels(self, self.test_rows)
        federated = sb_active_predict_proba(model, self._config, x_test, reply)
        bank_only = bank_only_scores("secureboost", self.features(self.train_rows), _labels(self, self.train_rows),
                                     x_test, trees=self._config.n_trees, max_depth=self._config.max_depth)
        result = metrics(y_test, federated, bank_only)
        save_figures(self.spec.figures_dir, y_test, federated, bank_only, "SecureBoost")
        exchange(self.spec.peer(), self.spec.job_id, "train.eval", 1, json.dumps(result).encode(),
                 self.spec.wait_timeout)
        from protocols.vfl.model_parts import SbActivePart

        # The stored fallback for customers the telco does not know: a bank-only LR on the bank's features.
        scaling, x_train_scaled, x_test_scaled = _scaled(self)
        fallback = _fallback_lr(x_train_scaled, _labels(self, self.train_rows), scaling)
        fallback_scores = bank_only_scores("lr", x_train_scaled, _labels(self, self.train_rows), x_test_scaled)
        fallback_auc = metrics(y_test, fallback_scores, fallback_scores)["auc_bank_only"]
        return self._complete(result, SbActivePart.from_model(model, self._config),
                              {"fallback": fallback, "fallback_auc": fallback_auc})

    def _peer(self, message: PeerMessage) -> bytes:
        raise TrainingError(f"the bank serves no {message.channel} messages in a SecureBoost job")


class TelcoSbJob(PartyJob):
    """The telco (passive party) of SecureBoost: answers the bank's level messages."""

    def __init__(self, spec: JobSpec) -> None:
        super().__init__(spec)
        self._party: SbPassiveParty | None = None
        self._party_ready = threading.Event()

    def _round(self, payload: Setup | LrRound | SbRound | Finish) -> BaseModel:
        if isinstance(payload, Setup):
            reply = self._setup_reply(payload)
            config = _sb_config(payload.trees or 1, payload.max_depth or 3, payload.n_bins or 32,
                                self.spec.allow_insecure_test_key)
            self._party = SbPassiveParty(config, self.features(self.train_rows),
                                         scoring_features=self.features(self.test_rows))
            self._party_ready.set()
            return reply
        if isinstance(payload, Finish):
            metrics_ = self.slots.take(("metrics", 0), self.spec.wait_timeout)
            assert self._party is not None
            from protocols.vfl.model_parts import SbPassivePart

            return self._complete(metrics_, SbPassivePart.from_model(self._party.result()), {})
        raise TrainingError(f"unexpected round {payload.kind!r} at the SecureBoost passive party")

    def _peer(self, message: PeerMessage) -> bytes:
        if message.channel == "train.eval":
            self.slots.put(("metrics", 0), {k: float(v) for k, v in json.loads(message.body).items()})
            return b"{}"
        if message.channel != "train.sb":
            raise TrainingError(f"unexpected channel {message.channel}")
        if not self._party_ready.wait(self.spec.wait_timeout) or self._party is None:
            raise TrainingError("SecureBoost message before setup")
        msg = _ONE.validate_json(message.body)
        with self.lock:
            outs = self._party.handle(msg)
        return _MESSAGES.dump_json(outs)


_JOBS: dict[tuple[str, bool], type[PartyJob]] = {
    ("lr", True): BankLrJob, ("lr", False): TelcoLrJob,
    ("secureboost", True): BankSbJob, ("secureboost", False): TelcoSbJob,
}


def make_party_job(spec: JobSpec, *, active: bool) -> PartyJob:
    """The party job for ``spec.algorithm`` and this party's role."""
    return _JOBS[(spec.algorithm, active)](spec)
