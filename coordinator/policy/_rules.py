"""The rules: each a pure function from an ``EvalContext`` to its findings, and ``RULES``, the table by rule id.

A rule returns [] when it has nothing to say (``evaluate`` then reports its allowed text once), or its
findings: one denial per offending field, each naming the field and a fix (R10 and R13 also report
allowed findings that call for an auditor's approval).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import NamedTuple

from coordinator.policy._budget import budget_denial, budget_pair, epsilon_charge, remaining_epsilon
from coordinator.policy._context import EvalContext, InputView
from coordinator.policy._filter import FilterSyntaxError, Predicate, parse_filter
from coordinator.policy._outcome import (
    R01,
    R02,
    R03,
    R04,
    R05,
    R06,
    R07,
    R08,
    R09,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
    R16,
    R17,
    outcome,
)
from coordinator.policy._segments import segments_valid
from protocols.wire.control import Desensitisation, FieldCategory, FieldSpec, JobKind, PartyKind, Purpose, RuleOutcome
from protocols.wire.filters import FILTER_HELP
from protocols.wire.message_template import TemplateError, check_template

__all__ = ["RULE_IDS", "RULES", "Rule", "high_level_fields"]


def datasets_in_catalog(ctx: EvalContext) -> list[RuleOutcome]:
    """R01: every input dataset id is in the catalog."""
    return [
        outcome(R01, False, f"dataset {ds_id} (inputs[{i}]) is not in the catalog", f"inputs[{i}].dataset_id",
                "register the dataset's schema first, or correct the dataset_id")
        for i, ds_id in ctx.missing
    ]


def named_fields_exist(ctx: EvalContext) -> list[RuleOutcome]:
    """R02: every field an input names exists in its dataset."""
    return [
        outcome(R02, False, f"field {inp.qual(name)} named in {role} does not exist in dataset {inp.dataset.name}",
                inp.qual(name), f"use one of the dataset's catalog fields: {', '.join(sorted(inp.fields))}")
        for inp in ctx.inputs
        for name, role in inp.named()
        if name not in inp.fields
    ]


def kind_serves_purpose(ctx: EvalContext) -> list[RuleOutcome]:
    """R03: the job's purpose is one its kind may serve."""
    allowed = sorted(p.value for p in ctx.rule.purposes)
    if ctx.job.purpose in ctx.rule.purposes:
        return []
    return [outcome(R03, False, f"a {ctx.job.kind.value} job may not serve purpose '{ctx.job.purpose.value}'",
                    "purpose", f"use purpose {' or '.join(repr(p) for p in allowed)}, "
                    "or the job kind for this purpose")]


def _shape_text(kinds: Sequence[PartyKind]) -> str:
    return " and ".join(f"one {k.value} dataset" for k in kinds)


def inputs_fit_kind(ctx: EvalContext) -> list[RuleOutcome]:
    """R04: the inputs are the parties' datasets the job kind needs, each once."""
    found: list[RuleOutcome] = []
    ids = [i.dataset_id for i in ctx.job.inputs]
    if len(set(ids)) != len(ids):
        found.append(outcome(R04, False, f"the same dataset appears twice in inputs {ids}", "inputs",
                             "name each dataset once"))
    for inp in ctx.inputs:
        if inp.party_kind is None:
            found.append(outcome(R04, False, f"party '{inp.dataset.party}' of dataset {inp.dataset.name} is not "
                                 "registered", inp.dataset.name, "register the party before using its datasets"))
    rule, kinds = ctx.rule, [i.party_kind for i in ctx.inputs if i.party_kind is not None]
    allowed = set(rule.required_inputs) | set(rule.optional_inputs)
    shape_ok = all(kinds.count(k) == 1 for k in rule.required_inputs) and all(
        k in allowed and kinds.count(k) == 1 for k in kinds)
    if not shape_ok and not ctx.missing:
        optional = f" (optionally {_shape_text(rule.optional_inputs)})" if rule.optional_inputs else ""
        got = ", ".join(k.value for k in kinds) or "none"
        found.append(outcome(R04, False, f"a {ctx.job.kind.value} job needs {_shape_text(rule.required_inputs)}"
                             f"{optional}; got datasets of: {got}", "inputs",
                             f"give {_shape_text(rule.required_inputs)}{optional}"))
    return found


def _reveal_exempt(ctx: EvalContext, inp: InputView, spec: FieldSpec, role: str) -> bool:
    return (ctx.reveal and role == "output_fields" and inp.party_kind == PartyKind.TELCO
            and spec.key_type in ctx.policy.reveal_output_key_types)


