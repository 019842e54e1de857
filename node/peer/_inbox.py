"""The receive side: handlers per channel, chunks gathered into messages, each message handled once.

Who may send. A job is open here once the runner activates it, naming the job's signed counterparty
(``activate(job_id, peer=...)``). The sender of a frame is the party whose pinned certificate its
TLS connection presented (``node.app``), never a name the frame claims. A frame of an open job from
any other pinned party is refused with 403 before a byte of it is buffered or a handler sees it; the
refusal is counted, logged and kept in :meth:`PeerInbox.refusals` for the operator, and the job goes
on undisturbed. The stranger learns only that it was refused (not who the job's peer is).

How much may be in flight. Messages are held in memory until complete. Per message,
``max_message_bytes`` bounds the size; per sender and job, ``max_pending_messages`` bounds how many
incomplete messages are held and ``max_pending_bytes`` how many bytes they hold together. A chunk over
a bound is refused (413 for one message too large, 429 for too much in flight) and nothing of it is
kept. Responses are kept until the job is deactivated, so a retried final chunk gets the same answer
without running the handler twice.

Which attempt. A job retried by the coordinator runs again as a new attempt; the runner activates the
job with its attempt, and every frame names the attempt that sent it (``X-Tandem-Attempt``). A frame
of an older attempt than the one open here (a peer still finishing an attempt that failed and was
retried) is refused with 410 before a byte of it is buffered, counted and kept in :meth:`refusals`
like a stranger's frame, so a stale attempt can never feed the new attempt's sessions; the stale
sender gets a clear error and gives up. A frame of a newer attempt than the one open here gets 409
"(yet)" and is sent again, and a frame naming no attempt for a job opened with one is refused (400);
such a frame also shows that the attempt open here is stale (the coordinator retried the job), so the
inbox tells its :meth:`on_superseded` listeners once, and a driver waiting for that attempt's peer stops
it instead of holding the new attempt up. Activating a job with another attempt drops whatever the
previous attempt left buffered.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from protocols.wire.errors import ProtocolError, RemoteProtocolError

from ._wire import CHANNEL_PATTERN, H_DIGEST

logger = logging.getLogger(__name__)

DEFAULT_MAX_PENDING_MESSAGES = 8
DEFAULT_MAX_PENDING_BYTES = 256 * 1024 * 1024
_REFUSALS_KEPT = 1000


@dataclass(frozen=True)
class PeerMessage:
    """A complete message delivered to a channel handler (``sender``: the party of the TLS certificate)."""

    job_id: int
    channel: str
    seq: int
    kind: str
    sender: str
    body: bytes


PeerHandler = Callable[[PeerMessage], bytes]


@dataclass(frozen=True)
class ChunkOutcome:
    """What the receiver answers to a chunk: progress, or the finished response."""

    received: int
    complete: bool
    response: bytes = b""


@dataclass(frozen=True)
class Refusal:
    """A frame refused because its sender is not the job's signed peer (what the operator reads)."""

    at: str
    job_id: int
    sender: str
    peer: str
    channel: str
    reason: str = "stranger"
    """``stranger`` (not the job's signed peer) or ``stale attempt N (open: M)``."""


@dataclass
class _Pending:
    kind: str
    count: int
    digest: str
    chunks: dict[int, bytes] = field(default_factory=dict)
    size: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _Load:
    """Incomplete messages and their bytes held for one (sender, job)."""

    messages: int = 0
    bytes: int = 0


_Key = tuple[str, int, str, int]


