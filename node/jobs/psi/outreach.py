"""Outreach for relay-mode recovery: the telco sends the bank's approved message to matched subscribers.

:class:`OutreachChannel` is what the recovery driver needs from a messaging system. The shipped
:class:`OutboxChannel` writes one row per message into the ``outreach_outbox`` table of the node's
``node.db``; a real SMS gateway either drains that table or implements the Protocol directly
(``send`` must be idempotent per ``(job_id, recipient)``: a job retried after a crash must not
message anyone twice — the outbox enforces that with a unique index). Numbers are shown masked
(:func:`mask_msisdn`) in every listing.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

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

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()
