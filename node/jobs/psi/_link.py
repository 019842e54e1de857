"""The receiver's side of the wire: frames out, one reply back, counted and numbered per channel.

A :class:`FrameTransport` moves one request frame to the sender and returns the sender's reply. Over
the data plane that is :class:`PeerFrameTransport` (``PeerClient.exchange``, chunked and resumable);
in the local two-file mode it is :class:`LocalFrameTransport`, which calls the very dispatcher the
sender's node registers on its inbox. :func:`drive` runs one sans-I/O receiver session over a
:class:`SessionLink` until the session is done.

Channels: ``psi.<key_type>`` carries one session per key type; ``psi.close`` carries the job's close
(:class:`~protocols.wire.psi.PsiJobClose`) and the sender's summary. Each channel numbers its
messages 1, 2, 3…; re-sending a number returns the cached reply without re-running the sender.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from node.coordinator_client import CoordinatorUnavailable
from node.peer import PeerClient, PeerError
from protocols.wire.control import KeyType
from protocols.wire.errors import ProtocolError
from protocols.wire.psi import PsiJobClose, PsiJobSummary, decode_frame, encode_frame
from psi import Session

__all__ = [
    "CLOSE_CHANNEL",
    "FrameTransport",
    "LocalFrameTransport",
    "PeerFrameTransport",
    "PsiJobError",
    "SessionLink",
    "WireStats",
    "drive",
    "session_channel",
]

CLOSE_CHANNEL = "psi.close"
_NOT_READY = frozenset({404, 409, 503})  # no channel handler yet, job not active yet, sender not open yet


class PsiJobError(ProtocolError):
    """A PSI job could not go on; the message names the channel and the session stage."""

    status_hint = 502


def session_channel(key_type: KeyType) -> str:
    """The data-plane channel of the session for ``key_type``."""
    return f"psi.{KeyType(key_type).value}"


class FrameTransport(Protocol):
    """Moves one request frame to the sender and returns its reply."""

    def exchange(self, channel: str, seq: int, frame: bytes) -> bytes:
        """Send ``frame`` as message ``seq`` of ``channel``; return the reply."""
        ...


class PeerFrameTransport:
    """Frames over the mutual-TLS data plane, with patience at the start and resumption mid-stream.

    Args:
        client: A pinned client to the sender's node.
        job_id: The coordinator job id.
        ready_timeout: How long to keep asking while the sender says it is not ready yet (its runner
            may still be loading data or preparing tables).
        resume_attempts: Extra attempts after a transport failure; the same ``seq`` is re-sent, which
            the sender answers from its cache if it already handled it.
        still_running: Called every ``check_interval`` seconds of that wait (the job context's
            ``check_current``): it raises when the coordinator has ended or retried the job, e.g. because
            the sender refused it, so the wait ends then and not at ``ready_timeout``. A coordinator that
            cannot be reached meanwhile does not end the wait.
        kind: The ledger kind of the frames.
        sleep: Injected for tests.
    """

    def __init__(self, client: PeerClient, job_id: int, *, ready_timeout: float = 600.0, resume_attempts: int = 3,
                 still_running: Callable[[], None] | None = None, check_interval: float = 3.0, kind: str = "psi",
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.client, self.job_id, self.kind = client, job_id, kind
        self.ready_timeout, self.resume_attempts, self._sleep = ready_timeout, resume_attempts, sleep
        self.still_running, self.check_interval = still_running, check_interval
        self._opened = False

    @property
    def opened(self) -> bool:
        """Whether the sender has answered a frame of this transport."""
        return self._opened

    def exchange(self, channel: str, seq: int, frame: bytes) -> bytes:
        """Send one frame; wait while the sender is not ready (first message only); resume after drops.

        Raises:
            PeerError: the sender refused the frame, was not ready within ``ready_timeout``, or could not
                be reached after ``resume_attempts``.
            ProtocolError: what ``still_running`` raises once the job is over at the coordinator.
        """
        deadline = time.monotonic() + self.ready_timeout
        checked = time.monotonic()
        resumes = 0
        while True:
            try:
                reply = self.client.exchange(self.job_id, channel, seq, frame, kind=self.kind)
            except PeerError as exc:
                if exc.http_status in _NOT_READY and not self._opened and time.monotonic() < deadline:
                    if self.still_running is not None and time.monotonic() - checked >= self.check_interval:
                        checked = time.monotonic()
                        with contextlib.suppress(CoordinatorUnavailable):
                            self.still_running()
                    self._sleep(1.0)
                    continue
                if exc.http_status is None and resumes < self.resume_attempts:
                    resumes += 1
                    self._sleep(2.0 * resumes)
                    continue
                raise
            self._opened = True
            return reply


class LocalFrameTransport:
    """Frames handed straight to a sender dispatcher in this process (the local two-file mode)."""

    def __init__(self, dispatch: Callable[[str, bytes], bytes]) -> None:
        self._dispatch = dispatch

    def exchange(self, channel: str, seq: int, frame: bytes) -> bytes:
        """Call the dispatcher (``seq`` is implicit: one call per message)."""
        return self._dispatch(channel, frame)


@dataclass
class WireStats:
    """Bytes and messages one side sent and received."""

    bytes_sent: int = 0
    bytes_received: int = 0
    messages: int = 0

    def as_dict(self) -> dict[str, int]:
        """For job outputs."""
        return {"bytes_to_peer": self.bytes_sent, "bytes_from_peer": self.bytes_received, "messages": self.messages}


@dataclass
class SessionLink:
    """One job's link to the sender: numbers messages per channel and counts the bytes."""

    transport: FrameTransport
    job_id: str
    stats: WireStats = field(default_factory=WireStats)
    _seq: Counter[str] = field(default_factory=Counter)

    def call(self, channel: str, frame: bytes) -> bytes:
        """Send one frame on ``channel`` and return the reply."""
        self._seq[channel] += 1
        self.stats.bytes_sent += len(frame)
        self.stats.messages += 1
        reply = self.transport.exchange(channel, self._seq[channel], frame)
        self.stats.bytes_received += len(reply)
        return reply

    def close(self, sessions: list[KeyType]) -> PsiJobSummary:
        """Tell the sender every session is done; return its summary (counts only)."""
        close = PsiJobClose(job_id=self.job_id, stage="CLOSE", status="ok", sessions=sessions)
        reply = self.call(CLOSE_CHANNEL, close.model_dump_json().encode())
        try:
            return PsiJobSummary.model_validate_json(reply)
        except ValueError:
            raise PsiJobError(f"[{CLOSE_CHANNEL}] the sender's summary is malformed") from None

    def abort(self, reason: str) -> None:
        """Best effort: tell the sender we give up, so it fails at once instead of timing out.

        Not sent over a link the sender never answered (it has no session of ours to end, and its wait
        ends when it sees this job failed at the coordinator): waiting for it to open only to abort would
        hold this node's runner for the ready timeout.
        """
        if not getattr(self.transport, "opened", True):
            return
        close = PsiJobClose(job_id=self.job_id, stage="ABORT", status="abort", reason=reason[:500])
        try:
            self.call(CLOSE_CHANNEL, close.model_dump_json().encode())
        except Exception:  # noqa: BLE001 - the peer may be the reason we abort
            return


def drive(session: Session, link: SessionLink, channel: str) -> None:
    """Run a receiver ``session`` to completion over ``link`` on ``channel``.

    Raises:
        PsiJobError: If the exchange fails or the sender refuses; names the channel and stage.
        PsiRemoteError: If the sender's reply is malformed or out of stage (names the stage).
    """
    message = session.start()  # type: ignore[attr-defined]
    while message is not None:
        frame = encode_frame(message)
        try:
            reply = link.call(channel, frame)
        except PeerError as exc:
            raise PsiJobError(f"[{channel} stage {session.stage.name}] {exc}") from exc
        try:
            decoded = decode_frame(reply)
        except ValueError:
            raise PsiJobError(f"[{channel} stage {session.stage.name}] malformed reply from the sender") from None
        message = session.handle(decoded)
