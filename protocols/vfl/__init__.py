"""Sans-I/O vertical federated learning cores: hetero logistic regression and SecureBoost.

Each protocol's module docstring lists its parties, rounds, messages and what each party learns:
:mod:`protocols.vfl._lr` (hetero LR with an arbiter) and :mod:`protocols.vfl._secureboost`.
"""

from protocols.vfl._crypto import decode_plaintexts, encode_plaintexts
from protocols.vfl._local import LocalLrResult, Observer, TrafficLog, run_local_lr, wire_roundtrip
from protocols.vfl._lr import (
    LR_RECEIVER,
    LrActiveModel,
    LrActiveParty,
    LrArbiter,
    LrArbiterStage,
    LrConfig,
    LrPartyStage,
    LrPassiveModel,
    LrPassiveParty,
    active_predict_proba,
    passive_partial_scores,
)
from protocols.vfl._optim import OptimizerConfig

__all__ = [
    "LR_RECEIVER",
    "LocalLrResult",
    "LrActiveModel",
    "LrActiveParty",
    "LrArbiter",
    "LrArbiterStage",
    "LrConfig",
    "LrPartyStage",
    "LrPassiveModel",
    "LrPassiveParty",
    "Observer",
    "OptimizerConfig",
    "TrafficLog",
    "active_predict_proba",
    "decode_plaintexts",
    "encode_plaintexts",
    "passive_partial_scores",
    "run_local_lr",
    "wire_roundtrip",
]
