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
    R14-relay-template        relay mode carries a message_template
    R15-filter                filters parse and use only feature fields approved for the purpose
    R16-epsilon-budget        a noised count's epsilon is within the per-job maximum and the remaining
                              budget of its (bank dataset, telco dataset) pair

The ε budget: a count-mode ``audience_overlap`` with ``params.epsilon`` releases a count with
two-sided geometric noise, spending ``epsilon`` from the budget of its dataset pair
(``epsilon_charge``). ``evaluate`` stays pure: the caller passes what each pair has spent
(``budget_spent``); the job service charges the budget when the job is approved and refunds it if the
job ends before a count is released. An exact count (no ``epsilon``, suppressed below k) spends
nothing.

Errors::

    PolicyError               a malformed policy file (names the key and the fix) or filter
    └── FilterSyntaxError     the filter parser refused a token (``token`` names it)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError

from protocols.wire import filters as _filters
from protocols.wire.canonical import sha256_hex
from protocols.wire.control import (
    DatasetPublic,
    Decision,
    Desensitisation,
    FieldCategory,
    FieldSpec,
    JobCreate,
    JobInput,
    JobKind,
    JobParams,
    KeyType,
    PartyKind,
    Purpose,
    RuleOutcome,
)
from protocols.wire.filters import FILTER_HELP, Predicate

__all__ = [
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
    "parse_filter",
    "parse_policy",
]

DEFAULT_POLICY_PATH = Path(__file__).with_name("policy.yaml")

BudgetPair = tuple[int, int]
"""(bank dataset id, telco dataset id): the unit an ε budget is kept for."""


class PolicyError(Exception):
    """Root of this module's errors: a policy file or a filter that cannot be used."""


class FilterSyntaxError(PolicyError, _filters.FilterSyntaxError):
    """A ``JobInput.filter`` the safe parser refuses; ``token`` is the offending token."""


# ---------------------------------------------------------------- policy as data


@dataclass(frozen=True)
class KindRule:
    """What one job kind may do, as the policy file says."""

    purposes: frozenset[Purpose]
    required_inputs: tuple[PartyKind, ...]
    optional_inputs: tuple[PartyKind, ...]
    output_modes: tuple[str, ...]
    output_mode_required: bool
    label_required: bool


@dataclass(frozen=True)
class Policy:
    """A loaded policy. ``digest`` is the SHA-256 of the file bytes it was parsed from."""

    version: str
    digest: str
    k_min_cell: int
    max_recovery_match_cap: int
    auditor_level: int
    reveal_output_key_types: frozenset[KeyType]
    consent_categories: frozenset[FieldCategory]
    kinds: Mapping[JobKind, KindRule]
    epsilon_budget_per_pair: float
    epsilon_max_per_job: float
    epsilon_default: float


_OutputMode = Literal["count", "bank_ids", "reveal", "relay", "model", "scores"]


class _InputsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    required: list[PartyKind] = Field(min_length=1)
    optional: list[PartyKind] = Field(default_factory=list)


class _KindFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    purposes: list[Purpose] = Field(min_length=1)
    inputs: _InputsFile
    output_modes: list[_OutputMode] = Field(min_length=1)
    output_mode_required: StrictBool
    label: Literal["required", "forbidden"]


class _PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: StrictStr = Field(pattern=r"^\d{4}-\d{2}-\d{2}\.\d+$")
    k_min_cell: StrictInt = Field(ge=1)
    max_recovery_match_cap: StrictInt = Field(ge=1)
    auditor_level: StrictInt = Field(ge=1, le=5)
    reveal_output_key_types: list[KeyType]
    consent_categories: list[FieldCategory]
    epsilon_budget_per_pair: StrictFloat = Field(gt=0)
    epsilon_max_per_job: StrictFloat = Field(gt=0, le=10)
    epsilon_default: StrictFloat = Field(gt=0, le=10)
    kinds: dict[JobKind, _KindFile]


