"""Per-iteration checkpoints of hetero LR: a retried ``train_risk`` job resumes from the last completed iteration.

What "retry" means: a *new run of the same job* (same job id, same job digest) on the nodes. The coordinator
sets a failed job back to approved (``POST /api/v1/jobs/{id}/retry``, a new ``attempt``; approvals stay
valid only while the job digest is unchanged), and each node's runner runs every attempt once; a node that
restarted while its job was running also runs it again.

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

A checkpoint is the party's :class:`protocols.vfl.LrPartyState` (``state()`` / ``restore()`` of the VFL
parties) plus the ids it belongs to and the run's :class:`LrConfigWire`: its weights (a warm start is already
in them), its optimiser state (the Newton heavy-ball velocity in ``optimizer_m``, or the Adam/RMSprop moments
in ``optimizer_m`` / ``optimizer_v``, and the step count), and the active party's loss tracker. The Newton
curvature is not state (each party recomputes it from its own features when it applies a gradient). No
ciphertext, mask or key survives a run, so a fresh key and fresh masks are safe to mix with restored weights.
The decrypted, unmasked gradients are exact fixed-point values, so a resumed run ends with the same model as
an uninterrupted one. A checkpoint written under other training settings is refused. Checkpoints sit in the
node's state directory with the node's other private data (they reveal the party's own weights only) and are
removed once the party's model part is stored.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from protocols.vfl import LrPartyState, OptimizerState
from protocols.vfl.rounds import LrConfigWire

__all__ = [
    "LrCheckpoint",
    "LrCheckpoints",
    "Role",
    "checkpoint_dir",
]

Role = Literal["active", "passive"]
_FILE = re.compile(r"^lr-(active|passive)-([0-9]{1,9})\.json$")


def checkpoint_dir(state_dir: Path, job_id: int) -> Path:
    """Where a node keeps the checkpoints of ``job_id`` (outside the job's work directory, which a re-run wipes)."""
    return state_dir / "training" / "checkpoints" / str(int(job_id))


class LrCheckpoint(BaseModel):
    """One party's LR state after ``iteration`` completed iterations (plaintext, own values only).

    ``optimizer_m`` is the heavy-ball velocity of ``"newton"`` (Adam's first moment otherwise), ``optimizer_v``
    the Adam/RMSprop second moment; ``loss_*`` and ``converged`` are the active party's loss tracker.
    """

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

    @classmethod
    def of(cls, state: LrPartyState, *, role: Role, ids: Mapping[str, object]) -> LrCheckpoint:
        """The checkpoint of ``state`` (``ids``: ``job_id``, ``job_digest``, ``alignment_digest``, ``config``)."""
        return cls.model_validate({
            **ids, "role": role, "iteration": state.iteration, "weights": _floats(state.weights),
            "optimizer_steps": state.optimizer.steps, "optimizer_m": _floats(state.optimizer.first),
            "optimizer_v": _floats(state.optimizer.second), "loss_sums": state.loss_sums,
            "loss_history": list(state.loss_history), "converged": state.converged,
        })

    def state(self) -> LrPartyState:
        """The party state to restore (``LrActiveParty.restore`` / ``LrPassiveParty.restore``)."""
        optimizer = OptimizerState(self.optimizer_steps, np.asarray(self.optimizer_m, dtype=np.float64),
                                   np.asarray(self.optimizer_v, dtype=np.float64))
        return LrPartyState(iteration=self.iteration, weights=np.asarray(self.weights, dtype=np.float64),
                            optimizer=optimizer, loss_sums=self.loss_sums, loss_history=tuple(self.loss_history),
                            converged=self.converged)


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


def _floats(values: npt.NDArray[np.float64]) -> list[float]:
    return [float(v) for v in values]
