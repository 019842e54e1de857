"""Machinery shared by the PSI sessions: stage dispatch, the party bases, chunk bookkeeping, shuffling, matching.

A session subclass declares a ``Stage`` enum and ``TRANSITIONS``: a mapping from ``(stage, event)``
to the name of the handler method, where ``event`` is the message kind, qualified by its stream for
chunks, pulls and acks (``"psi.chunk:query"``). :meth:`Session.handle` looks the pair up *before*
doing any work (:func:`protocols.wire.stages.check_stage`) and raises :class:`PsiRemoteError`
naming the stage when it is not in the table.

The party bases hold what the three protocols (:mod:`psi.ecdh`, :mod:`psi.cardinality`,
:mod:`psi.labeled`) share; each protocol module says what each party learns::

    Session                  stage dispatch, job binding, message construction
    └── Party[R]             result() once DONE
        ├── SetParty[R]      a shuffled set of canonical identifiers and a secret scalar
        │   └── ReceiverParty[R]   the client: hello, welcome, the query stream
        └── SenderParty[R]   the server: hello → welcome, pulls served strictly in order
            └── SetSender[R]       (and SetParty) a server that streams its own blinded set
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from enum import Enum
from typing import ClassVar, Generic, Protocol, Required, TypedDict, TypeVar

import numpy as np

from protocols.wire.control import KeyType
from protocols.wire.psi import OutputTo, PsiAck, PsiChunk, PsiHello, PsiProtocol, PsiPull, PsiWelcome, Stream
from protocols.wire.stages import check_stage
from psi._batch import BatchMapper, map_blind, serial_map
from psi._errors import InvalidPoint, PsiLocalError, PsiRemoteError
from psi.group import POINT_BYTES, Scalar

__all__ = [
    "ChunkReader",
    "Message",
    "Party",
    "RandomSource",
    "ReceiverParty",
    "SenderParty",
    "Session",
    "HelloTerms",
    "SessionOptions",
    "SetOptions",
    "SetParty",
    "SetSender",
    "WelcomeTerms",
    "chunk_bounds",
    "event_of",
    "match_packed",
    "shuffle",
]

Message = PsiHello | PsiWelcome | PsiChunk | PsiPull | PsiAck
DEFAULT_CHUNK_SIZE = 1 << 16
R = TypeVar("R")


class RandomSource(Protocol):
    """What sessions need from an injected RNG (``random.Random``, ``secrets.SystemRandom()``)."""

    def random(self) -> float:
        """A float in [0, 1)."""
        ...

    def randbytes(self, n: int) -> bytes:
        """``n`` random bytes."""
        ...


def default_rng() -> RandomSource:
    """The OS CSPRNG, used when no RNG is injected."""
    return random.SystemRandom()


def event_of(message: Message) -> str:
    """The transition-table key of a message: its kind, qualified by stream where it has one."""
    stream = getattr(message, "stream", None)
    return message.kind if stream is None else f"{message.kind}:{Stream(stream).value}"


def chunk_count(total: int, chunk_size: int) -> int:
    """Number of chunks a stream of ``total`` elements takes (at least one, possibly empty)."""
    return max(1, math.ceil(total / chunk_size))


def chunk_bounds(index: int, total: int, chunk_size: int) -> tuple[int, int]:
    """Element range ``[start, stop)`` of chunk ``index``."""
    start = index * chunk_size
    return start, min(total, start + chunk_size)


def shuffle(items: Sequence[str], rng: RandomSource) -> list[str]:
    """A uniformly random permutation of ``items`` driven by ``rng`` (64 random bits per element)."""
    keys = np.frombuffer(rng.randbytes(8 * len(items)), dtype=np.uint64) if items else np.zeros(0, np.uint64)
    return [items[i] for i in np.argsort(keys, kind="stable")]


def shuffle_packed(packed: bytes, size: int, rng: RandomSource) -> bytes:
    """Randomly permute the fixed-size records of ``packed``."""
    n = len(packed) // size
    if n == 0:
        return packed
    keys = np.frombuffer(rng.randbytes(8 * n), dtype=np.uint64)
    rows = np.frombuffer(packed, dtype=np.uint8).reshape(n, size)
    return rows[np.argsort(keys, kind="stable")].tobytes()


def match_packed(ours: bytes, theirs: bytes) -> np.ndarray:
    """Boolean mask over the elements of ``ours`` that also occur in ``theirs`` (both packed 32-byte).

    Exact: an 8-byte prefix prefilter with ``numpy.isin``, then a full-width check of the candidates.
    """
    a = np.frombuffer(ours, dtype=np.uint8).reshape(-1, POINT_BYTES)
    b = np.frombuffer(theirs, dtype=np.uint8).reshape(-1, POINT_BYTES)
    mask = np.isin(a[:, :8].copy().view(np.uint64).ravel(), b[:, :8].copy().view(np.uint64).ravel())
    if mask.any():
        near = np.isin(b[:, :8].copy().view(np.uint64).ravel(), a[mask, :8].copy().view(np.uint64).ravel())
        full = {row.tobytes() for row in b[near]}
        for i in np.flatnonzero(mask):
            mask[i] = a[i].tobytes() in full
    return mask


class ChunkReader:
    """Accepts the chunks of one incoming stream strictly in order and checks every size field."""

    def __init__(self, stream: Stream, total_count: int, chunk_size: int, element_size: int = POINT_BYTES) -> None:
        """Expect ``total_count`` elements of ``element_size`` bytes in chunks of ``chunk_size``."""
        self.stream = stream
        self.total_count = total_count
        self.chunk_size = chunk_size
        self.element_size = element_size
        self.total_chunks = chunk_count(total_count, chunk_size)
        self.next_index = 0

    @property
    def done(self) -> bool:
        """Whether every chunk has been accepted."""
        return self.next_index >= self.total_chunks

    def accept(self, message: PsiChunk, stage: str) -> bytes:
        """Validate ``message`` as the next chunk and return its body.

        Raises:
            PsiRemoteError: Duplicate, skipped or out-of-range chunk, wrong totals, wrong element
                size, or a body whose length does not match ``count``.
        """
        if message.chunk != self.next_index:
            what = "duplicate" if message.chunk < self.next_index else "out-of-order"
            raise PsiRemoteError(
                f"{what} chunk {message.chunk} of {self.stream}; expected {self.next_index}", stage=stage
            )
        start, stop = chunk_bounds(message.chunk, self.total_count, self.chunk_size)
        expected = (self.total_chunks, self.total_count, stop - start, self.element_size)
        got = (message.total_chunks, message.total_count, message.count, message.element_size)
        if got != expected:
            raise PsiRemoteError(f"chunk {message.chunk} of {self.stream}: sizes {got} != {expected}", stage=stage)
        if len(message.body) != message.count * self.element_size:
            raise PsiRemoteError(f"chunk {message.chunk} of {self.stream}: truncated or padded body", stage=stage)
        self.next_index += 1
        return message.body


def _unexpected(stage: Enum, event: str) -> PsiRemoteError:
    """The refusal of a message that the session's table does not accept in ``stage``."""
    return PsiRemoteError(f"unexpected {event}", stage=stage.name)


