"""What travels in a training job's Flower rounds (arbiter ↔ one party), as JSON.

Every round payload is one :data:`RoundPayload` (arbiter → party) and every answer one
:data:`RoundReply` (party → arbiter), parsed by ``kind``. The VFL messages inside are the models of
:mod:`protocols.wire.training`. No bank↔telco payload travels through the arbiter: the
parties' ciphertexts for a round go over the mutual-TLS data plane (:mod:`node.peer`),
so nothing here needs sealing. The arbiter sees only: aligned row and feature counts, a digest of the
aligned order (equal on both sides or the job fails), masked values (LR), tree counts (SecureBoost)
and the held-out metrics the bank chooses to report.

They live here, beside the VFL cores whose configuration they carry (``LrConfigWire`` converts to and
from :class:`protocols.vfl.LrConfig`), rather than in :mod:`protocols.wire`, which imports nothing of ours.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from protocols.vfl import LrConfig, OptimizerConfig
from protocols.vfl._lr import FEATURE_EXPONENT
from protocols.wire.errors import ProtocolError
from protocols.wire.training import LrInstruction, LrMaskedUpdate

__all__ = [
    "DEFAULT_LR_ITERATIONS",
    "TrainingError",
    "Finish",
    "FinishReply",
    "LrConfigWire",
    "LrRound",
    "LrRoundReply",
    "RoundPayload",
    "RoundReply",
    "SbRound",
    "SbRoundReply",
    "Setup",
    "SetupReply",
    "decode_payload",
    "decode_reply",
]


class TrainingError(ProtocolError):
    """A training job cannot go on (bad input, mismatch, refusal); the message is the job's reason."""


DEFAULT_LR_ITERATIONS = LrConfig.recommended(1).max_epochs
"""Iterations (full-batch epochs) of an LR job whose parameters name none."""


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    protocol_version: Literal["1"] = "1"


class Setup(_Wire):
    """Round 1, arbiter → each party: align your rows and say what you hold."""

    kind: Literal["setup"] = "setup"
    algorithm: Literal["lr", "secureboost"]
    trees: int | None = Field(default=None, ge=1)
    max_depth: int | None = Field(default=None, ge=1, le=10)
    n_bins: int | None = Field(default=None, ge=2, le=256)


class SetupReply(_Wire):
    """Round 1 answer: counts and the digest of the aligned order (no row data)."""

    kind: Literal["setup_reply"] = "setup_reply"
    n_train: int = Field(ge=0)
    n_test: int = Field(ge=0)
    n_features: int = Field(ge=0)
    alignment_digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    resume_from: int = Field(default=0, ge=0, description="last completed iteration/tree + 1 in a checkpoint")


class LrConfigWire(_Wire):
    """The :class:`protocols.vfl.LrConfig` every party of a job must share, field for field.

    The arbiter fills it from :meth:`protocols.vfl.LrConfig.recommended` and the job's overrides
    (:class:`coordinator.flower.arbiters.LrJobArbiter`); the defaults here are those of ``LrConfig`` itself
    (Adam, Taylor gradient), so a config written before a field existed still means what it meant.
    ``allow_insecure_test_key`` travels for the record only: each party applies its *own* setting.
    """

    n_rows: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    max_epochs: int = Field(ge=1)
    alpha: float = Field(ge=0.0)
    learning_rate: float = Field(gt=0.0)
    optimizer: Literal["sgd", "rmsprop", "adam", "newton"] = "adam"
    momentum: float = Field(default=0.0, ge=0.0, lt=1.0)
    decay: float = Field(default=0.0, ge=0.0)
    beta1: float = Field(default=0.9, ge=0.0, lt=1.0)
    beta2: float = Field(default=0.999, ge=0.0, lt=1.0)
    eps: float = Field(default=1e-8, gt=0.0)
    seed: int = 0
    tol: float = Field(default=1e-5, ge=0.0)
    gradient: Literal["taylor", "linearized"] = "taylor"
    feature_exponent: int = Field(default=FEATURE_EXPONENT, ge=-16, le=0)
    warm_start: bool = False
    allow_insecure_test_key: bool = False

    @classmethod
    def of(cls, config: LrConfig) -> LrConfigWire:
        """The wire form of ``config``."""
        o = config.optimizer
        return cls(n_rows=config.n_rows, batch_size=config.batch_size, max_epochs=config.max_epochs,
                   alpha=config.alpha, learning_rate=o.learning_rate, optimizer=o.method, momentum=o.momentum,
                   decay=o.decay, beta1=o.beta1, beta2=o.beta2, eps=o.eps, seed=config.seed, tol=config.tol,
                   gradient=config.gradient, feature_exponent=config.feature_exponent,
                   warm_start=config.warm_start, allow_insecure_test_key=config.allow_insecure_test_key)

    def to_config(self, *, allow_insecure_test_key: bool) -> LrConfig:
        """The VFL config; the key-size flag is the *local* party's own setting, never the wire's."""
        optimizer = OptimizerConfig(method=self.optimizer, learning_rate=self.learning_rate, decay=self.decay,
                                    beta1=self.beta1, beta2=self.beta2, eps=self.eps, momentum=self.momentum)
        return LrConfig(n_rows=self.n_rows, batch_size=self.batch_size, max_epochs=self.max_epochs,
                        alpha=self.alpha, optimizer=optimizer, seed=self.seed, tol=self.tol,
                        allow_insecure_test_key=allow_insecure_test_key, gradient=self.gradient,
                        feature_exponent=self.feature_exponent, warm_start=self.warm_start)


