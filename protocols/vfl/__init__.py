"""Sans-I/O vertical federated learning cores: hetero logistic regression and SecureBoost.

Each protocol's module docstring lists its parties, rounds, messages and what each party learns:
:mod:`protocols.vfl._lr` (hetero LR with an arbiter) and :mod:`protocols.vfl._secureboost`.
"""

from protocols.vfl._binning import QuantileBins
from protocols.vfl._crypto import decode_plaintexts, encode_plaintexts
from protocols.vfl._local import (
    LocalLrResult,
    LocalSecureBoostResult,
    Observer,
    TrafficLog,
    binary_size,
    run_local_lr,
    run_local_secureboost,
    score_local_lr,
    score_local_secureboost,
    wire_roundtrip,
)
from protocols.vfl._lr import (
    LR_RECEIVER,
    LrActiveModel,
    LrActiveParty,
    LrArbiter,
    LrArbiterStage,
    LrConfig,
    LrPartyStage,
    LrPartyState,
    LrPassiveModel,
    LrPassiveParty,
    lr_active_predict_proba,
    lr_passive_partial_scores,
)
from protocols.vfl._optim import OptimizerConfig, OptimizerState
from protocols.vfl._sb_tree import SbActiveModel, SbConfig, SbPassiveModel, TreeNode, train_plain_secureboost
from protocols.vfl._secureboost import (
    SB_RECEIVER,
    SbActiveParty,
    SbActiveStage,
    SbPassiveParty,
    SbPassiveStage,
    sb_active_predict_proba,
    sb_passive_routes,
)

__all__ = [
    "LR_RECEIVER",
    "SB_RECEIVER",
    "LocalLrResult",
    "LocalSecureBoostResult",
    "QuantileBins",
    "SbActiveModel",
    "SbActiveParty",
    "SbActiveStage",
    "SbConfig",
    "SbPassiveModel",
    "SbPassiveParty",
    "SbPassiveStage",
    "TreeNode",
    "run_local_secureboost",
    "sb_active_predict_proba",
    "sb_passive_routes",
    "score_local_lr",
    "score_local_secureboost",
    "train_plain_secureboost",
    "LrActiveModel",
    "LrActiveParty",
    "LrArbiter",
    "LrArbiterStage",
    "LrConfig",
    "LrPartyStage",
    "LrPartyState",
    "LrPassiveModel",
    "LrPassiveParty",
    "Observer",
    "OptimizerConfig",
    "OptimizerState",
    "TrafficLog",
    "binary_size",
    "lr_active_predict_proba",
    "decode_plaintexts",
    "encode_plaintexts",
    "lr_passive_partial_scores",
    "run_local_lr",
    "wire_roundtrip",
]
