"""Cardinality-only PSI: the receiver learns |X∩Y| and nothing about which elements match.

Parties: receiver R (client, X, scalar a), sender S (server, Y, scalar b).

Rounds::

    1. R→S PsiHello(protocol=cardinality, set_size=|X|)           S→R PsiWelcome(set_size=|Y|)
    2. R→S PsiChunk(query, i)  a·H(x)                            S→R PsiAck(query, i)
    3. R→S PsiPull(evaluated, j)                                 S→R PsiChunk(evaluated, j)
       b·a·H(x) for *all* of X, permuted by S after the last query chunk, so positions say nothing
    4. R→S PsiPull(sender_set, j)                                S→R PsiChunk(sender_set, j)  b·H(y)
    R counts how many a·b·H(y) occur among the b·a·H(x).

What each party learns (semi-honest): R learns |X∩Y| and |Y|; S learns |X|. The released count may
carry ε-differentially-private two-sided geometric noise (:func:`two_sided_geometric`); note that R
itself still computes the exact count — the noise protects what R *releases* (to the coordinator or
a report), not what R sees. Stronger hiding from R needs the sender to pad with dummies (not done).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Unpack

from protocols.wire.psi import PsiAck, PsiChunk, PsiProtocol, PsiPull, PsiWelcome, Stream
from psi._batch import map_evaluate
from psi._session import (
    ChunkReader,
    Message,
    RandomSource,
    ReceiverParty,
    SetOptions,
    SetSender,
    match_packed,
    shuffle_packed,
)

__all__ = [
    "CardinalityReceiver",
    "CardinalityReceiverStage",
    "CardinalityResult",
    "CardinalitySender",
    "CardinalitySenderStage",
    "two_sided_geometric",
]


def two_sided_geometric(epsilon: float, rng: RandomSource) -> int:
    """Noise with P(k) ∝ exp(-ε·|k|): the difference of two geometric variables.

    Adding it to a count (sensitivity 1) gives ε-differential privacy.

    Args:
        epsilon: Privacy parameter, > 0. Smaller is noisier.
        rng: Source of uniform floats (inject ``secrets.SystemRandom()`` in production).
    """
    if not epsilon > 0:
        raise ValueError("epsilon must be positive")
    log_alpha = -epsilon
    draws = [math.floor(math.log(1.0 - rng.random()) / log_alpha) for _ in range(2)]
    return draws[0] - draws[1]


@dataclass(frozen=True)
class CardinalityResult:
    """Outcome at the receiver.

    Attributes:
        intersection_size: The exact |X∩Y| (stays with the receiver).
        released_size: What may be released: exact, or noised and clamped at 0 when ``epsilon`` is set.
        epsilon: The DP parameter used for ``released_size`` (``None``: no noise).
        receiver_size: |X| (distinct).
        sender_size: |Y| (distinct).
    """

    intersection_size: int
    released_size: int
    epsilon: float | None
    receiver_size: int
    sender_size: int


class CardinalityReceiverStage(Enum):
    """Receiver stages, named by what the receiver waits for."""

    IDLE = "idle"
    AWAIT_WELCOME = "await_welcome"
    AWAIT_QUERY_ACK = "await_query_ack"
    AWAIT_EVALUATED = "await_evaluated"
    AWAIT_SENDER_SET = "await_sender_set"
    DONE = "done"


class CardinalitySenderStage(Enum):
    """Sender stages, named by what the sender waits for."""

    IDLE = "idle"
    AWAIT_QUERY = "await_query"
    AWAIT_EVALUATED_PULL = "await_evaluated_pull"
    AWAIT_SENDER_SET_PULL = "await_sender_set_pull"
    DONE = "done"


_R = CardinalityReceiverStage
_S = CardinalitySenderStage


class CardinalityReceiver(ReceiverParty[CardinalityResult]):
    """The receiver (client) of cardinality-only PSI.

    Args:
        values: Canonical identifiers; duplicates collapse.
        key_type: Identifier kind, bound into the hash.
        job_id: Job the session belongs to.
        epsilon: If set, ``released_size`` carries two-sided geometric noise with this ε.
        chunk_size: Elements per chunk.
        scalar: Secret scalar (fresh by default; inject only for known-answer tests).
        rng: Randomness for the shuffle and the noise (OS CSPRNG by default).
        mapper: Parallelises the group work.
    """

    Stage = CardinalityReceiverStage
    PROTOCOL = PsiProtocol.CARDINALITY
    TRANSITIONS = {
        (_R.AWAIT_WELCOME, "psi.welcome"): "_on_welcome",
        (_R.AWAIT_QUERY_ACK, "psi.ack:query"): "_on_query_ack",
        (_R.AWAIT_EVALUATED, "psi.chunk:evaluated"): "_on_evaluated",
        (_R.AWAIT_SENDER_SET, "psi.chunk:sender_set"): "_on_sender_set",
    }

    def __init__(self, values: Iterable[str], *, epsilon: float | None = None, **options: Unpack[SetOptions]) -> None:
        if epsilon is not None and not epsilon > 0:
            raise ValueError("epsilon must be positive")
        super().__init__(values, **options)
        self.epsilon = epsilon
        self._evaluated = bytearray()
        self._count = 0
        self._readers: dict[Stream, ChunkReader] = {}

    def _open_streams(self, welcome: PsiWelcome) -> None:
        """Expect our query evaluated and permuted by the sender, then the sender's set."""
        self._readers = {
            Stream.EVALUATED: ChunkReader(Stream.EVALUATED, len(self._values), self.chunk_size),
            Stream.SENDER_SET: ChunkReader(Stream.SENDER_SET, welcome.set_size, welcome.chunk_size),
        }

    def _awaiting_query_reply(self) -> CardinalityReceiverStage:
        """Every query chunk is only acknowledged; the evaluated elements come later, permuted."""
        return _R.AWAIT_QUERY_ACK

    def _on_query_ack(self, message: PsiAck) -> Message:
        if message.chunk != self._query_index - 1:
            raise self._fail("acknowledgement for another chunk")
        if self._queries_left():
            return self._next_query()
        self._stage = _R.AWAIT_EVALUATED
        return self._pull(Stream.EVALUATED, 0)

    def _on_evaluated(self, message: PsiChunk) -> Message:
        reader = self._readers[Stream.EVALUATED]
        self._evaluated += reader.accept(message, self._stage.name)
        if not reader.done:
            return self._pull(Stream.EVALUATED, reader.next_index)
        self._stage = _R.AWAIT_SENDER_SET
        return self._pull(Stream.SENDER_SET, 0)

    def _on_sender_set(self, message: PsiChunk) -> Message | None:
        reader = self._readers[Stream.SENDER_SET]
        doubled = map_evaluate(self._map, reader.accept(message, self._stage.name), self._scalar)
        self._count += int(match_packed(doubled, bytes(self._evaluated)).sum())
        if not reader.done:
            return self._pull(Stream.SENDER_SET, reader.next_index)
        released = self._count
        if self.epsilon is not None:
            released = max(0, self._count + two_sided_geometric(self.epsilon, self._rng))
        self._result = CardinalityResult(self._count, released, self.epsilon, len(self._values), reader.total_count)
        self._evaluated = bytearray()
        self._stage = _R.DONE
        return None


