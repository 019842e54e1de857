"""The store contract: every implementation (memory, SQLite, PostgreSQL) passes the same tests."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from coordinator.errors import BudgetExceeded, Conflict, NotFound
from coordinator.store import BudgetCharge, JobUpdate, WebSession
from protocols.crypto.hashchain import verify_chain
from protocols.wire.control import (
    ApprovalPublic,
    Decision,
    JobResultReport,
    JobStatus,
    UserCreate,
)
from tests.support.coordinator import NOW, dataset_register, job_create, party_create

DECISION = Decision(allowed=True, policy_version="1", rules=[], required_approvals=["party:bank"])


def _job(tx, parties=("bank",)):
    return tx.jobs.create_job(job_create(1), created_by="alice", parties=list(parties), decision=DECISION, now=NOW)


class TestCatalog:
    def test_party_upsert_keeps_id_and_reports_creation(self, store):
        with store.write() as tx:
            first, created = tx.catalog.upsert_party(party_create("bank"), NOW)
        with store.write() as tx:
            second, created_again = tx.catalog.upsert_party(party_create("bank"), NOW)
        assert created and not created_again
        assert first.id == second.id and first.signing_key != second.signing_key
        with store.read() as tx:
            assert [p.name for p in tx.catalog.list_parties()] == ["bank"]
            assert tx.catalog.get_party("bank").signing_key == second.signing_key

    def test_unknown_party_is_not_found(self, store):
        with store.read() as tx, pytest.raises(NotFound, match="telco"):
            tx.catalog.get_party("telco")

    def test_users_by_token_hash_and_unique_names(self, store):
        with store.write() as tx:
            user = tx.catalog.create_user(UserCreate(name="alice", role="admin", party="bank"), "h" * 64, NOW)
        assert user.party == "bank" and user.created_at == NOW
        with store.read() as tx:
            assert tx.catalog.user_by_token_hash("h" * 64) == user
            assert tx.catalog.user_by_token_hash("x" * 64) is None
            assert tx.catalog.get_user("alice") == user
        with store.write() as tx, pytest.raises(Conflict):
            tx.catalog.create_user(UserCreate(name="alice", role="analyst", party="bank"), "i" * 64, NOW)

    def test_list_users_by_party_and_expiry(self, store):
        with store.write() as tx:
            a = tx.catalog.create_user(UserCreate(name="a", role="admin", party="bank"), "a" * 64, NOW)
            b = tx.catalog.create_user(UserCreate(name="b", role="operator", party="telco", expires_in_days=7),
                                       "b" * 64, NOW)
            c = tx.catalog.create_user(UserCreate(name="c", role="auditor"), "c" * 64, NOW)
        with store.read() as tx:
            assert tx.catalog.list_users() == [a, b, c]
            assert tx.catalog.list_users("telco") == [b]
        assert b.expires_at - NOW == timedelta(days=7) and a.expires_at - NOW == timedelta(days=90)

    def test_dataset_reregistration_updates_in_place(self, store):
        with store.write() as tx:
            a, created = tx.catalog.upsert_dataset("bank", dataset_register(rows=10), "d1", NOW)
            b, _ = tx.catalog.upsert_dataset("telco", dataset_register(rows=20), "d2", NOW)
        with store.write() as tx:
            a2, created_again = tx.catalog.upsert_dataset("bank", dataset_register(rows=30), "d3", NOW)
        assert created and not created_again and a.id == a2.id != b.id
        with store.read() as tx:
            assert tx.catalog.get_dataset(a.id).row_count == 30
            assert tx.catalog.get_dataset(a.id).fields == dataset_register().fields
            assert [d.id for d in tx.catalog.list_datasets("telco")] == [b.id]
            assert len(tx.catalog.list_datasets()) == 2

    @pytest.mark.parametrize("dataset_id", [0, 999, 2**70])
    def test_unknown_dataset_is_not_found(self, store, dataset_id):
        with store.read() as tx, pytest.raises(NotFound):
            tx.catalog.get_dataset(dataset_id)


class TestJobs:
    def test_create_update_and_list(self, store):
        with store.write() as tx:
            job = _job(tx, ("telco", "bank"))
            other = _job(tx, ("telco",))
        assert job.status == JobStatus.DRAFT and job.digest == "" and job.decision == DECISION
        with store.write() as tx:
            updated = tx.jobs.update_job(job.id, JobUpdate(status=JobStatus.PENDING_APPROVAL, digest="d" * 64), NOW)
        assert updated.status == JobStatus.PENDING_APPROVAL and updated.stage == ""
        with store.read() as tx:
            assert tx.jobs.job_parties(job.id) == ["bank", "telco"]
            assert [j.id for j in tx.jobs.list_jobs(party="bank")] == [job.id]
            assert [j.id for j in tx.jobs.list_jobs(party="telco")] == [job.id, other.id]
            assert [j.id for j in tx.jobs.list_jobs(status=JobStatus.DRAFT)] == [other.id]
            assert tx.jobs.get_job(job.id).digest == "d" * 64

    def test_approvals_are_unique_per_approver(self, store):
        approval = ApprovalPublic(approver="party:bank", signature="s" * 128, signer_key="k" * 64, user="alice",
                                  created_at=NOW)
        with store.write() as tx:
            job = _job(tx)
            tx.jobs.add_approval(job.id, approval)
        with store.read() as tx:
            assert tx.jobs.get_job(job.id).approvals == [approval]
            assert tx.jobs.list_jobs()[0].approvals == [approval]
        with store.write() as tx, pytest.raises(Conflict):
            tx.jobs.add_approval(job.id, approval)

    def test_results_once_per_party(self, store):
        report = JobResultReport(status="succeeded", outputs={"overlap": 1234}, messages_sent=3)
        with store.write() as tx:
            job = _job(tx)
            tx.jobs.record_result(job.id, "bank", report, NOW)
        with store.read() as tx:
            assert tx.jobs.results(job.id) == {"bank": report}
        with store.write() as tx, pytest.raises(Conflict):
            tx.jobs.record_result(job.id, "bank", report, NOW)

    def test_a_retry_resets_results_approvals_and_terms(self, store):
        # Prepare: a job with an approval and a result, as a failed job has
        approval = ApprovalPublic(approver="party:bank", signature="s" * 128, signer_key="k" * 64, user="alice",
                                  created_at=NOW)
        with store.write() as tx:
            job, other = _job(tx), _job(tx)
            for j in (job, other):
                tx.jobs.add_approval(j.id, approval)
                tx.jobs.record_result(j.id, "bank", JobResultReport(status="failed", detail="x"), NOW)
        newer = DECISION.model_copy(update={"policy_version": "2", "required_approvals": ["party:bank", "auditor"]})

        # Execute
        with store.write() as tx:
            tx.jobs.clear_results(job.id)
            tx.jobs.clear_approvals(job.id)
            updated = tx.jobs.update_job(job.id, JobUpdate(attempt=2, policy_version="2", decision=newer), NOW)

        # Assert: only this job's, and its new terms and attempt stored
        assert (updated.attempt, updated.policy_version, updated.decision) == (2, "2", newer)
        assert job.attempt == 1
        with store.read() as tx:
            assert tx.jobs.results(job.id) == {} and tx.jobs.get_job(job.id).approvals == []
            assert tx.jobs.results(other.id) != {} and tx.jobs.get_job(other.id).approvals == [approval]
            assert tx.jobs.get_job(job.id).attempt == 2
            tx.jobs.record_result(job.id, "bank", JobResultReport(status="succeeded"), NOW)  # reportable again

    @pytest.mark.parametrize("job_id", [0, 42, 2**64])
    def test_unknown_job_is_not_found(self, store, job_id):
        with store.write() as tx, pytest.raises(NotFound):
            tx.jobs.update_job(job_id, JobUpdate(stage="x"), NOW)


def _charge(job_id: int, epsilon: float, pair: tuple[int, int] = (1, 2)) -> BudgetCharge:
    return BudgetCharge(job_id=job_id, bank_dataset_id=pair[0], telco_dataset_id=pair[1], epsilon=epsilon,
                        charged_at=NOW)


class TestBudgets:
    def test_charges_add_up_per_pair_and_refunds_release(self, store):
        # Prepare
        with store.write() as tx:
            a, b, c = _job(tx), _job(tx), _job(tx)
        # Execute
        with store.write() as tx:
            assert tx.budgets.charge(_charge(a.id, 1.0), 3.0) == 1.0
            assert tx.budgets.charge(_charge(b.id, 0.5), 3.0) == 1.5
            assert tx.budgets.charge(_charge(c.id, 2.0, pair=(1, 3)), 3.0) == 2.0
        with store.write() as tx:
            refunded = tx.budgets.refund(a.id, NOW + timedelta(hours=1))
            assert tx.budgets.refund(a.id, NOW) is None  # once only
            assert tx.budgets.refund(999, NOW) is None  # never charged
        # Assert
        assert refunded == _charge(a.id, 1.0).model_copy(update={"refunded_at": NOW + timedelta(hours=1)})
        with store.read() as tx:
            assert tx.budgets.spent() == {(1, 2): 0.5, (1, 3): 2.0}
            charges = tx.budgets.charges()
        assert [(x.job_id, x.pair, x.epsilon, x.refunded_at is not None) for x in charges] == [
            (a.id, (1, 2), 1.0, True), (b.id, (1, 2), 0.5, False), (c.id, (1, 3), 2.0, False)]
        assert charges[1].charged_at == NOW

    def test_overspend_is_refused_with_the_spent_total_and_leaves_no_trace(self, store):
        with store.write() as tx:
            a, b = _job(tx), _job(tx)
            tx.budgets.charge(_charge(a.id, 2.5), 3.0)
        with store.write() as tx, pytest.raises(BudgetExceeded) as info:
            tx.budgets.charge(_charge(b.id, 1.0), 3.0)
        assert (info.value.spent, info.value.limit) == (2.5, 3.0)
        with store.read() as tx:
            assert tx.budgets.spent() == {(1, 2): 2.5} and len(tx.budgets.charges()) == 1

    def test_a_job_is_charged_once(self, store):
        with store.write() as tx:
            a = _job(tx)
            tx.budgets.charge(_charge(a.id, 0.5), 3.0)
        with store.write() as tx, pytest.raises(Conflict, match="already charged"):
            tx.budgets.charge(_charge(a.id, 0.5, pair=(7, 8)), 3.0)

    def test_a_refunded_job_is_charged_again_if_it_still_fits(self, store):
        # Prepare: a's charge refunded (its job failed), then b took most of the budget
        with store.write() as tx:
            a, b = _job(tx), _job(tx)
            tx.budgets.charge(_charge(a.id, 1.0), 3.0)
            tx.budgets.refund(a.id, NOW)
            tx.budgets.charge(_charge(b.id, 1.5), 3.0)

        # Execute: a retried once (fits), then too expensive once refunded again
        with store.write() as tx:
            total = tx.budgets.charge(_charge(a.id, 1.0).model_copy(update={"charged_at": NOW + timedelta(1)}), 3.0)
        with store.write() as tx:
            tx.budgets.refund(a.id, NOW)
        with store.write() as tx, pytest.raises(BudgetExceeded):
            tx.budgets.charge(_charge(a.id, 2.0), 3.0)

        # Assert: one entry per job, the retried charge counted once while it stood
        assert total == 2.5
        with store.read() as tx:
            entries = tx.budgets.charges()
            assert tx.budgets.spent() == {(1, 2): 1.5}
        assert [(e.job_id, e.epsilon, e.refunded_at is not None) for e in entries] == [(a.id, 1.0, True),
                                                                                       (b.id, 1.5, False)]
        assert entries[0].charged_at == NOW + timedelta(1)

    def test_many_small_charges_fill_the_budget_exactly(self, store):
        with store.write() as tx:
            jobs = [_job(tx) for _ in range(31)]
        with store.write() as tx:
            for job in jobs[:30]:
                tx.budgets.charge(_charge(job.id, 0.1), 3.0)
            with pytest.raises(BudgetExceeded):
                tx.budgets.charge(_charge(jobs[30].id, 0.1), 3.0)
        with store.read() as tx:
            assert tx.budgets.spent() == {(1, 2): 3.0}

    def test_concurrent_charges_never_overspend(self, store):
        # Prepare: 12 jobs of one pair each want 0.5 of a 3.0 budget: exactly 6 can have it
        with store.write() as tx:
            jobs = [_job(tx) for _ in range(12)]
        outcomes: list[str] = []
        start = threading.Barrier(len(jobs))

        def worker(job_id: int) -> None:
            start.wait()
            try:
                with store.write() as tx:
                    tx.budgets.charge(_charge(job_id, 0.5), 3.0)
                outcomes.append("charged")
            except BudgetExceeded:
                outcomes.append("refused")

        # Execute
        threads = [threading.Thread(target=worker, args=(j.id,)) for j in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        # Assert
        assert sorted(outcomes) == ["charged"] * 6 + ["refused"] * 6
        with store.read() as tx:
            assert tx.budgets.spent() == {(1, 2): 3.0}
            assert len(tx.budgets.charges()) == 6


class TestAudit:
    def test_appends_form_a_valid_chain(self, store):
        for i in range(5):
            with store.write() as tx:
                tx.audit.append({"action": "test", "i": i, "nested": {"b": [1, 2.5, None]}}, f"t{i}")
        with store.read() as tx:
            records = tx.audit.events(limit=100)
            assert tx.audit.head() == records[-1]
            assert [r.seq for r in tx.audit.events(after_seq=2, limit=1)] == [3]
        assert verify_chain(records).ok and verify_chain(records).count == 5
        assert records[1].body == {"action": "test", "i": 1, "nested": {"b": [1, 2.5, None]}}

    def test_empty_log_has_no_head(self, store):
        with store.read() as tx:
            assert tx.audit.head() is None and tx.audit.events() == []

    def test_failed_transaction_leaves_no_trace(self, store):
        with pytest.raises(RuntimeError), store.write() as tx:
            tx.catalog.upsert_party(party_create("bank"), NOW)
            tx.audit.append({"action": "party.registered"}, "t")
            raise RuntimeError("boom")
        with store.read() as tx:
            assert tx.catalog.list_parties() == [] and tx.audit.head() is None
        with store.write() as tx:
            assert tx.audit.append({"action": "after"}, "t").seq == 0

    def test_concurrent_appends_leave_no_gap(self, store):
        def worker(n: int) -> None:
            for i in range(15):
                with store.write() as tx:
                    tx.audit.append({"worker": n, "i": i}, "t")

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with store.read() as tx:
            records = tx.audit.events(limit=1000)
        assert [r.seq for r in records] == list(range(90))
        assert verify_chain(records).ok


def _session(key: str, started_min: int = 0, seen_min: int | None = None) -> WebSession:
    seen = NOW + timedelta(minutes=started_min if seen_min is None else seen_min)
    return WebSession(key=key * 64, token_hash="t" * 64, user="auditor", started=NOW + timedelta(minutes=started_min),
                      seen=seen)


class TestSessions:
    def test_insert_get_set_seen_and_delete(self, store):
        with store.write() as tx:
            tx.sessions.insert(_session("a"))
        with store.write() as tx:
            tx.sessions.set_seen("a" * 64, NOW + timedelta(minutes=5))
            tx.sessions.set_seen("z" * 64, NOW)  # gone: nothing is created
        with store.read() as tx:
            assert tx.sessions.get("a" * 64) == _session("a", seen_min=5)
            assert tx.sessions.get("z" * 64) is None
        with store.write() as tx:
            assert tx.sessions.delete("a" * 64) == _session("a", seen_min=5)
            assert tx.sessions.delete("a" * 64) is None
        with store.read() as tx:
            assert tx.sessions.get("a" * 64) is None

    def test_prune_removes_stale_then_least_recently_seen(self, store):
        # Prepare: b idle since minute 1, c started at minute 0 (too long ago), d, e, f live
        with store.write() as tx:
            for session in (_session("b", 1), _session("c", 0, 40), _session("d", 10), _session("e", 20, 50),
                            _session("f", 30)):
                tx.sessions.insert(session)

        # Execute: stale = seen at or before minute 1, or started at or before minute 0; keep 2
        with store.write() as tx:
            removed = tx.sessions.prune(seen_by=NOW + timedelta(minutes=1), started_by=NOW, keep=2)

        # Assert: b and c stale, then d (seen at 10) is the least recently seen of d, f (30), e (50)
        assert removed == 3
        with store.read() as tx:
            assert [k for k in "bcdef" if tx.sessions.get(k * 64)] == ["e", "f"]

    def test_a_failed_transaction_leaves_no_session(self, store):
        with pytest.raises(RuntimeError), store.write() as tx:
            tx.sessions.insert(_session("a"))
            raise RuntimeError("boom")
        with store.read() as tx:
            assert tx.sessions.get("a" * 64) is None
