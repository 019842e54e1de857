"""Marketing signals of the synthetic population: segment traits, app usage, churn signals, holdings.

The columns issue 12's marketing loop needs (demo/SYNTHETIC.md, "Marketing ground truth"): the telco
sees segment traits, app-usage days of the bank's, peer banks' and competitors' apps, and churn
signals; the bank holds product holdings related to the same interests, the ``app_registered`` label
(driven mostly by the telco's app-usage features) and the ``churned`` label (driven by the telco's
churn signals). Every random quantity has its own named stream (prefix ``mk_``), drawn once per person
in person order, so the existing columns keep their values and the output stays chunk-invariant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from demo._synthetic_model import Streams

__all__ = ["BANK_COLUMNS", "INTEREST_TRAITS", "TAG_TRAITS", "TELCO_COLUMNS", "bank_marketing", "telco_marketing"]

TAG_TRAITS = ("has_children", "business_traveller", "white_collar_high")
"""Segment tags the telco infers (0/1)."""
INTEREST_TRAITS = ("car_interest", "house_interest", "wealth_fixed_interest", "wealth_high_yield_interest",
                   "fund_interest", "stock_interest")
"""Interest scores the telco infers (floats in [0, 1], 3 decimals)."""
CHURN_SIGNALS = ("number_changed_90d", "silent_days", "home_cell_moved_90d", "bank_app_stopped_30d",
                 "competitor_app_started_30d")
TELCO_COLUMNS = ("bank_app_installed", "bank_app_days30", "peer_app_days30", "competitor_app_days30",
                 *TAG_TRAITS, *INTEREST_TRAITS, *CHURN_SIGNALS)
"""New telco_subscribers columns, in file order (after the existing ones)."""
PRODUCTS = ("has_fixed_term", "has_high_yield", "has_fund", "has_stock", "has_car_loan", "has_mortgage")
BANK_COLUMNS = ("app_registered", *PRODUCTS, "churned")
"""New bank_customers columns, in file order (after the existing ones)."""

# Product holding: logit = intercept + 1.3·(latent interest) + 0.35·W (+ extras below).
_PRODUCT_OF = {"has_fixed_term": ("wealth_fixed_interest", -1.0),
               "has_high_yield": ("wealth_high_yield_interest", -2.4),
               "has_fund": ("fund_interest", -1.9), "has_stock": ("stock_interest", -2.5),
               "has_car_loan": ("car_interest", -2.9), "has_mortgage": ("house_interest", -1.8)}

# Telco parts of the two new labels are centred by these means; non-subscribers get an independent
# normal of the same spread instead (as for the existing labels). Measured on 1M people, seed 7.
_APP_MEAN, _APP_SD = 1.034, 1.187
_CHURN_MEAN, _CHURN_SD = 0.261, 0.549


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def _bern(s: Streams, name: str, p: np.ndarray) -> np.ndarray:
    return s[name].random(p.size) < p


def _days(s: Streams, name: str, active: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Days of use in the last 30: 0 if inactive, else 1 + Binomial(29, p)."""
    return np.where(active, 1 + s[name].binomial(29, p), 0).astype(np.int64)


