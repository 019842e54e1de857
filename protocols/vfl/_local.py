"""In-process drivers: every party in one loop, every message through its JSON wire form.

These loops are the first integration tests and the benchmark harness; the node runtime replaces
them with the data plane (party ↔ party) and Flower (arbiter ↔ parties).
"""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, TypeAdapter

from protocols.crypto.paillier import generate_keypair
from protocols.vfl._lr import (
    LR_RECEIVER,
    LrActiveModel,
    LrActiveParty,
    LrArbiter,
    LrArbiterSummary,
    LrConfig,
    LrMessage,
    LrPassiveModel,
    LrPassiveParty,
    lr_active_predict_proba,
    lr_passive_partial_scores,
)
from protocols.vfl._sb_tree import SbActiveModel, SbConfig, SbPassiveModel
from protocols.vfl._secureboost import (
    SB_RECEIVER,
    SbActiveParty,
    SbPassiveParty,
    sb_active_predict_proba,
    sb_passive_routes,
)
from protocols.wire.training import LrInstruction, TrainingMessage, VflRole

__all__ = [
    "LocalLrResult",
    "LocalSecureBoostResult",
    "Observer",
    "TrafficLog",
    "binary_size",
    "run_local_lr",
    "run_local_secureboost",
    "score_local_lr",
    "score_local_secureboost",
    "wire_roundtrip",
]

Observer = Callable[[VflRole, BaseModel], None]
"""Called with ``(receiver, message)`` for every delivered message (after the wire round trip)."""

_ADAPTER: TypeAdapter[Any] = TypeAdapter(TrainingMessage)


def wire_roundtrip(msg: BaseModel) -> tuple[Any, int]:
    """Serialise ``msg`` to JSON and parse it back as a :data:`TrainingMessage`; return it and its size."""
    data = msg.model_dump_json().encode()
    return _ADAPTER.validate_json(data), len(data)


def _strip_bytes(value: Any) -> tuple[Any, int]:
    """Replace every ``bytes`` value by ``b""``; return the stripped value and the bytes removed."""
    if isinstance(value, bytes):
        return b"", len(value)
    if isinstance(value, dict):
        total, out = 0, {}
        for key, item in value.items():
            out[key], size = _strip_bytes(item)
            total += size
        return out, total
    if isinstance(value, list):
        parts = [_strip_bytes(item) for item in value]
        return [p for p, _ in parts], sum(n for _, n in parts)
    return value, 0


def binary_size(msg: BaseModel) -> int:
    """Size of ``msg`` with its binary fields sent raw (ciphertexts in the binary codec, not base64).

    The non-binary envelope is counted at its JSON size; a binary transport (the data plane's chunked
    bodies, Flower's ``bytes`` records) carries the ciphertext vectors as they are.
    """
    stripped, payload = _strip_bytes(msg.model_dump())
    envelope = json.dumps(stripped, default=lambda v: "" if isinstance(v, bytes) else str(v))
    return len(envelope.encode()) + payload


@dataclass
class TrafficLog:
    """Bytes and message counts per ``(sender, receiver)`` link.

    ``bytes`` counts the JSON wire form (binary fields in base64); ``binary_bytes`` the same messages
    with binary fields sent raw (see :func:`binary_size`).
    """

    bytes: Counter[tuple[str, str]] = field(default_factory=Counter)
    messages: Counter[tuple[str, str]] = field(default_factory=Counter)
    binary_bytes: Counter[tuple[str, str]] = field(default_factory=Counter)

    def record(self, sender: VflRole, receiver: VflRole, size: int, binary: int | None = None) -> None:
        self.bytes[(sender.value, receiver.value)] += size
        self.messages[(sender.value, receiver.value)] += 1
        self.binary_bytes[(sender.value, receiver.value)] += size if binary is None else binary

    @property
    def total_bytes(self) -> int:
        """All bytes on all links (JSON wire form)."""
        return sum(self.bytes.values())

    @property
    def total_binary_bytes(self) -> int:
        """All bytes on all links with binary fields sent raw."""
        return sum(self.binary_bytes.values())


@dataclass(frozen=True)
class LocalLrResult:
    """Outcome of :func:`run_local_lr`."""

    active: LrActiveModel
    passive: LrPassiveModel
    arbiter: LrArbiterSummary
    traffic: TrafficLog


def _deliver_all(first_sender: VflRole, first: Iterable[Any], parties: Mapping[VflRole, Any],
                 receiver_of: Callable[[Any], VflRole], traffic: TrafficLog, observer: Observer | None) -> None:
    """Deliver messages through their wire form, breadth first, until no party has anything more to send."""
    queue: deque[tuple[VflRole, Any]] = deque((first_sender, m) for m in first)
    while queue:
        sender, msg = queue.popleft()
        receiver = receiver_of(msg)
        delivered, size = wire_roundtrip(msg)
        traffic.record(sender, receiver, size, binary_size(msg))
        if observer is not None:
            observer(receiver, delivered)
        queue.extend((receiver, out) for out in parties[receiver].handle(delivered))


