"""The demo's marketing loop (issue 12): segments, a campaign, its evaluation, churn warning and win-back.

Run by ``demo.run`` after the other jobs, over the same federation:

1. ``segment_sizes`` (the telco's versioned segments, sizes only);
2. ``app_promotion`` with the demo's propensity model: the telco scores non-customers alone, excludes the
   bank's customers by PSI, splits treatment and holdout and messages the treatment arm through its
   embedded channel (relay mode);
3. the population responds: :func:`simulate_campaign` — the *simulator*, not a party — reads the arms the
   telco kept and draws the bank's new app registrations with ``demo.synthetic.simulate_conversions``
   (documented TRUE uplift); the bank registers them as ``bank_conversions``;
4. ``campaign_evaluation``: conversions per arm by PSI cardinality, the uplift with a confidence interval,
   printed beside the generator's TRUE uplift (:func:`uplift_verdict` says whether the CI covers it);
5. ``churn_warning``: a risk band per bank customer the telco knows (kept at the bank, counts reported);
6. ``win_back``: relay-mode recovery of the lost customers the bank ranks highest (:func:`win_back_table`
   adds the bank's own ranking column to its lost-contact list), messaged by the telco.

A step whose job kind a node does not run yet, or whose prerequisite failed, is skipped with the reason.
The job bodies and the simulator are plain functions, so the loop's test (``tests/demo/test_marketing_loop``)
drives the same steps over in-process nodes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from demo.synthetic import Conversions, simulate_conversions, write_conversions
from node.jobs.marketing.arms import load_arms
from protocols.marketing.bands import SIGNALS

__all__ = ["CampaignCheck", "churn_warning_job", "evaluation_job", "run_marketing", "simulate_campaign",
           "uplift_verdict", "win_back_job", "win_back_table"]

GOVERNANCE = Path(__file__).resolve().parent / "governance"
WIN_BACK_DATASET = "bank_win_back"
WIN_BACK_TEMPLATE = "Example Bank misses you: reply 1 for a call back, TD to opt out"
CAMPAIGN_TEMPLATE = "Example Bank's app: open an account in 3 minutes, reply TD to opt out"
CONVERSION_SEED = 12


# ---------------------------------------------------------------- the simulator and the bank's own tables


def simulate_campaign(data_dir: Path, telco_state: Path, campaign_job_id: int, *, seed: int = CONVERSION_SEED
                      ) -> tuple[Conversions, Path]:
    """The population's response to campaign ``campaign_job_id``: the bank's conversions, written as CSV.

    The simulator reads the arms the telco kept (``node.jobs.marketing.arms``) and the telco's table —
    it stands for the world, not for a party; no party sees what it reads.
    """
    arms = load_arms(telco_state, campaign_job_id)
    subscribers = pd.read_csv(data_dir / "telco_subscribers.csv", dtype={"msisdn": str})
    conversions = simulate_conversions(subscribers, arms.mobiles("treatment"), arms.mobiles("holdout"), seed)
    return conversions, write_conversions(data_dir / "bank_conversions.csv", conversions)


def win_back_table(data_dir: Path) -> tuple[Path, Path]:
    """The bank's lost-contact list with its own ranking column ``win_back_propensity``, and its governance.

    The ranking is the bank's: a logistic score of the lost customer's balance and products held, from
    its own customer table (never sent anywhere; win_back ranks by it at the bank).
    """
    lost = pd.read_csv(data_dir / "bank_lost_contacts.csv", dtype=str)
    customers = pd.read_csv(data_dir / "bank_customers.csv", usecols=["customer_id", "balance", "products_held"],
                            dtype={"customer_id": str})
    z = (np.log1p(customers["balance"].astype(float)) - 8.8) / 1.2 + 0.4 * (customers["products_held"] - 2)
    score = dict(zip(customers["customer_id"], np.round(1 / (1 + np.exp(-z)), 4), strict=True))
    lost["win_back_propensity"] = [score.get(c, 0.0) for c in lost["customer_id"]]
    csv = data_dir / f"{WIN_BACK_DATASET}.csv"
    lost.to_csv(csv, index=False)
    governance = yaml.safe_load((GOVERNANCE / "bank_lost_contacts.yaml").read_text())
    governance["dataset"] = WIN_BACK_DATASET
    governance["description"] = "Lost contacts ranked by the bank's own win-back propensity (synthetic)"
    governance["fields"]["win_back_propensity"] = {
        "type": "float", "category": "feature", "security_level": 2, "desensitisation": "generalise",
        "purposes": ["recovery", "retention"]}
    gov = data_dir / f"{WIN_BACK_DATASET}.yaml"
    gov.write_text(yaml.safe_dump(governance, sort_keys=False))
    return csv, gov


@dataclass(frozen=True)
class CampaignCheck:
    """The measured uplift beside the generator's truth."""

    measured: float | None
    ci: tuple[float, float] | None
    true_uplift: float
    realised_uplift: float
    inside: bool

    def line(self) -> str:
        """One line for the demo's output."""
        if self.measured is None or self.ci is None:
            return f"uplift suppressed (< k); TRUE uplift {self.true_uplift:+.4f}"
        return (f"measured uplift {self.measured:+.4f}, 95% CI [{self.ci[0]:+.4f}, {self.ci[1]:+.4f}]; "
                f"TRUE uplift {self.true_uplift:+.4f} (realised in this draw {self.realised_uplift:+.4f}): "
                + ("inside the CI" if self.inside else "OUTSIDE the CI"))


