"""The delivery engine: :func:`deliver` sends one approved message to an audience, once, within the limits.

API (for job handlers; the telco calls it, nothing here runs at the bank)::

    report = deliver(job_id, recipients, template, state_dir=settings.state_path,
                     values={"bank_name": ...},          # optional; overrides TANDEM_CHANNEL_BANK_NAME etc.
                     channel_settings=None,              # None: read TANDEM_CHANNEL_* from the environment
                     channel=None, clock=None)           # injected in tests; default: from the settings, real time
    report.counts.as_dict()  # {"submitted", "delivered", "failed", "opted_out", "rate_limited", "quiet_hours",
                             #  "unconfirmed", "sent_now"} — the only thing that may leave the telco

Order of checks, each before anything is sent: the template (only approved placeholders, each with a
value; :class:`~protocols.wire.message_template.TemplateError` names the placeholder), then the opt-out
list (unreadable: :class:`~node.channels.OptOutError`, nothing sent). Then per recipient (duplicates
collapse to one): already in the journal for this job → skipped (never sent twice); on the opt-out list
→ ``opted_out``; in quiet hours → ``quiet_hours`` (or wait, per ``TANDEM_CHANNEL_QUIET_MODE``); over
the per-recipient cap across jobs → ``rate_limited``; otherwise journaled as ``sending``, paced to
``rate_per_s``, submitted, journaled as ``submitted``. Receipts update the journal as they arrive. A
channel that goes down raises :class:`~node.channels.ChannelDownError` naming its setting and what this
run sent; the journal keeps it, and calling :func:`deliver` again with the same job id sends the rest
only. Who learns what: the channel endpoint (the telco's own SMSC or gateway) gets each number and
text; the caller gets counts; the journal keeps keyed digests, never numbers.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from protocols.wire.message_template import render_template

from ._core import (
    Channel,
    ChannelDownError,
    Clock,
    DeliveryCounts,
    OutboundMessage,
    next_send_at,
    normalise_number,
    recipient_allowed,
)
from ._journal import DeliveryJournal, read_optout
from ._outbox import OutboxFileChannel
from ._settings import ENV_PREFIX, ChannelSettings, load_channel_settings, read_secret
from ._smpp import SmppChannel
from ._webhook import WebhookChannel

__all__ = ["ChannelOutreach", "DeliveryReport", "SystemClock", "deliver", "open_channel"]

logger = logging.getLogger(__name__)


class SystemClock:
    """Wall-clock time and real sleeping."""

    def now(self) -> dt.datetime:
        """Now, in UTC."""
        return dt.datetime.now(dt.UTC)

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` (nothing when not positive)."""
        if seconds > 0:
            time.sleep(seconds)


@dataclass(frozen=True)
class DeliveryReport:
    """The outcome of one :func:`deliver` call: the channel kind and the counts (nothing per person)."""

    job_id: str
    channel: str
    counts: DeliveryCounts

    def outputs(self) -> dict[str, object]:
        """Job outputs: ``{"channel": kind, "delivery": counts}``."""
        return {"channel": self.channel, "delivery": self.counts.as_dict()}


def open_channel(settings: ChannelSettings, state_dir: Path, clock: Clock | None = None) -> Channel:
    """The channel ``settings.kind`` names, configured from ``settings``.

    Raises:
        ConfigError: a secret file is missing or empty (naming its setting).
    """
    clock = clock or SystemClock()
    if settings.kind == "smpp":
        assert settings.smpp_password_file is not None  # the settings validator requires it
        password = read_secret(settings.smpp_password_file, f"{ENV_PREFIX}SMPP_PASSWORD_FILE")
        return SmppChannel(host=settings.smpp_host, port=settings.smpp_port, system_id=settings.smpp_system_id,
                           password=password, system_type=settings.smpp_system_type,
                           source_addr=settings.smpp_source_addr, bind=settings.smpp_bind,
                           timeout_s=settings.smpp_timeout_s, attempts=settings.smpp_reconnect_attempts,
                           backoff_s=settings.smpp_backoff_s, sleep=clock.sleep)
    if settings.kind == "webhook":
        assert settings.webhook_secret_file is not None
        secret = read_secret(settings.webhook_secret_file, f"{ENV_PREFIX}WEBHOOK_SECRET_FILE")
        client = httpx.Client(verify=str(settings.webhook_ca) if settings.webhook_ca else True,
                              timeout=settings.webhook_timeout_s, trust_env=False)
        return WebhookChannel(url=settings.webhook_url, secret=secret, retries=settings.webhook_retries,
                              now=lambda: clock.now().timestamp(), sleep=clock.sleep, client=client)
    return OutboxFileChannel(settings.outbox_path or state_dir / "channel_outbox.db")