def latent_interests(s: Streams, p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Latent interest (standard-normal scale) per product area, shared by telco scores and bank holdings."""
    w, d, pw, agez, male = p["W"], p["D"], p["Pw"], p["agez"], p["male"]
    m = w.size
    kids = _bern(s, "mk_children", _sigmoid(0.6 - 0.9 * ((p["age"] - 38.0) / 9.0) ** 2 + 0.3 * w))

    def n(name: str) -> np.ndarray:
        return s[f"mk_{name}"].standard_normal(m)

    return {
        "has_children": kids,
        "car_interest": -0.4 + 0.45 * w + 0.4 * male + 0.5 * kids - 0.3 * agez ** 2 + n("car"),
        "house_interest": -0.5 + 0.7 * kids + 0.35 * w - 0.35 * ((p["age"] - 34.0) / 10.0) ** 2 + n("house"),
        "wealth_fixed_interest": -0.3 + 0.45 * agez + 0.4 * w + 0.3 * pw + n("fixed"),
        "wealth_high_yield_interest": -0.6 + 0.7 * pw + 0.4 * w + 0.2 * d + n("high_yield"),
        "fund_interest": -0.4 + 0.7 * pw + 0.3 * w + 0.3 * d - 0.2 * agez + n("fund"),
        "stock_interest": -0.8 + 0.6 * pw + 0.4 * d + 0.3 * male - 0.3 * agez + n("stock"),
        "churn": 0.4 * p["Rt"] - 0.2 * agez + n("churn"),
    }


def telco_marketing(s: Streams, p: dict[str, np.ndarray], t: dict[str, np.ndarray],
                    lat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The telco's new columns for every person (the caller keeps the subscribers' rows)."""
    w, d, is_bank, c = p["W"], p["D"], p["is_bank"], lat["churn"]
    app_bank, app_comp = t["app_bank"].astype(bool), t["app_competitor"].astype(bool)
    installed = app_bank | _bern(s, "mk_app_installed", _sigmoid(-2.5 + 0.5 * d + 1.0 * is_bank))
    stopped = app_bank & _bern(s, "mk_app_stopped", _sigmoid(-2.2 + 0.9 * c))
    peer_active = _bern(s, "mk_peer_active", _sigmoid(-0.4 + 0.8 * d + 0.3 * w))
    out: dict[str, np.ndarray] = {
        "bank_app_installed": installed,
        "bank_app_days30": _days(s, "mk_bank_days", app_bank & ~stopped, _sigmoid(-0.6 + 0.6 * d + 0.6 * is_bank)),
        "peer_app_days30": _days(s, "mk_peer_days", peer_active, _sigmoid(-0.8 + 0.6 * d)),
        "competitor_app_days30": _days(s, "mk_comp_days", app_comp, _sigmoid(-0.2 + 0.5 * d)),
        "has_children": lat["has_children"],
        "business_traveller": _bern(s, "mk_traveller", _sigmoid(-2.3 + 0.6 * t["business_trips_90d"] + 0.3 * w)),
        "white_collar_high": _bern(s, "mk_white_collar",
                                   _sigmoid(-2.2 + 1.1 * w + 0.4 * d - 0.5 * np.abs(p["agez"]))),
    }
    for name in INTEREST_TRAITS:
        out[name] = np.round(_sigmoid(lat[name]), 3)
    out.update({
        "number_changed_90d": _bern(s, "mk_number_changed", _sigmoid(-3.6 + 0.9 * c)),
        "silent_days": np.minimum(s["mk_silent"].poisson(np.exp(-0.6 + 0.9 * c)), 90),
        "home_cell_moved_90d": _bern(s, "mk_home_moved", _sigmoid(-2.9 + 0.6 * c)),
        "bank_app_stopped_30d": stopped,
        "competitor_app_started_30d": app_comp & _bern(s, "mk_comp_started", _sigmoid(-2.0 + 0.9 * c)),
    })
    return out


def app_telco_part(tm: dict[str, np.ndarray], t: dict[str, np.ndarray]) -> np.ndarray:
    """Telco-side logit contribution to ``app_registered`` (documented in SYNTHETIC.md)."""
    return np.asarray(0.09 * tm["bank_app_days30"] + 0.05 * tm["peer_app_days30"] + 0.03 * tm["competitor_app_days30"]
            + 0.6 * tm["bank_app_installed"] + 0.3 * t["app_shopping"] + 0.3 * (np.log(t["data_usage_gb"]) - 2.6))


def churn_telco_part(tm: dict[str, np.ndarray]) -> np.ndarray:
    """Telco-side logit contribution to ``churned`` (documented in SYNTHETIC.md)."""
    return np.asarray(1.6 * tm["number_changed_90d"] + 0.05 * np.minimum(tm["silent_days"], 30)
            + 0.9 * tm["home_cell_moved_90d"] + 1.3 * tm["bank_app_stopped_30d"]
            + 1.0 * tm["competitor_app_started_30d"])


def bank_marketing(s: Streams, p: dict[str, np.ndarray], b: dict[str, np.ndarray], t: dict[str, np.ndarray],
                   tm: dict[str, np.ndarray], lat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The bank's new columns for every person: the app label, product holdings, the churn label."""
    m, tel, w = p["W"].size, p["is_telco"], p["W"]
    lb = np.log(b["balance"]) - 8.8

    def label(name: str, intercept: float, bank: np.ndarray, telco: np.ndarray, mean: float, sd: float) -> np.ndarray:
        other = s[f"mk_{name}_other"].normal(0, sd, m)
        z = intercept + bank + np.where(tel, telco - mean, other) + 0.5 * s[f"mk_{name}_noise"].standard_normal(m)
        return s[f"mk_{name}_draw"].random(m) < _sigmoid(z)

    out = {"app_registered": label(
        "app", -0.9, -0.015 * (p["age"] - 42) + 0.25 * (np.log1p(b["monthly_txn_count"]) - 2.7),
        app_telco_part(tm, t), _APP_MEAN, _APP_SD)}
    for prod, (interest, intercept) in _PRODUCT_OF.items():
        extra = 0.5 * lat["has_children"] if prod == "has_mortgage" else 0.0
        out[prod] = _bern(s, f"mk_{prod}", _sigmoid(intercept + 1.3 * lat[interest] + 0.35 * w + 0.2 * lb + extra))
    out["churned"] = label(
        "churn", -2.6, -0.3 * (b["products_held"] - 2) - 0.15 * lb, churn_telco_part(tm), _CHURN_MEAN, _CHURN_SD)
    return out
