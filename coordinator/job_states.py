"""The job lifecycle as data: which status may follow which, and pure helpers over it.

``draft → pending_approval → approved → running → succeeded | failed``; ``rejected`` straight from
``draft`` when policy denies; ``cancelled`` from any non-final status. A ``failed`` job may be
retried (``coordinator.jobs.retry``): it goes back to ``approved`` when its approvals still cover its
terms, else to ``pending_approval``, as a new *attempt*. ``FINAL`` are the statuses in which nothing
runs and no node reports; only ``failed`` has a way out, and only by an explicit retry.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from protocols.wire.control import Decision, JobResultReport, JobStatus

__all__ = [
    "FINAL",
    "RETRYABLE",
    "TRANSITIONS",
    "WAITING_STAGE",
    "can_move",
    "outcome_of_results",
    "status_after_decision",
    "status_after_retry",
]

S = JobStatus
FINAL = frozenset({S.SUCCEEDED, S.FAILED, S.REJECTED, S.CANCELLED})
RETRYABLE = frozenset({S.FAILED})
TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = {
    S.DRAFT: frozenset({S.PENDING_APPROVAL, S.APPROVED, S.REJECTED}),
    S.PENDING_APPROVAL: frozenset({S.APPROVED, S.CANCELLED}),
    S.APPROVED: frozenset({S.RUNNING, S.SUCCEEDED, S.FAILED, S.CANCELLED}),
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.CANCELLED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset({S.APPROVED, S.PENDING_APPROVAL}),  # retry only
    S.REJECTED: frozenset(),
    S.CANCELLED: frozenset(),
}
REPORTABLE = frozenset({S.APPROVED, S.RUNNING})
WAITING_STAGE = "waiting"
"""A progress report with this stage keeps an approved job approved (e.g. no protocol for its kind yet)."""


def can_move(current: JobStatus, target: JobStatus) -> bool:
    """Whether ``target`` may follow ``current``."""
    return target in TRANSITIONS[current]


def status_after_decision(decision: Decision) -> tuple[JobStatus, str]:
    """Status and detail of a freshly evaluated job."""
    if not decision.allowed:
        denied = [r.rule_id for r in decision.rules if not r.allowed]
        return S.REJECTED, "denied by policy: " + ", ".join(dict.fromkeys(denied))
    if decision.required_approvals:
        return S.PENDING_APPROVAL, "waiting for approvals: " + ", ".join(decision.required_approvals)
    return S.APPROVED, ""


def status_after_retry(decision: Decision, valid_approvals: Collection[str], attempt: int) -> tuple[JobStatus, str]:
    """Status and detail of a failed job retried as ``attempt`` under a fresh, allowing ``decision``.

    Args:
        decision: the policy's verdict now (must allow the job; a denied retry is refused before this).
        valid_approvals: approvers whose signatures still cover the job's digest (none if it changed).
        attempt: the new attempt number.

    Raises:
        ValueError: ``decision`` denies the job.
    """
    if not decision.allowed:
        raise ValueError("a denied job cannot be retried")
    missing = [a for a in decision.required_approvals if a not in valid_approvals]
    if missing:
        return S.PENDING_APPROVAL, f"attempt {attempt}: waiting for approvals: " + ", ".join(missing)
    return S.APPROVED, f"attempt {attempt}: approvals still valid"


def outcome_of_results(parties: list[str], results: Mapping[str, JobResultReport]) -> tuple[JobStatus | None, str]:
    """The final status the reports so far imply (None while some party has yet to report)."""
    failed = [(p, r) for p, r in results.items() if r.status == "failed"]
    if failed:
        return S.FAILED, "; ".join(f"{p}: {r.detail or 'failed'}" for p, r in failed)
    if all(p in results for p in parties):
        return S.SUCCEEDED, ""
    return None, "waiting for results from: " + ", ".join(p for p in parties if p not in results)
