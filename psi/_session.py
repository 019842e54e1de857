"""Machinery shared by the PSI sessions: stage dispatch, chunk bookkeeping, shuffling, matching.

A session subclass declares a ``Stage`` enum and ``TRANSITIONS``: a mapping from ``(stage, event)``
to the name of the handler method, where ``event`` is the message kind, qualified by its stream for
chunks, pulls and acks (``"psi.chunk:query"``). :meth:`Session.handle` looks the pair up *before*
doing any work and raises :class:`PsiRemoteError` naming the stage when it is not in the table.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from enum import Enum
from typing import ClassVar, Protocol

import numpy as np

from protocols.wire.psi import PsiAck, PsiChunk, PsiHello, PsiPull, PsiWelcome, Stream
from psi._errors import InvalidPoint, PsiLocalError, PsiRemoteError
from psi.group import POINT_BYTES

__all__ = ["ChunkReader", "Message", "RandomSource", "Session", "chunk_bounds", "event_of", "match_packed", "shuffle"]

Message = PsiHello | PsiWelcome | PsiChunk | PsiPull | PsiAck
DEFAULT_CHUNK_SIZE = 1 << 16


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
        handler = self.TRANSITIONS.get((self._stage, event_of(message)))
        if handler is None:
            raise PsiRemoteError(f"unexpected {event_of(message)}", stage=stage)
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

    def _chunk(self, stream: Stream, index: int, total: int, chunk_size: int, body: bytes, size: int = 32) -> PsiChunk:
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