class Session:
    """Base of every PSI party: stage dispatch and message construction.

    Subclasses set ``Stage`` (an ``Enum`` with at least ``IDLE`` and ``DONE``) and ``TRANSITIONS``.
    """

    Stage: ClassVar[type[Enum]]
    TRANSITIONS: ClassVar[dict[tuple[Enum, str], str]]

    def __init__(self, job_id: str) -> None:
        """Create a session for ``job_id`` (bound into every message and checked on receipt)."""
        self.job_id = job_id
        self._stage: Enum = self.Stage["IDLE"]

    @property
    def stage(self) -> Enum:
        """The current stage."""
        return self._stage

    @property
    def done(self) -> bool:
        """Whether the session has completed."""
        return self._stage is self.Stage["DONE"]

    def handle(self, message: Message) -> Message | None:
        """Process one message from the peer; return the reply, or ``None`` when there is none.

        Raises:
            PsiRemoteError: If the message is not expected in the current stage (before any work),
                belongs to another job, or is malformed; or a peer-supplied point is invalid.
        """
        stage = self._stage.name
        handler = check_stage(self.TRANSITIONS, self._stage, event_of(message), reject=_unexpected)
        if message.job_id != self.job_id:
            raise PsiRemoteError("message for another job", stage=stage)
        try:
            reply: Message | None = getattr(self, handler)(message)
        except InvalidPoint as exc:
            raise PsiRemoteError(str(exc), stage=stage) from exc
        return reply

    def _require_done(self) -> None:
        if not self.done:
            raise PsiLocalError(f"result() called in stage {self._stage.name}")

    def _require_idle(self) -> None:
        if self._stage is not self.Stage["IDLE"]:
            raise PsiLocalError(f"start() called in stage {self._stage.name}")

    def _fail(self, message: str) -> PsiRemoteError:
        return PsiRemoteError(message, stage=self._stage.name)

    def _chunk(
        self, stream: Stream, index: int, total: int, chunk_size: int, body: bytes, size: int = POINT_BYTES
    ) -> PsiChunk:
        start, stop = chunk_bounds(index, total, chunk_size)
        return PsiChunk(
            job_id=self.job_id,
            stage=self._stage.name,
            stream=stream,
            chunk=index,
            total_chunks=chunk_count(total, chunk_size),
            count=stop - start,
            total_count=total,
            element_size=size,
            body=body,
        )

    def _pull(self, stream: Stream, index: int) -> PsiPull:
        return PsiPull(job_id=self.job_id, stage=self._stage.name, stream=stream, chunk=index)

    def _ack(self, stream: Stream, index: int) -> PsiAck:
        return PsiAck(job_id=self.job_id, stage=self._stage.name, stream=stream, chunk=index)


