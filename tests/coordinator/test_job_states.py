"""The job lifecycle table and its pure helpers (no HTTP, no store)."""

from __future__ import annotations

import itertools

import pytest

from coordinator.job_states import (
    FINAL,
    RETRYABLE,
    TRANSITIONS,
    can_move,
    outcome_of_results,
    status_after_decision,
    status_after_retry,
)
from protocols.wire.control import Decision, JobResultReport, JobStatus, RuleOutcome

S = JobStatus
ALLOWED = Decision(allowed=True, policy_version="v2", rules=[], required_approvals=["party:bank", "party:telco"])
DENIED = Decision(allowed=False, policy_version="v2", required_approvals=[],
                  rules=[RuleOutcome(rule_id="R03-purpose", allowed=False, message="no")])


def test_every_status_has_a_row_and_final_ones_are_closed_except_for_a_retry() -> None:
    assert set(TRANSITIONS) == set(JobStatus)
    for status in FINAL - RETRYABLE:
        assert TRANSITIONS[status] == frozenset()
    assert RETRYABLE == {S.FAILED}
    assert TRANSITIONS[S.FAILED] == {S.APPROVED, S.PENDING_APPROVAL}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(JobStatus, JobStatus)))
def test_can_move_follows_the_table(current: JobStatus, target: JobStatus) -> None:
    expected = {
        (S.DRAFT, S.PENDING_APPROVAL), (S.DRAFT, S.APPROVED), (S.DRAFT, S.REJECTED),
        (S.PENDING_APPROVAL, S.APPROVED), (S.PENDING_APPROVAL, S.CANCELLED),
        (S.APPROVED, S.RUNNING), (S.APPROVED, S.SUCCEEDED), (S.APPROVED, S.FAILED), (S.APPROVED, S.CANCELLED),
        (S.RUNNING, S.SUCCEEDED), (S.RUNNING, S.FAILED), (S.RUNNING, S.CANCELLED),
        (S.FAILED, S.APPROVED), (S.FAILED, S.PENDING_APPROVAL),
    }
    assert can_move(current, target) == ((current, target) in expected)


def test_a_retry_with_every_approval_still_valid_is_approved() -> None:
    assert status_after_retry(ALLOWED, ["party:telco", "party:bank"], 2) == (
        S.APPROVED, "attempt 2: approvals still valid")


def test_a_retry_missing_approvals_waits_for_them() -> None:
    # the digest changed (no approval is valid any more), or the policy now wants one more approver
    assert status_after_retry(ALLOWED, [], 3) == (S.PENDING_APPROVAL,
                                                  "attempt 3: waiting for approvals: party:bank, party:telco")
    assert status_after_retry(ALLOWED, ["party:bank"], 2)[1].endswith("waiting for approvals: party:telco")


def test_a_denied_retry_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        status_after_retry(DENIED, ["party:bank"], 2)


def test_status_after_decision_and_outcome_of_results() -> None:
    assert status_after_decision(DENIED) == (S.REJECTED, "denied by policy: R03-purpose")
    assert status_after_decision(ALLOWED)[0] == S.PENDING_APPROVAL
    ok, bad = JobResultReport(status="succeeded"), JobResultReport(status="failed", detail="x")
    assert outcome_of_results(["bank", "telco"], {"bank": ok}) == (None, "waiting for results from: telco")
    assert outcome_of_results(["bank", "telco"], {"bank": ok, "telco": ok}) == (S.SUCCEEDED, "")
    assert outcome_of_results(["bank", "telco"], {"telco": bad}) == (S.FAILED, "telco: x")