def identifiers_only_as_psi_keys(ctx: EvalContext) -> list[RuleOutcome]:
    """R05: identifiers are match keys only (the telco's revealed key in reveal-mode recovery excepted)."""
    return [
        outcome(R05, False, f"field {inp.qual(spec.name)} is an identifier and may be used only as a match key, "
                f"not in {role}", inp.qual(spec.name),
                f"remove it from {role}; identifiers join records through PSI key_fields only")
        for inp in ctx.inputs
        for spec, role in inp.used()
        if spec.category == FieldCategory.IDENTIFIER and role in ("feature_fields", "label_field", "output_fields")
        and not _reveal_exempt(ctx, inp, spec, role)
    ]


def fields_bound_to_purpose(ctx: EvalContext) -> list[RuleOutcome]:
    """R06: every used field lists the job's purpose in its governance entry."""
    purpose = ctx.job.purpose
    seen: set[str] = set()
    found = []
    for inp in ctx.inputs:
        for spec, _role in inp.used():
            if purpose in spec.purposes or inp.qual(spec.name) in seen:
                continue
            seen.add(inp.qual(spec.name))
            found.append(outcome(R06, False, f"field {inp.qual(spec.name)} is not approved for purpose "
                                 f"'{purpose.value}'", inp.qual(spec.name), f"add purpose '{purpose.value}' to the "
                                 "field's governance entry or choose another field"))
    return found


def _key_category_findings(inp: InputView) -> list[RuleOutcome]:
    found = []
    for name in inp.spec.key_fields:
        spec = inp.fields.get(name)
        if spec is None:
            continue
        if spec.category != FieldCategory.IDENTIFIER:
            found.append(outcome(R07, False, f"field {inp.qual(name)} in key_fields is a {spec.category.value}, not an "
                                 "identifier", inp.qual(name), "match only on identifier fields (mobile, ID number…)"))
        elif spec.key_type is None:
            found.append(outcome(R07, False, f"identifier {inp.qual(name)} has no key_type", inp.qual(name),
                                 "set key_type in the field's governance entry"))
    return found


_UNJOINED_KINDS = frozenset({JobKind.SITE_SELECTION})
"""Kinds whose two inputs are never joined record by record: site_selection's telco releases per-cell
aggregates and the bank keeps its branch locations; the two meet only at the bank, as aggregates."""


def _key_pairing_findings(ctx: EvalContext) -> list[RuleOutcome]:
    """Two inputs are joined by PSI, so both need key_fields, paired by key type in the same order."""
    if len(ctx.inputs) != 2 or ctx.job.kind in _UNJOINED_KINDS:
        return []
    a, b = ctx.inputs
    for inp in (a, b):
        if not inp.spec.key_fields:
            return [outcome(R07, False, f"dataset {inp.dataset.name} names no key_fields", f"{inp.dataset.name}",
                            "name the identifier fields to match on, in priority order")]
    types_a = [a.fields[f].key_type if f in a.fields else None for f in a.spec.key_fields]
    types_b = [b.fields[f].key_type if f in b.fields else None for f in b.spec.key_fields]
    if None in types_a or None in types_b or types_a == types_b:
        return []
    pairs = ", ".join(f"{a.qual(x)}~{b.qual(y)}" for x, y in zip(a.spec.key_fields, b.spec.key_fields, strict=False))
    return [outcome(R07, False, f"key_fields do not pair up by key_type ({pairs}; "
                    f"{[t.value for t in types_a if t]} vs {[t.value for t in types_b if t]})", "key_fields",
                    "list the same key types in the same order on both inputs")]


def key_fields_paired_identifiers(ctx: EvalContext) -> list[RuleOutcome]:
    """R07: key_fields are identifiers with a key_type, paired by key_type across inputs."""
    found = [o for inp in ctx.inputs for o in _key_category_findings(inp)]
    return found + _key_pairing_findings(ctx)


def _label_field_findings(ctx: EvalContext, inp: InputView, name: str) -> list[RuleOutcome]:
    q, found = inp.qual(name), []
    if not ctx.rule.label_required:
        found.append(outcome(R08, False, f"label_field {q} is only allowed on train_* jobs, not {ctx.job.kind.value}",
                             q, "remove label_field; labels never leave their owner"))
    if inp.party_kind != PartyKind.BANK:
        found.append(outcome(R08, False, f"label_field {q} is not on the bank's dataset", q,
                             "name the label on the bank's (active party's) dataset"))
    spec = inp.fields.get(name)
    if spec is not None and spec.category != FieldCategory.LABEL:
        found.append(outcome(R08, False, f"label_field {q} is a {spec.category.value}, not a label", q,
                             "choose a field catalogued with category 'label'"))
    if name in inp.spec.feature_fields or name in inp.spec.output_fields:
        found.append(outcome(R08, False, f"label {q} is also listed in feature_fields or output_fields", q,
                             "keep the label only in label_field; it never leaves its owner"))
    return found