_FIXES: Mapping[str, str] = {
    "version": 'quote it and use the form "YYYY-MM-DD.N", e.g. version: "2026-11-27.1"',
    "k_min_cell": "set a whole number of at least 1, e.g. k_min_cell: 50",
    "max_recovery_match_cap": "set a whole number of at least 1, e.g. max_recovery_match_cap: 10000",
    "auditor_level": "set a security level from 1 to 5, e.g. auditor_level: 4",
    "reveal_output_key_types": f"list key types from {sorted(k.value for k in KeyType)}, e.g. [mobile]",
    "consent_categories": f"list categories from {sorted(c.value for c in FieldCategory)}, e.g. [feature, sensitive]",
    "epsilon_budget_per_pair": "set a positive number (total ε per dataset pair), e.g. epsilon_budget_per_pair: 3.0",
    "epsilon_max_per_job": "set a number in (0, 10], at most epsilon_budget_per_pair, e.g. epsilon_max_per_job: 1.0",
    "epsilon_default": "set a number in (0, 10], at most epsilon_max_per_job, e.g. epsilon_default: 0.5",
    "kinds": "give each job kind purposes, inputs {required, optional}, output_modes, "
    "output_mode_required (true/false) and label (required/forbidden)",
}


def _format_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if p != "[key]") or "<top level>"
        top = str(err["loc"][0]) if err["loc"] else ""
        fix = _FIXES.get(top, f"remove it; known keys are {sorted(_FIXES)}")
        parts.append(f"policy key '{loc}': {err['msg']} (fix: {fix})")
    return "; ".join(parts)


def _kind_rule(spec: _KindFile) -> KindRule:
    return KindRule(
        purposes=frozenset(spec.purposes),
        required_inputs=tuple(spec.inputs.required),
        optional_inputs=tuple(spec.inputs.optional),
        output_modes=tuple(spec.output_modes),
        output_mode_required=spec.output_mode_required,
        label_required=spec.label == "required",
    )


def _check_epsilon_order(spec: _PolicyFile) -> None:
    """``epsilon_default <= epsilon_max_per_job <= epsilon_budget_per_pair``, naming the key that breaks it."""
    if spec.epsilon_max_per_job > spec.epsilon_budget_per_pair:
        raise PolicyError(f"policy key 'epsilon_max_per_job': {spec.epsilon_max_per_job} exceeds "
                          f"epsilon_budget_per_pair {spec.epsilon_budget_per_pair} "
                          f"(fix: {_FIXES['epsilon_max_per_job']})")
    if spec.epsilon_default > spec.epsilon_max_per_job:
        raise PolicyError(f"policy key 'epsilon_default': {spec.epsilon_default} exceeds epsilon_max_per_job "
                          f"{spec.epsilon_max_per_job} (fix: {_FIXES['epsilon_default']})")


def _policy_from_text(text: str, digest: str) -> Policy:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy file is not valid YAML: {exc} (fix: correct the YAML syntax)") from exc
    if not isinstance(raw, dict):
        raise PolicyError(f"policy file must be a mapping of keys, got {type(raw).__name__} (fix: start from "
                          f"coordinator/policy.yaml)")
    try:
        spec = _PolicyFile.model_validate(raw)
    except ValidationError as exc:
        raise PolicyError(_format_errors(exc)) from exc
    missing = [k.value for k in JobKind if k not in spec.kinds]
    if missing:
        raise PolicyError(f"policy key 'kinds.{missing[0]}': missing job kind(s) {missing} (fix: {_FIXES['kinds']})")
    _check_epsilon_order(spec)
    return Policy(
        version=spec.version,
        digest=digest,
        k_min_cell=spec.k_min_cell,
        max_recovery_match_cap=spec.max_recovery_match_cap,
        auditor_level=spec.auditor_level,
        reveal_output_key_types=frozenset(spec.reveal_output_key_types),
        consent_categories=frozenset(spec.consent_categories),
        kinds=MappingProxyType({kind: _kind_rule(k) for kind, k in spec.kinds.items()}),
        epsilon_budget_per_pair=spec.epsilon_budget_per_pair,
        epsilon_max_per_job=spec.epsilon_max_per_job,
        epsilon_default=spec.epsilon_default,
    )


def parse_policy(text: str) -> Policy:
    """Parse policy YAML text (pure); ``digest`` is the SHA-256 of ``text`` encoded as UTF-8.

    Raises:
        PolicyError: naming the malformed key and how to fix it.
    """
    return _policy_from_text(text, sha256_hex(text.encode("utf-8")))


