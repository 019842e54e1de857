"""What every party job shares: the job spec, the base :class:`PartyJob`, slots between threads, helpers.

The overview (rounds, data plane, what each party learns) is in :mod:`node.jobs.training._party`.
"""

from __future__ import annotations

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
from node.peer import PeerClient, PeerError, PeerMessage
from protocols.vfl.model_parts import FeatureScaling, LrPart, key_list_digest
from protocols.vfl.rounds import Finish, FinishReply, LrRound, SbRound, Setup, SetupReply, TrainingError, decode_payload
from protocols.wire.errors import ProtocolError
from protocols.wire.training import TrainingMessage

__all__ = ["MESSAGES", "ONE_MESSAGE", "FloatArray", "JobSpec", "PartyJob", "exchange", "fallback_lr", "labels_of",
           "scaled"]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
MESSAGES: TypeAdapter[list[Any]] = TypeAdapter(list[TrainingMessage])
"""A list of training messages (a data-plane answer)."""
ONE_MESSAGE: TypeAdapter[Any] = TypeAdapter(TrainingMessage)
"""One training message."""
_NOT_READY = frozenset({409, 503})


@dataclass(frozen=True)
class JobSpec:
    """What a party job is given by the handler (see :meth:`node.jobs.training.service.TrainingService.run_job`)."""

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


def exchange(client: PeerClient, job_id: int, channel: str, seq: int, body: bytes, timeout: float,
             stop: threading.Event | None = None) -> bytes:
    """One data-plane request/response; waits while the peer has not registered the job yet.

    ``stop`` (the job's ``finished``) ends the wait early: a job that failed meanwhile stops retrying.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.exchange(job_id, channel, seq, body, kind="training")
        except PeerError as exc:
            if exc.http_status not in _NOT_READY or time.monotonic() > deadline:
                raise TrainingError(f"data-plane exchange {channel}/{seq} failed: {exc}") from exc
            if stop is None:
                time.sleep(0.5)
            elif stop.wait(0.5):
                raise TrainingError(f"data-plane exchange {channel}/{seq} stopped: the job ended") from exc


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
        """The aligned rows (after alignment); a job that fails meanwhile stops the wait.

        Raises:
            TrainingError: the rows were not aligned in time, or the job failed first (e.g. the attempt was
                retried while its Setup round waited here: the round must end, not hold the SuperNode's
                ClientApp runner, and so the next attempt's rounds, for ``wait_timeout``).
        """
        if not self._aligned_event.wait(self.spec.wait_timeout):
            raise TrainingError("rows were not aligned in time")
        if self._aligned is None:
            raise TrainingError(f"training stopped before the rows were aligned: {self.error}")
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
        self._aligned_event.set()  # a round waiting for the alignment ends with the job
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


def scaled(job: PartyJob) -> tuple[FeatureScaling, FloatArray, FloatArray]:
    """The scaling fitted on the training rows, and the scaled training and held-out features."""
    scaling = FeatureScaling.fit(job.features(job.train_rows))
    return scaling, scaling.apply(job.features(job.train_rows)), scaling.apply(job.features(job.test_rows))


def labels_of(job: PartyJob, rows: npt.NDArray[np.int64]) -> FloatArray:
    """The labels of ``rows`` (active party only)."""
    assert job.spec.data.labels is not None
    return job.spec.data.labels[rows]


def fallback_lr(x_train: FloatArray, y_train: FloatArray, scaling: FeatureScaling) -> LrPart:
    """A bank-only LR on the bank's scaled features: the stored fallback for customers the telco does not know."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    return LrPart(weights=lr.coef_[0].tolist(), intercept=float(lr.intercept_[0]), scaling=scaling)