def uplift_verdict(bank_outputs: dict[str, Any], conversions: Conversions) -> CampaignCheck:
    """Compare an evaluation's released uplift and CI with the generator's TRUE uplift."""
    realised = (conversions.converted_treated / max(conversions.n_treated, 1)
                - conversions.converted_holdout / max(conversions.n_holdout, 1))
    measured, low, high = bank_outputs.get("uplift"), bank_outputs.get("ci_low"), bank_outputs.get("ci_high")
    if measured is None or low is None or high is None:
        return CampaignCheck(None, None, conversions.true_uplift, realised, False)
    return CampaignCheck(float(measured), (float(low), float(high)), conversions.true_uplift, realised,
                         float(low) <= conversions.true_uplift <= float(high))


# ---------------------------------------------------------------- job bodies


def evaluation_job(ds: dict[str, int], campaign_job_id: int, *, epsilon: float | None = None,
                   min_cell: int = 50) -> dict[str, Any]:
    """``campaign_evaluation`` of ``campaign_job_id``: the bank's conversions against the telco's arms."""
    params: dict[str, Any] = {"output_mode": "count", "min_cell": min_cell, "campaign_job_id": campaign_job_id}
    if epsilon is not None:
        params["epsilon"] = epsilon
    return {"kind": "campaign_evaluation", "purpose": "app_promotion",
            "title": f"Evaluate campaign {campaign_job_id}: conversions per arm, uplift",
            "inputs": [{"dataset_id": ds["bank_conversions"], "key_fields": ["mobile"]},
                       {"dataset_id": ds["telco_subscribers"], "key_fields": ["msisdn"]}],
            "params": params}


def churn_warning_job(ds: dict[str, int], *, min_cell: int = 50) -> dict[str, Any]:
    """``churn_warning``: a band per bank customer the telco knows, from the telco's churn signals."""
    return {"kind": "churn_warning", "purpose": "retention", "title": "Churn-risk bands of our customers",
            "inputs": [{"dataset_id": ds["bank_customers"], "key_fields": ["id_number"]},
                       {"dataset_id": ds["telco_subscribers"], "key_fields": ["id_number"],
                        "feature_fields": list(SIGNALS)}],
            "params": {"output_mode": "bands", "min_cell": min_cell}}


def win_back_job(ds: dict[str, int], *, top: int = 200, mode: str = "relay") -> dict[str, Any]:
    """``win_back``: recovery of the ``top`` lost customers by the bank's propensity (relay: the telco messages).

    Only reveal mode names the telco's number as an output field (policy R05); relay finds it by key type.
    """
    params: dict[str, Any] = {"output_mode": mode, "match_cap": top}
    if mode == "relay":
        params["message_template"] = WIN_BACK_TEMPLATE
    return {"kind": "win_back", "purpose": "recovery", "title": f"Win back our top {top} lost customers",
            "inputs": [{"dataset_id": ds[WIN_BACK_DATASET], "key_fields": ["id_number", "imei", "idfa", "mac"],
                        "feature_fields": ["win_back_propensity"], "consent_field": "consent_recovery"},
                       {"dataset_id": ds["telco_subscribers"], "key_fields": ["id_number", "imei", "idfa", "mac"],
                        **({"output_fields": ["msisdn"]} if mode == "reveal" else {})}],
            "params": params}


