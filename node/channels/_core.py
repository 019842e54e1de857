"""The pure core of outreach delivery: messages, receipts, counts, quiet hours and the two rate limits.

No I/O here: the engine (:mod:`node.channels._deliver`) reads the clock, the journal and the opt-out
list and asks these functions what to do. Nothing in this module learns more than its arguments.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from protocols.wire.errors import ConfigError, ProtocolError

__all__ = [
    "Channel",
    "ChannelDownError",
    "ChannelError",
    "Clock",
    "DeliveryCounts",
    "OptOutError",
    "OutboundMessage",
    "QuietHours",
    "Receipt",
    "ReceiptState",
    "SubmitResult",
    "next_send_at",
    "normalise_number",
    "recipient_allowed",
]


class ChannelError(ProtocolError):
    """Root of the channel errors.

    Tree::

        ChannelError
        ├── ChannelDownError   the channel endpoint cannot be reached or refused us (names the setting)
        └── OptOutError        the opt-out list cannot be read (nothing was sent)

    Template errors are :class:`protocols.wire.message_template.TemplateError` (a ``ValueError``).
    """

    status_hint = 502


class ChannelDownError(ChannelError):
    """The endpoint is down or refused the bind/credentials. ``setting`` names what to check."""

    def __init__(self, message: str, *, setting: str, handed_over: bool = False) -> None:
        super().__init__(f"{message} (check {setting})")
        self.reason = message
        self.setting = setting
        self.handed_over = handed_over
        """True when the message may have reached the endpoint before the link broke."""


class OptOutError(ChannelError, ConfigError):
    """The opt-out (退订) list is missing or unreadable: the job fails before any message is sent."""

    status_hint = 500


@dataclass(frozen=True)
class OutboundMessage:
    """One message to one recipient. ``message_id`` is stable per (job, recipient): retries reuse it."""

    recipient: str
    text: str
    message_id: str


@dataclass(frozen=True)
class SubmitResult:
    """What the endpoint answered: its own ids for the message (one per SMS part), or why it refused it."""

    message_id: str
    remote_ids: tuple[str, ...]
    error: str | None = None


class ReceiptState(enum.StrEnum):
    """Final state of a message as the endpoint reports it."""

    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True)
class Receipt:
    """A delivery receipt: the endpoint's id of the message (or of its first part) and the final state."""

    remote_id: str
    state: ReceiptState


class Channel(Protocol):
    """A way out to the telco's own subscribers (its SMSC, push gateway, or a local outbox).

    ``setting`` names the configuration a failure points at (e.g. ``TANDEM_CHANNEL_SMPP_HOST``).
    ``resend_safe`` says whether a message whose submission outcome is unknown (the link broke after
    sending) may be submitted again: true only where the endpoint deduplicates by ``message_id``.
    """

    kind: str
    setting: str
    resend_safe: bool

    def submit(self, message: OutboundMessage) -> SubmitResult:
        """Send one message; raise :class:`ChannelDownError` if the endpoint cannot take it."""
        ...

    def receipts(self, wait_s: float) -> list[Receipt]:
        """Delivery receipts that arrived since the last call (waiting up to ``wait_s`` for more)."""
        ...

    def close(self) -> None:
        """Unbind and disconnect."""
        ...


class Clock(Protocol):
    """Time as the engine sees it (injected in tests)."""

    def now(self) -> dt.datetime:
        """The current time, timezone-aware."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...


@dataclass
class DeliveryCounts:
    """What leaves the telco about one delivery: counts, nothing per person.

    ``sent_now`` were submitted by this run; ``submitted`` messages were taken by the endpoint this run or
    earlier runs of the job;
    ``delivered``/``failed`` are receipts so far; ``opted_out``, ``rate_limited`` and ``quiet_hours`` were
    not sent (the last two may go out on a later run); ``unconfirmed`` were handed over when the link
    broke and are never sent again (the endpoint may or may not have them).
    """

    submitted: int = 0
    delivered: int = 0
    failed: int = 0
    opted_out: int = 0
    rate_limited: int = 0
    quiet_hours: int = 0
    unconfirmed: int = 0
    sent_now: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts as plain names, for job outputs."""
        return {"submitted": self.submitted, "delivered": self.delivered, "failed": self.failed,
                "opted_out": self.opted_out, "rate_limited": self.rate_limited, "quiet_hours": self.quiet_hours,
                "unconfirmed": self.unconfirmed, "sent_now": self.sent_now}


_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class QuietHours:
    """A local-time window with no outreach, e.g. ``21:00-08:00`` (may wrap midnight; start == end: none)."""

    start: dt.time
    end: dt.time

    @classmethod
    def parse(cls, text: str, *, setting: str = "quiet_hours") -> QuietHours:
        """``HH:MM-HH:MM`` → the window.

        Raises:
            ConfigError: naming ``setting`` and the accepted form.
        """
        parts = text.strip().split("-")
        matches = [_TIME.match(p.strip()) for p in parts]
        if len(parts) != 2 or not all(matches):
            raise ConfigError(f"setting {setting}: {text!r} is not a window like 21:00-08:00 (24-hour HH:MM-HH:MM)")
        start, end = (dt.time(int(m.group(1)), int(m.group(2))) for m in matches if m)
        return cls(start, end)

    def is_quiet(self, local: dt.time) -> bool:
        """Whether ``local`` falls inside the window."""
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def seconds_until_open(self, local: dt.datetime) -> float:
        """How long from ``local`` until the window ends (0 outside it)."""
        if not self.is_quiet(local.time()):
            return 0.0
        end = local.replace(hour=self.end.hour, minute=self.end.minute, second=0, microsecond=0)
        if end <= local:
            end += dt.timedelta(days=1)
        return (end - local).total_seconds()


def next_send_at(last_sent: float | None, rate_per_s: float) -> float | None:
    """The earliest monotonic time of the next submission at ``rate_per_s`` (None: right away)."""
    return None if last_sent is None else last_sent + 1.0 / rate_per_s


def recipient_allowed(sent_at: Sequence[float], now: float, *, limit: int, window_s: float) -> bool:
    """Whether one more message may go to a recipient who got messages at ``sent_at`` (epoch seconds)."""
    return sum(1 for t in sent_at if now - t < window_s) < limit


def normalise_number(number: str) -> str:
    """A mobile number as ASCII digits only, without a leading ``+86``/``0086``/``86`` country code.

    Any decimal digit counts as its ASCII value (full-width ``１３８`` is ``138``), so the same number written
    another way matches the opt-out list, the journal and the per-recipient cap.
    """
    digits = "".join(str(unicodedata.decimal(c)) for c in number if c.isdecimal())
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and len(digits) == len(prefix) + 11:
            return digits[len(prefix):]
    return digits
