"""``evaluate``: every rule applied to a job, gathered into one ``Decision`` (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from coordinator.policy._budget import BudgetPair
from coordinator.policy._context import EvalContext, build_context
from coordinator.policy._loader import Policy
from coordinator.policy._outcome import outcome
from coordinator.policy._rules import RULES, high_level_fields
from protocols.wire.control import DatasetPublic, Decision, JobCreate, PartyKind, RuleOutcome

__all__ = ["evaluate"]


def _required_approvals(ctx: EvalContext, needs_auditor: bool) -> list[str]:
    approvers = {f"party:{inp.dataset.party}" for inp in ctx.inputs}
    if needs_auditor:
        approvers.add("auditor")
    return sorted(approvers)


def evaluate(
    job: JobCreate,
    datasets: Mapping[int, DatasetPublic],
    party_kinds: Mapping[str, PartyKind],
    policy: Policy,
    budget_spent: Mapping[BudgetPair, float] = MappingProxyType({}),
) -> Decision:
    """Evaluate ``job`` against ``policy`` and the catalog (pure).

    Args:
        job: the submitted job.
        datasets: catalog entries by dataset id (at least the job's inputs; others are ignored).
        party_kinds: registered parties' kinds by party name.
        policy: the loaded policy.
        budget_spent: ε already charged per (bank dataset id, telco dataset id) pair; a pair that is
            absent has spent nothing. Only R16 reads it.

    Returns:
        A ``Decision`` listing every rule's outcome in rule order (a passing rule once, a failing rule once
        per offending field); ``allowed`` when no outcome denies. ``required_approvals`` is sorted and holds
        ``party:<owner>`` of every catalogued input dataset, plus ``auditor`` when a field at or above
        ``policy.auditor_level`` is used or the job is a reveal-mode recovery.
    """
    ctx = build_context(job, datasets, party_kinds, policy, budget_spent)
    rules: list[RuleOutcome] = []
    for rule_id, rule in RULES.items():
        rules += rule.check(ctx) or [outcome(rule_id, True, rule.ok_text)]
    needs_auditor = ctx.reveal or bool(high_level_fields(ctx))
    return Decision(
        allowed=all(r.allowed for r in rules),
        policy_version=policy.version,
        rules=rules,
        required_approvals=_required_approvals(ctx, needs_auditor),
    )