class PeerInbox:
    """Receiver state: handlers per channel, open jobs and their peers, partial messages, finished responses.

    Args:
        max_chunk_bytes: Largest chunk accepted.
        max_message_bytes: Largest message accepted (413 past it).
        max_pending_messages: Incomplete messages held per sender and job (429 for one more).
        max_pending_bytes: Bytes of incomplete messages held per sender and job (429 past it); at least
            ``max_message_bytes``, or a message of the largest size could never arrive.
    """

    def __init__(self, *, max_chunk_bytes: int, max_message_bytes: int,
                 max_pending_messages: int = DEFAULT_MAX_PENDING_MESSAGES,
                 max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES) -> None:
        if max_pending_bytes < max_message_bytes:
            raise ValueError(f"max_pending_bytes ({max_pending_bytes}) must be at least max_message_bytes "
                             f"({max_message_bytes})")
        self.max_chunk_bytes, self.max_message_bytes = max_chunk_bytes, max_message_bytes
        self.max_pending_messages, self.max_pending_bytes = max_pending_messages, max_pending_bytes
        self._handlers: dict[str, PeerHandler] = {}
        self._active: dict[int, str | None] = {}
        self._attempts: dict[int, int] = {}
        self._superseded: set[tuple[int, int]] = set()
        self._listeners: list[Callable[[int, int], None]] = []
        self._pending: dict[_Key, _Pending] = {}
        self._load: dict[tuple[str, int], _Load] = {}
        self._done: dict[_Key, tuple[str, bytes]] = {}
        self._refusals: deque[Refusal] = deque(maxlen=_REFUSALS_KEPT)
        self.refused = 0
        """Frames refused since start because their sender was not the job's peer."""
        self._lock = threading.Lock()

    def register_handler(self, channel: str, handler: PeerHandler) -> None:
        """Route complete messages on ``channel`` to ``handler`` (its return value is the response)."""
        if not CHANNEL_PATTERN.match(channel):
            raise ValueError(f"bad channel name {channel!r}")
        with self._lock:
            self._handlers[channel] = handler

    def activate(self, job_id: int, peer: str | None = None, attempt: int | None = None) -> None:
        """Accept messages for ``job_id`` from ``peer`` only (the runner calls this after verifying approvals).

        Args:
            job_id: The job.
            peer: The party name of the job's signed counterparty. ``None`` accepts every pinned party:
                only for callers that have no counterparty to name (a job without one should not be
                activated at all).
            attempt: The job's attempt running here: frames must name it (see the module docstring).
                ``None`` accepts frames of any attempt (callers outside the runner).
        """
        with self._lock:
            if attempt != self._attempts.get(job_id):  # a new attempt: nothing of the old one carries over
                self._drop_job(job_id)
            self._active[job_id] = peer
            if attempt is None:
                self._attempts.pop(job_id, None)
            else:
                self._attempts[job_id] = attempt

    def on_superseded(self, listener: Callable[[int, int], None]) -> None:
        """Call ``listener(job_id, newer_attempt)`` once when the peer sends a frame of a newer attempt of a job."""
        with self._lock:
            self._listeners.append(listener)

    def attempt(self, job_id: int) -> int | None:
        """The attempt of ``job_id`` open here, if it was activated with one."""
        with self._lock:
            return self._attempts.get(job_id) if job_id in self._active else None

    def deactivate(self, job_id: int) -> None:
        """Refuse further messages for ``job_id`` and drop everything buffered for it."""
        with self._lock:
            self._active.pop(job_id, None)
            self._drop_job(job_id)

    def _drop_job(self, job_id: int) -> None:
        """Forget every buffered message and response of ``job_id`` (caller holds the lock)."""
        for store in (self._pending, self._done):
            for key in [k for k in store if k[1] == job_id]:
                del store[key]
        for load in [k for k in self._load if k[1] == job_id]:
            del self._load[load]

    def refusals(self) -> list[Refusal]:
        """The latest refused frames (at most 1000), oldest first."""
        with self._lock:
            return list(self._refusals)

    def pending_bytes(self, *, sender: str | None = None, job_id: int | None = None) -> int:
        """Bytes held in incomplete messages (of ``sender`` and/or ``job_id`` when given)."""
        with self._lock:
            return sum(v.bytes for k, v in self._load.items() if sender in (None, k[0]) and job_id in (None, k[1]))

    def pending_messages(self, *, sender: str | None = None, job_id: int | None = None) -> int:
        """Incomplete messages held (of ``sender`` and/or ``job_id`` when given)."""
        with self._lock:
            return sum(v.messages for k, v in self._load.items()
                       if sender in (None, k[0]) and job_id in (None, k[1]))

    def admit(self, sender: str, job_id: int, channel: str, attempt: int | None = None) -> None:
        """Check that ``job_id`` is open here, ``sender`` is its peer and ``attempt`` the one open here.

        Before anything of the frame is read or kept.

        Raises:
            ProtocolError: 409 if the job is not open here (yet); 403 if ``sender`` is not the job's
                peer; 410 if ``attempt`` is older than the job's attempt open here (both refusals are
                counted, logged and kept in :meth:`refusals`); 409 if it is newer (yet); 400 if it is
                missing for a job opened with an attempt.
        """
        with self._lock:
            if job_id not in self._active:
                raise ProtocolError(f"job {job_id} is not running on this node (yet)", status_hint=409)
        self._refuse_stranger(sender, job_id, channel)
        self.check_attempt(sender, job_id, channel, attempt)

    def check_attempt(self, sender: str, job_id: int, channel: str, attempt: int | None) -> None:
        """Refuse a frame of another attempt of ``job_id`` than the one open here (see :meth:`admit`)."""
        with self._lock:
            current = self._attempts.get(job_id) if job_id in self._active else None
            if current is None or attempt == current:
                return
            if attempt is None:
                raise ProtocolError(f"job {job_id} runs attempt {current} on this node and the frame names no "
                                    "attempt; send the X-Tandem-Attempt header", status_hint=400)
            if attempt > current:
                first = (job_id, current) not in self._superseded
                self._superseded.add((job_id, current))
                listeners = list(self._listeners) if first else []
            else:
                listeners = None
        if listeners is not None:
            if listeners:
                logger.warning("job %s: the peer runs attempt %d; attempt %d here is stale", job_id, attempt, current)
            for listener in listeners:
                try:
                    listener(job_id, attempt)
                except Exception:  # noqa: BLE001 - a listener's failure must not break the data plane
                    logger.exception("job %s: a superseded-attempt listener failed", job_id)
            raise ProtocolError(f"job {job_id} runs attempt {current} on this node, not attempt {attempt} (yet)",
                                status_hint=409)
        with self._lock:
            self.refused += 1
            channel = channel if CHANNEL_PATTERN.match(channel) else "(invalid channel name)"
            self._refusals.append(Refusal(dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), job_id, sender,
                                          str(self._active.get(job_id)), channel,
                                          f"stale attempt {attempt} (open: {current})"))
        logger.warning("job %s: refused a frame on %s from party %s of stale attempt %d (attempt %d runs here)",
                       job_id, channel, sender, attempt, current)
        raise ProtocolError(f"job {job_id} was retried: this node runs attempt {current}, the frame is of attempt "
                            f"{attempt}; a stale attempt's frame is refused, stop that attempt", status_hint=410)

    def _refuse_stranger(self, sender: str, job_id: int, channel: str) -> None:
        channel = channel if CHANNEL_PATTERN.match(channel) else "(invalid channel name)"  # it came from a URL
        with self._lock:
            peer = self._active.get(job_id)
            if peer is None or peer == sender:
                return
            self.refused += 1
            self._refusals.append(Refusal(dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), job_id, sender,
                                          peer, channel))
        logger.warning("job %s: refused a frame on %s from party %s: the job's signed peer is %s",
                       job_id, channel, sender, peer)
        raise ProtocolError(f"party {sender} is not the counterparty of job {job_id} on this node; frame refused",
                            status_hint=403)

    def _check_open(self, key: _Key, attempt: int | None) -> PeerHandler:
        sender, job_id, channel, _ = key
        self.admit(sender, job_id, channel, attempt)
        with self._lock:
            handler = self._handlers.get(channel)
        if handler is None:  # the job is open but its driver has not registered this channel: not ready yet
            raise ProtocolError(f"no handler for channel {channel!r} on this node (yet)", status_hint=409)
        return handler

    def status(self, key: _Key, attempt: int | None = None) -> dict[str, Any]:
        """Which chunks of a message arrived, and whether it is complete (403/410/409/400 as :meth:`admit`)."""
        self._refuse_stranger(key[0], key[1], key[2])
        self.check_attempt(key[0], key[1], key[2], attempt)
        with self._lock:
            if key in self._done:
                return {"complete": True, "received": []}
            pending = self._pending.get(key)
            return {"complete": False, "received": sorted(pending.chunks) if pending else []}

    def response(self, key: _Key, attempt: int | None = None) -> tuple[str, bytes]:
        """The message kind and the handler's response, for a complete message (refusals as :meth:`admit`)."""
        self._refuse_stranger(key[0], key[1], key[2])
        self.check_attempt(key[0], key[1], key[2], attempt)
        with self._lock:
            if key not in self._done:
                raise ProtocolError("no response for this message", status_hint=404)
            return self._done[key]

    def receive(self, key: _Key, kind: str, index: int, count: int, digest: str, chunk: bytes,
                attempt: int | None = None) -> ChunkOutcome:
        """Store one chunk; on the last one, check the digest and run the channel handler once.

        Raises:
            ProtocolError: 403/409 as :meth:`admit`; 413 for a chunk or message over its bound; 429 when
                the sender already holds ``max_pending_messages`` incomplete messages or
                ``max_pending_bytes`` bytes for the job; 400/409 for a chunk that does not fit its message.
        """
        handler = self._check_open(key, attempt)
        self._validate(index, count, digest, chunk)
        with self._lock:
            if key in self._done:
                return ChunkOutcome(count, True, self._done[key][1])
            pending = self._pending.get(key)
            if pending is None:
                pending = self._open_pending(key, _Pending(kind, count, digest))
        with pending.lock:
            return self._store(key, pending, handler, kind, index, count, digest, chunk)

    def _open_pending(self, key: _Key, pending: _Pending) -> _Pending:
        """Hold a new incomplete message (caller holds ``self._lock``)."""
        sender, job_id, _, _ = key
        load = self._load.setdefault((sender, job_id), _Load())
        if load.messages >= self.max_pending_messages:
            raise ProtocolError(
                f"party {sender} already has {load.messages} incomplete messages for job {job_id} here "
                f"(max_pending_messages={self.max_pending_messages}); complete them before starting another",
                status_hint=429)
        load.messages += 1
        self._pending[key] = pending
        return pending

    def _validate(self, index: int, count: int, digest: str, chunk: bytes) -> None:
        if not 0 <= index < count:
            raise RemoteProtocolError("chunk index out of range")
        if count > self.max_message_bytes // self.max_chunk_bytes + 1:
            raise ProtocolError(f"message larger than {self.max_message_bytes} bytes (max_message_bytes)",
                                status_hint=413)
        if len(chunk) > self.max_chunk_bytes:
            raise ProtocolError(f"chunk larger than {self.max_chunk_bytes} bytes", status_hint=413)
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise RemoteProtocolError(f"{H_DIGEST} must be 64 hex characters")

    def _store(
        self, key: _Key, pending: _Pending, handler: PeerHandler, kind: str, index: int, count: int, digest: str,
        chunk: bytes,
    ) -> ChunkOutcome:
        if (pending.kind, pending.count, pending.digest) != (kind, count, digest):
            raise ProtocolError("chunk does not belong to the message already being received", status_hint=409)
        with self._lock:
            if key in self._done:
                return ChunkOutcome(count, True, self._done[key][1])
            if self._pending.get(key) is not pending:
                raise ProtocolError("this message was dropped here (its job ended); resend it", status_hint=409)
            if index in pending.chunks:
                if pending.chunks[index] != chunk:
                    raise ProtocolError(f"chunk {index} was already received with different bytes", status_hint=409)
            else:
                try:
                    self._hold(key, pending, index, chunk)
                except ProtocolError:
                    if not pending.chunks:  # nothing of it is kept: it holds no slot either
                        self._forget(key, pending)
                    raise
            if len(pending.chunks) < count:
                return ChunkOutcome(len(pending.chunks), False)
        return self._complete(key, pending, handler)

    def _hold(self, key: _Key, pending: _Pending, index: int, chunk: bytes) -> None:
        """Keep one new chunk within the bounds (caller holds ``self._lock``)."""
        sender, job_id, _, _ = key
        if pending.size + len(chunk) > self.max_message_bytes:
            raise ProtocolError(f"message larger than {self.max_message_bytes} bytes (max_message_bytes)",
                                status_hint=413)
        load = self._load[(sender, job_id)]
        if load.bytes + len(chunk) > self.max_pending_bytes:
            raise ProtocolError(
                f"party {sender} would hold {load.bytes + len(chunk)} bytes of incomplete messages for job "
                f"{job_id} here (max_pending_bytes={self.max_pending_bytes}); complete them before sending more",
                status_hint=429)
        pending.chunks[index] = chunk
        pending.size += len(chunk)
        load.bytes += len(chunk)

    def _complete(self, key: _Key, pending: _Pending, handler: PeerHandler) -> ChunkOutcome:
        body = b"".join(pending.chunks[i] for i in range(pending.count))
        self._drop(key, pending)
        if hashlib.sha256(body).hexdigest() != pending.digest:
            raise RemoteProtocolError("message digest does not match its chunks; resend the message")
        sender, job_id, channel, seq = key
        response = handler(PeerMessage(job_id, channel, seq, pending.kind, sender, body))
        with self._lock:
            self._done[key] = (pending.kind, response)
        return ChunkOutcome(pending.count, True, response)

    def _drop(self, key: _Key, pending: _Pending) -> None:
        with self._lock:
            self._forget(key, pending)

    def _forget(self, key: _Key, pending: _Pending) -> None:
        """Forget an incomplete message and release what it counted against its sender (caller holds the lock)."""
        if self._pending.get(key) is not pending:
            return
        del self._pending[key]
        load = self._load.get((key[0], key[1]))
        if load is not None:
            load.messages -= 1
            load.bytes -= pending.size