def deliver(job_id: str, recipients: Iterable[str], template: str, *, state_dir: Path,
            values: Mapping[str, str] | None = None, channel_settings: ChannelSettings | None = None,
            channel: Channel | None = None, clock: Clock | None = None) -> DeliveryReport:
    """Send ``template`` (rendered) once to each recipient of ``job_id``; see the module docstring.

    Args:
        job_id: The job the messages belong to (the journal's key with the recipient).
        recipients: The telco's own subscribers' numbers (never leave the telco but to the channel).
        template: The approved ``params.message_template`` from the job's signed terms.
        state_dir: The telco's state directory (journal in ``node.db``; default opt-out and outbox files).
        values: Placeholder values, over the configured ones (``TANDEM_CHANNEL_BANK_NAME`` ...).
        channel_settings: Channel settings; None reads ``TANDEM_CHANNEL_*``.
        channel: A channel to use instead of opening the configured one (it is not closed here).
        clock: Time source; real time by default.

    Returns:
        The counts of this job's deliveries so far (this run and earlier runs of the same job).

    Raises:
        TemplateError: an unapproved placeholder or a missing value (nothing sent).
        OptOutError: the opt-out list cannot be read (nothing sent).
        ChannelDownError: the channel is down (naming its setting); earlier messages stay journaled.
        ConfigError: a setting or secret file is wrong (nothing sent).
    """
    settings = channel_settings or load_channel_settings()
    clock = clock or SystemClock()
    text = render_template(template, {**settings.template_values(), **(values or {})})
    optout_setting = f"{ENV_PREFIX}OPTOUT_PATH"
    optout = read_optout(settings.optout_path or state_dir / "optout.txt", required=settings.optout_path is not None,
                         setting=optout_setting)
    journal = DeliveryJournal(state_dir)
    own = channel is None
    active = channel if channel is not None else open_channel(settings, state_dir, clock)
    try:
        counts = _Run(job_id, text, settings, journal, active, clock, optout).run(recipients)
    finally:
        if own:
            active.close()
        journal.close()
    logger.info("job %s delivery via %s: %s", job_id, active.kind, counts.as_dict())
    return DeliveryReport(job_id, active.kind, counts)


class ChannelOutreach:
    """:func:`deliver` bound to one node's state directory, for job families that hold an outreach seam.

    ``ChannelOutreach(ctx.settings.state_path).deliver(job_id, numbers, template)`` returns the counts
    dict (``DeliveryCounts.as_dict()``); ``close()`` is a no-op kept for the seam (each call opens and
    closes the configured channel).
    """

    def __init__(self, state_dir: Path, *, values: Mapping[str, str] | None = None,
                 channel_settings: ChannelSettings | None = None, clock: Clock | None = None) -> None:
        self._state_dir, self._values, self._settings, self._clock = state_dir, values, channel_settings, clock

    def deliver(self, job_id: str, recipients: Iterable[str], template: str) -> dict[str, int]:
        """Send ``template`` to ``recipients`` once for ``job_id``; the counts (see :func:`deliver`)."""
        return deliver(job_id, recipients, template, state_dir=self._state_dir, values=self._values,
                       channel_settings=self._settings, clock=self._clock).counts.as_dict()

    def close(self) -> None:
        """Nothing to release."""