def labels_stay_with_owner(ctx: EvalContext) -> list[RuleOutcome]:
    """R08: a label_field only on train_* jobs, on the bank's dataset, and never released."""
    found = [o for inp in ctx.inputs if inp.spec.label_field
             for o in _label_field_findings(ctx, inp, inp.spec.label_field)]
    for inp in ctx.inputs:
        for spec, role in inp.used():
            if spec.category == FieldCategory.LABEL and role in ("feature_fields", "output_fields") \
                    and spec.name != inp.spec.label_field:
                found.append(outcome(R08, False, f"label {inp.qual(spec.name)} may not be used in {role}",
                                     inp.qual(spec.name), f"remove it from {role}; labels never leave their owner"))
    has_label = any(i.spec.label_field and i.party_kind == PartyKind.BANK for i in ctx.inputs)
    if ctx.rule.label_required and not has_label:
        found.append(outcome(R08, False, f"a {ctx.job.kind.value} job needs a label_field on the bank's dataset",
                             "label_field", "name the bank dataset's label field"))
    return found


def dropped_fields_never_output(ctx: EvalContext) -> list[RuleOutcome]:
    """R09: fields whose desensitisation is 'drop' are never output_fields."""
    return [
        outcome(R09, False, f"field {inp.qual(spec.name)} must be dropped from every output (desensitisation 'drop')",
                inp.qual(spec.name), "remove it from output_fields, or ask its owner to change its desensitisation")
        for inp in ctx.inputs
        for spec, role in inp.used()
        if role == "output_fields" and spec.desensitisation == Desensitisation.DROP
    ]


def high_level_fields(ctx: EvalContext) -> list[tuple[str, int]]:
    """(dataset.field, level) of every used field (filters included) at or above the auditor level."""
    found: dict[str, int] = {}
    for inp in ctx.inputs:
        for spec in [s for s, _ in inp.used()] + inp.filter_fields():
            if spec.security_level >= ctx.policy.auditor_level:
                found[inp.qual(spec.name)] = spec.security_level
    return list(found.items())


def auditor_level_fields(ctx: EvalContext) -> list[RuleOutcome]:
    """R10: fields at or above the auditor level need an auditor's approval (allowed findings)."""
    level = ctx.policy.auditor_level
    return [
        outcome(R10, True, f"field {q} has security level {lvl} >= {level}: auditor approval required", q)
        for q, lvl in high_level_fields(ctx)
    ]


def min_cell_at_least_k(ctx: EvalContext) -> list[RuleOutcome]:
    """R11: ``params.min_cell``, if given, is at least the policy's k."""
    k, given = ctx.policy.k_min_cell, ctx.job.params.min_cell
    if given is None or given >= k:
        return []
    return [outcome(R11, False, f"params.min_cell {given} is below the policy minimum {k}", "params.min_cell",
                    f"set min_cell to at least {k} or leave it unset (defaults to {k})")]


def output_mode_allowed(ctx: EvalContext) -> list[RuleOutcome]:
    """R12: ``params.output_mode`` is one the job kind allows."""
    modes, kind = ctx.rule.output_modes, ctx.job.kind.value
    if ctx.mode is None and not ctx.rule.output_mode_required:
        return []
    if ctx.mode in modes:
        return []
    got = "unset" if ctx.mode is None else f"'{ctx.mode}'"
    return [outcome(R12, False, f"output_mode {got} is not allowed for a {kind} job", "params.output_mode",
                    f"set params.output_mode to one of {list(modes)}")]


def _consent_findings(ctx: EvalContext) -> list[RuleOutcome]:
    banks = ctx.of_kind(PartyKind.BANK)
    if not banks:
        return []
    bank = banks[0]
    name = bank.spec.consent_field
    if not name:
        return [outcome(R13, False, f"reveal-mode recovery needs a consent_field on bank dataset {bank.dataset.name}",
                        f"{bank.dataset.name}.consent_field", "name the field recording each customer's consent")]
    spec = bank.fields.get(name)
    allowed = sorted(c.value for c in ctx.policy.consent_categories)
    if spec is not None and spec.category not in ctx.policy.consent_categories:
        return [outcome(R13, False, f"consent field {bank.qual(name)} is a {spec.category.value}", bank.qual(name),
                        f"choose a consent field of category {' or '.join(allowed)}")]
    return []


