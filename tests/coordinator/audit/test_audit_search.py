"""Filtered audit views found by the database give what reading every record gives, on every store.

``review`` answers an auditor's filtered view (by job, action prefix, actor, object) from
``AuditStore.containing`` once a verified prefix exists; the reference is the same view with no verified
prefix, which walks and re-hashes the whole chain. Filter text with LIKE wildcards, quotes, backslashes and
non-ASCII must match literally.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from coordinator.audit.review import EventFilter, VerifiedChain, review
from coordinator.context import Context
from coordinator.policy import load_policy
from coordinator.store import Store
from protocols.crypto.signing import SigningKey

ACTORS = ["user:alice", "user:al%ce", "user:b_b", 'user:q"uote', "user:back\\slash", "user:zoë", "cli"]
ACTIONS = ["job.submitted", "job.status", "jobs.other", "approval.add", "user.created", "job%x"]


def _fill(store: Store) -> None:
    with store.write() as tx:
        for i in range(120):
            obj = f"job:{i % 13}" if i % 4 else ('party:"b%"' if i % 8 else "job:1 ")
            details = {"n": i, "object": "job:3"} if i % 5 == 0 else {"n": i}  # a nested "object" must not match
            tx.audit.append({"actor": ACTORS[i % len(ACTORS)], "action": ACTIONS[i % len(ACTIONS)], "object": obj,
                             "details": details}, f"2025-01-01T00:00:{i % 60:02d}+00:00")


FILTERS = [EventFilter(job_id=3), EventFilter(job_id=1), EventFilter(job_id=12), EventFilter(action_prefix="job."),
           EventFilter(action_prefix="job"), EventFilter(action_prefix="job%"), EventFilter(actor="al%"),
           EventFilter(actor="b_b"), EventFilter(actor='q"u'), EventFilter(actor="back\\"), EventFilter(actor="zoë"),
           EventFilter(object='party:"b%"'), EventFilter(object="job:1"), EventFilter(action_prefix="job.", job_id=5),
           EventFilter(actor="_"), EventFilter(actor="%")]


@pytest.mark.parametrize("flt", FILTERS, ids=repr)
def test_a_filtered_view_from_the_database_equals_the_full_walk(store: Store, flt: EventFilter) -> None:
    ctx = Context(store=store, policy=load_policy(None), audit_key=SigningKey.generate(),
                  clock=lambda: datetime(2025, 1, 2, tzinfo=UTC))
    _fill(store)
    verified = VerifiedChain()
    assert review(ctx, EventFilter(), verified=verified).chain.ok  # the first view verifies the whole chain
    assert verified.snapshot()[0] == 120

    for per_page, page in ((10, 1), (10, 2), (500, 1)):
        searched = review(ctx, flt, page, per_page, verified=verified)
        walked = review(ctx, flt, page, per_page)  # no verified prefix: reads and re-hashes every record
        assert searched.chain.ok and walked.chain.ok and searched.chain.hashed == 0
        assert (searched.matched, searched.events) == (walked.matched, walked.events)
    assert walked.matched == sum(1 for r in _records(store) if flt.matches(r))


def _records(store: Store) -> list:
    with store.read() as tx:
        return tx.audit.events(-1, 1000)