def load_policy(path: Path | None = None) -> Policy:
    """Load the policy file at ``path`` (default: the packaged ``coordinator/policy.yaml``).

    Raises:
        PolicyError: if the file cannot be read, is not UTF-8, or is malformed (names key and fix).
    """
    path = path or DEFAULT_POLICY_PATH
    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc} (fix: point to a UTF-8 YAML file)") from exc
    return _policy_from_text(text, sha256_hex(data))


# ---------------------------------------------------------------- filter predicates


def parse_filter(text: str) -> list[Predicate]:
    """Parse a filter such as ``"age >= 25 and app_bank == 0"`` into its conjuncts (``protocols.wire.filters``).

    Only conjunctions (``and``) of ``<field> <op> <number | quoted string>`` are accepted; anything
    else (``or``, ``not``, parentheses, calls, unquoted words as values) is refused. The grammar lives
    in ``protocols.wire.filters`` so the node that applies a filter parses exactly what policy checked.

    Raises:
        FilterSyntaxError: naming the first token the grammar does not allow.
    """
    try:
        return _filters.parse_filter(text)
    except _filters.FilterSyntaxError as exc:
        raise FilterSyntaxError(str(exc), exc.token) from None


# ---------------------------------------------------------------- evaluation context


@dataclass(frozen=True)
class _Input:
    """One job input whose dataset is in the catalog."""

    index: int
    spec: JobInput
    dataset: DatasetPublic
    party_kind: PartyKind | None
    fields: Mapping[str, FieldSpec]

    def qual(self, name: str) -> str:
        """``dataset.field``, as messages name fields."""
        return f"{self.dataset.name}.{name}"

    def named(self) -> list[tuple[str, str]]:
        """Every (field, role) the input names, except filter fields."""
        s = self.spec
        pairs = [(f, "key_fields") for f in s.key_fields] + [(f, "feature_fields") for f in s.feature_fields]
        pairs += [(f, "output_fields") for f in s.output_fields]
        pairs += [(f, role) for f, role in ((s.label_field, "label_field"), (s.consent_field, "consent_field")) if f]
        return pairs

    def used(self) -> list[tuple[FieldSpec, str]]:
        """Every existing field the input names, with its role (filter fields excluded)."""
        return [(self.fields[f], role) for f, role in self.named() if f in self.fields]

    def filter_fields(self) -> list[FieldSpec]:
        """Existing fields its filter names ([] if there is no filter or it does not parse)."""
        if not self.spec.filter:
            return []
        try:
            preds = parse_filter(self.spec.filter)
        except FilterSyntaxError:
            return []
        return [self.fields[p.field] for p in preds if p.field in self.fields]


@dataclass(frozen=True)
class _Ctx:
    job: JobCreate
    policy: Policy
    inputs: tuple[_Input, ...]
    missing: tuple[tuple[int, int], ...]  # (input index, dataset id) not in the catalog
    budget_spent: Mapping[BudgetPair, float]

    @property
    def rule(self) -> KindRule:
        return self.policy.kinds[self.job.kind]

    @property
    def mode(self) -> str | None:
        return self.job.params.output_mode

    @property
    def reveal(self) -> bool:
        return self.job.kind == JobKind.RECOVERY and self.mode == "reveal"

    def of_kind(self, kind: PartyKind) -> list[_Input]:
        return [i for i in self.inputs if i.party_kind == kind]


def _context(
    job: JobCreate, datasets: Mapping[int, DatasetPublic], party_kinds: Mapping[str, PartyKind], policy: Policy,
    budget_spent: Mapping[BudgetPair, float],
) -> _Ctx:
    inputs, missing = [], []
    for index, spec in enumerate(job.inputs):
        ds = datasets.get(spec.dataset_id)
        if ds is None:
            missing.append((index, spec.dataset_id))
            continue
        fields = MappingProxyType({f.name: f for f in ds.fields})
        inputs.append(_Input(index, spec, ds, party_kinds.get(ds.party), fields))
    return _Ctx(job, policy, tuple(inputs), tuple(missing), budget_spent)


