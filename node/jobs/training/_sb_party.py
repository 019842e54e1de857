"""The SecureBoost party jobs: the bank (active, holds the key and drives each level) and the telco (passive)."""

from __future__ import annotations

import json
import threading
from typing import Any

from pydantic import BaseModel

from node.jobs.training._job import MESSAGES, ONE_MESSAGE, JobSpec, PartyJob, exchange, fallback_lr, labels_of, scaled
from node.jobs.training.evaluation import bank_only_scores, metrics, save_figures
from node.peer import PeerMessage
from protocols.crypto.paillier import generate_keypair
from protocols.vfl import SbActiveParty, SbConfig, SbPassiveParty, sb_active_predict_proba
from protocols.vfl.rounds import Finish, FinishReply, LrRound, SbRound, SbRoundReply, Setup, TrainingError
from protocols.wire.training import SbPredictReply, SbPredictRequest, SbTrainingDone, SbTreeStart

__all__ = ["BankSbJob", "TelcoSbJob"]


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
                       self.spec.wait_timeout, self.finished)
        return list(MESSAGES.validate_json(raw))

    def _trees(self, payload: SbRound) -> SbRoundReply:
        if self._party is None:
            allow = self.spec.allow_insecure_test_key
            self._config = _sb_config(payload.total_trees, payload.max_depth, payload.n_bins, allow)
            _, key = generate_keypair(payload.key_bits, allow_insecure_test_key=allow)
            self._party = SbActiveParty(self._config, self.features(self.train_rows),
                                        labels_of(self, self.train_rows), key)
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
        y_test = labels_of(self, self.test_rows)
        federated = sb_active_predict_proba(model, self._config, x_test, reply)
        bank_only = bank_only_scores("secureboost", self.features(self.train_rows), labels_of(self, self.train_rows),
                                     x_test, trees=self._config.n_trees, max_depth=self._config.max_depth)
        result = metrics(y_test, federated, bank_only)
        save_figures(self.spec.figures_dir, y_test, federated, bank_only, "SecureBoost")
        exchange(self.spec.peer(), self.spec.job_id, "train.eval", 1, json.dumps(result).encode(),
                 self.spec.wait_timeout, self.finished)
        from protocols.vfl.model_parts import SbActivePart

        # The stored fallback for customers the telco does not know: a bank-only LR on the bank's features.
        scaling, x_train_scaled, x_test_scaled = scaled(self)
        fallback = fallback_lr(x_train_scaled, labels_of(self, self.train_rows), scaling)
        fallback_scores = bank_only_scores("lr", x_train_scaled, labels_of(self, self.train_rows), x_test_scaled)
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
        msg = ONE_MESSAGE.validate_json(message.body)
        with self.lock:
            outs = self._party.handle(msg)
        return MESSAGES.dump_json(outs)