class _Run:
    """One pass of :func:`deliver` over an audience."""

    def __init__(self, job_id: str, text: str, settings: ChannelSettings, journal: DeliveryJournal, channel: Channel,
                 clock: Clock, optout: frozenset[str]) -> None:
        self.job_id, self.text, self.settings, self.journal = job_id, text, settings, journal
        self.channel, self.clock, self.optout = channel, clock, optout
        self.window = settings.window()
        self.zone = zoneinfo.ZoneInfo(settings.timezone)
        self.counts = DeliveryCounts()
        self.last_sent: float | None = None

    def run(self, recipients: Iterable[str]) -> DeliveryCounts:
        seen: set[str] = set()
        for number in recipients:
            digest = self.journal.digest(number)
            if digest in seen:
                continue
            seen.add(digest)
            self._one(normalise_number(number), digest)
        self._collect_receipts(final=True)
        return self._finish()

    def _now(self) -> float:
        return self.clock.now().timestamp()

    def _one(self, number: str, digest: str) -> None:
        status = self.journal.status(self.job_id, digest)
        if status == "sending" and not self.channel.resend_safe:
            self.journal.mark_unconfirmed(self.job_id, digest, self._now())
            return
        if status is not None and status != "sending":
            return
        if number in self.optout:
            self.counts.opted_out += 1
            return
        if self.window is not None and self.window.is_quiet(self.clock.now().astimezone(self.zone).time()):
            if self.settings.quiet_mode == "skip":
                self.counts.quiet_hours += 1
                return
            self.clock.sleep(self.window.seconds_until_open(self.clock.now().astimezone(self.zone)))
        now = self._now()
        recent = self.journal.recent_sends(digest, now - self.settings.recipient_window_s)
        if not recipient_allowed(recent, now, limit=self.settings.recipient_limit,
                                 window_s=self.settings.recipient_window_s):
            self.counts.rate_limited += 1
            return
        self._send(OutboundMessage(number, self.text, f"{self.job_id}-{digest[:20]}"), digest,
                   resume=status == "sending")

    def _send(self, message: OutboundMessage, digest: str, *, resume: bool) -> None:
        due = next_send_at(self.last_sent, self.settings.rate_per_s)
        if due is not None:
            self.clock.sleep(due - self._now())
        if not self.journal.mark_sending(self.job_id, digest, message.message_id, self.channel.kind, self._now(),
                                         resume=resume):
            return  # another drain of this job claimed the recipient first: it sends, not us
        try:
            result = self.channel.submit(message)
            self.last_sent = self._now()  # once the endpoint has it: a slow bind never squeezes the next gap
        except ChannelDownError as exc:
            if exc.handed_over and not self.channel.resend_safe:
                self.journal.mark_unconfirmed(self.job_id, digest, self._now())
            elif not exc.handed_over:
                self.journal.forget(self.job_id, digest)
            self._collect_receipts(final=False)
            done = self.journal.counts(self.job_id)
            raise ChannelDownError(
                f"{self.channel.kind} channel down for job {self.job_id} after {self.counts.sent_now} messages this "
                f"run ({sum(done.get(s, 0) for s in ('submitted', 'delivered', 'failed'))} journaled in all); "
                f"retry the job to send the rest only: {exc.reason}", setting=exc.setting) from None
        if result.error is not None:
            self.journal.mark_rejected(self.job_id, digest, self._now())
            return
        self.journal.mark_submitted(self.job_id, digest, result.remote_ids, self._now())
        self.counts.sent_now += 1
        self._collect_receipts(final=False)

    def _collect_receipts(self, *, final: bool) -> None:
        deadline = self._now() + (self.settings.receipt_wait_s if final else 0.0)
        while True:
            for receipt in self.channel.receipts(0.0 if not final else 0.1):
                self.journal.apply_receipt(receipt.remote_id, receipt.state, self._now())
            if not final or self.journal.counts(self.job_id).get("submitted", 0) == 0 or self._now() >= deadline:
                return

    def _finish(self) -> DeliveryCounts:
        done = self.journal.counts(self.job_id)
        c = self.counts
        c.delivered, c.failed = done.get("delivered", 0), done.get("failed", 0) + done.get("rejected", 0)
        c.submitted = done.get("submitted", 0) + c.delivered + done.get("failed", 0)
        c.unconfirmed = done.get("unconfirmed", 0) + done.get("sending", 0)
        return c
