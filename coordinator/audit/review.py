"""What the compliance pages show: one pass over the stored audit chain that verifies it and pages a filter.

``review`` reads the whole chain from the store, a page of records at a time, and in the same pass

- re-checks every record (sequence number, link to its predecessor, hash of its content) exactly as the
  offline verifier does, stopping the check at the first fault (``ChainStatus.bad_seq``);
- keeps the events that match an ``EventFilter`` and falls on the requested page.

Verification is done on every call on purpose: a row edited directly in the database since the last
view shows up as ``TAMPERED`` at once. It costs one SHA-256 over the canonical JSON of each record
(linear in the log's length). A verified chain's last record is signed now with the coordinator key,
so the page can show a signed head; a broken chain is never signed.

What it cannot see: a rewrite that recomputes every hash from the edited record to the head (only
someone who also holds the coordinator key could then re-sign it; compare with heads kept from earlier
exports), and events the coordinator never recorded (cross-check node egress ledgers).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from coordinator.audit.chain import SignedHead, sign_head
from coordinator.audit.log import EXPORT_PAGE, event_public
from coordinator.context import Context
from protocols.crypto.hashchain import GENESIS, ChainRecord, link_hash
from protocols.wire.control import AuditEventPublic

__all__ = ["AuditReview", "ChainStatus", "EventFilter", "review"]


@dataclass(frozen=True)
class EventFilter:
    """Which events to list. Empty criteria match everything.

    Attributes:
        action_prefix: the action starts with this (``job.`` matches ``job.submitted``, ``job.status``...).
        actor: the actor contains this (``alice`` matches ``user:alice``).
        object: the object is exactly this (``party:bank``).
        job_id: the object is ``job:<job_id>``.
    """

    action_prefix: str = ""
    actor: str = ""
    object: str = ""
    job_id: int | None = None

    def matches(self, rec: ChainRecord) -> bool:
        """Whether ``rec`` passes every criterion."""
        body = rec.body
        action, actor, obj = str(body.get("action", "")), str(body.get("actor", "")), str(body.get("object", ""))
        return (action.startswith(self.action_prefix) and self.actor in actor
                and (not self.object or obj == self.object)
                and (self.job_id is None or obj == f"job:{self.job_id}"))


@dataclass(frozen=True)
class ChainStatus:
    """The stored chain, re-verified now.

    Attributes:
        ok: every record checks out.
        count: records checked before the first fault (all of them when ``ok``).
        bad_seq: sequence number of the first bad record (or of the record expected there).
        reason: what is wrong with it; "" when ok.
        head: the last record's head signed now by the coordinator key, only when ``ok``.
    """

    ok: bool
    count: int
    bad_seq: int | None = None
    reason: str = ""
    head: SignedHead | None = None


@dataclass(frozen=True)
class AuditReview:
    """One page of matching events and the chain's status."""

    events: list[AuditEventPublic]
    matched: int
    page: int
    per_page: int
    chain: ChainStatus

    @property
    def pages(self) -> int:
        """Number of pages of matching events (at least 1)."""
        return max(1, -(-self.matched // self.per_page))


@dataclass
class _Checker:
    """Incremental chain verification: feed records in order; the first fault is kept."""

    count: int = 0
    prev_hash: str = GENESIS
    last: ChainRecord | None = None
    bad_seq: int | None = None
    reason: str = ""

    def feed(self, rec: ChainRecord) -> None:
        if self.bad_seq is not None:
            return
        fault = self._fault(rec)
        if fault:
            self.bad_seq, self.reason = rec.seq, fault
            return
        self.count, self.prev_hash, self.last = self.count + 1, rec.hash, rec

    def _fault(self, rec: ChainRecord) -> str:
        if rec.seq != self.count:
            return f"expected seq {self.count}, found {rec.seq} (a record was deleted or inserted)"
        if rec.prev_hash != self.prev_hash:
            return "prev_hash does not match the previous record"
        if link_hash(rec.seq, rec.ts, rec.body, rec.prev_hash) != rec.hash:
            return "record content does not match its hash (the row was edited)"
        return ""

    def unreadable(self) -> None:
        if self.bad_seq is None:
            self.bad_seq, self.reason = self.count, "a stored record cannot be read (not valid JSON)"

    def status(self, ctx: Context) -> ChainStatus:
        if self.bad_seq is not None:
            return ChainStatus(False, self.count, self.bad_seq, self.reason)
        if self.last is None:
            return ChainStatus(False, 0, 0, "the audit log is empty")
        head = sign_head(ctx.audit_key, self.last, signed_at=ctx.clock().isoformat())
        return ChainStatus(True, self.count, head=head)


@dataclass
class _Window:
    """Counts matches and keeps those that fall on one page."""

    start: int
    stop: int
    matched: int = 0
    kept: list[ChainRecord] = field(default_factory=list)

    def offer(self, rec: ChainRecord) -> None:
        if self.start <= self.matched < self.stop:
            self.kept.append(rec)
        self.matched += 1


def _read(ctx: Context, after: int, limit: int) -> list[ChainRecord]:
    with ctx.store.read() as tx:
        return tx.audit.events(after, limit)


def _readable_prefix(ctx: Context, after: int) -> Iterator[ChainRecord]:
    """Records after ``after`` one at a time, up to the first that cannot be read."""
    while True:
        try:
            page = _read(ctx, after, 1)
        except ValueError:
            return
        if not page:
            return
        yield page[0]
        after = page[0].seq


def _stored_records(ctx: Context, checker: _Checker) -> Iterator[ChainRecord]:
    """Every stored record in seq order, a page at a time; an unreadable record ends the walk."""
    after = -1
    while True:
        try:
            page = _read(ctx, after, EXPORT_PAGE)
        except ValueError:  # json.JSONDecodeError from an edited body: find it, then stop
            yield from _readable_prefix(ctx, after)
            checker.unreadable()
            return
        if not page:
            return
        yield from page
        after = page[-1].seq


def review(ctx: Context, flt: EventFilter, page: int = 1, per_page: int = 50) -> AuditReview:
    """Verify the stored chain and return page ``page`` (1-based) of the events matching ``flt``, oldest first.

    Args:
        ctx: service context (store, audit key, clock).
        flt: which events to list.
        page: 1-based page number; a page past the end is empty.
        per_page: events per page.
    """
    checker = _Checker()
    window = _Window((page - 1) * per_page, page * per_page)
    for rec in _stored_records(ctx, checker):
        checker.feed(rec)
        if flt.matches(rec):
            window.offer(rec)
    return AuditReview([event_public(r) for r in window.kept], window.matched, page, per_page, checker.status(ctx))
