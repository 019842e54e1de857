"""What travels in a training job's Flower rounds (arbiter ↔ one party), as JSON.

Every round payload is one :data:`RoundPayload` (arbiter → party) and every answer one
:data:`RoundReply` (party → arbiter), parsed by ``kind``. The VFL messages inside are the models of
:mod:`protocols.messages.training`. No bank↔telco payload travels through the arbiter: the
parties' ciphertexts for a round go over the mutual-TLS data plane (:mod:`protocols.node.peer`),
so nothing here needs sealing. The arbiter sees only: aligned row and feature counts, a digest of the
aligned order (equal on both sides or the job fails), masked values (LR), tree counts (SecureBoost)
and the held-out metrics the bank chooses to report.

These models live beside the training drivers rather than under ``protocols/messages`` while the
VFL message module is being changed by its owner; they move there when that settles.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from protocols.messages.training import LrInstruction, LrMaskedUpdate

__all__ = [
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
    """The :class:`protocols.vfl.LrConfig` every party of a job must share."""

    n_rows: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    max_epochs: int = Field(ge=1)
    alpha: float = Field(ge=0.0)
    learning_rate: float = Field(gt=0.0)
    optimizer: Literal["sgd", "rmsprop", "adam"] = "adam"
    seed: int = 0
    tol: float = Field(default=1e-5, ge=0.0)
    allow_insecure_test_key: bool = False


class LrRound(_Wire):
    """One LR iteration, arbiter → one party: the shared config and the party's instruction.

    In the first LR round of a resumed run ``resume_from = k > 0``: the instruction is iteration ``k``
    with the run's fresh public key and no gradient (:mod:`protocols.training.checkpoints`).
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
