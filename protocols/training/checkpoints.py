"""Per-iteration checkpoints of hetero LR: a retried ``train_risk`` job resumes from the last completed iteration.

What "retry" means: the coordinator has no transition out of ``failed``, so a retry is a *new run of the
same job* (same job id, same job digest) on the nodes: the runner picks a job up again whenever it is
approved or running at the coordinator and not final in the node's journal (e.g. a node restarted while
its job was running, or a future coordinator path that sets a failed job back to approved).

Mechanism (three steps, no new round trip)::

    party, after applying the instruction of iteration t >= 1 (weights w_t, t iterations completed)
        writes  <state>/training/checkpoints/<job_id>/lr-<role>-<t>.json   (atomic: temp file, fsync, rename)
    party, in the setup round of a later run
        reports SetupReply.resume_from = latest t whose job digest and alignment digest match this run
    arbiter (coordinator ServerApp), in the same run
        resumes at k = min(resume_from of both parties); a fresh key, instruction of iteration k
        carrying the new public key and no gradient (``LrRound.resume_from = k``); each party restores
        checkpoint k and goes on exactly as an uninterrupted run would

The parties' checkpoints can differ by at most one iteration (the arbiter sends iteration t + 1 only
after both replied to t), and every checkpoint of the job is kept until the model is stored, so
checkpoint ``k`` exists at both parties. The arbiter needs no checkpoint of its own: its only state is
the iteration count (restored from the parties' reports) and the Paillier key, which is fresh per run.

A checkpoint holds only the party's own plaintext state (its weights, optimiser moments, the active
party's loss history): no ciphertext, mask or key survives a run, so a fresh key and fresh masks are
safe to mix with restored weights. The decrypted, unmasked gradients are exact fixed-point values, so
a resumed run ends with the same model as an uninterrupted one. Checkpoints sit in the node's state
directory with the node's other private data (they reveal the party's own weights only) and are
removed once the party's model part is stored.

Coupling: restoring reaches into :mod:`protocols.vfl`'s party state (weights, optimiser, loss tracker,
key setup), isolated in the ``Resumable*`` classes below; the resume test in ``tests/training`` pins it.
A public ``state()`` / ``restore()`` on the VFL parties would replace that code.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import phe
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from protocols.errors import RemoteProtocolError
from protocols.messages.training import LrInstruction
from protocols.training._wire import LrConfigWire
from protocols.training.arbiters import TrainingError
from protocols.vfl import LrActiveParty, LrArbiter, LrConfig, LrPassiveParty
from protocols.vfl._lr import LrMessage

__all__ = [
    "LrCheckpoint",
    "LrCheckpoints",
    "ResumableLrActiveParty",
    "ResumableLrArbiter",
    "ResumableLrPassiveParty",
    "Role",
    "checkpoint_dir",
]

Role = Literal["active", "passive"]
_FILE = re.compile(r"^lr-(active|passive)-([0-9]{1,9})\.json$")


def checkpoint_dir(state_dir: Path, job_id: int) -> Path:
    """Where a node keeps the checkpoints of ``job_id`` (outside the job's work directory, which a re-run wipes)."""
    return state_dir / "training" / "checkpoints" / str(int(job_id))


class LrCheckpoint(BaseModel):
    """One party's LR state after ``iteration`` completed iterations (plaintext, own values only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol_version: Literal["1"] = "1"
    job_id: int = Field(ge=1)
    job_digest: str
    alignment_digest: str
    role: Role
    config: LrConfigWire
    iteration: int = Field(ge=1)
    weights: list[float]
    optimizer_steps: int = Field(ge=0)
    optimizer_m: list[float]
    optimizer_v: list[float]
    loss_sums: float = 0.0
    loss_history: list[float] = Field(default_factory=list)
    converged: bool = False


class LrCheckpoints:
    """The checkpoint files of one job and role at one node.

    Args:
        directory: :func:`checkpoint_dir` of the job.
        job_id: the job; a file of another job is never read.
        job_digest: the job's digest; checkpoints written under another digest are ignored.
        role: ``"active"`` (bank) or ``"passive"`` (telco).
    """

    def __init__(self, directory: Path, job_id: int, job_digest: str, role: Role) -> None:
        self.directory, self.job_id, self.job_digest, self.role = directory, job_id, job_digest, role

    def _path(self, iteration: int) -> Path:
        return self.directory / f"lr-{self.role}-{iteration}.json"

    def save(self, checkpoint: LrCheckpoint) -> None:
        """Write ``checkpoint`` atomically (a reader sees the old file or the new one, never a torn one)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        final = self._path(checkpoint.iteration)
        tmp = self.directory / f".tmp-{secrets.token_hex(6)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(checkpoint.model_dump_json().encode())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def load(self, iteration: int) -> LrCheckpoint | None:
        """The checkpoint of ``iteration`` if it exists, is readable and belongs to this job and digest."""
        try:
            checkpoint = LrCheckpoint.model_validate_json(self._path(iteration).read_bytes())
        except (OSError, ValidationError):
            return None
        mine = (checkpoint.job_id, checkpoint.job_digest, checkpoint.role) == (self.job_id, self.job_digest, self.role)
        return checkpoint if mine and checkpoint.iteration == iteration else None

    def latest(self, alignment_digest: str) -> int:
        """The last completed iteration with a usable checkpoint for these aligned rows (0: none)."""
        if not self.directory.is_dir():
            return 0
        found = sorted((int(m[2]) for p in self.directory.iterdir()
                        if (m := _FILE.match(p.name)) and m[1] == self.role), reverse=True)
        for iteration in found:
            checkpoint = self.load(iteration)
            if checkpoint is not None and checkpoint.alignment_digest == alignment_digest:
                return iteration
        return 0

    def clear(self) -> None:
        """Remove every checkpoint of the job (once the model part is stored)."""
        shutil.rmtree(self.directory, ignore_errors=True)


# ------------------------------------------------------------------ VFL state capture and restore


def _floats(values: npt.NDArray[np.float64]) -> list[float]:
    return [float(v) for v in values]


def _array(values: Sequence[float], size: int, what: str) -> npt.NDArray[np.float64]:
    if len(values) != size:
        raise TrainingError(f"the checkpoint's {what} has {len(values)} values, the model has {size}; "
                            "refusing to resume")
    return np.asarray(values, dtype=np.float64)


class _ResumableMixin:
    """The resume part shared by both parties (reaches into :class:`protocols.vfl` party state)."""

    _resume_at: int | None = None

    def _capture(self, party: LrActiveParty | LrPassiveParty, iteration: int, **ids: object) -> dict[str, object]:
        opt = party._optimizer
        return {**ids, "iteration": iteration, "weights": _floats(party._w), "optimizer_steps": opt.step_count,
                "optimizer_m": _floats(opt._m), "optimizer_v": _floats(opt._v)}

    def _restore_common(self, party: LrActiveParty | LrPassiveParty, checkpoint: LrCheckpoint) -> None:
        size = party._w.shape[0]
        party._w = _array(checkpoint.weights, size, "weight vector")
        party._optimizer.step_count = checkpoint.optimizer_steps
        party._optimizer._m = _array(checkpoint.optimizer_m, size, "optimiser state")
        party._optimizer._v = _array(checkpoint.optimizer_v, size, "optimiser state")
        party._iteration = checkpoint.iteration
        self._resume_at = checkpoint.iteration

    def _open_resume(self, party: LrActiveParty | LrPassiveParty, msg: LrInstruction) -> bool:
        """Open the first instruction after a restore (the new key, no gradient); False otherwise."""
        if self._resume_at is None:
            return False
        if (msg.receiver != party.role or msg.iteration != self._resume_at or msg.public_key is None
                or msg.masked_gradient is not None):
            raise RemoteProtocolError("the resume instruction must carry the key of the checkpointed iteration")
        self._resume_at = None
        party._receive_key(msg)
        return True


class ResumableLrPassiveParty(_ResumableMixin, LrPassiveParty):
    """:class:`protocols.vfl.LrPassiveParty` that can write and restore :class:`LrCheckpoint` state."""

    def checkpoint(self, iteration: int, ids: dict[str, object]) -> LrCheckpoint:
        """The party's state after ``iteration`` completed iterations (call after handling that instruction)."""
        return LrCheckpoint.model_validate({**self._capture(self, iteration), **ids, "role": "passive"})

    def restore(self, checkpoint: LrCheckpoint) -> None:
        """Take the checkpointed state; the next instruction must be the resume instruction of its iteration."""
        self._restore_common(self, checkpoint)

    def _open_instruction(self, msg: LrInstruction) -> None:
        if not self._open_resume(self, msg):
            super()._open_instruction(msg)


class ResumableLrActiveParty(_ResumableMixin, LrActiveParty):
    """:class:`protocols.vfl.LrActiveParty` that can write and restore :class:`LrCheckpoint` state."""

    _skip_loss = False

    def checkpoint(self, iteration: int, ids: dict[str, object]) -> LrCheckpoint:
        """The party's state after ``iteration`` completed iterations (call after handling that instruction)."""
        loss = self._loss
        return LrCheckpoint.model_validate({**self._capture(self, iteration), **ids, "role": "active",
                                            "loss_sums": loss.batch_sums, "loss_history": list(loss.history),
                                            "converged": loss.converged})

    def restore(self, checkpoint: LrCheckpoint) -> None:
        """Take the checkpointed state; the next instruction must be the resume instruction of its iteration."""
        self._restore_common(self, checkpoint)
        self._loss.batch_sums = checkpoint.loss_sums
        self._loss.history = list(checkpoint.loss_history)
        self._loss.converged = checkpoint.converged

    def _open_instruction(self, msg: LrInstruction) -> None:
        self._skip_loss = self._open_resume(self, msg)
        if not self._skip_loss:
            super()._open_instruction(msg)

    def _open_loss(self, msg: LrInstruction) -> None:
        if self._skip_loss:
            self._skip_loss = False
            return
        super()._open_loss(msg)


class ResumableLrArbiter(LrArbiter):
    """:class:`protocols.vfl.LrArbiter` that starts at iteration ``resume_from`` (0: from scratch).

    Its first instructions carry the (fresh) public key and the iteration both parties restored.
    """

    def __init__(self, config: LrConfig, private_key: phe.PaillierPrivateKey, resume_from: int = 0) -> None:
        """As :class:`protocols.vfl.LrArbiter`, starting after ``resume_from`` completed iterations.

        Raises:
            TrainingError: ``resume_from`` is not below the configured iteration count.
        """
        super().__init__(config, private_key)
        if not 0 <= resume_from < config.max_iterations:
            raise TrainingError(f"cannot resume at iteration {resume_from} of {config.max_iterations}")
        self.resume_from = resume_from

    def start(self) -> list[LrMessage]:
        """Return the first instructions: iteration ``resume_from`` with the public key."""
        first = super().start()
        self._iteration = self.resume_from
        return [m.model_copy(update={"iteration": self.resume_from}) for m in first]