class Party(Session, Generic[R]):
    """A session whose outcome, of type ``R``, is set in ``_result`` by the time it reaches ``DONE``."""

    def __init__(self, job_id: str) -> None:
        """Create a party for ``job_id`` with no outcome yet."""
        super().__init__(job_id)
        self._result: R | None = None

    def result(self) -> R:
        """The outcome. Raises ``PsiLocalError`` before the session is done."""
        self._require_done()
        assert self._result is not None
        return self._result


class HelloTerms(TypedDict, total=False):
    """Hello fields a protocol states beyond the common ones (the model's defaults apply to the others)."""

    output_to: OutputTo


class WelcomeTerms(TypedDict, total=False):
    """What a welcome announces about the sender's stream: its size and, when not a point, its record size."""

    set_size: Required[int]
    record_size: int


class SessionOptions(TypedDict, total=False):
    """Keyword arguments every set-holding party takes, whatever it calls its secret scalar (see :class:`SetParty`)."""

    key_type: Required[KeyType]
    job_id: Required[str]
    chunk_size: int
    rng: RandomSource | None
    mapper: BatchMapper


class SetOptions(SessionOptions, total=False):
    """:class:`SessionOptions` and the secret ``scalar``."""

    scalar: Scalar | None


class SetParty(Party[R]):
    """A party holding a set of canonical identifiers (duplicates collapsed, shuffled) and a secret scalar.

    Args:
        values: Canonical identifiers (see :func:`psi.identifiers.normalise`); duplicates collapse.
        key_type: Identifier kind; both parties must agree (it is bound into the hash).
        job_id: Job the session belongs to.
        chunk_size: Elements per chunk of the streams this party produces (≤ 65,536).
        scalar: Secret scalar; fresh per session by default. **Reusing one across jobs lets the peer
            link elements between jobs.** Inject only for known-answer tests.
        rng: Randomness for the shuffle (OS CSPRNG by default).
        mapper: Parallelises the group work (serial by default; see :mod:`psi.engine`).
    """

    def __init__(
        self,
        values: Iterable[str],
        *,
        key_type: KeyType,
        job_id: str,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        scalar: Scalar | None = None,
        rng: RandomSource | None = None,
        mapper: BatchMapper = serial_map,
    ) -> None:
        """Collapse and shuffle ``values``; draw the scalar unless one is injected."""
        super().__init__(job_id)
        self.key_type = KeyType(key_type)
        self.chunk_size = chunk_size
        self._scalar = scalar or Scalar.random()
        self._map = mapper
        self._rng = rng or default_rng()
        self._values = shuffle(list(dict.fromkeys(values)), self._rng)

    def blinding_plan(self) -> tuple[Sequence[str], Scalar]:
        """What this party will blind, in chunk order, and its scalar: for a mapper that blinds ahead.

        A mapper of the same node may blind the whole set in one go and answer the chunks' calls from
        its output (``node.spark.SparkMapper.blind_ahead``). **The scalar is secret**: it may reach
        only the node's own workers, never the peer; reading it does not change the session.
        """
        return self._values, self._scalar

    def _blind_chunk(self, index: int) -> bytes:
        """``scalar · H(v)`` for the values of chunk ``index`` of our set, packed."""
        start, stop = chunk_bounds(index, len(self._values), self.chunk_size)
        return map_blind(self._map, self.key_type, self._values[start:stop], self._scalar)