def _out(rule_id: str, allowed: bool, message: str, field: str | None = None, fix: str | None = None) -> RuleOutcome:
    return RuleOutcome(rule_id=rule_id, allowed=allowed, field=field, message=f"{rule_id}: {message}", fix=fix)


# ---------------------------------------------------------------- rules (each returns its findings)

R01, R02, R03, R04, R05 = (
    "R01-dataset-exists", "R02-field-exists", "R03-kind-purpose", "R04-inputs-shape", "R05-identifier-use")
R06, R07, R08, R09, R10 = (
    "R06-purpose-binding", "R07-key-fields", "R08-label-locality", "R09-output-desensitisation", "R10-auditor-level")
R11, R12, R13, R14, R15 = ("R11-min-cell", "R12-output-mode", "R13-reveal-recovery", "R14-relay-template", "R15-filter")
R16 = "R16-epsilon-budget"


def _r01(ctx: _Ctx) -> list[RuleOutcome]:
    return [
        _out(R01, False, f"dataset {ds_id} (inputs[{i}]) is not in the catalog", f"inputs[{i}].dataset_id",
             "register the dataset's schema first, or correct the dataset_id")
        for i, ds_id in ctx.missing
    ]


def _r02(ctx: _Ctx) -> list[RuleOutcome]:
    return [
        _out(R02, False, f"field {inp.qual(name)} named in {role} does not exist in dataset {inp.dataset.name}",
             inp.qual(name), f"use one of the dataset's catalog fields: {', '.join(sorted(inp.fields))}")
        for inp in ctx.inputs
        for name, role in inp.named()
        if name not in inp.fields
    ]


def _r03(ctx: _Ctx) -> list[RuleOutcome]:
    allowed = sorted(p.value for p in ctx.rule.purposes)
    if ctx.job.purpose in ctx.rule.purposes:
        return []
    return [_out(R03, False, f"a {ctx.job.kind.value} job may not serve purpose '{ctx.job.purpose.value}'",
                 "purpose", f"use purpose {' or '.join(repr(p) for p in allowed)}, or the job kind for this purpose")]


def _shape_text(kinds: Sequence[PartyKind]) -> str:
    return " and ".join(f"one {k.value} dataset" for k in kinds)


def _r04(ctx: _Ctx) -> list[RuleOutcome]:
    found: list[RuleOutcome] = []
    ids = [i.dataset_id for i in ctx.job.inputs]
    if len(set(ids)) != len(ids):
        found.append(_out(R04, False, f"the same dataset appears twice in inputs {ids}", "inputs",
                          "name each dataset once"))
    for inp in ctx.inputs:
        if inp.party_kind is None:
            found.append(_out(R04, False, f"party '{inp.dataset.party}' of dataset {inp.dataset.name} is not "
                              "registered", inp.dataset.name, "register the party before using its datasets"))
    rule, kinds = ctx.rule, [i.party_kind for i in ctx.inputs if i.party_kind is not None]
    allowed = set(rule.required_inputs) | set(rule.optional_inputs)
    shape_ok = all(kinds.count(k) == 1 for k in rule.required_inputs) and all(
        k in allowed and kinds.count(k) == 1 for k in kinds)
    if not shape_ok and not ctx.missing:
        optional = f" (optionally {_shape_text(rule.optional_inputs)})" if rule.optional_inputs else ""
        got = ", ".join(k.value for k in kinds) or "none"
        found.append(_out(R04, False, f"a {ctx.job.kind.value} job needs {_shape_text(rule.required_inputs)}"
                          f"{optional}; got datasets of: {got}", "inputs",
                          f"give {_shape_text(rule.required_inputs)}{optional}"))
    return found


def _reveal_exempt(ctx: _Ctx, inp: _Input, spec: FieldSpec, role: str) -> bool:
    return (ctx.reveal and role == "output_fields" and inp.party_kind == PartyKind.TELCO
            and spec.key_type in ctx.policy.reveal_output_key_types)


