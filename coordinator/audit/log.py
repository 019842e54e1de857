"""Writing and reading the coordinator's audit log through the store.

``record`` appends one event inside the caller's transaction, so a state change and its audit event
commit together. ``record_alone`` is for refusals (failed logins, bad signatures): the request fails,
but the event it caused must still be kept. ``AuthFailureLog`` keeps failed authentications from
flooding the chain. Hashing and signing are ``coordinator.audit.chain``'s.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from coordinator.audit.chain import SignedHead, event_body, export_lines, sign_head
from coordinator.context import Context
from coordinator.errors import Conflict
from coordinator.store import Transaction
from protocols.crypto.hashchain import ChainRecord
from protocols.wire.control import AuditEventPublic

__all__ = ["EXPORT_PAGE", "AuthFailureLog", "event_public", "events", "export", "record", "record_alone",
           "signed_head"]

EXPORT_PAGE = 2000
MAX_FAILURE_KEYS = 10_000


def record(ctx: Context, tx: Transaction, actor: str, action: str, obj: str, details: Mapping[str, Any]) -> None:
    """Append one event to the log inside transaction ``tx``.

    Args:
        ctx: service context (its clock stamps the event).
        tx: the open write transaction of the state change being audited.
        actor: ``user:<name>``, ``bootstrap``, ``cli`` or ``coordinator``.
        action: dotted verb such as ``job.submitted``.
        obj: what it happened to, such as ``job:42``.
        details: small JSON metadata; never tokens, keys' private halves, rows or payloads.
    """
    tx.audit.append(event_body(actor, action, obj, details), ctx.clock().isoformat())


def record_alone(ctx: Context, actor: str, action: str, obj: str, details: Mapping[str, Any]) -> None:
    """Append one event in a transaction of its own (for refusals whose request is rolled back)."""
    with ctx.store.write() as tx:
        record(ctx, tx, actor, action, obj, details)


def event_public(rec: ChainRecord) -> AuditEventPublic:
    """A chain record as the API shows it."""
    body = rec.body
    return AuditEventPublic(seq=rec.seq, ts=rec.ts, actor=str(body.get("actor", "")),
                            action=str(body.get("action", "")), object=str(body.get("object", "")),
                            details=dict(body.get("details", {})), prev_hash=rec.prev_hash, hash=rec.hash)


def events(ctx: Context, after_seq: int, limit: int) -> list[AuditEventPublic]:
    """Up to ``limit`` events after ``after_seq``."""
    with ctx.store.read() as tx:
        return [event_public(r) for r in tx.audit.events(after_seq, limit)]


def signed_head(ctx: Context) -> SignedHead:
    """The current head, freshly signed with the coordinator key.

    Raises:
        Conflict: if the log is empty (it never is once the app has started).
    """
    with ctx.store.read() as tx:
        head = tx.audit.head()
    if head is None:
        raise Conflict("the audit log is empty")
    return sign_head(ctx.audit_key, head, signed_at=ctx.clock().isoformat())


def _records_through(ctx: Context, last_seq: int) -> Iterator[ChainRecord]:
    after = -1
    while after < last_seq:
        with ctx.store.read() as tx:
            page = tx.audit.events(after, min(EXPORT_PAGE, last_seq - after))
        if not page:
            return
        yield from page
        after = page[-1].seq


def export(ctx: Context, actor: str) -> Iterator[str]:
    """Record ``audit.exported`` and return the JSONL export up to and including that event.

    The lines are produced lazily, a page of records at a time, so the export streams.
    """
    with ctx.store.write() as tx:
        record(ctx, tx, actor, "audit.exported", "audit", {"format": "jsonl"})
        head = tx.audit.head()
    assert head is not None
    signed = sign_head(ctx.audit_key, head, signed_at=ctx.clock().isoformat())
    return export_lines(_records_through(ctx, head.seq), signed)


@dataclass
class _Window:
    start: datetime
    repeats: int = 0


_Key = tuple[str, str, str, str]


class AuthFailureLog:
    """Failed authentications, audited at most once per kind, client address and window.

    A kind is (client address, channel, reason, user named by an expired token). The first failure of a
    kind in a window of ``window`` is chained at once as ``auth.failed`` with ``client``; the others
    only add to a count. When the window has closed, its count (if any) is chained once as
    ``auth.failed.repeated`` with ``repeats`` and ``since``: at the next failure of any kind, or when
    the log is read (``flush``). So a flood writes O(windows) events, not O(requests), and every
    failure is still counted. Nothing derived from a presented token is recorded. Thread-safe.
    """

    def __init__(self, window: timedelta) -> None:
        self.window = window
        self._open: dict[_Key, _Window] = {}
        self._lock = threading.Lock()

    def record(self, ctx: Context, client: str, details: Mapping[str, Any]) -> None:
        """Count one failure from ``client``; chain it if it opens a window (``details``: channel, reason, user)."""
        now = ctx.clock()
        key = (client, str(details.get("channel", "")), str(details.get("reason", "")), str(details.get("user", "")))
        with self._lock:
            closed = self._take_closed(now)
            window = self._open.get(key)
            if window is not None:
                window.repeats += 1
            else:
                self._open[key] = _Window(now)
        self._write(ctx, closed)
        if window is None:
            record_alone(ctx, "anonymous", "auth.failed", "auth", {**details, "client": client})

    def flush(self, ctx: Context) -> None:
        """Chain the counts of windows that have closed."""
        with self._lock:
            closed = self._take_closed(ctx.clock())
        self._write(ctx, closed)

    def _take_closed(self, now: datetime) -> list[tuple[_Key, _Window]]:
        ended = [k for k, w in self._open.items() if now >= w.start + self.window]
        if len(self._open) - len(ended) >= MAX_FAILURE_KEYS:  # bound memory: close the oldest window early
            ended.append(min((k for k in self._open if k not in ended), key=lambda k: self._open[k].start))
        return [(k, self._open.pop(k)) for k in ended]

    @staticmethod
    def _write(ctx: Context, closed: list[tuple[_Key, _Window]]) -> None:
        for (client, channel, reason, user), window in closed:
            if window.repeats:
                details = {"channel": channel, "reason": reason, **({"user": user} if user else {}),
                           "client": client, "repeats": window.repeats, "since": window.start.isoformat()}
                record_alone(ctx, "anonymous", "auth.failed.repeated", "auth", details)