class LrRound(_Wire):
    """One LR iteration, arbiter → one party: the shared config and the party's instruction.

    In the first LR round of a resumed run ``resume_from = k > 0``: the instruction is iteration ``k``
    with the run's fresh public key and no gradient (:mod:`node.jobs.training.checkpoints`).
    """

    kind: Literal["lr_round"] = "lr_round"
    config: LrConfigWire
    instruction: LrInstruction
    resume_from: int = Field(default=0, ge=0, description="iterations both parties restore from their checkpoints")


class LrRoundReply(_Wire):
    """A party's masked update for the iteration, or ``None`` after the ``stop`` instruction."""

    kind: Literal["lr_round_reply"] = "lr_round_reply"
    update: LrMaskedUpdate | None = None


class SbRound(_Wire):
    """SecureBoost, arbiter → bank: grow trees ``first_tree .. first_tree + n_trees - 1`` over the data plane."""

    kind: Literal["sb_round"] = "sb_round"
    first_tree: int = Field(ge=0)
    n_trees: int = Field(ge=1)
    total_trees: int = Field(ge=1)
    max_depth: int = Field(ge=1, le=10)
    n_bins: int = Field(ge=2, le=256)
    allow_insecure_test_key: bool = False
    key_bits: int = Field(ge=256, le=8192)


class SbRoundReply(_Wire):
    """How many trees the bank has finished (counts only)."""

    kind: Literal["sb_round_reply"] = "sb_round_reply"
    trees_done: int = Field(ge=0)


class Finish(_Wire):
    """Last round, arbiter → each party: evaluate on the held-out rows and store your part."""

    kind: Literal["finish"] = "finish"


class FinishReply(_Wire):
    """Held-out metrics the party reports (the bank computes them; the telco echoes what it was told)."""

    kind: Literal["finish_reply"] = "finish_reply"
    metrics: dict[str, float] = Field(default_factory=dict)


RoundPayload = Annotated[Setup | LrRound | SbRound | Finish, Field(discriminator="kind")]
RoundReply = Annotated[SetupReply | LrRoundReply | SbRoundReply | FinishReply, Field(discriminator="kind")]

_PAYLOAD: TypeAdapter[Setup | LrRound | SbRound | Finish] = TypeAdapter(RoundPayload)
_REPLY: TypeAdapter[SetupReply | LrRoundReply | SbRoundReply | FinishReply] = TypeAdapter(RoundReply)


def decode_payload(data: bytes) -> Setup | LrRound | SbRound | Finish:
    """Parse a round payload (raises ``pydantic.ValidationError``)."""
    return _PAYLOAD.validate_json(data)


def decode_reply(data: bytes) -> SetupReply | LrRoundReply | SbRoundReply | FinishReply:
    """Parse a round reply (raises ``pydantic.ValidationError``)."""
    return _REPLY.validate_json(data)
