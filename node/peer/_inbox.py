"""The receive side: handlers per channel, chunks gathered into messages, each message handled once."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from protocols.wire.errors import ProtocolError, RemoteProtocolError

from ._wire import CHANNEL_PATTERN, H_DIGEST


@dataclass(frozen=True)
class PeerMessage:
    """A complete message delivered to a channel handler."""

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


@dataclass
class _Pending:
    kind: str
    count: int
    digest: str
    chunks: dict[int, bytes] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def size(self) -> int:
        return sum(len(c) for c in self.chunks.values())


_Key = tuple[str, int, str, int]


class PeerInbox:
    """Receiver state: handlers per channel, active jobs, partial messages and finished responses.

    Messages are held in memory until complete; ``max_message_bytes`` bounds each one. Responses are
    kept until the job is deactivated, so a retried final chunk gets the same answer without running
    the handler twice.
    """

    def __init__(self, *, max_chunk_bytes: int, max_message_bytes: int) -> None:
        self.max_chunk_bytes, self.max_message_bytes = max_chunk_bytes, max_message_bytes
        self._handlers: dict[str, PeerHandler] = {}
        self._active: set[int] = set()
        self._pending: dict[_Key, _Pending] = {}
        self._done: dict[_Key, tuple[str, bytes]] = {}
        self._lock = threading.Lock()

    def register_handler(self, channel: str, handler: PeerHandler) -> None:
        """Route complete messages on ``channel`` to ``handler`` (its return value is the response)."""
        if not CHANNEL_PATTERN.match(channel):
            raise ValueError(f"bad channel name {channel!r}")
        with self._lock:
            self._handlers[channel] = handler

    def activate(self, job_id: int) -> None:
        """Accept messages for ``job_id`` (the runner calls this after verifying the approval)."""
        with self._lock:
            self._active.add(job_id)

    def deactivate(self, job_id: int) -> None:
        """Refuse further messages for ``job_id`` and drop everything buffered for it."""
        with self._lock:
            self._active.discard(job_id)
            for store in (self._pending, self._done):
                for key in [k for k in store if k[1] == job_id]:
                    del store[key]

    def _check_open(self, job_id: int, channel: str) -> PeerHandler:
        with self._lock:
            if job_id not in self._active:
                raise ProtocolError(f"job {job_id} is not running on this node (yet)", status_hint=409)
            handler = self._handlers.get(channel)
        if handler is None:  # the job is open but its driver has not registered this channel: not ready yet
            raise ProtocolError(f"no handler for channel {channel!r} on this node (yet)", status_hint=409)
        return handler

    def status(self, key: _Key) -> dict[str, Any]:
        """Which chunks of a message arrived, and whether it is complete."""
        with self._lock:
            if key in self._done:
                return {"complete": True, "received": []}
            pending = self._pending.get(key)
        return {"complete": False, "received": sorted(pending.chunks) if pending else []}

    def response(self, key: _Key) -> tuple[str, bytes]:
        """The message kind and the handler's response, for a complete message."""
        with self._lock:
            if key not in self._done:
                raise ProtocolError("no response for this message", status_hint=404)
            return self._done[key]

    def receive(self, key: _Key, kind: str, index: int, count: int, digest: str, chunk: bytes) -> ChunkOutcome:
        """Store one chunk; on the last one, check the digest and run the channel handler once."""
        handler = self._check_open(key[1], key[2])
        self._validate(index, count, digest, chunk)
        with self._lock:
            if key in self._done:
                return ChunkOutcome(count, True, self._done[key][1])
            pending = self._pending.setdefault(key, _Pending(kind, count, digest))
        with pending.lock:
            return self._store(key, pending, handler, kind, index, count, digest, chunk)

    def _validate(self, index: int, count: int, digest: str, chunk: bytes) -> None:
        if not 0 <= index < count:
            raise RemoteProtocolError("chunk index out of range")
        if count > self.max_message_bytes // self.max_chunk_bytes + 1:
            raise ProtocolError(f"message larger than {self.max_message_bytes} bytes", status_hint=413)
        if len(chunk) > self.max_chunk_bytes:
            raise ProtocolError(f"chunk larger than {self.max_chunk_bytes} bytes", status_hint=413)
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise RemoteProtocolError(f"{H_DIGEST} must be 64 hex characters")

    def _store(
        self, key: _Key, pending: _Pending, handler: PeerHandler, kind: str, index: int, count: int, digest: str,
        chunk: bytes,
    ) -> ChunkOutcome:
        with self._lock:
            if key in self._done:
                return ChunkOutcome(count, True, self._done[key][1])
        if (pending.kind, pending.count, pending.digest) != (kind, count, digest):
            raise ProtocolError("chunk does not belong to the message already being received", status_hint=409)
        if index in pending.chunks:
            if pending.chunks[index] != chunk:
                raise ProtocolError(f"chunk {index} was already received with different bytes", status_hint=409)
        elif pending.size + len(chunk) > self.max_message_bytes:
            raise ProtocolError(f"message larger than {self.max_message_bytes} bytes", status_hint=413)
        pending.chunks[index] = chunk
        if len(pending.chunks) < count:
            return ChunkOutcome(len(pending.chunks), False)
        return self._complete(key, pending, handler)

    def _complete(self, key: _Key, pending: _Pending, handler: PeerHandler) -> ChunkOutcome:
        body = b"".join(pending.chunks[i] for i in range(pending.count))
        with self._lock:
            self._pending.pop(key, None)
        if hashlib.sha256(body).hexdigest() != pending.digest:
            raise RemoteProtocolError("message digest does not match its chunks; resend the message")
        sender, job_id, channel, seq = key
        response = handler(PeerMessage(job_id, channel, seq, pending.kind, sender, body))
        with self._lock:
            self._done[key] = (pending.kind, response)
        return ChunkOutcome(pending.count, True, response)
