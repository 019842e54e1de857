"""ECDH-PSI (Diffie–Hellman commutative blinding over ristretto255), output to one named party.

Parties: the **receiver** R (the client, holds X, secret scalar a) and the **sender** S (the
server, holds Y, secret scalar b). ``H`` is :func:`psi.group.hash_to_group`, bound to the key type.

Rounds, output to the receiver (default)::

    1. R→S PsiHello(set_size=|X|)            S→R PsiWelcome(set_size=|Y|)
    2. R→S PsiChunk(query, i)  a·H(x), X shuffled by R          S→R PsiChunk(evaluated, i)  b·(a·H(x)), same order
    3. R→S PsiPull(sender_set, j)                               S→R PsiChunk(sender_set, j)  b·H(y), Y shuffled by S
    R computes a·(b·H(y)) and intersects with b·a·H(x).

Output to the sender swaps who learns: in round 2 S only acknowledges (keeping b·a·H(x)), and in
round 3 R returns ``a·(b·H(y))`` in S's order (``PsiChunk(returned, j)``), so S learns which of its
own y are in X.

What each party learns (semi-honest, DDH in ristretto255, H modelled as a random oracle):
the output party learns X∩Y; the other learns only the peer's set size. Both learn |X| and |Y|.
Not protected against a malicious party (e.g. one that sends arbitrary points or repeats elements
to probe); set sizes are not hidden; duplicate inputs are collapsed before the protocol.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Unpack

from protocols.wire.psi import OutputTo, PsiChunk, PsiHello, PsiProtocol, PsiPull, PsiWelcome, Stream
from psi._batch import map_evaluate
from psi._errors import PeerSetTooLarge
from psi._session import (
    ChunkReader,
    HelloTerms,
    Message,
    ReceiverParty,
    SetOptions,
    SetSender,
    chunk_bounds,
    match_packed,
)

__all__ = ["EcdhPsiReceiver", "EcdhPsiSender", "EcdhReceiverStage", "EcdhSenderStage", "PsiResult"]


@dataclass(frozen=True)
class PsiResult:
    """What one party holds at the end of ECDH-PSI.

    Attributes:
        intersection: The common canonical values (output party only; ``None`` for the other).
        receiver_size: Distinct elements the receiver put in.
        sender_size: Distinct elements the sender put in.
    """

    intersection: frozenset[str] | None
    receiver_size: int
    sender_size: int


class EcdhReceiverStage(Enum):
    """Receiver stages, named by what the receiver waits for."""

    IDLE = "idle"
    AWAIT_WELCOME = "await_welcome"
    AWAIT_EVALUATED = "await_evaluated"
    AWAIT_QUERY_ACK = "await_query_ack"
    AWAIT_SENDER_SET = "await_sender_set"
    AWAIT_RETURN_ACK = "await_return_ack"
    DONE = "done"


class EcdhSenderStage(Enum):
    """Sender stages, named by what the sender waits for."""

    IDLE = "idle"
    AWAIT_QUERY = "await_query"
    AWAIT_PULL = "await_pull"
    AWAIT_RETURNED = "await_returned"
    DONE = "done"


_R = EcdhReceiverStage
_S = EcdhSenderStage


class EcdhPsiReceiver(ReceiverParty[PsiResult]):
    """The receiver (client) of ECDH-PSI.

    Args:
        values: Canonical identifiers (see :func:`psi.identifiers.normalise`); duplicates collapse.
        key_type: Identifier kind; both parties must agree (it is bound into the hash).
        job_id: Job the session belongs to.
        output_to: Who learns the intersection. Both parties must agree.
        chunk_size: Elements per chunk (≤ 65,536).
        scalar: Secret blinding scalar; fresh per session by default. **Reusing one across jobs
            lets the peer link elements between jobs.** Inject only for known-answer tests.
        rng: Randomness for the shuffle (OS CSPRNG by default).
        mapper: Parallelises the group work (serial by default; see :mod:`psi.engine`).
        max_sender_size: Refuse (``PeerSetTooLarge``) a sender whose set is larger, at its welcome, before
            this party sends any element: bounds how many of the sender's elements output-to-sender PSI can
            test against this party's set.
    """

    Stage = EcdhReceiverStage
    PROTOCOL = PsiProtocol.ECDH
    TRANSITIONS = {
        (_R.AWAIT_WELCOME, "psi.welcome"): "_on_welcome",
        (_R.AWAIT_EVALUATED, "psi.chunk:evaluated"): "_on_evaluated",
        (_R.AWAIT_QUERY_ACK, "psi.ack:query"): "_on_query_ack",
        (_R.AWAIT_SENDER_SET, "psi.chunk:sender_set"): "_on_sender_set",
        (_R.AWAIT_RETURN_ACK, "psi.ack:returned"): "_on_return_ack",
    }

    def __init__(
        self, values: Iterable[str], *, output_to: OutputTo = OutputTo.RECEIVER, max_sender_size: int | None = None,
        **options: Unpack[SetOptions]
    ) -> None:
        super().__init__(values, **options)
        self.output_to = OutputTo(output_to)
        self.max_sender_size = max_sender_size
        self._evaluated = bytearray()
        self._theirs = bytearray()
        self._sender_reader: ChunkReader | None = None
        self._query_reader: ChunkReader | None = None
        self._sender_size = 0

    def _hello_terms(self) -> HelloTerms:
        """The hello also states who learns the intersection."""
        return {"output_to": self.output_to}

    def _open_streams(self, welcome: PsiWelcome) -> None:
        """Expect the sender's set and, for output to us, our query evaluated."""
        if self.max_sender_size is not None and welcome.set_size > self.max_sender_size:
            raise PeerSetTooLarge(f"the sender's set has {welcome.set_size} elements, more than the "
                                  f"{self.max_sender_size} this party agreed to match against")
        self._sender_size = welcome.set_size
        self._sender_reader = ChunkReader(Stream.SENDER_SET, welcome.set_size, welcome.chunk_size)
        self._query_reader = ChunkReader(Stream.EVALUATED, len(self._values), self.chunk_size)

    def _awaiting_query_reply(self) -> EcdhReceiverStage:
        """Output to us: the evaluated chunk; output to the sender: its acknowledgement."""
        return _R.AWAIT_EVALUATED if self.output_to is OutputTo.RECEIVER else _R.AWAIT_QUERY_ACK

    def _on_evaluated(self, message: PsiChunk) -> Message:
        assert self._query_reader is not None
        self._evaluated += self._query_reader.accept(message, self._stage.name)
        return self._next_query() if self._queries_left() else self._pull_sender_set()

    def _on_query_ack(self, message: Message) -> Message:
        if getattr(message, "chunk", None) != self._query_index - 1:
            raise self._fail("acknowledgement for another chunk")
        return self._next_query() if self._queries_left() else self._pull_sender_set()

    def _pull_sender_set(self) -> PsiPull:
        assert self._sender_reader is not None
        self._stage = _R.AWAIT_SENDER_SET
        return self._pull(Stream.SENDER_SET, self._sender_reader.next_index)

    def _on_sender_set(self, message: PsiChunk) -> Message | None:
        assert self._sender_reader is not None
        body = self._sender_reader.accept(message, self._stage.name)
        doubled = map_evaluate(self._map, body, self._scalar)
        if self.output_to is OutputTo.SENDER:
            self._stage = _R.AWAIT_RETURN_ACK
            return self._chunk(
                Stream.RETURNED, message.chunk, self._sender_size, self._sender_reader.chunk_size, doubled
            )
        self._theirs += doubled
        if not self._sender_reader.done:
            return self._pull(Stream.SENDER_SET, self._sender_reader.next_index)
        self._finish()
        return None

    def _on_return_ack(self, message: Message) -> Message | None:
        assert self._sender_reader is not None
        if getattr(message, "chunk", None) != self._sender_reader.next_index - 1:
            raise self._fail("acknowledgement for another chunk")
        if not self._sender_reader.done:
            return self._pull_sender_set()
        self._finish()
        return None

    def _finish(self) -> None:
        intersection: frozenset[str] | None = None
        if self.output_to is OutputTo.RECEIVER:
            mask = match_packed(bytes(self._evaluated), bytes(self._theirs))
            intersection = frozenset(v for v, hit in zip(self._values, mask, strict=True) if hit)
        self._result = PsiResult(intersection, len(self._values), self._sender_size)
        self._evaluated = bytearray()
        self._theirs = bytearray()
        self._stage = _R.DONE


