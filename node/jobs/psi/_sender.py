"""The sender's side of a PSI job: sessions behind the inbox, an evaluation meter, the close, the wait.

The sender's job handler builds its sessions (one per key type) and opens a :class:`SenderJob` in the
node's :class:`SenderRegistry`; the registry is the handler of every ``psi.*`` inbox channel, so each
complete frame the receiver sends is routed to ``SenderJob.handle``, which decodes it, checks the
evaluation meter on a hello, lets the session answer, and encodes the reply. The handler meanwhile
waits (:meth:`SenderJob.wait`) until the receiver closes the job, aborts it, sends something invalid,
or goes silent for longer than the idle timeout; every one of these but a clean close fails the job
with an error naming the session and stage. Nothing the sessions hold is kept after the job.

Only the job's signed peer drives its sessions: the registry refuses a frame from any other party
(by certificate) before the job sees it, independently of the inbox's own check, so another
registered party learns nothing from the sender's sessions and cannot fail the job.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from node.coordinator_client import CoordinatorUnavailable
from node.peer import PeerInbox, PeerMessage
from protocols.wire.control import KeyType
from protocols.wire.errors import ProtocolError
from protocols.wire.psi import (
    PsiChunk,
    PsiHello,
    PsiJobClose,
    PsiJobSummary,
    Stream,
    decode_frame,
    encode_frame,
)
from psi import PsiRemoteError, Session

from ._link import CLOSE_CHANNEL, PsiJobError, WireStats, session_channel

__all__ = ["DEFAULT_PATIENCE", "EvaluationMeter", "Patience", "SenderJob", "SenderRegistry", "Summarise"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Patience:
    """How long a sender waits for its receiver.

    Attributes:
        start: Seconds until the receiver's first message (its runner may be busy or loading data).
        idle: Seconds of silence after that before the job fails ("peer gone mid-stream").
    """

    start: float = 600.0
    idle: float = 120.0


DEFAULT_PATIENCE = Patience()


class EvaluationMeter:
    """Counts the receiver elements the sender evaluates with its key, and refuses past ``cap``.

    A hello announces its set size; the meter reserves that many before any work, so a session that
    would exceed the cap is refused at once (and the chunk reader holds the peer to the announced size).
    """

    def __init__(self, cap: int | None) -> None:
        self.cap, self.reserved, self.evaluated = cap, 0, 0

    def reserve(self, count: int, stage: str) -> None:
        """Reserve ``count`` evaluations.

        Raises:
            PsiRemoteError: If the cap would be exceeded.
        """
        if self.cap is not None and self.reserved + count > self.cap:
            raise PsiRemoteError(
                f"OPRF evaluation cap of this job reached: {self.reserved} used + {count} asked > cap {self.cap}",
                stage=stage,
            )
        self.reserved += count


Summarise = Callable[[Mapping[KeyType, Session], EvaluationMeter], PsiJobSummary]


@dataclass
class _Activity:
    last: float
    channel: str = ""


class SenderJob:
    """The sender's sessions of one job, and how the job ends.

    Args:
        job_id: The job id bound into every message.
        sessions: One sender session per key type the job allows.
        meter: The evaluation meter (cap from the job terms).
        summarise: Builds the summary at a clean close (relay mode sends its messages there).
        clock: Monotonic clock (injected for tests).

    ``still_running`` (set by :meth:`SenderRegistry.opened` from :meth:`SenderRegistry.bound`: the job
    context's ``check_current``) is asked every ``check_interval`` seconds while :meth:`wait` waits, so a
    receiver that failed the job (e.g. the bank refused its own parameters) ends the wait then, not when
    the patience runs out; a coordinator that cannot be reached meanwhile does not end it.
    """

    check_interval = 3.0

    def __init__(self, job_id: str, sessions: Mapping[KeyType, Session], *, meter: EvaluationMeter,
                 summarise: Summarise, clock: Callable[[], float] = time.monotonic) -> None:
        self.job_id, self.sessions, self.meter = job_id, dict(sessions), meter
        self._summarise, self._clock = summarise, clock
        self.stats = WireStats()
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._error: ProtocolError | None = None
        self._summary: PsiJobSummary | None = None
        self._activity = _Activity(clock())
        self._channels = {session_channel(k): k for k in self.sessions}
        self.still_running: Callable[[], None] | None = None

    def stage(self) -> str:
        """Where the job is: the last active channel and its session's stage."""
        key_type = self._channels.get(self._activity.channel)
        if key_type is None:
            return self._activity.channel or "awaiting the receiver"
        return f"{self._activity.channel} {self.sessions[key_type].stage.name}"

    def handle(self, channel: str, frame: bytes) -> bytes:
        """Answer one frame from the receiver.

        Raises:
            ProtocolError: The job already failed, or this frame fails it (the error names the stage).
        """
        with self._lock:
            if self._error is not None:
                raise ProtocolError(f"this PSI job already failed: {self._error}", status_hint=409)
            if self._finished.is_set():
                raise PsiRemoteError("message after the job was closed", stage="CLOSED")
            self._activity = _Activity(self._clock(), channel)
            self.stats.bytes_received += len(frame)
            try:
                reply = self._close(frame) if channel == CLOSE_CHANNEL else self._session_reply(channel, frame)
            except ProtocolError as exc:
                self._fail(exc)
                raise
            except Exception as exc:  # noqa: BLE001 - fail closed, say only what kind of failure
                error = PsiJobError(f"[{self.stage()}] {type(exc).__name__} while answering the receiver")
                self._fail(error)
                raise error from exc
            self.stats.bytes_sent += len(reply)
            self.stats.messages += 1
            return reply

    def _session_reply(self, channel: str, frame: bytes) -> bytes:
        key_type = self._channels.get(channel)
        if key_type is None:
            raise PsiRemoteError(f"no session on channel {channel!r} in this job", stage="ROUTING")
        session = self.sessions[key_type]
        try:
            message = decode_frame(frame)
        except ValueError:
            raise PsiRemoteError(f"malformed frame on {channel}", stage=session.stage.name) from None
        if isinstance(message, PsiHello):
            self.meter.reserve(message.set_size, f"{channel} {session.stage.name}")
        reply = session.handle(message)
        if isinstance(message, PsiChunk) and message.stream is Stream.QUERY:
            self.meter.evaluated += message.count
        if reply is None:
            raise PsiJobError(f"[{channel} {session.stage.name}] the session produced no reply")
        return encode_frame(reply)

    def _close(self, frame: bytes) -> bytes:
        try:
            close = PsiJobClose.model_validate_json(frame)
        except ValueError:
            raise PsiRemoteError("malformed close", stage="CLOSE") from None
        if close.job_id != self.job_id:
            raise PsiRemoteError("close for another job", stage="CLOSE")
        if close.status == "abort":
            raise PsiRemoteError(f"the receiver aborted: {close.reason}", stage="CLOSE")
        if not set(close.sessions) <= set(self.sessions):
            raise PsiRemoteError("close names a session this job does not have", stage="CLOSE")
        for key_type, session in self.sessions.items():
            ran = key_type in close.sessions
            if (ran and not session.done) or (not ran and session.stage.name != "IDLE"):
                raise PsiRemoteError(f"close while {session_channel(key_type)} is in stage {session.stage.name}",
                                     stage="CLOSE")
        summary = self._summarise(self.sessions, self.meter)
        self._summary = summary.model_copy(update={"job_id": self.job_id, "stage": "CLOSED"})
        self._finished.set()
        return self._summary.model_dump_json().encode()

    def supersede(self, attempt: int) -> None:
        """Fail this job: the peer started ``attempt`` of it (a retry), so this attempt can never finish."""
        with self._lock:
            self._fail(PsiJobError(f"[{self.stage()}] the peer started attempt {attempt} of this job (it was "
                                   "retried): this attempt stops"))

    def _fail(self, error: ProtocolError) -> None:
        if self._error is None:
            self._error = error
        self._finished.set()

    def wait(self, patience: Patience, *, poll: float = 0.5, on_tick: Callable[[str], None] | None = None
             ) -> PsiJobSummary:
        """Block until the receiver closes the job; return the summary.

        Raises:
            ProtocolError: If the receiver sent something invalid or aborted (the error that failed
                the job), never started (``patience.start``), or went silent for ``patience.idle``
                seconds ("peer gone mid-stream").
        """
        checked = self._clock()
        while not self._finished.wait(poll):
            if self.still_running is not None and self._clock() - checked >= self.check_interval:
                checked = self._clock()
                try:
                    self.still_running()
                except CoordinatorUnavailable:
                    pass
                except ProtocolError as exc:  # the job ended at the coordinator, or was retried
                    with self._lock:
                        self._fail(exc)
                    break
            with self._lock:
                silent = self._clock() - self._activity.last
                started = bool(self._activity.channel)
                limit = patience.idle if started else patience.start
                if silent > limit:
                    what = "went silent" if started else "did not start"
                    self._fail(PsiJobError(f"[{self.stage()}] the receiver {what} for {silent:.0f}s "
                                           f"(timeout {limit:.0f}s); peer gone mid-stream"))
                    break
            if on_tick is not None:
                on_tick(self.stage())
        if self._error is not None:
            raise self._error
        assert self._summary is not None
        return self._summary

    def release(self) -> None:
        """Drop the sessions (their sets and blinded values) once the job is over."""
        with self._lock:
            self.sessions.clear()


class SenderRegistry:
    """The open sender jobs of one node, their signed peers, and the inbox handler that routes frames to them.

    A frame from the data plane reaches a job only if its sender (the party of the TLS certificate) is
    the peer the job is bound to (:meth:`bound`), whatever the inbox let through: a stranger's frame is
    refused with 403 and neither answered nor counted against the job, which goes on undisturbed.
    """

    def __init__(self) -> None:
        self._jobs: dict[str, SenderJob] = {}
        self._peers: dict[str, str] = {}
        self._checks: dict[str, Callable[[], None]] = {}
        self._lock = threading.Lock()
        self._inboxes: set[int] = set()

    def attach(self, inbox: PeerInbox) -> None:
        """Register this registry for every ``psi.*`` channel of ``inbox`` (idempotent)."""
        with self._lock:
            if id(inbox) in self._inboxes:
                return
            self._inboxes.add(id(inbox))
        for channel in [CLOSE_CHANNEL, *(session_channel(k) for k in KeyType)]:
            inbox.register_handler(channel, self.inbox_handler)
        inbox.on_superseded(self.superseded)

    def superseded(self, job_id: int, attempt: int) -> None:
        """The peer runs ``attempt`` of ``job_id`` (the job was retried): fail the stale attempt open here, if any.

        Its wait ends at once with that reason, instead of holding this node's runner (and the new attempt)
        until the receiver's patience runs out.
        """
        with self._lock:
            job = self._jobs.get(str(job_id))
        if job is not None:
            job.supersede(attempt)

    @contextmanager
    def bound(self, job_id: str, peer: str, *, still_running: Callable[[], None] | None = None) -> Iterator[None]:
        """Answer data-plane frames of ``job_id`` from party ``peer`` only, while the block runs.

        Bind before the job is opened: a frame from the data plane for an open job with no bound peer
        is refused. ``still_running`` (the job context's ``check_current``) is given to every sender job
        of ``job_id`` opened meanwhile (see :class:`SenderJob`).
        """
        with self._lock:
            self._peers[job_id] = peer
            if still_running is not None:
                self._checks[job_id] = still_running
        try:
            yield
        finally:
            with self._lock:
                self._peers.pop(job_id, None)
                self._checks.pop(job_id, None)

    @contextmanager
    def opened(self, job: SenderJob) -> Iterator[SenderJob]:
        """Make ``job`` reachable while the block runs; release it afterwards, whatever happens."""
        with self._lock:
            self._jobs[job.job_id] = job
            job.still_running = self._checks.get(job.job_id)
        try:
            yield job
        finally:
            with self._lock:
                self._jobs.pop(job.job_id, None)
            job.release()

    def dispatch(self, job_id: str, channel: str, frame: bytes, *, sender: str | None = None) -> bytes:
        """Route one frame to its job.

        Args:
            job_id: The job the frame is for.
            channel: Its channel.
            frame: The frame.
            sender: The party that sent it over the data plane; ``None`` only for a receiver in this
                process (the local two-file mode, benchmarks), which has no certificate to check.

        Raises:
            ProtocolError: 403 if ``sender`` is not the job's bound peer (the job is not touched); 503
                while the job is not open here (the receiver retries); else the job's error.
        """
        with self._lock:
            job, peer = self._jobs.get(job_id), self._peers.get(job_id)
        if sender is not None and sender != peer and (peer is not None or job is not None):
            logger.warning("PSI job %s: refused a frame on %s from party %s (the job's peer is %s)",
                           job_id, channel, sender, peer)
            raise ProtocolError(f"party {sender} is not the counterparty of PSI job {job_id}; frame refused",
                                status_hint=403)
        if job is None:
            raise ProtocolError(f"the PSI sender for job {job_id} is not ready on this node yet", status_hint=503)
        return job.handle(channel, frame)

    def inbox_handler(self, message: PeerMessage) -> bytes:
        """``PeerHandler`` for the node's inbox: the sender is the party of the frame's TLS certificate."""
        return self.dispatch(str(message.job_id), message.channel, message.body, sender=message.sender)
