"""The ε budget arithmetic (pure): what a job spends, from which dataset pair, and whether it still fits.

A count-mode ``audience_overlap`` with ``params.epsilon`` releases a count with two-sided geometric noise,
spending ``epsilon`` from the budget of its (bank dataset, telco dataset) pair (``epsilon_charge``); so does a
``site_selection`` (noised counts per cell, ``node.jobs.sites.demand``), which must name its ``epsilon``. Rule
R16 checks it against what the pair has left (``budget_denial``); the ledger that charges and refunds it
is ``coordinator.budgets`` (over ``coordinator.store``). An exact count (no ``epsilon``, suppressed below
k) spends nothing.

These functions live in the policy package, not in ``coordinator.budgets``, because R16 needs them and
``coordinator.budgets`` imports the context and the audit log, which import the policy: imports stay acyclic
(``coordinator.budgets`` and ``coordinator.store`` import the policy; it imports neither).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from coordinator.policy._loader import Policy
from coordinator.policy._outcome import R16, outcome
from protocols.wire.control import DatasetPublic, JobInput, JobKind, JobParams, PartyKind, RuleOutcome

__all__ = ["BUDGET_DIGITS", "BudgetPair", "budget_denial", "budget_pair", "epsilon_charge", "over_budget",
           "remaining_epsilon"]

BudgetPair = tuple[int, int]
"""(bank dataset id, telco dataset id): the unit an ε budget is kept for."""

BUDGET_DIGITS = 9
"""ε amounts are compared and totalled rounded to this many decimals, so 30 charges of 0.1 fit a budget of 3.0."""


def epsilon_charge(kind: JobKind, params: JobParams) -> float:
    """The ε a job spends from its pair's budget: ``params.epsilon`` of a noised count, else 0.

    Noised counts: a count-mode audience_overlap with ``epsilon``, every site_selection (per-cell counts), and
    a campaign_evaluation with ``epsilon`` (arm sizes and conversions per arm), and a segment_sizes with
    ``epsilon`` (sizes per segment and per segment x bank product).
    An exact count (no ``epsilon``; suppressed below k) spends nothing: the budget accounts for noised
    releases only, and k-suppression is the protection of exact counts.
    """
    if kind in (JobKind.SITE_SELECTION, JobKind.CAMPAIGN_EVALUATION,  # per-cell / per-arm noised counts
                JobKind.SEGMENT_SIZES,  # per-segment and per-segment x product noised counts
                JobKind.APP_PROMOTION):  # audience sizes per segment, channel and arm; usage; deliveries
        return params.epsilon or 0.0
    if kind != JobKind.AUDIENCE_OVERLAP or (params.output_mode or "count") != "count" or params.epsilon is None:
        return 0.0
    return params.epsilon


def budget_pair(inputs: Sequence[JobInput], datasets: Mapping[int, DatasetPublic],
                party_kinds: Mapping[str, PartyKind]) -> BudgetPair | None:
    """(bank dataset id, telco dataset id) of a job with exactly one input of each, else None."""
    by_kind: dict[PartyKind, list[int]] = {}
    for inp in inputs:
        ds = datasets.get(inp.dataset_id)
        kind = party_kinds.get(ds.party) if ds is not None else None
        if kind is not None:
            by_kind.setdefault(kind, []).append(inp.dataset_id)
    banks, telcos = by_kind.get(PartyKind.BANK, []), by_kind.get(PartyKind.TELCO, [])
    return (banks[0], telcos[0]) if len(banks) == len(telcos) == 1 else None


def remaining_epsilon(policy: Policy, spent: float) -> float:
    """What a pair that has spent ``spent`` has left of ``policy.epsilon_budget_per_pair`` (never negative)."""
    return max(0.0, round(policy.epsilon_budget_per_pair - spent, BUDGET_DIGITS))


def over_budget(spent: float, amount: float, limit: float) -> bool:
    """Whether charging ``amount`` on top of ``spent`` would exceed ``limit`` (the ledger's atomic check)."""
    return round(spent + amount, BUDGET_DIGITS) > round(limit, BUDGET_DIGITS)


def budget_denial(policy: Policy, pair: BudgetPair, epsilon: float, spent: float) -> RuleOutcome | None:
    """R16's denial when ``epsilon`` does not fit what ``pair`` has left after ``spent`` (pure), else None.

    The job service calls this again when it charges the budget at approval, so a budget spent between
    submission and approval is refused with the same rule id and wording.
    """
    remaining, total = remaining_epsilon(policy, spent), policy.epsilon_budget_per_pair
    if round(epsilon, BUDGET_DIGITS) <= remaining:
        return None
    fix = (f"lower params.epsilon to at most {remaining:g} (more noise), or ask compliance to raise "
           "epsilon_budget_per_pair in the policy" if remaining > 0 else
           "run an exact count instead (omit params.epsilon; counts below k are suppressed), or ask compliance "
           "to raise epsilon_budget_per_pair in the policy")
    return outcome(R16, False, f"dataset pair (bank dataset {pair[0]}, telco dataset {pair[1]}) has epsilon "
                   f"{remaining:g} of {total:g} remaining; this job needs {epsilon:g}", "params.epsilon", fix)