class EcdhPsiSender(SetSender[PsiResult]):
    """The sender (server) of ECDH-PSI.

    Args:
        values: Canonical identifiers; duplicates collapse.
        key_type: Identifier kind; a hello with another key type is refused.
        job_id: Job the session belongs to.
        output_to: The output side this sender agreed to; a hello asking for another is refused.
        chunk_size: Elements per chunk of the sender's own stream.
        scalar: Secret scalar b; fresh by default (see :class:`EcdhPsiReceiver` on reuse).
        rng: Randomness for the shuffle of our set.
        mapper: Parallelises the group work.
    """

    Stage = EcdhSenderStage
    PROTOCOL = PsiProtocol.ECDH
    TRANSITIONS = {
        (_S.IDLE, "psi.hello"): "_on_hello",
        (_S.AWAIT_QUERY, "psi.chunk:query"): "_on_query",
        (_S.AWAIT_PULL, "psi.pull:sender_set"): "_on_pull",
        (_S.AWAIT_RETURNED, "psi.chunk:returned"): "_on_returned",
    }

    def __init__(
        self, values: Iterable[str], *, output_to: OutputTo = OutputTo.RECEIVER, **options: Unpack[SetOptions]
    ) -> None:
        super().__init__(values, **options)
        self.output_to = OutputTo(output_to)
        self._return_reader = ChunkReader(Stream.RETURNED, len(self._values), self.chunk_size)
        self._receiver_doubled = bytearray()
        self._hits: set[str] = set()

    def _check_hello(self, message: PsiHello) -> None:
        """Refuse another protocol, and terms other than the agreed key type and output side."""
        if message.protocol is not PsiProtocol.ECDH:
            raise self._fail("hello for another protocol")
        if message.key_type is not self.key_type or message.output_to is not self.output_to:
            raise self._fail("hello terms differ from the agreed key type or output side")

    def _on_query(self, message: PsiChunk) -> Message:
        body = self._queries.accept(message, self._stage.name)
        doubled = map_evaluate(self._map, body, self._scalar)
        if self._queries.done:
            self._stage = _S.AWAIT_PULL
        if self.output_to is OutputTo.RECEIVER:
            return self._chunk(Stream.EVALUATED, message.chunk, message.total_count, self._queries.chunk_size, doubled)
        self._receiver_doubled += doubled
        return self._ack(Stream.QUERY, message.chunk)

    def _on_pull(self, message: PsiPull) -> PsiChunk:
        body = self._take_set_pull(message)
        if self.output_to is OutputTo.SENDER:
            self._stage = _S.AWAIT_RETURNED
        elif self._set_pulled():
            self._finish()
        return self._set_chunk(message.chunk, body)

    def _on_returned(self, message: PsiChunk) -> Message:
        body = self._return_reader.accept(message, self._stage.name)
        if message.chunk != self._next_pull - 1:
            raise self._fail("returned chunk does not answer the last pull")
        start, _ = chunk_bounds(message.chunk, len(self._values), self.chunk_size)
        mask = match_packed(body, bytes(self._receiver_doubled))
        self._hits.update(self._values[start + i] for i in mask.nonzero()[0])
        self._stage = _S.AWAIT_PULL
        if self._return_reader.done:
            self._finish()
        return self._ack(Stream.RETURNED, message.chunk)

    def _finish(self) -> None:
        mine = frozenset(self._hits) if self.output_to is OutputTo.SENDER else None
        self._result = PsiResult(mine, self._queries.total_count, len(self._values))
        self._receiver_doubled = bytearray()
        self._stage = _S.DONE
