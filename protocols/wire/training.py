"""Training-plane wire models: hetero logistic regression and SecureBoost.

One model per round and direction, each with a ``kind`` discriminator and a ``protocol_version``.
Ciphertext vectors travel as bytes in the :mod:`protocols.crypto.paillier.codec` format; masked
plaintexts (what the arbiter decrypts) as fixed-width big-endian integers (see
:func:`protocols.vfl.encode_plaintexts`); plain float vectors as little-endian float64 and sample
sets as packed bitmaps (``numpy.packbits`` order) over the members of a node in ascending row order.
The protocol docstrings in :mod:`protocols.vfl` say who sends what and what each party learns.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "PROTOCOL_VERSION",
    "LrForward",
    "LrInstruction",
    "LrMaskedUpdate",
    "LrPartialScores",
    "LrResidual",
    "SbHistograms",
    "SbLeftSet",
    "SbLevelSplits",
    "SbNodeDecision",
    "SbNodeHistogram",
    "SbPacking",
    "SbPredictReply",
    "SbPredictRequest",
    "SbRoute",
    "SbTrainingDone",
    "SbTreeStart",
    "TrainingMessage",
    "VflRole",
]

PROTOCOL_VERSION = "1"

NonNegative = Annotated[int, Field(ge=0)]


class VflRole(StrEnum):
    """The three roles of vertical federated learning (FATE: guest, host, arbiter)."""

    ACTIVE_PARTY = "active_party"
    PASSIVE_PARTY = "passive_party"
    ARBITER = "arbiter"


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    protocol_version: Literal["1"] = "1"


# --- hetero logistic regression ------------------------------------------------------------------


class LrInstruction(_Wire):
    """Arbiter → one party, once per iteration (the one Flower instruction of the round).

    ``public_key`` only in iteration 0. ``masked_gradient`` / ``masked_loss`` are the decrypted
    masked values of the party's own previous reply (``None`` in iteration 0). ``stop`` ends training
    after the party has applied them.
    """

    kind: Literal["lr_instruction"] = "lr_instruction"
    receiver: Literal[VflRole.ACTIVE_PARTY, VflRole.PASSIVE_PARTY]
    iteration: NonNegative
    public_key: bytes | None = None
    masked_gradient: bytes | None = None
    masked_loss: bytes | None = None
    stop: bool = False


class LrForward(_Wire):
    """Passive → active (data plane): ``[[u_p]]`` of the batch followed by ``[[sum u_p**2]]``.

    Empty (no ciphertexts) in iteration 0 of the linearised mode, where ``u_p = 0`` is known to both.
    """

    kind: Literal["lr_forward"] = "lr_forward"
    iteration: NonNegative
    encrypted_scores: bytes


class LrResidual(_Wire):
    """Active → passive (data plane): ``[[u_a + u_p - 2y']] = 4 [[d]]`` (``y' = 2y - 1``), freshly re-randomised."""

    kind: Literal["lr_residual"] = "lr_residual"
    iteration: NonNegative
    encrypted_residual: bytes


class LrMaskedUpdate(_Wire):
    """Party → arbiter (reply to the instruction): ``[[g + R]]`` and, from the active party, ``[[loss + R_l]]``.

    ``converged`` is the active party's early-stopping vote (it alone learns the loss).
    """

    kind: Literal["lr_masked_update"] = "lr_masked_update"
    sender: Literal[VflRole.ACTIVE_PARTY, VflRole.PASSIVE_PARTY]
    iteration: NonNegative
    masked_gradient: bytes
    masked_loss: bytes | None = None
    converged: bool = False


class LrPartialScores(_Wire):
    """Passive → active for federated scoring: plain ``u_p = X_p w_p`` per row (float64 LE)."""

    kind: Literal["lr_partial_scores"] = "lr_partial_scores"
    scores: bytes


# --- SecureBoost ------------------------------------------------------------------------------------


class SbPacking(_Wire):
    """Layout of the packed ``(g, h, 0)`` plaintexts (see :class:`protocols.crypto.paillier.PackingScheme`)."""

    slots: Literal[3] = 3
    slot_bits: Annotated[int, Field(gt=0, le=4096)]
    exponent: Annotated[int, Field(ge=-64, le=0)]
    offset: Annotated[int, Field(gt=0)]
    max_summands: Annotated[int, Field(gt=0)]


class SbTreeStart(_Wire):
    """Active → passive: one packed ciphertext ``[[g_i, h_i, 0]]`` per training row for tree ``tree``.

    ``public_key`` and ``packing`` only for tree 0.
    """

    kind: Literal["sb_tree_start"] = "sb_tree_start"
    tree: NonNegative
    public_key: bytes | None = None
    packing: SbPacking | None = None
    encrypted_gh: bytes


class SbNodeHistogram(_Wire):
    """Cumulative encrypted ``(G_L, H_L, count_L)`` for every candidate split of one node.

    ``split_ids`` (uint32 big-endian) are shuffled, opaque handles into the passive party's lookup
    table. ``encrypted_sums`` holds ``ceil(len(split_ids) / per_ciphertext)`` ciphertexts, each packing
    ``per_ciphertext`` candidates (candidate ``j`` of a ciphertext in bits ``[j*w, (j+1)*w)``, ``w = 3
    * slot_bits``).
    """

    node: NonNegative
    split_ids: bytes
    per_ciphertext: Annotated[int, Field(gt=0)]
    encrypted_sums: bytes


class SbLeftSet(_Wire):
    """Which members of ``node`` go left (bitmap over the node's rows in ascending order)."""

    node: NonNegative
    left_bits: bytes


class SbHistograms(_Wire):
    """Passive → active: one message per level.

    Carries the left sets of the passive's winning splits of level ``depth - 1`` and the histograms
    of every open node of level ``depth``.
    """

    kind: Literal["sb_histograms"] = "sb_histograms"
    tree: NonNegative
    depth: NonNegative
    left_sets: list[SbLeftSet]
    histograms: list[SbNodeHistogram]


class SbNodeDecision(_Wire):
    """How one node of a level splits: by the passive's ``split_id`` or by an active split (``left_bits``)."""

    node: NonNegative
    owner: Literal[VflRole.ACTIVE_PARTY, VflRole.PASSIVE_PARTY]
    split_id: NonNegative | None = None
    left_bits: bytes | None = None


class SbLevelSplits(_Wire):
    """Active → passive: the splits of level ``depth``; nodes of the level not listed are leaves."""

    kind: Literal["sb_level_splits"] = "sb_level_splits"
    tree: NonNegative
    depth: NonNegative
    decisions: list[SbNodeDecision]


class SbTrainingDone(_Wire):
    """Active → passive: training finished with ``n_trees`` trees."""

    kind: Literal["sb_training_done"] = "sb_training_done"
    n_trees: NonNegative


class SbPredictRequest(_Wire):
    """Active → passive: route ``n_rows`` aligned scoring rows through the passive's splits."""

    kind: Literal["sb_predict_request"] = "sb_predict_request"
    n_rows: NonNegative


class SbRoute(_Wire):
    """Bitmap over all scoring rows: 1 where the passive's split at ``(tree, node)`` sends the row left."""

    tree: NonNegative
    node: NonNegative
    left_bits: bytes


class SbPredictReply(_Wire):
    """Passive → active: one route per passive-owned split of the model."""

    kind: Literal["sb_predict_reply"] = "sb_predict_reply"
    routes: list[SbRoute]


TrainingMessage = Annotated[
    LrInstruction
    | LrForward
    | LrResidual
    | LrMaskedUpdate
    | LrPartialScores
    | SbTreeStart
    | SbHistograms
    | SbLevelSplits
    | SbTrainingDone
    | SbPredictRequest
    | SbPredictReply,
    Field(discriminator="kind"),
]
"""Any training-plane message, parsed by its ``kind``."""