def _cap_findings(ctx: EvalContext) -> list[RuleOutcome]:
    cap, limit = ctx.job.params.match_cap, ctx.policy.max_recovery_match_cap
    if cap is None:
        return [outcome(R13, False, "reveal-mode recovery needs params.match_cap", "params.match_cap",
                        f"set match_cap to at most {limit}")]
    if cap > limit:
        return [outcome(R13, False, f"params.match_cap {cap} exceeds the policy cap {limit}", "params.match_cap",
                        f"set match_cap to at most {limit}")]
    return []


def _revealed_findings(ctx: EvalContext) -> list[RuleOutcome]:
    telcos = ctx.of_kind(PartyKind.TELCO)
    if not telcos or telcos[0].spec.output_fields:
        return []
    kinds = sorted(k.value for k in ctx.policy.reveal_output_key_types)
    return [outcome(R13, False, f"reveal-mode recovery names nothing to reveal on {telcos[0].dataset.name}",
                    f"{telcos[0].dataset.name}.output_fields", f"name the telco's identifier of type {kinds} "
                    "in output_fields")]


def _win_back_cap(ctx: EvalContext) -> list[RuleOutcome]:
    cap, limit = ctx.job.params.match_cap, ctx.policy.max_recovery_match_cap
    if cap is None or cap > limit:
        problem = "is missing" if cap is None else f"{cap} exceeds the policy cap {limit}"
        return [outcome(R13, False, f"win_back: params.match_cap {problem} (the cap bounds whom the telco tests "
                        "and messages, in relay mode too)", "params.match_cap", f"set match_cap to at most {limit}")]
    return []


def reveal_recovery_conditions(ctx: EvalContext) -> list[RuleOutcome]:
    """R13: reveal mode needs purpose recovery, a bank consent field and a match_cap within the cap.

    A ``win_back`` job needs a match_cap within the cap in relay mode as well.
    """
    if not ctx.reveal:
        return _win_back_cap(ctx) if ctx.job.kind == JobKind.WIN_BACK else []
    found = []
    if ctx.job.purpose != Purpose.RECOVERY:
        found.append(outcome(R13, False, "reveal-mode recovery needs purpose 'recovery', "
                             f"not '{ctx.job.purpose.value}'", "purpose", "set purpose to 'recovery'"))
    found += _consent_findings(ctx) + _cap_findings(ctx) + _revealed_findings(ctx)
    return found or [outcome(R13, True, f"reveal-mode recovery with consent and match_cap {ctx.job.params.match_cap} "
                             f"<= {ctx.policy.max_recovery_match_cap}; needs approval by both data owners and an "
                             "auditor")]


def relay_has_template(ctx: EvalContext) -> list[RuleOutcome]:
    """R14: relay mode carries a message_template; any template uses approved placeholders only."""
    template = ctx.job.params.message_template or ""
    try:
        check_template(template)
    except TemplateError as exc:
        return [outcome(R14, False, str(exc), "params.message_template",
                        "rewrite the template with approved placeholders only")]
    if ctx.mode != "relay" or template.strip():
        return []
    return [outcome(R14, False, "relay mode needs params.message_template", "params.message_template",
                    "set the message the telco relays to matched subscribers")]


def _filter_field_findings(ctx: EvalContext, inp: InputView, pred: Predicate) -> list[RuleOutcome]:
    q, purpose, spec = inp.qual(pred.field), ctx.job.purpose.value, inp.fields.get(pred.field)
    if spec is None:
        return [outcome(R15, False, f"filter of {inp.dataset.name} names unknown field {q}", q,
                        f"filter on one of the dataset's feature fields: {', '.join(sorted(inp.fields))}")]
    if spec.category != FieldCategory.FEATURE:
        return [outcome(R15, False, f"filter of {inp.dataset.name} uses {q}, a {spec.category.value}; filters may use "
                        "feature fields only", q, "filter on a feature field")]
    if ctx.job.purpose not in spec.purposes:
        return [outcome(R15, False, f"filter field {q} is not approved for purpose '{purpose}'", q,
                        f"add purpose '{purpose}' to the field's governance entry or choose another field")]
    return []


def filters_use_approved_features(ctx: EvalContext) -> list[RuleOutcome]:
    """R15: filters parse and use only feature fields approved for the purpose."""
    found: list[RuleOutcome] = []
    for inp in ctx.inputs:
        if inp.spec.filter is None:
            continue
        try:
            preds = parse_filter(inp.spec.filter)
        except FilterSyntaxError as exc:
            found.append(outcome(R15, False, f"filter of {inp.dataset.name} is refused at token '{exc.token}': {exc}",
                                 f"{inp.dataset.name}.filter", FILTER_HELP))
            continue
        found += [o for p in preds for o in _filter_field_findings(ctx, inp, p)]
    return found

