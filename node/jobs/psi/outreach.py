"""Outreach for relay-mode recovery: the telco sends the bank's approved message to matched subscribers.

:class:`OutreachChannel` is what the recovery driver needs while the PSI runs: the shipped
:class:`OutboxChannel` queues one row per matched subscriber in the ``outreach_outbox`` table of the
node's ``node.db`` (idempotent per ``(job_id, recipient)`` by a unique index), which is fast, so the
bank's close is answered at once. After the PSI, :meth:`OutboxChannel.drain` hands the job's queued
rows to :func:`node.channels.deliver` — the same engine as every other outreach (configured channel,
approved template, opt-out list, quiet hours, rate limits, a journal so nobody is messaged twice) —
and marks them ``handed_over``. A drain that stops because the channel is down, or that left some
for quiet hours or the per-recipient cap, leaves the rows ``queued``; draining again (``tandem-telco
outbox --drain --job N``) sends the rest only. Who learns what: the number goes to the telco's own
channel endpoint only; the job's outputs carry counts. Numbers are shown masked (:func:`mask_msisdn`)
in every listing.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from node.channels import Channel, ChannelSettings, Clock, DeliveryCounts, DeliveryReport, deliver
from node.node_db import connect

__all__ = ["OutboxChannel", "OutboxRow", "OutreachChannel", "mask_msisdn"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS outreach_outbox (
        id INTEGER PRIMARY KEY, job_id TEXT NOT NULL, recipient TEXT NOT NULL, message TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'queued', created_at TEXT NOT NULL)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS outreach_once ON outreach_outbox (job_id, recipient)",
)


def mask_msisdn(number: str) -> str:
    """``13812341234`` → ``138****1234``; anything shorter than 8 characters is fully masked."""
    if len(number) < 8:
        return "*" * len(number)
    return number[:3] + "*" * (len(number) - 7) + number[-4:]


class OutreachChannel(Protocol):
    """Delivers one message text to many recipients (the telco's own subscribers)."""

    def send(self, job_id: str, recipients: Sequence[str], message: str) -> int:
        """Queue ``message`` for each recipient once; return how many were newly queued."""
        ...


@dataclass(frozen=True)
class OutboxRow:
    """One queued message, with the number masked."""

    job_id: str
    recipient_masked: str
    message: str
    status: str


class OutboxChannel:
    """An :class:`OutreachChannel` that queues messages in ``node.db`` for an SMS gateway to deliver."""

    def __init__(self, db_path: Path) -> None:
        self._conn = connect(db_path)
        for stmt in _SCHEMA:
            self._conn.execute(stmt)
        self._lock = threading.Lock()

    def send(self, job_id: str, recipients: Sequence[str], message: str) -> int:
        """Queue ``message`` once per recipient of ``job_id`` (repeats are ignored)."""
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                before = self._conn.total_changes
                self._conn.executemany(
                    "INSERT OR IGNORE INTO outreach_outbox (job_id, recipient, message, created_at) VALUES (?,?,?,?)",
                    [(job_id, r, message, now) for r in recipients],
                )
                added = self._conn.total_changes - before
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        return added

    def rows(self, job_id: str | None = None, *, limit: int = 50) -> list[OutboxRow]:
        """Queued messages (numbers masked), newest job first."""
        sql = "SELECT job_id, recipient, message, status FROM outreach_outbox"
        args: tuple[object, ...] = ()
        if job_id is not None:
            sql, args = sql + " WHERE job_id = ?", (job_id,)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY id LIMIT ?", (*args, limit)).fetchall()
        return [OutboxRow(str(j), mask_msisdn(str(r)), str(m), str(s)) for j, r, m, s in rows]

    def count(self, job_id: str) -> int:
        """Messages queued for ``job_id``."""
        with self._lock:
            row = self._conn.execute("SELECT COUNT(*) FROM outreach_outbox WHERE job_id = ?", (job_id,)).fetchone()
        return int(row[0])

    def drain(self, job_id: str, *, state_dir: Path, channel_settings: ChannelSettings | None = None,
              channel: Channel | None = None, clock: Clock | None = None) -> DeliveryReport:
        """Deliver ``job_id``'s queued messages through :func:`node.channels.deliver`; mark them handed over.

        Args:
            job_id: The relay job.
            state_dir: The telco's state directory (delivery journal, opt-out list, outbox channel file).
            channel_settings: Channel settings (None: ``TANDEM_CHANNEL_*``).
            channel: A channel to use instead of the configured one.
            clock: Time source (None: real time).

        Raises:
            TemplateError, OptOutError, ChannelDownError, ConfigError: as :func:`~node.channels.deliver`;
                the rows stay ``queued`` and a later drain sends only what the journal does not have.
        """
        with self._lock:
            rows = self._conn.execute("SELECT recipient, message FROM outreach_outbox WHERE job_id = ? AND "
                                      "status = 'queued' ORDER BY id", (job_id,)).fetchall()
        by_message: dict[str, list[str]] = {}
        for recipient, message in rows:
            by_message.setdefault(str(message), []).append(str(recipient))
        report = DeliveryReport(job_id, channel.kind if channel else "none", DeliveryCounts())
        for message, recipients in by_message.items():
            report = deliver(job_id, recipients, message, state_dir=state_dir, channel_settings=channel_settings,
                             channel=channel, clock=clock)
        if report.counts.quiet_hours or report.counts.rate_limited:
            return report  # some wait for the morning or the cap: stay queued; the next drain sends only those
        with self._lock:
            self._conn.execute("UPDATE outreach_outbox SET status = 'handed_over' WHERE job_id = ? AND "
                               "status = 'queued'", (job_id,))
        return report

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()
