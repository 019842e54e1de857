"""Policy engine: every rule allows and denies, messages name fields, the policy file parses strictly."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from coordinator.policy import (
    DEFAULT_POLICY_PATH,
    RULE_IDS,
    BudgetPair,
    FilterSyntaxError,
    Policy,
    PolicyError,
    Predicate,
    budget_denial,
    epsilon_charge,
    evaluate,
    load_policy,
    parse_filter,
    parse_policy,
)
from protocols.wire.canonical import sha256_hex
from protocols.wire.control import (
    DatasetPublic,
    Decision,
    FieldSpec,
    JobCreate,
    JobKind,
    PartyKind,
    Purpose,
)

ALL = [p.value for p in Purpose]
BANK_ID, TELCO_ID = 1, 2


def field(name: str, category: str = "feature", level: int = 2, purposes: list[str] | None = None,
          key_type: str | None = None, desens: str = "none", type_: str = "integer") -> FieldSpec:
    return FieldSpec(name=name, type=type_, category=category, security_level=level, desensitisation=desens,
                     purposes=ALL if purposes is None else purposes, key_type=key_type)


def dataset(ds_id: int, party: str, name: str, fields: list[FieldSpec]) -> DatasetPublic:
    return DatasetPublic(id=ds_id, party=party, name=name, description="", row_count=1000, fields=fields,
                         schema_digest="0" * 64, created_at=datetime(2026, 1, 1, tzinfo=UTC))


BANK = dataset(BANK_ID, "bank-a", "bank_customers", [
    field("customer_id", "identifier", 3, key_type="customer_id", type_="string"),
    field("mobile", "identifier", 3, key_type="mobile", type_="string"),
    field("id_number", "identifier", 4, key_type="id_number", type_="string"),
    field("age"),
    field("app_bank"),
    field("income", "sensitive", 3, ["risk", "scoring", "propensity"], desens="mask"),
    field("default_flag", "label", 3, ["risk"]),
    field("bought_product", "label", 3, ["propensity"]),
    field("recovery_consent", "feature", 2, ["recovery"], type_="boolean"),
    field("vip_note", "sensitive", 2, desens="drop", type_="string"),
])
TELCO = dataset(TELCO_ID, "telco-x", "telco_subscribers", [
    field("msisdn", "identifier", 3, key_type="mobile", desens="mask", type_="string"),
    field("id_number", "identifier", 4, key_type="id_number", type_="string"),
    field("imei", "identifier", 3, key_type="imei", desens="drop", type_="string"),
    field("arpu", "feature", 2, ["marketing", "risk", "propensity", "scoring", "app_promotion"], type_="float"),
    field("tenure_months"),
    field("home_grid", "sensitive", 3, ["site_selection"], desens="generalise", type_="string"),
    field("credit_blacklist", "sensitive", 5, ["risk"], desens="drop", type_="boolean"),
])
CATALOG = {BANK_ID: BANK, TELCO_ID: TELCO}
PARTIES = {"bank-a": PartyKind.BANK, "telco-x": PartyKind.TELCO}


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy()


def overlap_job(**changes: Any) -> JobCreate:
    """A job the packaged policy allows: marketing audience overlap, count only."""
    base: dict[str, Any] = {
        "kind": "audience_overlap", "purpose": "marketing", "title": "card campaign overlap",
        "inputs": [
            {"dataset_id": BANK_ID, "key_fields": ["mobile"], "filter": "age >= 25 and app_bank == 0"},
            {"dataset_id": TELCO_ID, "key_fields": ["msisdn"], "feature_fields": ["arpu"]},
        ],
        "params": {"output_mode": "count", "min_cell": 50},
    }
    base.update(changes)
    return JobCreate.model_validate(base)


def reveal_job(bank: dict[str, Any] | None = None, telco: dict[str, Any] | None = None,
               **params: Any) -> JobCreate:
    """Reveal-mode recovery on ID number: the telco reveals the current mobile to the bank."""
    return JobCreate.model_validate({
        "kind": "recovery", "purpose": "recovery", "title": "contact recovery",
        "inputs": [
            {"dataset_id": BANK_ID, "key_fields": ["id_number"], "consent_field": "recovery_consent", **(bank or {})},
            {"dataset_id": TELCO_ID, "key_fields": ["id_number"], "output_fields": ["msisdn"], **(telco or {})},
        ],
        "params": {"output_mode": "reveal", "match_cap": 500, **params},
    })


def train_job(bank: dict[str, Any] | None = None, telco: dict[str, Any] | None = None, **kw: Any) -> JobCreate:
    base: dict[str, Any] = {
        "kind": "train_risk", "purpose": "risk", "title": "risk model",
        "inputs": [
            {"dataset_id": BANK_ID, "key_fields": ["mobile"], "feature_fields": ["age", "income"],
             "label_field": "default_flag", **(bank or {})},
            {"dataset_id": TELCO_ID, "key_fields": ["msisdn"], "feature_fields": ["arpu"], **(telco or {})},
        ],
    }
    base.update(kw)
    return JobCreate.model_validate(base)


def run(job: JobCreate, policy: Policy, catalog: dict[int, DatasetPublic] | None = None,
        spent: dict[BudgetPair, float] | None = None) -> Decision:
    return evaluate(job, CATALOG if catalog is None else catalog, PARTIES, policy, spent or {})


def denials(decision: Decision, rule_prefix: str) -> list[Any]:
    return [r for r in decision.rules if r.rule_id.startswith(rule_prefix) and not r.allowed]


def assert_only_denied_by(decision: Decision, rule_prefix: str) -> list[Any]:
    denied = [r for r in decision.rules if not r.allowed]
    assert not decision.allowed
    assert denied, "expected a denial"
    assert {r.rule_id for r in denied} == {next(r.rule_id for r in denied if r.rule_id.startswith(rule_prefix))}, \
        [r.message for r in denied]
    return denied


# ---------------------------------------------------------------- full examples


def test_allowed_audience_overlap_lists_every_rule(policy: Policy) -> None:
    # Prepare
    job = overlap_job()

    # Execute
    decision = run(job, policy)

    # Assert
    assert decision.allowed, [r.message for r in decision.rules if not r.allowed]
    assert decision.policy_version == "2026-12-05.2"
    assert [r.rule_id for r in decision.rules] == list(RULE_IDS)
    assert [r.rule_id.split("-")[0] for r in decision.rules] == [f"R{i:02d}" for i in range(1, 18)]
    assert all(r.message.startswith(r.rule_id + ": ") for r in decision.rules)
    assert decision.required_approvals == ["party:bank-a", "party:telco-x"]


def test_allowed_reveal_recovery_requires_both_owners_and_auditor(policy: Policy) -> None:
    decision = run(reveal_job(), policy)

    assert decision.allowed, [r.message for r in decision.rules if not r.allowed]
    assert decision.required_approvals == ["auditor", "party:bank-a", "party:telco-x"]
    r13 = next(r for r in decision.rules if r.rule_id == "R13-reveal-recovery")
    assert r13.allowed and "auditor" in r13.message
    r10 = [r for r in decision.rules if r.rule_id == "R10-auditor-level"]
    assert {r.field for r in r10} == {"bank_customers.id_number", "telco_subscribers.id_number"}
    assert all(r.allowed and "auditor approval required" in r.message for r in r10)


def test_allowed_train_risk(policy: Policy) -> None:
    decision = run(train_job(), policy)

    assert decision.allowed, [r.message for r in decision.rules if not r.allowed]
    assert decision.required_approvals == ["party:bank-a", "party:telco-x"]


# ---------------------------------------------------------------- R01-R04


def test_r01_missing_dataset_denied(policy: Policy) -> None:
    decision = run(overlap_job(), policy, catalog={BANK_ID: BANK})

    denied = denials(decision, "R01")
    assert not decision.allowed
    assert denied[0].field == "inputs[1].dataset_id" and "dataset 2" in denied[0].message
    assert decision.required_approvals == ["party:bank-a"]


def test_r02_unknown_field_named_with_dataset(policy: Policy) -> None:
    job = overlap_job(inputs=[{"dataset_id": BANK_ID, "key_fields": ["mobile"]},
                              {"dataset_id": TELCO_ID, "key_fields": ["msisdn"], "feature_fields": ["shoe_size"]}])

    denied = assert_only_denied_by(run(job, policy), "R02")

    assert denied[0].field == "telco_subscribers.shoe_size"
    assert "telco_subscribers.shoe_size" in denied[0].message and "feature_fields" in denied[0].message


@pytest.mark.parametrize(("kind", "purpose", "ok"), [
    ("audience_overlap", "marketing", True), ("audience_overlap", "app_promotion", True),
    ("audience_overlap", "risk", False), ("recovery", "marketing", False), ("train_risk", "propensity", False),
    ("score", "scoring", True), ("score", "risk", True), ("score", "marketing", False),
])
def test_r03_kind_purpose(policy: Policy, kind: str, purpose: str, ok: bool) -> None:
    job = JobCreate.model_validate({"kind": kind, "purpose": purpose, "title": "t",
                                    "inputs": [{"dataset_id": BANK_ID}]})

    decision = run(job, policy)

    outcomes = [r for r in decision.rules if r.rule_id == "R03-kind-purpose"]
    assert [r.allowed for r in outcomes] == [ok]
    if not ok:
        assert f"'{purpose}'" in outcomes[0].message and outcomes[0].fix


def test_r04_needs_bank_and_telco(policy: Policy) -> None:
    job = overlap_job(inputs=[{"dataset_id": TELCO_ID, "key_fields": ["msisdn"]}])

    denied = assert_only_denied_by(run(job, policy), "R04")

    assert "one bank dataset and one telco dataset" in denied[0].message


def test_r04_duplicate_dataset_and_unregistered_party(policy: Policy) -> None:
    stray = BANK.model_copy(update={"id": 9, "party": "ghost"})
    job = overlap_job(inputs=[{"dataset_id": 9, "key_fields": ["mobile"]},
                              {"dataset_id": TELCO_ID, "key_fields": ["msisdn"]}])

    decision = run(job, policy, catalog={9: stray, TELCO_ID: TELCO})

    messages = [r.message for r in denials(decision, "R04")]
    assert any("party 'ghost'" in m for m in messages)


def test_r04_site_selection_takes_telco_alone(policy: Policy) -> None:
    job = JobCreate.model_validate({"kind": "site_selection", "purpose": "site_selection", "title": "branches",
                                    "inputs": [{"dataset_id": TELCO_ID, "output_fields": ["home_grid"]}],
                                    "params": {"output_mode": "count", "min_cell": 100, "epsilon": 0.5}})

    decision = run(job, policy)

    assert decision.allowed, [r.message for r in decision.rules if not r.allowed]
    assert decision.required_approvals == ["party:telco-x"]


def test_app_promotion_telco_alone_or_excluding_bank_customers(policy: Policy) -> None:
    def job(*inputs: dict[str, Any]) -> JobCreate:
        return JobCreate.model_validate({
            "kind": "app_promotion", "purpose": "app_promotion", "title": "app push", "inputs": list(inputs),
            "params": {"output_mode": "relay", "message_template": "Try our app", "min_cell": 50}})

    telco_only = run(job({"dataset_id": TELCO_ID, "filter": "arpu > 80.5"}), policy)
    keyless = run(job({"dataset_id": TELCO_ID}, {"dataset_id": BANK_ID}), policy)
    keyed = run(job({"dataset_id": TELCO_ID, "key_fields": ["msisdn"]},
                    {"dataset_id": BANK_ID, "key_fields": ["mobile"]}), policy)

    assert telco_only.allowed, [r.message for r in telco_only.rules if not r.allowed]
    assert telco_only.required_approvals == ["party:telco-x"]
    assert [r.rule_id for r in keyless.rules if not r.allowed] == ["R07-key-fields"]
    assert keyed.allowed and keyed.required_approvals == ["party:bank-a", "party:telco-x"]


# ---------------------------------------------------------------- R05-R09


@pytest.mark.parametrize("role", ["feature_fields", "output_fields"])
def test_r05_identifier_outside_keys_denied(policy: Policy, role: str) -> None:
    job = train_job(telco={role: ["arpu", "imei"] if role == "feature_fields" else ["tenure_months", "msisdn"]},
                    purpose="risk")

    decision = run(job, policy)

    denied = denials(decision, "R05")
    assert len(denied) == 1 and role in denied[0].message
    assert denied[0].field in {"telco_subscribers.imei", "telco_subscribers.msisdn"}


def test_r05_reveal_exemption_is_only_for_telco_mobile(policy: Policy) -> None:
    allowed = run(reveal_job(), policy)
    imei = run(reveal_job(telco={"output_fields": ["imei"]}), policy)
    relay = run(reveal_job(output_mode="relay", message_template="please call us"), policy)

    assert not denials(allowed, "R05")
    assert [r.field for r in denials(imei, "R05")] == ["telco_subscribers.imei"]
    assert [r.field for r in denials(relay, "R05")] == ["telco_subscribers.msisdn"]


def test_r06_purpose_binding_message_and_fix(policy: Policy) -> None:
    job = reveal_job(telco={"feature_fields": ["arpu"]})

    denied = denials(run(job, policy), "R06")

    assert len(denied) == 1
    assert denied[0].message == "R06-purpose-binding: field telco_subscribers.arpu is not approved for purpose " \
        "'recovery'"
    assert denied[0].fix == "add purpose 'recovery' to the field's governance entry or choose another field"


def test_r07_key_must_be_identifier_and_pair_by_type(policy: Policy) -> None:
    not_identifier = overlap_job(inputs=[{"dataset_id": BANK_ID, "key_fields": ["age"]},
                                         {"dataset_id": TELCO_ID, "key_fields": ["msisdn"]}])
    mismatched = overlap_job(inputs=[{"dataset_id": BANK_ID, "key_fields": ["mobile"]},
                                     {"dataset_id": TELCO_ID, "key_fields": ["imei"]}])
    missing = overlap_job(inputs=[{"dataset_id": BANK_ID, "key_fields": ["mobile"]}, {"dataset_id": TELCO_ID}])

    d1, d2, d3 = (denials(run(j, policy), "R07") for j in (not_identifier, mismatched, missing))

    assert d1[0].field == "bank_customers.age" and "not an identifier" in d1[0].message
    assert "key_type" in d2[0].message and "mobile" in d2[0].message and "imei" in d2[0].message
    assert "telco_subscribers names no key_fields" in d3[0].message


def test_r08_label_only_on_train_jobs(policy: Policy) -> None:
    job = overlap_job(inputs=[{"dataset_id": BANK_ID, "key_fields": ["mobile"], "label_field": "default_flag"},
                              {"dataset_id": TELCO_ID, "key_fields": ["msisdn"]}])

    denied = denials(run(job, policy), "R08")

    assert [r.field for r in denied] == ["bank_customers.default_flag"]
    assert "train_*" in denied[0].message


def test_r08_label_never_released_or_featured(policy: Policy) -> None:
    in_output = train_job(bank={"output_fields": ["default_flag"]})
    as_feature = train_job(bank={"feature_fields": ["age", "bought_product"]}, purpose="risk")

    out_denied, feat_denied = denials(run(in_output, policy), "R08"), denials(run(as_feature, policy), "R08")

    assert out_denied and out_denied[0].field == "bank_customers.default_flag"
    assert any(r.field == "bank_customers.bought_product" and "feature_fields" in r.message for r in feat_denied)


def test_r08_label_must_be_on_bank_and_present(policy: Policy) -> None:
    no_label = train_job(bank={"label_field": None})
    telco_label = train_job(telco={"label_field": "tenure_months"})

    d1, d2 = denials(run(no_label, policy), "R08"), denials(run(telco_label, policy), "R08")

    assert any("needs a label_field" in r.message for r in d1)
    assert any(r.field == "telco_subscribers.tenure_months" and "bank" in r.message for r in d2)


def test_r09_drop_field_never_output(policy: Policy) -> None:
    job = overlap_job(inputs=[{"dataset_id": BANK_ID, "key_fields": ["mobile"], "output_fields": ["vip_note"]},
                              {"dataset_id": TELCO_ID, "key_fields": ["msisdn"]}])

    denied = assert_only_denied_by(run(job, policy), "R09")

    assert denied[0].field == "bank_customers.vip_note" and "'drop'" in denied[0].message


# ---------------------------------------------------------------- R10-R15


def test_r10_high_level_field_requires_auditor_not_denial(policy: Policy) -> None:
    job = train_job(telco={"feature_fields": ["arpu", "credit_blacklist"]})

    decision = run(job, policy)

    assert decision.allowed, [r.message for r in decision.rules if not r.allowed]
    assert "auditor" in decision.required_approvals
    r10 = [r for r in decision.rules if r.rule_id == "R10-auditor-level"]
    assert [r.field for r in r10] == ["telco_subscribers.credit_blacklist"] and r10[0].allowed


@pytest.mark.parametrize(("min_cell", "ok"), [(None, True), (50, True), (500, True), (49, False), (1, False)])
def test_r11_min_cell(policy: Policy, min_cell: int | None, ok: bool) -> None:
    decision = run(overlap_job(params={"output_mode": "count", "min_cell": min_cell}), policy)

    assert decision.allowed is ok
    if not ok:
        assert assert_only_denied_by(decision, "R11")[0].field == "params.min_cell"


@pytest.mark.parametrize(("mode", "ok"), [("count", True), ("bank_ids", True), ("reveal", False), (None, False)])
def test_r12_overlap_output_mode(policy: Policy, mode: str | None, ok: bool) -> None:
    decision = run(overlap_job(params={"output_mode": mode}), policy)

    assert decision.allowed is ok
    if not ok:
        assert assert_only_denied_by(decision, "R12")[0].field == "params.output_mode"


@pytest.mark.parametrize(("bank", "params", "field"), [
    ({"consent_field": None}, {}, "bank_customers.consent_field"),
    ({"consent_field": "mobile"}, {}, "bank_customers.mobile"),
    ({}, {"match_cap": None}, "params.match_cap"),
    ({}, {"match_cap": 10_001}, "params.match_cap"),
])
def test_r13_reveal_conditions(policy: Policy, bank: dict[str, Any], params: dict[str, Any], field: str) -> None:
    job = reveal_job(bank=bank, **params)

    decision = run(job, policy)

    denied = denials(decision, "R13")
    assert not decision.allowed and [r.field for r in denied] == [field]
    assert "auditor" in decision.required_approvals


def test_r13_reveal_at_exact_cap_is_allowed(policy: Policy) -> None:
    assert run(reveal_job(match_cap=policy.max_recovery_match_cap), policy).allowed


def test_r14_relay_needs_template(policy: Policy) -> None:
    base = {"telco": {"output_fields": []}, "output_mode": "relay"}
    without = reveal_job(**base)  # type: ignore[arg-type]
    with_template = reveal_job(**base, message_template="Your bank asks you to call 95588")  # type: ignore[arg-type]

    assert [r.field for r in denials(run(without, policy), "R14")] == ["params.message_template"]
    assert run(with_template, policy).allowed


def test_r14_template_uses_approved_placeholders_only(policy: Policy) -> None:
    base = {"telco": {"output_fields": []}, "output_mode": "relay"}
    approved = reveal_job(**base, message_template="{bank_name}: call 95588 {optout}")  # type: ignore[arg-type]
    unapproved = reveal_job(**base, message_template="Dear {customer_name}, call us")  # type: ignore[arg-type]

    assert run(approved, policy).allowed
    [denial] = denials(run(unapproved, policy), "R14")
    assert denial.field == "params.message_template" and "{customer_name}, which is not approved" in denial.message


@pytest.mark.parametrize(("flt", "field", "needle"), [
    ("age >= 25 or app_bank == 0", "bank_customers.filter", "'or'"),
    ("shoe_size > 3", "bank_customers.shoe_size", "unknown field"),
    ("income > 1000", "bank_customers.income", "sensitive"),
    ("mobile == '138'", "bank_customers.mobile", "identifier"),
    ("recovery_consent == 1", "bank_customers.recovery_consent", "purpose 'marketing'"),
])
def test_r15_filter_denials_name_token_or_field(policy: Policy, flt: str, field: str, needle: str) -> None:
    job = overlap_job(inputs=[{"dataset_id": BANK_ID, "key_fields": ["mobile"], "filter": flt},
                              {"dataset_id": TELCO_ID, "key_fields": ["msisdn"]}])

    denied = assert_only_denied_by(run(job, policy), "R15")

    assert denied[0].field == field and needle in denied[0].message


def test_filter_level_counts_for_auditor(policy: Policy) -> None:
    catalog = {BANK_ID: BANK.model_copy(update={"fields": [*BANK.fields, field("risk_band", level=4)]}),
               TELCO_ID: TELCO}
    job = overlap_job(inputs=[{"dataset_id": BANK_ID, "key_fields": ["mobile"], "filter": "risk_band < 3"},
                              {"dataset_id": TELCO_ID, "key_fields": ["msisdn"]}])

    decision = run(job, policy, catalog)

    assert decision.allowed and "auditor" in decision.required_approvals


# ---------------------------------------------------------------- R16 epsilon budget

PAIR = (BANK_ID, TELCO_ID)


def noised(epsilon: float, mode: str = "count") -> JobCreate:
    return overlap_job(params={"output_mode": mode, "min_cell": 50, "epsilon": epsilon})


def test_r16_noised_count_within_budget_is_allowed_and_says_when_charged(policy: Policy) -> None:
    decision = run(noised(1.0), policy, spent={PAIR: 1.5})

    assert decision.allowed, [r.message for r in decision.rules if not r.allowed]
    r16 = next(r for r in decision.rules if r.rule_id == "R16-epsilon-budget")
    assert "1.5 of 3 remaining" in r16.message and "charged when the job is approved" in r16.message


def test_r16_exhausted_budget_denied_naming_pair_remaining_and_fix(policy: Policy) -> None:
    # Prepare: the pair has spent 2.5 of 3.0; another pair's spending is irrelevant
    job = noised(1.0)

    # Execute
    decision = run(job, policy, spent={PAIR: 2.5, (BANK_ID, 99): 3.0})

    # Assert
    (denial,) = assert_only_denied_by(decision, "R16")
    assert denial.rule_id == "R16-epsilon-budget" and denial.field == "params.epsilon"
    assert f"bank dataset {BANK_ID}, telco dataset {TELCO_ID}" in denial.message
    assert "0.5 of 3 remaining" in denial.message and "needs 1" in denial.message
    assert "lower params.epsilon to at most 0.5" in denial.fix and "ask compliance" in denial.fix


def test_r16_fully_spent_budget_suggests_an_exact_count(policy: Policy) -> None:
    (denial,) = assert_only_denied_by(run(noised(0.1), policy, spent={PAIR: 3.0}), "R16")

    assert "0 of 3 remaining" in denial.message and "exact count" in denial.fix


def test_r16_exactly_the_remaining_budget_fits_despite_float_sums(policy: Policy) -> None:
    spent = sum([0.1] * 29)  # 2.9000000000000004 in floating point

    assert run(noised(0.1), policy, spent={PAIR: spent}).allowed


def test_r16_epsilon_above_per_job_maximum(policy: Policy) -> None:
    (denial,) = assert_only_denied_by(run(noised(1.5), policy), "R16")

    assert "exceeds the per-job maximum 1" in denial.message and "at most 1" in denial.fix


def test_r16_epsilon_in_bank_ids_mode_is_refused_as_meaningless(policy: Policy) -> None:
    (denial,) = assert_only_denied_by(run(noised(0.5, mode="bank_ids"), policy), "R16")

    assert "no effect in output_mode 'bank_ids'" in denial.message


def test_r16_exact_count_spends_nothing_even_with_budget_exhausted(policy: Policy) -> None:
    decision = run(overlap_job(), policy, spent={PAIR: 3.0})

    assert decision.allowed
    assert epsilon_charge(JobKind.AUDIENCE_OVERLAP, overlap_job().params) == 0.0
    assert epsilon_charge(JobKind.AUDIENCE_OVERLAP, noised(0.5).params) == 0.5


def test_r16_site_selection_must_name_epsilon_and_spends_it_from_its_pair(policy: Policy) -> None:
    def sites(**params: Any) -> JobCreate:
        return JobCreate.model_validate({
            "kind": "site_selection", "purpose": "site_selection", "title": "branches",
            "inputs": [{"dataset_id": TELCO_ID, "feature_fields": ["home_grid"]}, {"dataset_id": BANK_ID}],
            "params": {"n_sites": 5, "radius_km": 2.0, **params}})

    (missing,) = assert_only_denied_by(run(sites(), policy), "R16")
    (spent,) = assert_only_denied_by(run(sites(epsilon=1.0), policy, spent={PAIR: 2.5}), "R16")

    assert missing.field == "params.epsilon" and "must name its epsilon" in missing.message
    assert "set params.epsilon" in missing.fix
    assert "0.5 of 3 remaining" in spent.message
    assert run(sites(epsilon=0.5), policy, spent={PAIR: 2.5}).allowed
    assert epsilon_charge(JobKind.SITE_SELECTION, sites(epsilon=0.5).params) == 0.5


def test_budget_denial_is_pure_and_none_when_it_fits(policy: Policy) -> None:
    assert budget_denial(policy, PAIR, 1.0, 2.0) is None
    denial = budget_denial(policy, PAIR, 1.0, 2.5)
    assert denial is not None and denial.rule_id == "R16-epsilon-budget" and not denial.allowed


# ---------------------------------------------------------------- filter parser


def test_parse_filter_conjunctions() -> None:
    preds = parse_filter("age >= 25 and app_bank == 0 AND city != 'Hang zhou' and score<-1.5")

    assert preds == [Predicate("age", ">=", 25), Predicate("app_bank", "==", 0),
                     Predicate("city", "!=", "Hang zhou"), Predicate("score", "<", -1.5)]


@pytest.mark.parametrize(("text", "token"), [
    ("", "<end of filter>"), ("age", "<end of filter>"), ("age >=", "<end of filter>"),
    ("age >= 25 or x == 1", "or"), ("(age > 1)", "("), ("age >= 1e5", "1e5"), ("age >= abc", "abc"),
    ("and == 1", "and"), ("a == 1 and", "<end of filter>"), ("a == 1; drop table", ";"),
    ("a = 1", "="), ("a == \"x", "\""), ("not a == 1", "a"), ("a.b == 1", "."),
    ("__import__('os') == 1", "("),
])
def test_parse_filter_refuses_with_token(text: str, token: str) -> None:
    with pytest.raises(FilterSyntaxError) as info:
        parse_filter(text)

    assert info.value.token == token
    assert isinstance(info.value, PolicyError)


# ---------------------------------------------------------------- policy file


def test_load_policy_default_and_digest() -> None:
    policy = load_policy()

    assert policy.version == "2026-12-05.2"
    assert policy.k_min_cell == 50 and policy.max_recovery_match_cap == 10_000 and policy.auditor_level == 4
    assert policy.digest == sha256_hex(DEFAULT_POLICY_PATH.read_bytes())
    assert set(policy.kinds) == set(JobKind)
    assert policy.kinds[JobKind.AUDIENCE_OVERLAP].purposes == {Purpose.MARKETING, Purpose.APP_PROMOTION}
    assert (policy.epsilon_budget_per_pair, policy.epsilon_max_per_job, policy.epsilon_default) == (3.0, 1.0, 0.5)


def test_parse_policy_matches_load(tmp_path: Path) -> None:
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")

    assert parse_policy(text) == load_policy(path)


@pytest.mark.parametrize(("old", "new", "needle"), [
    ('version: "2026-12-05.2"', "version: 2026-11-27", "'version'"),
    ("k_min_cell: 50", "k_min_cell: fifty", "'k_min_cell'"),
    ("k_min_cell: 50", 'k_min_cell: "50"', "'k_min_cell'"),
    ("auditor_level: 4", "auditor_level: 9", "'auditor_level'"),
    ("auditor_level: 4", "auditor_level: 4\nauditor_levle: 4", "'auditor_levle'"),
    ("purposes: [recovery]", "purposes: [recovry]", "'kinds.recovery.purposes.0'"),
    ("  site_selection:\n", "  site_selektion:\n", "'kinds.site_selektion'"),
    ("epsilon_budget_per_pair: 3.0", 'epsilon_budget_per_pair: "3.0"', "'epsilon_budget_per_pair'"),
    ("epsilon_budget_per_pair: 3.0", "epsilon_budget_per_pair: 0", "'epsilon_budget_per_pair'"),
    ("epsilon_budget_per_pair: 3.0\n", "", "'epsilon_budget_per_pair'"),
    ("epsilon_max_per_job: 1.0", "epsilon_max_per_job: 4.0", "'epsilon_max_per_job'"),
    ("epsilon_default: 0.5", "epsilon_default: 2.0", "'epsilon_default'"),
    ("epsilon_default: 0.5", "epsilon_default: -1", "'epsilon_default'"),
])
def test_malformed_policy_names_key_and_fix(old: str, new: str, needle: str) -> None:
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    assert old in text
    broken = text.replace(old, new, 1)

    with pytest.raises(PolicyError) as info:
        parse_policy(broken)

    assert needle in str(info.value) and "fix:" in str(info.value)


def test_policy_missing_kind_and_bad_yaml(tmp_path: Path) -> None:
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    no_score = re.sub(r"  score:\n(    .*\n)+", "", text)
    missing_file = tmp_path / "nope.yaml"

    with pytest.raises(PolicyError, match=r"policy key 'kinds.score': missing job kind"):
        parse_policy(no_score)
    with pytest.raises(PolicyError, match="not valid YAML"):
        parse_policy("version: [unclosed")
    with pytest.raises(PolicyError, match="mapping"):
        parse_policy("- a\n- b\n")
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(missing_file)
