"""Policy engine: a pure function from a job, the catalog and the policy to a ``Decision``.

Policy is data (``coordinator/policy.yaml``): thresholds, and per job kind the allowed purposes, input
shape, output modes and label rule. ``evaluate`` reads it, applies every rule below to a ``JobCreate``
and the catalog entries of its datasets, and returns one ``RuleOutcome`` per rule (a passing rule gives
one allowed outcome; a failing rule gives one denial per offending field, each naming the field and a
fix). It does no I/O: the service loads the policy once and passes it in.

Rules (ids are stable; add new ones at the end, never renumber)::

    R01-dataset-exists        every input dataset id is in the catalog
    R02-field-exists          every named field exists in its dataset
    R03-kind-purpose          the job purpose is one the job kind may serve
    R04-inputs-shape          the job takes the parties' datasets its kind needs (e.g. one bank + one telco)
    R05-identifier-use        identifiers are match keys only (telco mobile may be revealed in reveal-mode recovery)
    R06-purpose-binding       each used field lists the job purpose in its governance entry
    R07-key-fields            key_fields are identifiers with a key_type, paired by key_type across inputs
    R08-label-locality        label_field only on train_* jobs, on the bank's dataset, never released
    R09-output-desensitisation fields whose desensitisation is 'drop' are never output_fields
    R10-auditor-level         fields at or above policy.auditor_level need auditor approval (never a denial)
    R11-min-cell              params.min_cell, if given, is at least policy.k_min_cell
    R12-output-mode           params.output_mode is one the job kind allows
    R13-reveal-recovery       reveal mode: purpose recovery, bank consent field, match_cap within the cap
                              (win_back: match_cap within the cap in relay mode too)
    R14-relay-template        relay mode carries a message_template; any template uses approved placeholders
    R15-filter                filters parse and use only feature fields approved for the purpose
    R16-epsilon-budget        a noised count's epsilon is within the per-job maximum and the remaining
                              budget of its (bank dataset, telco dataset) pair; site_selection must name one

The ε budget: a count-mode ``audience_overlap`` with ``params.epsilon`` releases a count with
two-sided geometric noise, spending ``epsilon`` from the budget of its dataset pair
(``epsilon_charge``); a ``site_selection`` (noised counts per cell) always does. ``evaluate`` stays
pure: the caller passes what each pair has spent (``budget_spent``); the job service charges the
budget when the job is approved and refunds it if the job ends before a count is released
(``coordinator.budgets``). An exact count (no ``epsilon``, suppressed below k) spends nothing.

Errors::

    PolicyError               a malformed policy file (names the key and the fix) or filter
    └── FilterSyntaxError     the filter parser refused a token (``token`` names it)

Where things live: ``_loader`` (the policy file, its version and digest), ``_filter`` (filters),
``_outcome`` (rule ids and findings), ``_context`` (what the rules look at), ``_rules`` (one function per
rule, and ``RULES``, the table by id), ``_budget`` (the ε arithmetic) and ``_evaluate`` (``evaluate``).
"""

from coordinator.policy._budget import (
    BUDGET_DIGITS,
    BudgetPair,
    budget_denial,
    budget_pair,
    epsilon_charge,
    over_budget,
    remaining_epsilon,
)
from coordinator.policy._evaluate import evaluate
from coordinator.policy._filter import FilterSyntaxError, Predicate, parse_filter
from coordinator.policy._loader import (
    DEFAULT_POLICY_PATH,
    KindRule,
    Policy,
    PolicyError,
    load_policy,
    parse_policy,
    read_policy_text,
)
from coordinator.policy._rules import RULE_IDS

__all__ = [
    "BUDGET_DIGITS",
    "DEFAULT_POLICY_PATH",
    "BudgetPair",
    "FilterSyntaxError",
    "KindRule",
    "Policy",
    "PolicyError",
    "Predicate",
    "RULE_IDS",
    "budget_denial",
    "budget_pair",
    "epsilon_charge",
    "evaluate",
    "load_policy",
    "over_budget",
    "parse_filter",
    "parse_policy",
    "read_policy_text",
    "remaining_epsilon",
]
