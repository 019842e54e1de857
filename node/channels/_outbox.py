"""The embedded channel: messages are written to a local SQLite outbox (the demo's default, no network).

The outbox is the end of the line: a message written there counts as delivered (receipt ``delivered``
on the next :meth:`OutboxFileChannel.receipts`). The file lives in the telco's state directory, mode
0600, one row per message id (writing the same id twice keeps one row, so a resend is harmless).
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

from node.node_db import connect

from ._core import OutboundMessage, Receipt, ReceiptState, SubmitResult

__all__ = ["OutboxFileChannel"]

_SCHEMA = """CREATE TABLE IF NOT EXISTS outbox_messages (
    message_id TEXT PRIMARY KEY, recipient TEXT NOT NULL, text TEXT NOT NULL, written_at TEXT NOT NULL)"""


class OutboxFileChannel:
    """A :class:`~node.channels.Channel` writing to ``path`` (``TANDEM_CHANNEL_OUTBOX_PATH``)."""

    kind = "outbox"
    setting = "TANDEM_CHANNEL_OUTBOX_PATH"
    resend_safe = True

    def __init__(self, path: Path) -> None:
        self._conn = connect(path)
        self._conn.execute(_SCHEMA)
        self._lock = threading.Lock()
        self._written: list[str] = []

    def submit(self, message: OutboundMessage) -> SubmitResult:
        """Write the message (once per message id)."""
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        with self._lock:
            self._conn.execute("INSERT OR IGNORE INTO outbox_messages (message_id, recipient, text, written_at) "
                               "VALUES (?,?,?,?)", (message.message_id, message.recipient, message.text, now))
            self._written.append(message.message_id)
        return SubmitResult(message.message_id, (message.message_id,))

    def receipts(self, wait_s: float) -> list[Receipt]:
        """Every message written since the last call, as delivered."""
        with self._lock:
            found, self._written = self._written, []
        return [Receipt(m, ReceiptState.DELIVERED) for m in found]

    def messages(self) -> list[tuple[str, str, str]]:
        """(message id, recipient, text) of every message in the outbox, in write order."""
        with self._lock:
            rows = self._conn.execute("SELECT message_id, recipient, text FROM outbox_messages ORDER BY rowid")
            return [(str(a), str(b), str(c)) for a, b, c in rows.fetchall()]

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._conn.close()