def _r05(ctx: _Ctx) -> list[RuleOutcome]:
    return [
        _out(R05, False, f"field {inp.qual(spec.name)} is an identifier and may be used only as a match key, "
             f"not in {role}", inp.qual(spec.name),
             f"remove it from {role}; identifiers join records through PSI key_fields only")
        for inp in ctx.inputs
        for spec, role in inp.used()
        if spec.category == FieldCategory.IDENTIFIER and role in ("feature_fields", "label_field", "output_fields")
        and not _reveal_exempt(ctx, inp, spec, role)
    ]


def _r06(ctx: _Ctx) -> list[RuleOutcome]:
    purpose = ctx.job.purpose
    seen: set[str] = set()
    found = []
    for inp in ctx.inputs:
        for spec, _role in inp.used():
            if purpose in spec.purposes or inp.qual(spec.name) in seen:
                continue
            seen.add(inp.qual(spec.name))
            found.append(_out(R06, False, f"field {inp.qual(spec.name)} is not approved for purpose '{purpose.value}'",
                              inp.qual(spec.name), f"add purpose '{purpose.value}' to the field's governance entry "
                              "or choose another field"))
    return found


def _key_category_findings(inp: _Input) -> list[RuleOutcome]:
    found = []
    for name in inp.spec.key_fields:
        spec = inp.fields.get(name)
        if spec is None:
            continue
        if spec.category != FieldCategory.IDENTIFIER:
            found.append(_out(R07, False, f"field {inp.qual(name)} in key_fields is a {spec.category.value}, not an "
                              "identifier", inp.qual(name), "match only on identifier fields (mobile, ID number…)"))
        elif spec.key_type is None:
            found.append(_out(R07, False, f"identifier {inp.qual(name)} has no key_type", inp.qual(name),
                              "set key_type in the field's governance entry"))
    return found


def _key_pairing_findings(ctx: _Ctx) -> list[RuleOutcome]:
    """Two inputs are joined by PSI, so both need key_fields, paired by key type in the same order."""
    if len(ctx.inputs) != 2:
        return []
    a, b = ctx.inputs
    for inp in (a, b):
        if not inp.spec.key_fields:
            return [_out(R07, False, f"dataset {inp.dataset.name} names no key_fields", f"{inp.dataset.name}",
                         "name the identifier fields to match on, in priority order")]
    types_a = [a.fields[f].key_type if f in a.fields else None for f in a.spec.key_fields]
    types_b = [b.fields[f].key_type if f in b.fields else None for f in b.spec.key_fields]
    if None in types_a or None in types_b or types_a == types_b:
        return []
    pairs = ", ".join(f"{a.qual(x)}~{b.qual(y)}" for x, y in zip(a.spec.key_fields, b.spec.key_fields, strict=False))
    return [_out(R07, False, f"key_fields do not pair up by key_type ({pairs}; "
                 f"{[t.value for t in types_a if t]} vs {[t.value for t in types_b if t]})", "key_fields",
                 "list the same key types in the same order on both inputs")]


def _r07(ctx: _Ctx) -> list[RuleOutcome]:
    found = [o for inp in ctx.inputs for o in _key_category_findings(inp)]
    return found + _key_pairing_findings(ctx)


def _label_field_findings(ctx: _Ctx, inp: _Input, name: str) -> list[RuleOutcome]:
    q, found = inp.qual(name), []
    if not ctx.rule.label_required:
        found.append(_out(R08, False, f"label_field {q} is only allowed on train_* jobs, not {ctx.job.kind.value}",
                          q, "remove label_field; labels never leave their owner"))
    if inp.party_kind != PartyKind.BANK:
        found.append(_out(R08, False, f"label_field {q} is not on the bank's dataset", q,
                          "name the label on the bank's (active party's) dataset"))
    spec = inp.fields.get(name)
    if spec is not None and spec.category != FieldCategory.LABEL:
        found.append(_out(R08, False, f"label_field {q} is a {spec.category.value}, not a label", q,
                          "choose a field catalogued with category 'label'"))
    if name in inp.spec.feature_fields or name in inp.spec.output_fields:
        found.append(_out(R08, False, f"label {q} is also listed in feature_fields or output_fields", q,
                          "keep the label only in label_field; it never leaves its owner"))
    return found


