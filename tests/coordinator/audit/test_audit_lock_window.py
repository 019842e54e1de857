"""The audit chain's lock under concurrency, on every store: held from a transaction's first append to its end.

``SqlStore`` chains a transaction's records at once but inserts them in one statement when the
transaction ends (so PostgreSQL's advisory lock is held for few round trips). These tests pin what that
must not change: appends from many threads at once leave one gap-free, verifiable chain in which each
transaction's records are consecutive; what a transaction reads after its first append cannot be changed
by another audited write before it commits (a read-modify-write after an append loses no update, which a
lock taken only at commit would); and a transaction reads its own appended records. Nothing here measures
time.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import UTC, datetime

from coordinator.store import MemoryStore, SqlStore
from protocols.crypto.hashchain import verify_chain
from tests.support.coordinator import dataset_register

NOW = datetime(2025, 1, 2, tzinfo=UTC)
THREADS = 6
PER_THREAD = 10
EVENTS_PER_TX = 3


def _run(threads: int, work) -> None:  # type: ignore[no-untyped-def]
    errors: list[BaseException] = []

    def guarded(n: int) -> None:
        try:
            work(n)
        except BaseException as exc:  # noqa: BLE001 - reported in the main thread
            errors.append(exc)

    started = [threading.Thread(target=guarded, args=(n,)) for n in range(threads)]
    for t in started:
        t.start()
    for t in started:
        t.join()
    assert not errors, errors


def test_concurrent_transactions_chain_their_records_consecutively(store: MemoryStore | SqlStore) -> None:
    # Prepare: a dataset that every transaction also writes between its appends
    with store.write() as tx:
        dataset = tx.catalog.upsert_dataset("bank", dataset_register("shared"), "d" * 64, NOW)[0]

    # Execute: THREADS threads, each PER_THREAD transactions of EVENTS_PER_TX appends with writes between
    def worker(n: int) -> None:
        for i in range(PER_THREAD):
            with store.write() as tx:
                for k in range(EVENTS_PER_TX):
                    tx.audit.append({"action": "test", "tx": f"{n}.{i}", "k": k}, "t")
                    tx.catalog.upsert_dataset("bank", dataset_register("shared", rows=n * 1000 + i), "d" * 64, NOW)

    _run(THREADS, worker)

    # Check: gap-free, intact, and each transaction's records consecutive and in order
    with store.read() as tx:
        records = tx.audit.events(limit=10_000)
        assert tx.catalog.get_dataset(dataset.id).row_count >= 0
    assert [r.seq for r in records] == list(range(THREADS * PER_THREAD * EVENTS_PER_TX))
    verdict = verify_chain(records)
    assert verdict.ok and verdict.count == len(records)
    seqs: dict[str, list[int]] = defaultdict(list)
    for r in records:
        seqs[r.body["tx"]].append(r.seq)
    assert len(seqs) == THREADS * PER_THREAD
    for tx_seqs in seqs.values():
        assert tx_seqs == list(range(tx_seqs[0], tx_seqs[0] + EVENTS_PER_TX))
    assert [r.body["k"] for r in records] == [k for _ in seqs for k in range(EVENTS_PER_TX)]


def test_reads_after_the_first_append_see_no_concurrent_audited_write(store: MemoryStore | SqlStore) -> None:
    # Prepare: a counter (a dataset's row count)
    with store.write() as tx:
        dataset = tx.catalog.upsert_dataset("bank", dataset_register("counter", rows=0), "d" * 64, NOW)[0]

    # Execute: audited read-modify-write increments from many threads at once (append first, then read)
    def worker(n: int) -> None:
        for _ in range(PER_THREAD):
            with store.write() as tx:
                tx.audit.append({"action": "counter.incremented", "by": n}, "t")
                count = tx.catalog.get_dataset(dataset.id).row_count
                tx.catalog.upsert_dataset("bank", dataset_register("counter", rows=count + 1), "d" * 64, NOW)

    _run(THREADS, worker)

    # Check: no increment lost; one event each
    with store.read() as tx:
        assert tx.catalog.get_dataset(dataset.id).row_count == THREADS * PER_THREAD
        assert len(tx.audit.events(limit=10_000)) == THREADS * PER_THREAD


def test_a_transaction_reads_the_records_it_appended(store: MemoryStore | SqlStore) -> None:
    with store.write() as tx:
        first = tx.audit.append({"action": "a"}, "t1")
        second = tx.audit.append({"action": "b"}, "t2")
        assert tx.audit.head() == second
        assert tx.audit.events(limit=10) == [first, second]
        third = tx.audit.append({"action": "c"}, "t3")
        assert tx.audit.containing(['"action":"c"'], third.seq) == [third]
    with store.read() as tx:
        assert tx.audit.events(limit=10) == [first, second, third]