class ReceiverParty(SetParty[R]):
    """The client: opens with a hello, then streams its blinded set as ``query`` chunks after the welcome.

    Subclasses set ``PROTOCOL`` and have the stages ``AWAIT_WELCOME`` and ``AWAIT_EVALUATED`` (or
    override :meth:`_awaiting_query_reply`); they open their incoming streams in :meth:`_open_streams`.
    """

    PROTOCOL: ClassVar[PsiProtocol]
    _query_index: int = 0
    """Query chunks sent so far."""

    def start(self) -> PsiHello:
        """Open the session: the hello message announcing the protocol, the key type and our set size."""
        self._require_idle()
        self._stage = self.Stage["AWAIT_WELCOME"]
        return PsiHello(
            job_id=self.job_id,
            stage=self._stage.name,
            protocol=self.PROTOCOL,
            key_type=self.key_type,
            set_size=len(self._values),
            chunk_size=self.chunk_size,
            **self._hello_terms(),
        )

    def _hello_terms(self) -> HelloTerms:
        """Further hello fields this protocol states (none by default: the field defaults apply)."""
        return {}

    def _welcome_fits(self, record_size: int) -> bool:
        """Whether the welcome's ``record_size`` is the one this protocol expects (a point, by default)."""
        return record_size == POINT_BYTES

    def _on_welcome(self, message: PsiWelcome) -> Message:
        if message.protocol is not self.PROTOCOL or not self._welcome_fits(message.record_size):
            raise self._fail("welcome for another protocol")
        self._open_streams(message)
        return self._next_query()

    def _open_streams(self, welcome: PsiWelcome) -> None:
        """Set up the readers of the streams the sender will produce, as announced in ``welcome``."""
        raise NotImplementedError

    def _awaiting_query_reply(self) -> Enum:
        """The stage that waits for the sender's answer to a query chunk."""
        return self.Stage["AWAIT_EVALUATED"]

    def _next_query(self) -> PsiChunk:
        index = self._query_index
        body = self._blind_chunk(index)
        self._query_index += 1
        self._stage = self._awaiting_query_reply()
        return self._chunk(Stream.QUERY, index, len(self._values), self.chunk_size, body)

    def _queries_left(self) -> bool:
        return self._query_index < chunk_count(len(self._values), self.chunk_size)


class SenderParty(Party[R]):
    """The server: answers the hello with a welcome, then reads the ``query`` stream and serves pulls in order.

    Subclasses set ``PROTOCOL``, ``key_type`` and ``chunk_size``, have the stage ``AWAIT_QUERY`` and
    say what the welcome announces in :meth:`_welcome_terms`.
    """

    PROTOCOL: ClassVar[PsiProtocol]
    key_type: KeyType
    chunk_size: int
    _query_reader: ChunkReader | None = None
    _next_pull: int = 0

    def _check_hello(self, message: PsiHello) -> None:
        """Refuse a hello whose protocol or key type differs from ours."""
        if message.protocol is not self.PROTOCOL or message.key_type is not self.key_type:
            raise self._fail("hello terms differ from the agreed protocol or key type")

    def _welcome_terms(self) -> WelcomeTerms:
        """The sizes the welcome announces: ``set_size`` and, when not a point, ``record_size``."""
        raise NotImplementedError

    def _on_hello(self, message: PsiHello) -> PsiWelcome:
        self._check_hello(message)
        self._query_reader = ChunkReader(Stream.QUERY, message.set_size, message.chunk_size)
        self._stage = self.Stage["AWAIT_QUERY"]
        return PsiWelcome(
            job_id=self.job_id,
            stage=self._stage.name,
            protocol=self.PROTOCOL,
            chunk_size=self.chunk_size,
            **self._welcome_terms(),
        )

    @property
    def _queries(self) -> ChunkReader:
        """The reader of the receiver's ``query`` stream (set up by the hello)."""
        assert self._query_reader is not None
        return self._query_reader

    def _take_pull(self, message: PsiPull, total: int, chunk_size: int) -> tuple[int, int]:
        """Count ``message`` as the next pull of a stream of ``total`` elements; return the chunk's range.

        Raises:
            PsiRemoteError: A pull out of order or past the end of the stream.
        """
        if message.chunk != self._next_pull or message.chunk >= chunk_count(total, chunk_size):
            raise self._fail(f"pull of chunk {message.chunk}; expected {self._next_pull}")
        self._next_pull += 1
        return chunk_bounds(message.chunk, total, chunk_size)

    def _pulled_all(self, total: int, chunk_size: int) -> bool:
        """Whether every chunk of a stream of ``total`` elements has been pulled."""
        return self._next_pull >= chunk_count(total, chunk_size)


class SetSender(SenderParty[R], SetParty[R]):
    """A server that holds a set (:class:`SetParty`) and streams it blinded as ``sender_set`` chunks on pull."""

    def _welcome_terms(self) -> WelcomeTerms:
        """The welcome announces our set size."""
        return {"set_size": len(self._values)}

    def _take_set_pull(self, message: PsiPull) -> bytes:
        """Count the pull of chunk ``message.chunk`` of our set and return that chunk blinded."""
        self._take_pull(message, len(self._values), self.chunk_size)
        return self._blind_chunk(message.chunk)

    def _set_pulled(self) -> bool:
        """Whether every chunk of our set has been pulled."""
        return self._pulled_all(len(self._values), self.chunk_size)

    def _set_chunk(self, index: int, body: bytes) -> PsiChunk:
        """Chunk ``index`` of the ``sender_set`` stream carrying ``body``."""
        return self._chunk(Stream.SENDER_SET, index, len(self._values), self.chunk_size, body)