class CardinalitySender(SetSender[int]):
    """The sender (server) of cardinality-only PSI.

    Args:
        values: Canonical identifiers; duplicates collapse.
        key_type: Identifier kind; a hello with another key type is refused.
        job_id: Job the session belongs to.
        chunk_size: Elements per chunk of our own stream.
        scalar: Secret scalar (fresh by default).
        rng: Randomness for the shuffles. **The permutation of the receiver's elements must be
            unpredictable to the receiver**, or it learns which of its elements matched.
        mapper: Parallelises the group work.

    Its :meth:`result` is what the sender learns: the receiver's set size.
    """

    Stage = CardinalitySenderStage
    PROTOCOL = PsiProtocol.CARDINALITY
    TRANSITIONS = {
        (_S.IDLE, "psi.hello"): "_on_hello",
        (_S.AWAIT_QUERY, "psi.chunk:query"): "_on_query",
        (_S.AWAIT_EVALUATED_PULL, "psi.pull:evaluated"): "_on_pull_evaluated",
        (_S.AWAIT_SENDER_SET_PULL, "psi.pull:sender_set"): "_on_pull_sender_set",
    }

    def __init__(self, values: Iterable[str], **options: Unpack[SetOptions]) -> None:
        super().__init__(values, **options)
        self._received = bytearray()
        self._shuffled = b""

    def _on_query(self, message: PsiChunk) -> PsiAck:
        self._received += self._queries.accept(message, self._stage.name)
        if self._queries.done:
            doubled = map_evaluate(self._map, bytes(self._received), self._scalar)
            self._shuffled = shuffle_packed(doubled, 32, self._rng)
            self._received = bytearray()
            self._stage = _S.AWAIT_EVALUATED_PULL
        return self._ack(Stream.QUERY, message.chunk)

    def _on_pull_evaluated(self, message: PsiPull) -> PsiChunk:
        total, size = self._queries.total_count, self._queries.chunk_size
        start, stop = self._take_pull(message, total, size)
        reply = self._chunk(Stream.EVALUATED, message.chunk, total, size, self._shuffled[32 * start : 32 * stop])
        if self._pulled_all(total, size):
            self._stage, self._next_pull, self._shuffled = _S.AWAIT_SENDER_SET_PULL, 0, b""
        return reply

    def _on_pull_sender_set(self, message: PsiPull) -> PsiChunk:
        body = self._take_set_pull(message)
        if self._set_pulled():
            self._stage, self._result = _S.DONE, self._queries.total_count
        return self._set_chunk(message.chunk, body)