def _r08(ctx: _Ctx) -> list[RuleOutcome]:
    found = [o for inp in ctx.inputs if inp.spec.label_field
             for o in _label_field_findings(ctx, inp, inp.spec.label_field)]
    for inp in ctx.inputs:
        for spec, role in inp.used():
            if spec.category == FieldCategory.LABEL and role in ("feature_fields", "output_fields") \
                    and spec.name != inp.spec.label_field:
                found.append(_out(R08, False, f"label {inp.qual(spec.name)} may not be used in {role}",
                                  inp.qual(spec.name), f"remove it from {role}; labels never leave their owner"))
    has_label = any(i.spec.label_field and i.party_kind == PartyKind.BANK for i in ctx.inputs)
    if ctx.rule.label_required and not has_label:
        found.append(_out(R08, False, f"a {ctx.job.kind.value} job needs a label_field on the bank's dataset",
                          "label_field", "name the bank dataset's label field"))
    return found


def _r09(ctx: _Ctx) -> list[RuleOutcome]:
    return [
        _out(R09, False, f"field {inp.qual(spec.name)} must be dropped from every output (desensitisation 'drop')",
             inp.qual(spec.name), "remove it from output_fields, or ask its owner to change its desensitisation")
        for inp in ctx.inputs
        for spec, role in inp.used()
        if role == "output_fields" and spec.desensitisation == Desensitisation.DROP
    ]


def _high_level_fields(ctx: _Ctx) -> list[tuple[str, int]]:
    """(dataset.field, level) of every used field (filters included) at or above the auditor level."""
    found: dict[str, int] = {}
    for inp in ctx.inputs:
        for spec in [s for s, _ in inp.used()] + inp.filter_fields():
            if spec.security_level >= ctx.policy.auditor_level:
                found[inp.qual(spec.name)] = spec.security_level
    return list(found.items())


def _r10(ctx: _Ctx) -> list[RuleOutcome]:
    level = ctx.policy.auditor_level
    return [
        _out(R10, True, f"field {q} has security level {lvl} >= {level}: auditor approval required", q)
        for q, lvl in _high_level_fields(ctx)
    ]


def _r11(ctx: _Ctx) -> list[RuleOutcome]:
    k, given = ctx.policy.k_min_cell, ctx.job.params.min_cell
    if given is None or given >= k:
        return []
    return [_out(R11, False, f"params.min_cell {given} is below the policy minimum {k}", "params.min_cell",
                 f"set min_cell to at least {k} or leave it unset (defaults to {k})")]


def _r12(ctx: _Ctx) -> list[RuleOutcome]:
    modes, kind = ctx.rule.output_modes, ctx.job.kind.value
    if ctx.mode is None and not ctx.rule.output_mode_required:
        return []
    if ctx.mode in modes:
        return []
    got = "unset" if ctx.mode is None else f"'{ctx.mode}'"
    return [_out(R12, False, f"output_mode {got} is not allowed for a {kind} job", "params.output_mode",
                 f"set params.output_mode to one of {list(modes)}")]


def _consent_findings(ctx: _Ctx) -> list[RuleOutcome]:
    banks = ctx.of_kind(PartyKind.BANK)
    if not banks:
        return []
    bank = banks[0]
    name = bank.spec.consent_field
    if not name:
        return [_out(R13, False, f"reveal-mode recovery needs a consent_field on bank dataset {bank.dataset.name}",
                     f"{bank.dataset.name}.consent_field", "name the field recording each customer's consent")]
    spec = bank.fields.get(name)
    allowed = sorted(c.value for c in ctx.policy.consent_categories)
    if spec is not None and spec.category not in ctx.policy.consent_categories:
        return [_out(R13, False, f"consent field {bank.qual(name)} is a {spec.category.value}", bank.qual(name),
                     f"choose a consent field of category {' or '.join(allowed)}")]
    return []


def _cap_findings(ctx: _Ctx) -> list[RuleOutcome]:
    cap, limit = ctx.job.params.match_cap, ctx.policy.max_recovery_match_cap
    if cap is None:
        return [_out(R13, False, "reveal-mode recovery needs params.match_cap", "params.match_cap",
                     f"set match_cap to at most {limit}")]
    if cap > limit:
        return [_out(R13, False, f"params.match_cap {cap} exceeds the policy cap {limit}", "params.match_cap",
                     f"set match_cap to at most {limit}")]
    return []


