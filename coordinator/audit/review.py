"""What the compliance pages and the event API show: the stored audit chain, verified, scoped and paged.

``review`` reads the whole chain from the store, a page of records at a time, and in the same pass

- checks every record's sequence number and link to its predecessor, and re-hashes the records that
  ``VerifiedChain`` has not seen yet, exactly as the offline verifier does, stopping at the first
  fault (``ChainStatus.bad_seq``);
- keeps the events the viewer may see (``coordinator.audit.scope``) that match an ``EventFilter`` and
  fall on the page.

Verification is incremental: ``VerifiedChain`` remembers how many records have been hashed and found
intact and the hash of the last (the verified head). A view hashes only the records appended since, so
its SHA-256 work is the number of new events (``ChainStatus.hashed``), not the log's length, and every
view checks that the verified head's hash is unchanged and that the new records chain onto it (which
catches a rewrite that re-hashes the chain, and a truncated tail). The unfiltered view of an auditor
reads nothing else but its page; a filtered one asks the database for the records whose body holds the
filter's text (``AuditStore.containing``) and keeps the exact matches, so a view's cost no longer grows
with the log. A party-scoped view, and the first view after a restart, read every record to find the
matches and also check every seq number and link (catching deleted and inserted rows). A record edited
in the database after it was verified, its stored hash left as it was, shows up when the whole chain is
re-hashed: on the first view after a restart and on request (``full=True``, the page's "re-hash every
event" link). A verified chain's last record is signed now with the coordinator key,
so the page can show a signed head; a broken chain is never signed.

What it cannot see: a rewrite that recomputes every hash from the edited record to the head before the
first view after a restart (only someone who also holds the coordinator key could then re-sign it;
compare with heads kept from earlier exports), and events the coordinator never recorded (cross-check
node egress ledgers).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

from coordinator.audit.chain import SignedHead, sign_head
from coordinator.audit.log import EXPORT_PAGE, event_public
from coordinator.audit.scope import EVERYONE, Scope, Visibility, read_records
from coordinator.context import Context
from protocols.crypto.hashchain import GENESIS, ChainRecord, link_hash
from protocols.wire.control import AuditEventPublic

__all__ = ["AuditReview", "ChainStatus", "EventFilter", "VerifiedChain", "review"]


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

    def fragments(self) -> list[str]:
        """Text every matching record's canonical JSON body contains (for the store's ``containing``)."""
        def text(value: str) -> str:
            return json.dumps(value, ensure_ascii=False)  # as canonical JSON writes it, quotes included

        found = []
        if self.action_prefix:
            found.append('"action":' + text(self.action_prefix)[:-1])
        if self.actor:
            found.append(text(self.actor)[1:-1])
        if self.object:
            found.append('"object":' + text(self.object))
        if self.job_id is not None:
            found.append('"object":' + text(f"job:{self.job_id}"))
        return found


class VerifiedChain:
    """The prefix of the stored chain already hashed and found intact. One per app; thread-safe.

    Attributes:
        count: records verified (seq 0 to count - 1).
        head_hash: hash of the last of them, the verified head (``GENESIS`` when none).
    """

    def __init__(self) -> None:
        self.count = 0
        self.head_hash = GENESIS
        self._lock = threading.Lock()

    def snapshot(self) -> tuple[int, str]:
        """``(count, head_hash)`` now."""
        with self._lock:
            return self.count, self.head_hash

    def advance(self, count: int, head_hash: str) -> None:
        """Remember a longer verified prefix."""
        with self._lock:
            if count > self.count:
                self.count, self.head_hash = count, head_hash

    def forget(self) -> None:
        """Trust nothing: the next view re-hashes every record."""
        with self._lock:
            self.count, self.head_hash = 0, GENESIS


@dataclass(frozen=True)
class ChainStatus:
    """The stored chain, re-verified now.

    Attributes:
        ok: every record checks out.
        count: records checked before the first fault (all of them when ``ok``).
        bad_seq: sequence number of the first bad record (or of the record expected there).
        reason: what is wrong with it; "" when ok.
        head: the last record's head signed now by the coordinator key, only when ``ok``.
        hashed: records re-hashed by this view (the others were verified by an earlier one).
    """

    ok: bool
    count: int
    bad_seq: int | None = None
    reason: str = ""
    head: SignedHead | None = None
    hashed: int = 0


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
    """Chain verification: feed records in order; the first fault is kept.

    The first ``trusted`` records were hashed by an earlier view: they are checked for sequence and link,
    and the last of them against ``trusted_hash``, but not re-hashed.
    """

    trusted: int = 0
    trusted_hash: str = GENESIS
    count: int = 0
    hashed: int = 0
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
        if rec.seq < self.trusted:
            if rec.seq == self.trusted - 1 and rec.hash != self.trusted_hash:
                return "hash differs from the verified head (the chain was rewritten)"
            return ""
        self.hashed += 1
        if link_hash(rec.seq, rec.ts, rec.body, rec.prev_hash) != rec.hash:
            return "record content does not match its hash (the row was edited)"
        return ""

    def unreadable(self) -> None:
        if self.bad_seq is None:
            self.bad_seq, self.reason = self.count, "a stored record cannot be read (not valid JSON)"

    def status(self, ctx: Context) -> ChainStatus:
        if self.bad_seq is None and self.count < self.trusted:
            self.bad_seq, self.reason = self.count, "records verified earlier are missing (the log was truncated)"
        if self.bad_seq is not None:
            return ChainStatus(False, self.count, self.bad_seq, self.reason, hashed=self.hashed)
        if self.last is None:
            return ChainStatus(False, 0, 0, "the audit log is empty")
        head = sign_head(ctx.audit_key, self.last, signed_at=ctx.clock().isoformat())
        return ChainStatus(True, self.count, head=head, hashed=self.hashed)


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


Reader = Callable[[int, int], list[ChainRecord]]
"""Up to ``limit`` stored records after seq ``after``: ``read(after, limit)`` (``AuditStore.events``)."""


def _readable_prefix(read: Reader, after: int) -> Iterator[ChainRecord]:
    """Records after ``after`` one at a time, up to the first that cannot be read."""
    while True:
        try:
            page = read(after, 1)
        except ValueError:
            return
        if not page:
            return
        yield page[0]
        after = page[0].seq


def _stored_records(read: Reader, checker: _Checker, after: int = -1) -> Iterator[ChainRecord]:
    """Every stored record after seq ``after`` in seq order, a page at a time; an unreadable record ends the walk."""
    while True:
        try:
            page = read(after, EXPORT_PAGE)
        except ValueError:  # json.JSONDecodeError from an edited body: find it, then stop
            yield from _readable_prefix(read, after)
            checker.unreadable()
            return
        yield from page
        if len(page) < EXPORT_PAGE:  # a short page is the last
            return
        after = page[-1].seq


def _checker(verified: VerifiedChain | None, full: bool) -> _Checker:
    if verified is None or full:
        return _Checker()
    trusted, trusted_hash = verified.snapshot()
    return _Checker(trusted=trusted, trusted_hash=trusted_hash)


def _remember(verified: VerifiedChain | None, checker: _Checker) -> None:
    if verified is None:
        return
    if checker.bad_seq is None:
        verified.advance(checker.count, checker.prev_hash)
    else:
        verified.forget()


def _verified_now(read: Reader, verified: VerifiedChain) -> _Checker | None:
    """Extend the verified prefix to the stored head: check the verified head's record, hash the records after it.

    Returns None when there is no verified prefix yet or anything is amiss; the caller then walks the whole
    chain, which finds and names the fault.
    """
    trusted, trusted_hash = verified.snapshot()
    if trusted == 0:
        return None
    try:
        first = read(trusted - 2, EXPORT_PAGE)  # the verified head's record and the records after it
        if not first or first[0].seq != trusted - 1:
            return None
        checker = _Checker(trusted=trusted, trusted_hash=trusted_hash, count=trusted - 1,
                           prev_hash=first[0].prev_hash)
        for rec in first:
            checker.feed(rec)
        if len(first) == EXPORT_PAGE:
            for rec in _stored_records(read, checker, first[-1].seq):
                checker.feed(rec)
    except ValueError:
        return None
    return checker if checker.bad_seq is None else None


def _unfiltered(ctx: Context, page: int, per_page: int, verified: VerifiedChain) -> AuditReview | None:
    """The unfiltered view of a viewer who sees everything: reads the verified head, the records after it, the page.

    All in one read transaction.
    """
    with ctx.store.read() as tx:
        checker = _verified_now(tx.audit.events, verified)
        if checker is None:
            return None
        try:
            shown = tx.audit.events((page - 1) * per_page - 1, per_page)
        except ValueError:
            return None
    status = checker.status(ctx)
    _remember(verified, checker)
    events = [event_public(r) for r in shown if r.seq < checker.count]
    return AuditReview(events, checker.count, page, per_page, status)


def _searched(ctx: Context, flt: EventFilter, page: int, per_page: int, verified: VerifiedChain) -> AuditReview | None:
    """A filtered view of a viewer who sees everything, without reading every record.

    The chain is checked as ``_unfiltered`` does; the matches are found by the database
    (``AuditStore.containing``) and then filtered exactly. All in one read transaction.
    """
    with ctx.store.read() as tx:
        checker = _verified_now(tx.audit.events, verified)
        if checker is None:
            return None
        try:
            found = tx.audit.containing(flt.fragments(), checker.count - 1)
        except ValueError:
            return None
    matches = [r for r in found if flt.matches(r)]
    status = checker.status(ctx)
    _remember(verified, checker)
    shown = matches[(page - 1) * per_page: page * per_page]
    return AuditReview([event_public(r) for r in shown], len(matches), page, per_page, status)


def review(ctx: Context, flt: EventFilter, page: int = 1, per_page: int = 50, *, scope: Scope = EVERYONE,
           verified: VerifiedChain | None = None, full: bool = False) -> AuditReview:
    """Verify the stored chain and return page ``page`` (1-based) of the events matching ``flt``, oldest first.

    Args:
        ctx: service context (store, audit key, clock).
        flt: which events to list.
        page: 1-based page number; a page past the end is empty.
        per_page: events per page.
        scope: whose events the viewer may see; events outside it are neither listed nor counted.
        verified: the app's verified prefix: only records after it are re-hashed, and it is advanced (or
            forgotten, if the chain is broken). None re-hashes everything and remembers nothing.
        full: re-hash every record even if ``verified`` knows a prefix.
    """
    if verified is not None and not full and scope.everything:
        quick = (_unfiltered(ctx, page, per_page, verified) if flt == EventFilter()
                 else _searched(ctx, flt, page, per_page, verified))
        if quick is not None:
            return quick
    checker = _checker(verified, full)
    window = _Window((page - 1) * per_page, page * per_page)
    visibility = Visibility(ctx, scope)
    for rec in _stored_records(partial(read_records, ctx), checker):
        checker.feed(rec)
        if flt.matches(rec) and visibility.shows(rec):
            window.offer(rec)
    status = checker.status(ctx)
    _remember(verified, checker)
    return AuditReview([event_public(r) for r in window.kept], window.matched, page, per_page, status)