def _lr_receiver(msg: LrMessage) -> VflRole:
    return msg.receiver if isinstance(msg, LrInstruction) else LR_RECEIVER[msg.kind]


def run_local_lr(
    config: LrConfig,
    active_features: npt.ArrayLike,
    labels: npt.ArrayLike,
    passive_features: npt.ArrayLike,
    *,
    key_bits: int = 2048,
    observer: Observer | None = None,
    workers: int = 0,
) -> LocalLrResult:
    """Train hetero LR with all three parties in this process.

    Args:
        config: shared hyper-parameters (``allow_insecure_test_key`` for ``key_bits < 2048``).
        active_features: the bank's aligned features.
        labels: the bank's 0/1 labels.
        passive_features: the telco's aligned features.
        key_bits: Paillier modulus length of the arbiter's fresh key.
        observer: sees every delivered message (e.g. to record what the arbiter receives).
        workers: worker processes per party for the large Paillier batches (0: none).
    """
    _, private_key = generate_keypair(key_bits, allow_insecure_test_key=config.allow_insecure_test_key)
    arbiter = LrArbiter(config, private_key)
    parties: dict[VflRole, Any] = {
        VflRole.ACTIVE_PARTY: LrActiveParty(config, active_features, labels, workers=workers),
        VflRole.PASSIVE_PARTY: LrPassiveParty(config, passive_features, workers=workers),
        VflRole.ARBITER: arbiter,
    }
    traffic = TrafficLog()
    try:
        _deliver_all(VflRole.ARBITER, arbiter.start(), parties, _lr_receiver, traffic, observer)
    finally:
        parties[VflRole.ACTIVE_PARTY].close()
        parties[VflRole.PASSIVE_PARTY].close()
    return LocalLrResult(
        active=parties[VflRole.ACTIVE_PARTY].result(),
        passive=parties[VflRole.PASSIVE_PARTY].result(),
        arbiter=arbiter.result(),
        traffic=traffic,
    )


@dataclass(frozen=True)
class LocalSecureBoostResult:
    """Outcome of :func:`run_local_secureboost`."""

    active: SbActiveModel
    passive: SbPassiveModel
    traffic: TrafficLog


def run_local_secureboost(
    config: SbConfig,
    active_features: npt.ArrayLike,
    labels: npt.ArrayLike,
    passive_features: npt.ArrayLike,
    *,
    key_bits: int = 2048,
    observer: Observer | None = None,
    passive_rng: np.random.Generator | None = None,
    workers: int = 0,
) -> LocalSecureBoostResult:
    """Train SecureBoost with both parties in this process (the active party's fresh key pair).

    Args:
        config: shared hyper-parameters (``allow_insecure_test_key`` for ``key_bits < 2048``).
        active_features: the bank's aligned features.
        labels: the bank's 0/1 labels.
        passive_features: the telco's aligned features.
        key_bits: Paillier modulus length of the active party's key.
        observer: sees every delivered message.
        passive_rng: the passive party's split-id shuffle (tests only; default: OS-seeded).
        workers: worker processes of the active party for the per-tree encryption (0: none).
    """
    _, private_key = generate_keypair(key_bits, allow_insecure_test_key=config.allow_insecure_test_key)
    active = SbActiveParty(config, active_features, labels, private_key, workers=workers)
    passive = SbPassiveParty(config, passive_features, rng=passive_rng)
    parties: dict[VflRole, Any] = {VflRole.ACTIVE_PARTY: active, VflRole.PASSIVE_PARTY: passive}
    traffic = TrafficLog()
    try:
        _deliver_all(VflRole.ACTIVE_PARTY, active.start(), parties, lambda m: SB_RECEIVER[m.kind], traffic, observer)
    finally:
        active.close()
    return LocalSecureBoostResult(active=active.result(), passive=passive.result(), traffic=traffic)


def score_local_secureboost(
    result: LocalSecureBoostResult, config: SbConfig, active_features: npt.ArrayLike, passive_features: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Federated scoring in one process: the passive routes its splits, the active finishes."""
    reply, _ = wire_roundtrip(sb_passive_routes(result.passive, passive_features))
    return sb_active_predict_proba(result.active, config, active_features, reply)


def score_local_lr(
    result: LocalLrResult, active_features: npt.ArrayLike, passive_features: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Federated LR scoring in one process (the passive's plain partial scores)."""
    share, _ = wire_roundtrip(lr_passive_partial_scores(result.passive, passive_features))
    return lr_active_predict_proba(result.active, active_features, share)