SEGMENTS_FILE = Path(__file__).resolve().parent / "segments.yaml"
DEMO_SEGMENTS = ("families_with_children", "fixed_term_wealth", "funds")
"""The demo sizes three of the file's segments (each segment x product cell is one padded PSI run)."""
DEMO_PRODUCTS = ["has_fixed_term", "has_fund"]
ADOPTION_BANK_FEATURES = ["age", "balance", "products_held", "monthly_txn_count", "monthly_txn_amount", "credit_limit"]
ADOPTION_TELCO_FEATURES = ["tenure_months", "arpu", "data_usage_gb", "app_competitor", "peer_app_days30",
                           "competitor_app_days30", "business_trips_90d"]
"""The app-adoption model's features: the bank's own, and the telco's usage of peer and competitor apps (the
bank app's own install and usage are the screening criterion, not features)."""
ADOPTION_THRESHOLD = 0.35
"""Score at or above which a non-customer without the app is in the audience (about 40% of them here)."""
AUDIENCE_CAP = 8000
"""``match_cap``: the most candidates whose bank-customer status the campaign may test (both sides sign it)."""


def segment_sizes_job(ds: dict[str, int], segments_text: str) -> dict[str, Any]:
    """``segment_sizes``: per segment x bank product, how many segment members hold it (k-suppressed counts)."""
    from protocols.wire.segments import segment_params  # noqa: PLC0415 - pure, only needed here

    return {"kind": "segment_sizes", "purpose": "marketing", "title": "Segment sizes x wealth products",
            "inputs": [{"dataset_id": ds["bank_customers"], "key_fields": ["id_number"],
                        "feature_fields": DEMO_PRODUCTS},
                       {"dataset_id": ds["telco_subscribers"], "key_fields": ["id_number"]}],
            "params": {"output_mode": "count", "min_cell": 50, **segment_params(segments_text)}}


def demo_segments_text() -> str:
    """The segment file with only the demo's segments (same grammar and version)."""
    body = yaml.safe_load(SEGMENTS_FILE.read_text(encoding="utf-8"))
    body["segments"] = [seg for seg in body["segments"] if seg["name"] in DEMO_SEGMENTS]
    return yaml.safe_dump(body, allow_unicode=True, sort_keys=False)


def app_adoption_model_job(ds: dict[str, int]) -> dict[str, Any]:
    """``train_propensity`` of "would adopt the bank's app" (label ``app_registered``), hetero LR."""
    return {"kind": "train_propensity", "purpose": "propensity", "title": "App adoption, bank + telco features",
            "inputs": [{"dataset_id": ds["bank_customers"], "key_fields": ["id_number"],
                        "label_field": "app_registered", "feature_fields": ADOPTION_BANK_FEATURES},
                       {"dataset_id": ds["telco_subscribers"], "key_fields": ["id_number"],
                        "feature_fields": ADOPTION_TELCO_FEATURES}],
            "params": {"output_mode": "model"}}


def app_promotion_job(ds: dict[str, int], model_job_id: int, telco_features: list[str], *,
                      holdout_share: float = 0.3, threshold: float = ADOPTION_THRESHOLD) -> dict[str, Any]:
    """``app_promotion``: non-customers scored by the telco alone, the treatment arm messaged, the holdout kept.

    The telco scores with the model's ``telco_features`` and messages through its embedded outbox.
    """
    fields = [*telco_features, "bank_app_installed", "bank_app_days30"]
    return {"kind": "app_promotion", "purpose": "app_promotion", "title": "Promote the bank's app to non-customers",
            "inputs": [{"dataset_id": ds["bank_customers"], "key_fields": ["id_number"]},
                       {"dataset_id": ds["telco_subscribers"], "key_fields": ["id_number"],
                        "feature_fields": list(dict.fromkeys(fields))}],
            "params": {"output_mode": "relay", "min_cell": 50, "model_job_id": model_job_id,
                       "score_threshold": threshold, "bank_app": "bank_app", "holdout_share": holdout_share,
                       "arm_seed": 7, "channel": "outbox", "message_template": CAMPAIGN_TEMPLATE,
                       "match_cap": AUDIENCE_CAP}}


# ---------------------------------------------------------------- the loop over a running federation


def _short(outputs: dict[str, Any], keys: tuple[str, ...]) -> str:
    return json.dumps({k: outputs[k] for k in keys if k in outputs})[:600]


def _register(fed: Any, csv: Path, governance: Path) -> None:
    """Register one more bank dataset with the running bank node (schema and coarse statistics to the catalog)."""
    out = fed.node("bank", "register-dataset", "--source", f"csv://{csv}", "--governance", str(governance))
    print("   " + out.strip().splitlines()[-1])


