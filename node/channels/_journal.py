"""The delivery journal and the opt-out list: the telco's own state, in ``node.db`` and a local file.

The journal is keyed by (job id, recipient digest): a keyed HMAC-SHA256 of the normalised number under
a random key kept in ``node.db`` (so the journal holds no number, and its digests cannot be matched
against a list of guessed numbers without the node's key). A row is written *before* a message is
handed to the channel (``sending``) and updated after (``submitted``, then ``delivered``/``failed`` by
receipt), so a crash in between is visible: the engine never resends a message the journal knows of,
except to a channel that deduplicates by message id. Per-recipient sends across jobs live in
``channel_sends`` for the frequency cap. Nothing here leaves the node.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from node.node_db import NODE_DB, connect

from ._core import OptOutError, ReceiptState, normalise_number

__all__ = ["DeliveryJournal", "read_optout"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS channel_meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS channel_journal (
        job_id TEXT NOT NULL, recipient_digest TEXT NOT NULL, message_id TEXT NOT NULL, channel TEXT NOT NULL,
        status TEXT NOT NULL, remote_id TEXT, updated_at REAL NOT NULL, PRIMARY KEY (job_id, recipient_digest))""",
    "CREATE INDEX IF NOT EXISTS channel_journal_remote ON channel_journal (remote_id)",
    """CREATE TABLE IF NOT EXISTS channel_sends (recipient_digest TEXT NOT NULL, sent_at REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS channel_sends_digest ON channel_sends (recipient_digest, sent_at)",
)


class DeliveryJournal:
    """What was sent to whom (by digest) per job, in ``state_dir/node.db``."""

    def __init__(self, state_dir: Path) -> None:
        self._conn = connect(state_dir / NODE_DB)
        self._lock = threading.Lock()
        with self._lock:
            for stmt in _SCHEMA:
                self._conn.execute(stmt)
            self._conn.execute("INSERT OR IGNORE INTO channel_meta (name, value) VALUES ('digest_key', ?)",
                               (os.urandom(32),))
            self._key = bytes(self._conn.execute(
                "SELECT value FROM channel_meta WHERE name = 'digest_key'").fetchone()[0])

    def digest(self, number: str) -> str:
        """The keyed digest of a number (normalised first)."""
        return hmac.new(self._key, normalise_number(number).encode(), hashlib.sha256).hexdigest()

    def _write(self, sql: str, args: tuple[object, ...]) -> None:
        with self._lock:
            self._conn.execute(sql, args)

    def status(self, job_id: str, digest: str) -> str | None:
        """The journal status of a recipient of ``job_id`` (None: never handed to a channel)."""
        with self._lock:
            row = self._conn.execute("SELECT status FROM channel_journal WHERE job_id = ? AND recipient_digest = ?",
                                     (job_id, digest)).fetchone()
        return None if row is None else str(row[0])

    def mark_sending(self, job_id: str, digest: str, message_id: str, channel: str, now: float, *,
                     resume: bool = False) -> bool:
        """Claim the message before the channel sees it; False when another run of the job already holds it.

        ``resume`` re-claims a row left ``sending`` (only for a channel that deduplicates by message id).
        The claim is one atomic statement, so two concurrent drains of a job never both send to a recipient.
        """
        with self._lock:
            if resume:
                cur = self._conn.execute("UPDATE channel_journal SET updated_at = ? WHERE job_id = ? AND "
                                         "recipient_digest = ? AND status = 'sending'", (now, job_id, digest))
            else:
                cur = self._conn.execute(
                    "INSERT OR IGNORE INTO channel_journal (job_id, recipient_digest, message_id, channel, status, "
                    "updated_at) VALUES (?,?,?,?,'sending',?)", (job_id, digest, message_id, channel, now))
        return cur.rowcount == 1

    def mark_submitted(self, job_id: str, digest: str, remote_ids: Iterable[str], now: float) -> None:
        """Record the endpoint's acknowledgement, and count the send against the recipient's cap."""
        first = next(iter(remote_ids), None)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute("UPDATE channel_journal SET status = 'submitted', remote_id = ?, updated_at = ? "
                               "WHERE job_id = ? AND recipient_digest = ?", (first, now, job_id, digest))
            self._conn.execute("INSERT INTO channel_sends (recipient_digest, sent_at) VALUES (?,?)", (digest, now))
            self._conn.execute("COMMIT")

    def mark_rejected(self, job_id: str, digest: str, now: float) -> None:
        """The endpoint refused the message (counted as failed; not sent again)."""
        self._write("UPDATE channel_journal SET status = 'rejected', updated_at = ? "
                    "WHERE job_id = ? AND recipient_digest = ?", (now, job_id, digest))

    def mark_unconfirmed(self, job_id: str, digest: str, now: float) -> None:
        """The link broke after the message was handed over: never send it again."""
        self._write("UPDATE channel_journal SET status = 'unconfirmed', updated_at = ? "
                    "WHERE job_id = ? AND recipient_digest = ?", (now, job_id, digest))

    def forget(self, job_id: str, digest: str) -> None:
        """The message certainly did not go out (e.g. the connection was refused): a resume may send it."""
        self._write("DELETE FROM channel_journal WHERE job_id = ? AND recipient_digest = ? AND status = 'sending'",
                    (job_id, digest))

    def apply_receipt(self, remote_id: str, state: ReceiptState, now: float) -> bool:
        """Record a delivery receipt; False when no journal row has that remote id."""
        with self._lock:
            cur = self._conn.execute("UPDATE channel_journal SET status = ?, updated_at = ? WHERE remote_id = ? "
                                     "AND status IN ('submitted', 'delivered', 'failed')", (str(state), now, remote_id))
        return cur.rowcount > 0

    def recent_sends(self, digest: str, since: float) -> list[float]:
        """Times (epoch seconds) of messages to this recipient since ``since``, any job."""
        with self._lock:
            rows = self._conn.execute("SELECT sent_at FROM channel_sends WHERE recipient_digest = ? AND sent_at >= ?",
                                      (digest, since)).fetchall()
        return [float(r[0]) for r in rows]

    def counts(self, job_id: str) -> dict[str, int]:
        """Journal rows of ``job_id`` per status."""
        with self._lock:
            rows = self._conn.execute("SELECT status, COUNT(*) FROM channel_journal WHERE job_id = ? GROUP BY status",
                                      (job_id,)).fetchall()
        return {str(s): int(n) for s, n in rows}

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()


def read_optout(path: Path, *, required: bool, setting: str) -> frozenset[str]:
    """The opt-out (退订) numbers in ``path``, normalised: one number a line, ``#`` starts a comment.

    Args:
        path: The telco's opt-out file.
        required: Whether a missing file is an error (it is when the path was configured explicitly).
        setting: The setting that names the file, for the error message.

    Raises:
        OptOutError: the file is missing (when required), unreadable, or has a line that is not a number.
    """
    if not path.exists() and not required:
        return frozenset()
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM from a Windows editor is not a number
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise OptOutError(f"opt-out list {path} cannot be read ({reason}); nothing was sent. Fix the file or "
                          f"{setting}") from None
    numbers = set()
    for lineno, line in enumerate(text.splitlines(), 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        number = normalise_number(entry)
        if len(number) < 5 or not entry.lstrip("+").replace(" ", "").replace("-", "").isdigit():
            raise OptOutError(f"opt-out list {path} line {lineno} is not a phone number; nothing was sent. Fix the "
                              f"line (one number a line, # for comments) or {setting}")
        numbers.add(number)
    return frozenset(numbers)
