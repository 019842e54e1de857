"""Writing and reading the coordinator's audit log through the store.

``record`` appends one event inside the caller's transaction, so a state change and its audit event
commit together. ``record_alone`` is for refusals (failed logins, bad signatures): the request fails,
but the event it caused must still be kept. Hashing and signing are ``coordinator.audit.chain``'s.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from coordinator.audit.chain import SignedHead, event_body, export_lines, sign_head
from coordinator.context import Context
from coordinator.errors import Conflict
from coordinator.store import Transaction
from protocols.crypto.hashchain import ChainRecord
from protocols.wire.control import AuditEventPublic

__all__ = ["EXPORT_PAGE", "event_public", "events", "export", "record", "record_alone", "signed_head"]

EXPORT_PAGE = 2000


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