def _revealed_findings(ctx: _Ctx) -> list[RuleOutcome]:
    telcos = ctx.of_kind(PartyKind.TELCO)
    if not telcos or telcos[0].spec.output_fields:
        return []
    kinds = sorted(k.value for k in ctx.policy.reveal_output_key_types)
    return [_out(R13, False, f"reveal-mode recovery names nothing to reveal on {telcos[0].dataset.name}",
                 f"{telcos[0].dataset.name}.output_fields", f"name the telco's identifier of type {kinds} "
                 "in output_fields")]


def _r13(ctx: _Ctx) -> list[RuleOutcome]:
    if not ctx.reveal:
        return []
    found = []
    if ctx.job.purpose != Purpose.RECOVERY:
        found.append(_out(R13, False, f"reveal-mode recovery needs purpose 'recovery', not '{ctx.job.purpose.value}'",
                          "purpose", "set purpose to 'recovery'"))
    found += _consent_findings(ctx) + _cap_findings(ctx) + _revealed_findings(ctx)
    return found or [_out(R13, True, f"reveal-mode recovery with consent and match_cap {ctx.job.params.match_cap} "
                          f"<= {ctx.policy.max_recovery_match_cap}; needs approval by both data owners and an "
                          "auditor")]


def _r14(ctx: _Ctx) -> list[RuleOutcome]:
    if ctx.mode != "relay" or (ctx.job.params.message_template or "").strip():
        return []
    return [_out(R14, False, "relay mode needs params.message_template", "params.message_template",
                 "set the message the telco relays to matched subscribers")]


def _filter_field_findings(ctx: _Ctx, inp: _Input, pred: Predicate) -> list[RuleOutcome]:
    q, purpose, spec = inp.qual(pred.field), ctx.job.purpose.value, inp.fields.get(pred.field)
    if spec is None:
        return [_out(R15, False, f"filter of {inp.dataset.name} names unknown field {q}", q,
                     f"filter on one of the dataset's feature fields: {', '.join(sorted(inp.fields))}")]
    if spec.category != FieldCategory.FEATURE:
        return [_out(R15, False, f"filter of {inp.dataset.name} uses {q}, a {spec.category.value}; filters may use "
                     "feature fields only", q, "filter on a feature field")]
    if ctx.job.purpose not in spec.purposes:
        return [_out(R15, False, f"filter field {q} is not approved for purpose '{purpose}'", q,
                     f"add purpose '{purpose}' to the field's governance entry or choose another field")]
    return []


def _r15(ctx: _Ctx) -> list[RuleOutcome]:
    found: list[RuleOutcome] = []
    for inp in ctx.inputs:
        if inp.spec.filter is None:
            continue
        try:
            preds = parse_filter(inp.spec.filter)
        except FilterSyntaxError as exc:
            found.append(_out(R15, False, f"filter of {inp.dataset.name} is refused at token '{exc.token}': {exc}",
                              f"{inp.dataset.name}.filter", FILTER_HELP))
            continue
        found += [o for p in preds for o in _filter_field_findings(ctx, inp, p)]
    return found


# ---------------------------------------------------------------- the ε budget (R16)

_BUDGET_DIGITS = 9
"""ε amounts are compared rounded to this many decimals, so 30 charges of 0.1 fit a budget of 3.0
(the same as ``coordinator.store.BUDGET_DIGITS``; this module imports no store)."""


def epsilon_charge(kind: JobKind, params: JobParams) -> float:
    """The ε a job spends from its pair's budget: ``params.epsilon`` of a count-mode audience_overlap, else 0.

    An exact count (no ``epsilon``; suppressed below k) spends nothing: the budget accounts for noised
    releases only, and k-suppression is the protection of exact counts.
    """
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


def _remaining(policy: Policy, spent: float) -> float:
    return max(0.0, round(policy.epsilon_budget_per_pair - spent, _BUDGET_DIGITS))


