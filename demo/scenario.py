"""The demo's jobs, as the bodies the bank analyst submits to the coordinator (``POST /jobs``).

Each takes the catalog's dataset ids by name (``demo.steps.datasets``).
"""

from __future__ import annotations

from typing import Any


def demo_jobs(ds: dict[str, int]) -> list[tuple[str, dict[str, Any]]]:
    """The demo's four jobs, each with what it shows: overlap, recovery, risk model, propensity model."""
    bank, lost, telco = ds["bank_customers"], ds["bank_lost_contacts"], ds["telco_subscribers"]
    return [
        ("audience overlap: bank customers who are telco subscribers aged 25-45 without the bank's app", {
            "kind": "audience_overlap", "purpose": "app_promotion", "title": "App promotion audience (count)",
            "inputs": [{"dataset_id": bank, "key_fields": ["id_number"]},
                       {"dataset_id": telco, "key_fields": ["id_number"],
                        "filter": "app_bank == 0 and age >= 25 and age <= 45"}],
            "params": {"output_mode": "count", "min_cell": 50},
        }),
        ("lost-contact recovery (reveal mode, capped, consent-bound)", {
            "kind": "recovery", "purpose": "recovery", "title": "Recover current numbers of lost customers",
            "inputs": [{"dataset_id": lost, "key_fields": ["id_number", "imei", "idfa", "mac"],
                        "consent_field": "consent_recovery"},
                       {"dataset_id": telco, "key_fields": ["id_number", "imei", "idfa", "mac"],
                        "output_fields": ["msisdn"]}],
            "params": {"output_mode": "reveal", "match_cap": 5000},
        }),
        ("credit-risk model (hetero logistic regression)", _training_job(
            ds, "train_risk", "Default risk, bank + telco features", "default_flag",
            ["balance", "products_held", "monthly_txn_count", "monthly_txn_amount", "repay_overdue_12m",
             "credit_limit"],
            ["tenure_months", "arpu", "data_usage_gb", "night_usage_ratio", "app_competitor", "business_trips_90d"],
            {"output_mode": "model"},  # LR settings: LrConfig.recommended (6 Newton iterations)
        )),
        ("wealth-product propensity model (SecureBoost)", _training_job(
            ds, "train_propensity", "Wealth purchase, bank + telco features", "wealth_purchase",
            ["age", "balance", "products_held", "monthly_txn_count", "monthly_txn_amount", "credit_limit"],
            ["tenure_months", "arpu", "data_usage_gb", "app_wealth", "app_bank", "app_shopping", "business_trips_90d"],
            {"output_mode": "model", "trees": 10, "max_depth": 3},
        )),
    ]


def _training_job(ds: dict[str, int], kind: str, title: str, label: str, bank_features: list[str],
                  telco_features: list[str], params: dict[str, Any]) -> dict[str, Any]:
    """A training job over the bank's customers (with ``label``) and the telco's subscribers, joined on ID number."""
    return {
        "kind": kind, "purpose": kind.removeprefix("train_"), "title": title,
        "inputs": [{"dataset_id": ds["bank_customers"], "key_fields": ["id_number"], "label_field": label,
                    "feature_fields": bank_features},
                   {"dataset_id": ds["telco_subscribers"], "key_fields": ["id_number"],
                    "feature_fields": telco_features}],
        "params": params,
    }


def training_jobs(ds: dict[str, int]) -> dict[str, dict[str, Any]]:
    """The demo's two training jobs (risk, then propensity), by what they show."""
    return dict(demo_jobs(ds)[2:])


def denied_job(ds: dict[str, int]) -> dict[str, Any]:
    """A recovery that tries to use an identifier as a feature and to reveal numbers without consent."""
    return {
        "kind": "recovery", "purpose": "recovery", "title": "Reveal numbers, no consent (must be denied)",
        "inputs": [{"dataset_id": ds["bank_lost_contacts"], "key_fields": ["id_number"],
                    "feature_fields": ["imei"]},
                   {"dataset_id": ds["telco_subscribers"], "key_fields": ["id_number"],
                    "output_fields": ["msisdn"]}],
        "params": {"output_mode": "reveal"},
    }


SHANGHAI = (30.6, 120.8, 31.6, 122.1)
"""The demo's study area (south, west, north, east): the city where the bank's branches are."""


def site_selection_job(ds: dict[str, int], *, n_sites: int = 10, radius_km: float = 3.0, epsilon: float = 1.0,
                       pool_resolution: int = 5, area: tuple[float, float, float, float] | None = SHANGHAI
                       ) -> dict[str, Any]:
    """Where to open ``n_sites`` new branches: the telco's noised home/work demand per H3 cell, the bank's branches.

    The telco names its home and work cell fields (security level 4: compliance approves too); the
    bank names its branches' coordinates and capacity, which never leave its node. The study ``area`` is
    the bank's city (the telco counts only locations inside it). The demo's populations are small, so
    cells of fewer than k people pool into resolution-5 districts (≈ 250 km²) unless the caller passes
    the default 6 for a population large enough to fill them.
    """
    return {
        "kind": "site_selection", "purpose": "site_selection", "title": f"Where to open {n_sites} new branches",
        "inputs": [{"dataset_id": ds["telco_subscribers"], "feature_fields": ["home_cell", "work_cell"]},
                   {"dataset_id": ds["bank_branches"], "feature_fields": ["lat", "lng", "capacity"]}],
        "params": {"output_mode": "count", "min_cell": 50, "epsilon": epsilon, "n_sites": n_sites,
                   "radius_km": radius_km, "pool_resolution": pool_resolution,
                   **({"area": list(area)} if area is not None else {})},
    }


def score_job(ds: dict[str, int], model_job_id: int) -> dict[str, Any]:
    """A batch ``score`` job over the bank's customers with the model trained by job ``model_job_id``."""
    return {
        "kind": "score", "purpose": "scoring", "title": f"Score bank customers with the model of job {model_job_id}",
        "inputs": [{"dataset_id": ds["bank_customers"], "key_fields": ["id_number"]},
                   {"dataset_id": ds["telco_subscribers"], "key_fields": ["id_number"]}],
        "params": {"output_mode": "scores", "model_job_id": model_job_id},
    }