def _epsilon_mode_findings(ctx: EvalContext) -> list[RuleOutcome]:
    eps, limit = ctx.job.params.epsilon, ctx.policy.epsilon_max_per_job
    if eps is None and ctx.job.kind == JobKind.SITE_SELECTION:
        return [outcome(R16, False, "a site_selection job releases noised counts per cell and must name its epsilon",
                        "params.epsilon", f"set params.epsilon, e.g. {ctx.policy.epsilon_default:g} "
                        f"(at most {limit:g}; the smaller, the noisier)")]
    if eps is None or ctx.job.kind not in (JobKind.AUDIENCE_OVERLAP, JobKind.SITE_SELECTION, JobKind.SEGMENT_SIZES,
                                           JobKind.CAMPAIGN_EVALUATION, JobKind.APP_PROMOTION):
        return []
    if (ctx.mode or "count") != "count":
        return [outcome(R16, False, f"params.epsilon has no effect in output_mode '{ctx.mode}' "
                        "(only counts are noised)", "params.epsilon",
                        "remove params.epsilon, or use output_mode 'count'")]
    if eps > limit:
        return [outcome(R16, False, f"params.epsilon {eps:g} exceeds the per-job maximum {limit:g}", "params.epsilon",
                        f"set params.epsilon to at most {limit:g} "
                        f"(the policy suggests {ctx.policy.epsilon_default:g})")]
    return []


def epsilon_within_budget(ctx: EvalContext) -> list[RuleOutcome]:
    """R16: a noised count's ε is within the per-job maximum and what its dataset pair has left."""
    found = _epsilon_mode_findings(ctx)
    eps = epsilon_charge(ctx.job.kind, ctx.job.params)
    pair = budget_pair(ctx.job.inputs, {i.dataset.id: i.dataset for i in ctx.inputs},
                       {i.dataset.party: i.party_kind for i in ctx.inputs if i.party_kind is not None})
    if found or not eps or pair is None:
        return found
    spent = ctx.budget_spent.get(pair, 0.0)
    denial = budget_denial(ctx.policy, pair, eps, spent)
    if denial is not None:
        return [denial]
    remaining, total = remaining_epsilon(ctx.policy, spent), ctx.policy.epsilon_budget_per_pair
    return [outcome(R16, True, f"epsilon {eps:g} fits dataset pair (bank dataset {pair[0]}, telco dataset {pair[1]}) "
                    f"with {remaining:g} of {total:g} remaining; charged when the job is approved")]


class Rule(NamedTuple):
    """One rule: the check that returns its findings, and the text of its one allowed outcome when it finds none."""

    check: Callable[[EvalContext], list[RuleOutcome]]
    ok_text: str


RULES: Mapping[str, Rule] = MappingProxyType({
    R01: Rule(datasets_in_catalog, "every input dataset is in the catalog"),
    R02: Rule(named_fields_exist, "every named field exists in its dataset"),
    R03: Rule(kind_serves_purpose, "the job kind may serve this purpose"),
    R04: Rule(inputs_fit_kind, "the inputs have the shape the job kind needs"),
    R05: Rule(identifiers_only_as_psi_keys, "identifiers are used only as match keys"),
    R06: Rule(fields_bound_to_purpose, "every used field is approved for the job purpose"),
    R07: Rule(key_fields_paired_identifiers, "key fields are identifiers paired by key type"),
    R08: Rule(labels_stay_with_owner, "labels stay with their owner"),
    R09: Rule(dropped_fields_never_output, "no output field has desensitisation 'drop'"),
    R10: Rule(auditor_level_fields, "no field at or above the auditor level is used"),
    R11: Rule(min_cell_at_least_k, "minimum cell size respects the policy"),
    R12: Rule(output_mode_allowed, "the output mode is allowed for the job kind"),
    R13: Rule(reveal_recovery_conditions, "reveal-mode recovery conditions hold (or not reveal mode)"),
    R14: Rule(relay_has_template, "relay conditions hold (or not relay mode)"),
    R15: Rule(filters_use_approved_features, "filters parse and use approved feature fields"),
    R16: Rule(epsilon_within_budget, "no epsilon budget is spent (an exact count, or not a count)"),
    R17: Rule(segments_valid, "no segment file, or its segments parse, are bound and read usable fields"),
})
"""Every rule by id, in evaluation order (ids are stable: new rules are appended, never renumbered)."""

RULE_IDS: tuple[str, ...] = tuple(RULES)
"""Every rule id, in evaluation order (stable: new rules are appended)."""