def run_marketing(fed: Any, say: Callable[[str, str], None]) -> list[Any]:
    """The loop's steps over the running federation ``fed`` (``demo.steps.Federation``); returns the jobs run.

    Args:
        fed: The federation.
        say: The demo's step printer.
    """
    from demo.steps import approve, datasets, submit, wait_job  # noqa: PLC0415 - the federation's steps

    done: list[Any] = []

    def run(body: dict[str, Any]) -> Any:
        job = submit(fed, body)
        if job.status.value == "rejected":
            print(f"   job {job.id} rejected by policy: "
                  + "; ".join(f"{r.rule_id}: {r.message}" for r in job.decision.rules if not r.allowed))
            return job
        approve(fed, job)
        job = wait_job(fed, job.id)
        done.append(job)
        if job.status.value != "succeeded":
            print(f"   job {job.id}: {job.status.value}: {job.status_detail[:400]}")
        return job

    data = fed.state / "data"
    ds = datasets(fed)
    say("7/8 Marketing loop: segment sizes (telco segments x bank products, PSI cardinality, k-suppressed)", "")
    segments = run(segment_sizes_job(ds, demo_segments_text()))
    if segments.status.value == "succeeded":
        print(f"   bank (segment x product): {_short(segments.outputs.get('bank', {}), ('k', 'products', 'cells'))}")
        print(f"   telco (segment sizes): {_short(segments.outputs.get('telco', {}), ('segments',))}")
    say("7/8 Marketing loop: the app-adoption model (label app_registered; hetero LR through Flower)", "")
    adoption = run(app_adoption_model_job(ds))
    if adoption.status.value == "succeeded":
        bank = adoption.outputs.get("bank", {})
        if "auc_federated" in bank:
            print(f"   lift: held-out AUC with telco features {bank['auc_federated']:.3f} "
                  f"vs the bank's own features alone {bank['auc_bank_only']:.3f}")
    say("7/8 Marketing loop: app promotion to non-customers (telco-alone scores, PSI exclusion, arms, outreach)", "")
    if adoption.status.value != "succeeded":
        print("   skipped: no app-adoption model to score with; the campaign and its evaluation are left out")
        campaign = None
    else:
        campaign = run(app_promotion_job(ds, adoption.id, ADOPTION_TELCO_FEATURES))
        if campaign.status.value == "succeeded":
            shown = ("k", "score_threshold", "audience_sizes", "deliveries")
            print(f"   telco (the bank reads these): {_short(campaign.outputs.get('telco', {}), shown)}")
    if campaign is not None and campaign.status.value == "succeeded":
        say("7/8 Marketing loop: the population responds (simulator), the bank registers its conversions", "")
        conversions, csv = simulate_campaign(data, fed.state / "telco", campaign.id)
        _register(fed, csv, GOVERNANCE / "bank_conversions.yaml")
        print(f"   {len(conversions.mobiles)} new app registrations at the bank; arms {conversions.n_treated} "
              f"treated / {conversions.n_holdout} held out")
        say("7/8 Marketing loop: campaign evaluation (PSI cardinality per arm, uplift with a 95% CI)", "")
        evaluation = run(evaluation_job(datasets(fed), campaign.id))
        if evaluation.status.value == "succeeded":
            bank = evaluation.outputs.get("bank", {})
            print(f"   arms released (k={bank.get('k')}): {json.dumps(bank.get('arms'))}")
            print("   " + uplift_verdict(bank, conversions).line())
    say("7/8 Retention: churn warning (a risk band per matched bank customer, labeled PSI)", "")
    churn = run(churn_warning_job(ds))
    if churn.status.value == "succeeded":
        bank = churn.outputs.get("bank", {})
        print(f"   bank: {_short(bank, ('customers_asked', 'customers_matched', 'bands', 'bands_at'))}")
        print(f"   telco: {_short(churn.outputs.get('telco', {}), ('bank_queries', 'table_records'))}")
    say("7/8 Retention: win-back of the top-ranked lost customers (recovery in relay mode: the telco messages)", "")
    csv, gov = win_back_table(data)
    _register(fed, csv, gov)
    back = run(win_back_job(datasets(fed)))
    if back.status.value == "succeeded":
        bank = back.outputs.get("bank", {})
        print(f"   bank: {_short(bank, ('ranked_by', 'candidates', 'chosen', 'hits_by_key', 'relayed'))}")
    return done
