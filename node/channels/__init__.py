"""Outreach channels of the node runtime: the telco reaches its own subscribers, and only counts come back.

Used by relay-mode recovery (:mod:`node.jobs.psi.outreach`), app promotion and win-back. The one entry
point is :func:`deliver` (its API is in :mod:`node.channels._deliver`'s docstring): an approved template
(:mod:`protocols.wire.message_template`), the opt-out list (退订), quiet hours, a per-recipient cap across
jobs, an overall send rate, and a journal in ``node.db`` so no one is messaged twice for a job.

Channels (:class:`Channel`): :class:`SmppChannel` (the SMSC, via ``smpplib``), :class:`WebhookChannel`
(signed HTTPS POST), :class:`OutboxFileChannel` (embedded SQLite sink, the default). Settings are
``TANDEM_CHANNEL_*`` (:class:`ChannelSettings`). Who learns what: the channel endpoint — the telco's
own SMSC or gateway — gets each recipient's number and the text; the caller (and so the coordinator and
the bank) gets :class:`DeliveryCounts` only; the journal holds keyed digests of numbers, never numbers.
"""

from protocols.wire.message_template import APPROVED_PLACEHOLDERS, TemplateError

from ._core import (
    Channel,
    ChannelDownError,
    ChannelError,
    Clock,
    DeliveryCounts,
    OptOutError,
    OutboundMessage,
    QuietHours,
    Receipt,
    ReceiptState,
    SubmitResult,
    normalise_number,
)
from ._deliver import ChannelOutreach, DeliveryReport, SystemClock, deliver, open_channel
from ._journal import DeliveryJournal, read_optout
from ._outbox import OutboxFileChannel
from ._settings import ENV_PREFIX, ChannelSettings, load_channel_settings
from ._smpp import SmppChannel
from ._webhook import WebhookChannel, sign, verify_signature

__all__ = [
    "APPROVED_PLACEHOLDERS",
    "ENV_PREFIX",
    "Channel",
    "ChannelOutreach",
    "ChannelDownError",
    "ChannelError",
    "ChannelSettings",
    "Clock",
    "DeliveryCounts",
    "DeliveryJournal",
    "DeliveryReport",
    "OptOutError",
    "OutboundMessage",
    "OutboxFileChannel",
    "QuietHours",
    "Receipt",
    "ReceiptState",
    "SmppChannel",
    "SubmitResult",
    "SystemClock",
    "TemplateError",
    "WebhookChannel",
    "deliver",
    "load_channel_settings",
    "normalise_number",
    "open_channel",
    "read_optout",
    "sign",
    "verify_signature",
]
