"""The hetero LR party jobs: the bank (active) and the telco (passive), with per-iteration checkpoints."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import numpy as np
from pydantic import BaseModel

from node.jobs.training._job import (
    ONE_MESSAGE,
    FloatArray,
    JobSpec,
    PartyJob,
    exchange,
    fallback_lr,
    labels_of,
    scaled,
)
from node.jobs.training.checkpoints import LrCheckpoint, LrCheckpoints, Role
from node.jobs.training.evaluation import bank_only_scores, metrics, save_figures
from node.peer import PeerMessage
from protocols.vfl import LrActiveParty, LrPassiveParty, lr_active_predict_proba, lr_passive_partial_scores
from protocols.vfl.model_parts import FeatureScaling, LrPart
from protocols.vfl.rounds import Finish, FinishReply, LrRound, LrRoundReply, SbRound, Setup, TrainingError
from protocols.wire.errors import LocalProtocolError, RemoteProtocolError
from protocols.wire.training import LrForward, LrInstruction, LrMaskedUpdate, LrPartialScores, LrResidual

__all__ = ["BankLrJob", "TelcoLrJob"]

logger = logging.getLogger(__name__)


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

    def _round(self, payload: Setup | LrRound | SbRound | Finish) -> BaseModel:
        if isinstance(payload, Setup):
            return self._setup_reply(payload)
        if not isinstance(payload, LrRound):
            raise TrainingError(f"unexpected round {payload.kind!r} in an LR job")
        return self._lr_round(payload)

    def _lr_round(self, payload: LrRound) -> BaseModel:
        """One LR round of this party (the setup round is answered by ``_round``)."""
        raise NotImplementedError

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

    def _lr_round(self, payload: LrRound) -> BaseModel:
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
        self._scaling, x_train, self._x_test = scaled(self)
        config = payload.config.to_config(allow_insecure_test_key=self.spec.allow_insecure_test_key)
        if config.n_rows != len(self.train_rows):
            raise TrainingError("the arbiter's row count differs from the aligned training rows")
        party = LrActiveParty(config, x_train, labels_of(self, self.train_rows))
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
            forward = ONE_MESSAGE.validate_json(message.body)
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
            return self._evaluate(ONE_MESSAGE.validate_json(message.body))
        raise TrainingError(f"unexpected channel {message.channel}")

    def _evaluate(self, share: Any) -> bytes:
        if not isinstance(share, LrPartialScores):
            raise TrainingError("expected LrPartialScores on train.eval")
        if not self._model_done.wait(self.spec.wait_timeout) or self._party is None:
            raise TrainingError("the final LR instruction did not arrive in time")
        model = self._party.result()
        y_test = labels_of(self, self.test_rows)
        federated = lr_active_predict_proba(model, self._x_test, share)
        assert self._scaling is not None
        x_train = self._scaling.apply(self.features(self.train_rows))
        bank_only = bank_only_scores("lr", x_train, labels_of(self, self.train_rows), self._x_test)
        result = metrics(y_test, federated, bank_only)
        result["iterations"] = float(model.iterations)
        save_figures(self.spec.figures_dir, y_test, federated, bank_only, "hetero LR")
        self._fallback = fallback_lr(x_train, labels_of(self, self.train_rows), self._scaling)
        self.slots.put(("metrics", 0), result)
        return json.dumps(result).encode()

    def _finish(self, metrics_: dict[str, float]) -> FinishReply:
        assert self._party is not None
        part = LrPart.from_active(self._party.result(), self._scaling)
        return self._complete(metrics_, part, {"fallback": self._fallback, "fallback_auc": metrics_["auc_bank_only"]})


class TelcoLrJob(_LrJob):
    """The telco (passive party) of hetero LR: drives the data-plane exchange of each iteration."""

    role: Role = "passive"

    def __init__(self, spec: JobSpec) -> None:
        super().__init__(spec)
        self._party: LrPassiveParty | None = None
        self._scaling: FeatureScaling | None = None
        self._x_test: FloatArray = np.zeros((0, 0))

    def _lr_round(self, payload: LrRound) -> BaseModel:
        if self._party is None:
            self._scaling, x_train, self._x_test = scaled(self)
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
                       forward.model_dump_json().encode(), self.spec.wait_timeout, self.finished)
        residual = ONE_MESSAGE.validate_json(raw)
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
                       self.spec.wait_timeout, self.finished)
        metrics_ = {k: float(v) for k, v in json.loads(raw).items()}
        return self._complete(metrics_, LrPart.from_passive(model, self._scaling), {})

    def _peer(self, message: PeerMessage) -> bytes:
        raise TrainingError(f"the telco serves no {message.channel} messages in an LR job")
