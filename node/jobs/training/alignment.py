"""Row alignment for training: ECDH-PSI on the job's key field with the intersection revealed to both.

Parties: the bank (PSI receiver, starts every exchange) and the telco (PSI sender). Two ECDH-PSI
sessions of :mod:`psi.ecdh` run over the mutual-TLS data plane, one after the other::

    channel train.psi.r   output to the receiver: the bank learns which of its records are shared
    channel train.psi.s   output to the sender:   the telco learns which of its records are shared

Each party then orders its own shared records by their canonical key value. Both hold the same set
of canonical values, so the orders agree without any row index or identifier travelling; the
held-out split is a permutation both derive from the job digest.

What each party learns: the intersection of the key columns (each party, which of its *own* records
are in it — both sides learn the matched identifiers, as a vertical-training alignment must) and the
peer's set size; nothing about records outside the intersection. The arbiter later sees only the
SHA-256 of the job id and the sorted shared values (:attr:`Aligned.digest`), to check that both sides
aligned the same rows; over a whole set of 18-digit ID numbers that hash cannot be inverted by
enumeration. Semi-honest model, as :mod:`psi.ecdh`.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from node.jobs.psi import PeerFrameTransport
from node.peer import PeerClient, PeerMessage
from protocols.vfl.rounds import TrainingError
from protocols.wire.control import KeyType
from protocols.wire.errors import ProtocolError
from protocols.wire.psi import OutputTo, decode_frame, encode_frame
from psi import EcdhPsiReceiver, EcdhPsiSender, PsiError, normalise_column

__all__ = ["PSI_CHANNELS", "Aligned", "AlignmentSender", "align_as_receiver", "aligned_from", "split_rows"]

PSI_CHANNELS = {OutputTo.RECEIVER: "train.psi.r", OutputTo.SENDER: "train.psi.s"}
TEST_FRACTION = 0.3


@dataclass(frozen=True)
class Aligned:
    """A party's rows in the shared order: ``rows[i]`` is the source row of aligned position ``i``."""

    rows: npt.NDArray[np.int64]
    keys: list[str]
    """The shared canonical key values in aligned order (stay in the node; digested into the model card)."""
    digest: str
    own_size: int
    peer_size: int


def _canonical(key_type: KeyType, keys: list[str | None]) -> dict[str, int]:
    """Canonical value -> first source row holding it (invalid and missing keys are left out)."""
    column = normalise_column(key_type, keys)
    first: dict[str, int] = {}
    for value, index in zip(column.values, column.indices, strict=True):
        first.setdefault(value, index)
    return first


def aligned_from(job_id: int, canonical: dict[str, int], shared: frozenset[str], peer_size: int) -> Aligned:
    """The shared order from the intersection a PSI session revealed."""
    ordered = sorted(shared)
    digest = hashlib.sha256(f"tandem-align/{job_id}\n".encode() + "\n".join(ordered).encode()).hexdigest()
    rows = np.array([canonical[v] for v in ordered], dtype=np.int64)
    return Aligned(rows, ordered, digest, len(canonical), peer_size)


def align_as_receiver(client: PeerClient, job_id: int, key_type: KeyType, keys: list[str | None], *,
                      ready_timeout: float = 600.0, still_running: Callable[[], None] | None = None) -> Aligned:
    """Bank side: run both sessions against the telco; return the bank's aligned rows.

    ``still_running`` (the job context's ``check_current``) ends the wait for the telco early once the
    coordinator shows the job ended.

    Raises:
        TrainingError: the exchange failed or the peer's answers were invalid.
    """
    canonical = _canonical(key_type, keys)
    shared: frozenset[str] | None = None
    peer_size = 0
    for output in (OutputTo.RECEIVER, OutputTo.SENDER):
        session = EcdhPsiReceiver(list(canonical), key_type=key_type, job_id=str(job_id), output_to=output)
        transport = PeerFrameTransport(client, job_id, ready_timeout=ready_timeout, still_running=still_running)
        message: Any = session.start()
        seq = 0
        try:
            while message is not None:
                seq += 1
                message = session.handle(decode_frame(transport.exchange(PSI_CHANNELS[output], seq,
                                                                         encode_frame(message))))
        except (ProtocolError, PsiError, ValueError) as exc:
            raise TrainingError(f"row alignment (PSI, {output.value} output) failed: {exc}") from exc
        result = session.result()
        peer_size = result.sender_size
        if output is OutputTo.RECEIVER:
            shared = result.intersection
    assert shared is not None
    return aligned_from(job_id, canonical, shared, peer_size)


@dataclass
class AlignmentSender:
    """Telco side: answers the bank's two sessions; :meth:`wait` returns the telco's aligned rows."""

    job_id: int
    key_type: KeyType
    keys: list[str | None]
    _canonical: dict[str, int] = field(init=False)
    _sessions: dict[str, EcdhPsiSender] = field(init=False, default_factory=dict)
    _done: threading.Event = field(init=False, default_factory=threading.Event)
    _aligned: Aligned | None = field(init=False, default=None)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._canonical = _canonical(self.key_type, self.keys)

    def on_message(self, message: PeerMessage) -> bytes:
        """Answer one PSI frame of either channel."""
        with self._lock:
            session = self._sessions.get(message.channel)
            if session is None:
                output = OutputTo.RECEIVER if message.channel == PSI_CHANNELS[OutputTo.RECEIVER] else OutputTo.SENDER
                session = EcdhPsiSender(list(self._canonical), key_type=self.key_type, job_id=str(self.job_id),
                                        output_to=output)
                self._sessions[message.channel] = session
            try:
                reply = session.handle(decode_frame(message.body))
            except (PsiError, ValueError) as exc:
                raise ProtocolError(f"alignment: {exc}") from exc
            if message.channel == PSI_CHANNELS[OutputTo.SENDER] and session.done:
                result = session.result()
                assert result.intersection is not None
                self._aligned = aligned_from(self.job_id, self._canonical, result.intersection, result.receiver_size)
                self._done.set()
        if reply is None:
            raise ProtocolError("alignment: the session had nothing to answer", status_hint=500)
        return encode_frame(reply)

    def wait(self, timeout: float) -> Aligned:
        """Block until the second session finished.

        Raises:
            TrainingError: the bank did not complete alignment within ``timeout`` seconds.
        """
        if not self._done.wait(timeout):
            raise TrainingError(f"row alignment did not complete within {timeout:.0f} s")
        assert self._aligned is not None
        return self._aligned


def split_rows(n: int, job_digest: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Train and held-out positions of ``n`` aligned rows; identical on both parties (seeded by the job digest)."""
    seed = int(job_digest[:16], 16)
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(n * TEST_FRACTION)))
    return np.sort(order[n_test:]), np.sort(order[:n_test])