def budget_denial(policy: Policy, pair: BudgetPair, epsilon: float, spent: float) -> RuleOutcome | None:
    """R16's denial when ``epsilon`` does not fit what ``pair`` has left after ``spent`` (pure), else None.

    The job service calls this again when it charges the budget at approval, so a budget spent between
    submission and approval is refused with the same rule id and wording.
    """
    remaining, total = _remaining(policy, spent), policy.epsilon_budget_per_pair
    if round(epsilon, _BUDGET_DIGITS) <= remaining:
        return None
    fix = (f"lower params.epsilon to at most {remaining:g} (more noise), or ask compliance to raise "
           "epsilon_budget_per_pair in the policy" if remaining > 0 else
           "run an exact count instead (omit params.epsilon; counts below k are suppressed), or ask compliance "
           "to raise epsilon_budget_per_pair in the policy")
    return _out(R16, False, f"dataset pair (bank dataset {pair[0]}, telco dataset {pair[1]}) has epsilon "
                f"{remaining:g} of {total:g} remaining; this job needs {epsilon:g}", "params.epsilon", fix)


def _epsilon_mode_findings(ctx: _Ctx) -> list[RuleOutcome]:
    eps, limit = ctx.job.params.epsilon, ctx.policy.epsilon_max_per_job
    if eps is None or ctx.job.kind != JobKind.AUDIENCE_OVERLAP:
        return []
    if (ctx.mode or "count") != "count":
        return [_out(R16, False, f"params.epsilon has no effect in output_mode '{ctx.mode}' (only counts are noised)",
                     "params.epsilon", "remove params.epsilon, or use output_mode 'count'")]
    if eps > limit:
        return [_out(R16, False, f"params.epsilon {eps:g} exceeds the per-job maximum {limit:g}", "params.epsilon",
                     f"set params.epsilon to at most {limit:g} (the policy suggests {ctx.policy.epsilon_default:g})")]
    return []


def _r16(ctx: _Ctx) -> list[RuleOutcome]:
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
    return [_out(R16, True, f"epsilon {eps:g} fits dataset pair (bank dataset {pair[0]}, telco dataset {pair[1]}) "
                 f"with {_remaining(ctx.policy, spent):g} of {ctx.policy.epsilon_budget_per_pair:g} remaining; "
                 "charged when the job is approved")]


_Rule = tuple[str, Callable[[_Ctx], list[RuleOutcome]], str]
_RULES: tuple[_Rule, ...] = (
    (R01, _r01, "every input dataset is in the catalog"),
    (R02, _r02, "every named field exists in its dataset"),
    (R03, _r03, "the job kind may serve this purpose"),
    (R04, _r04, "the inputs have the shape the job kind needs"),
    (R05, _r05, "identifiers are used only as match keys"),
    (R06, _r06, "every used field is approved for the job purpose"),
    (R07, _r07, "key fields are identifiers paired by key type"),
    (R08, _r08, "labels stay with their owner"),
    (R09, _r09, "no output field has desensitisation 'drop'"),
    (R10, _r10, "no field at or above the auditor level is used"),
    (R11, _r11, "minimum cell size respects the policy"),
    (R12, _r12, "the output mode is allowed for the job kind"),
    (R13, _r13, "reveal-mode recovery conditions hold (or not reveal mode)"),
    (R14, _r14, "relay conditions hold (or not relay mode)"),
    (R15, _r15, "filters parse and use approved feature fields"),
    (R16, _r16, "no epsilon budget is spent (an exact count, or not a count)"),
)

RULE_IDS: tuple[str, ...] = tuple(rule_id for rule_id, _, _ in _RULES)
"""Every rule id, in evaluation order (stable: new rules are appended)."""


def _required_approvals(ctx: _Ctx, needs_auditor: bool) -> list[str]:
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
    ctx = _context(job, datasets, party_kinds, policy, budget_spent)
    rules: list[RuleOutcome] = []
    for rule_id, check, ok_text in _RULES:
        rules += check(ctx) or [_out(rule_id, True, ok_text)]
    needs_auditor = ctx.reveal or bool(_high_level_fields(ctx))
    return Decision(
        allowed=all(r.allowed for r in rules),
        policy_version=policy.version,
        rules=rules,
        required_approvals=_required_approvals(ctx, needs_auditor),
    )
