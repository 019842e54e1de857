"""The ε (differential privacy) budget of each (bank dataset, telco dataset) pair.

A count-mode ``audience_overlap`` with ``params.epsilon`` releases a noised count and spends its ε from
its pair's budget (``policy.epsilon_budget_per_pair``); what each job spends, and what a pair has left,
is the policy's pure ε arithmetic (``coordinator.policy``: ``epsilon_charge``, ``budget_pair``,
``remaining_epsilon``, ``budget_denial``). Policy rule R16 checks the remaining budget at submission; this
module keeps the ledger in step with the job lifecycle, inside the caller's write transaction:

- ``charge`` when the job becomes ``approved``: the store checks the pair's total and inserts the
  charge atomically (``budget.charged``); a charge that no longer fits (another job of the pair was
  approved since submission) refuses the approval with R16's wording.
- ``refund_unreleased`` when the job is cancelled or fails while no party has reported a successful
  result, i.e. before any count was released (``budget.refunded``). Once a result is in, the charge
  stays: the released figure has used the ε.

``list_budgets`` is the read side (``GET /api/v1/budgets``).
"""

from __future__ import annotations

from pydantic import BaseModel

from coordinator.accounts import Principal
from coordinator.audit import log as audit_log
from coordinator.context import Context
from coordinator.errors import BudgetExceeded
from coordinator.policy import BudgetPair, Policy, budget_denial, budget_pair, epsilon_charge, remaining_epsilon
from coordinator.store import BudgetCharge, Transaction
from protocols.wire.control import JobKind, JobPublic, JobStatus, Role

__all__ = ["BudgetsPublic", "PairBudgetPublic", "charge", "list_budgets", "refund_unreleased"]


class PairBudgetPublic(BaseModel):
    """One dataset pair's ε account."""

    bank_dataset_id: int
    telco_dataset_id: int
    bank_party: str
    telco_party: str
    budget: float
    spent: float
    remaining: float
    charged_jobs: list[int]
    refunded_jobs: list[int]


class BudgetsPublic(BaseModel):
    """The policy's ε limits and every pair with ledger entries the caller may see.

    A pair that is not listed has spent nothing: its remaining budget is ``epsilon_budget_per_pair``.
    """

    policy_version: str
    epsilon_budget_per_pair: float
    epsilon_max_per_job: float
    epsilon_default: float
    pairs: list[PairBudgetPublic]


# ---------------------------------------------------------------- lifecycle hooks (inside a write)


def _job_pair(tx: Transaction, job: JobPublic) -> BudgetPair | None:
    datasets = {i.dataset_id: tx.catalog.get_dataset(i.dataset_id) for i in job.inputs}
    kinds = {p.name: p.kind for p in tx.catalog.list_parties()}
    return budget_pair(job.inputs, datasets, kinds)


def _refused(ctx: Context, pair: BudgetPair, epsilon: float, exc: BudgetExceeded) -> BudgetExceeded:
    denial = budget_denial(ctx.policy, pair, epsilon, exc.spent)
    if denial is None:  # only if the store and the policy rounded differently; keep the store's word
        return exc
    return BudgetExceeded(denial.message, spent=exc.spent, limit=exc.limit, fix=denial.fix)


def charge(ctx: Context, tx: Transaction, job: JobPublic) -> None:
    """Charge ``job``'s ε to its pair as it becomes approved (no-op for jobs that spend nothing).

    Raises:
        BudgetExceeded: the pair's remaining budget is now too small; the message is R16's (rule id,
            pair, remaining budget, fix). The caller's transaction rolls back.
    """
    epsilon = epsilon_charge(job.kind, job.params)
    pair = _job_pair(tx, job) if epsilon else None
    if pair is None:
        return
    entry = BudgetCharge(job_id=job.id, bank_dataset_id=pair[0], telco_dataset_id=pair[1], epsilon=epsilon,
                         charged_at=ctx.clock())
    try:
        spent = tx.budgets.charge(entry, ctx.policy.epsilon_budget_per_pair)
    except BudgetExceeded as exc:
        raise _refused(ctx, pair, epsilon, exc) from None
    audit_log.record(ctx, tx, "coordinator", "budget.charged", f"job:{job.id}",
                     {"pair": list(pair), "epsilon": epsilon, "spent": spent,
                      "budget": ctx.policy.epsilon_budget_per_pair})


_RELEASED_WHILE_RUNNING = frozenset({JobKind.SITE_SELECTION})
"""Kinds whose noised release goes node to node before any result is reported: once such a job ran, the
release may have left, whatever the reports say (and a party could fail its report on purpose)."""


def refund_unreleased(ctx: Context, tx: Transaction, job: JobPublic, reason: str) -> None:
    """Refund ``job``'s charge if nothing was released.

    Nothing was released when no party reported a success and the job is not of a kind whose release leaves
    before the reports and it ran (``job.status`` is the status the job is leaving).
    """
    if job.kind in _RELEASED_WHILE_RUNNING and job.status == JobStatus.RUNNING:
        return
    if any(r.status == "succeeded" for r in tx.jobs.results(job.id).values()):
        return
    job_id = job.id
    refunded = tx.budgets.refund(job_id, ctx.clock())
    if refunded is None:
        return
    audit_log.record(ctx, tx, "coordinator", "budget.refunded", f"job:{job_id}",
                     {"pair": list(refunded.pair), "epsilon": refunded.epsilon, "reason": reason[:200]})


# ---------------------------------------------------------------- read side


def _pair_public(tx: Transaction, pair: BudgetPair, policy: Policy, spent: float,
                 entries: list[BudgetCharge]) -> PairBudgetPublic:
    bank, telco = tx.catalog.get_dataset(pair[0]), tx.catalog.get_dataset(pair[1])
    return PairBudgetPublic(
        bank_dataset_id=pair[0], telco_dataset_id=pair[1], bank_party=bank.party, telco_party=telco.party,
        budget=policy.epsilon_budget_per_pair, spent=spent, remaining=remaining_epsilon(policy, spent),
        charged_jobs=[c.job_id for c in entries if c.refunded_at is None],
        refunded_jobs=[c.job_id for c in entries if c.refunded_at is not None],
    )


def list_budgets(ctx: Context, actor: Principal) -> BudgetsPublic:
    """Every pair with ledger entries (an auditor), or those with a dataset of the caller's party (an admin)."""
    with ctx.store.read() as tx:
        by_pair: dict[BudgetPair, list[BudgetCharge]] = {}
        for entry in tx.budgets.charges():
            by_pair.setdefault(entry.pair, []).append(entry)
        spent = tx.budgets.spent()
        pairs = [_pair_public(tx, pair, ctx.policy, spent.get(pair, 0.0), entries)
                 for pair, entries in sorted(by_pair.items())]
    if actor.role != Role.AUDITOR:
        pairs = [p for p in pairs if actor.party in (p.bank_party, p.telco_party)]
    p = ctx.policy
    return BudgetsPublic(policy_version=p.version, epsilon_budget_per_pair=p.epsilon_budget_per_pair,
                         epsilon_max_per_job=p.epsilon_max_per_job, epsilon_default=p.epsilon_default, pairs=pairs)
