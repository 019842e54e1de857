"""Campaign response of the synthetic population: who registers for the bank's app after an outreach.

Pure and seeded: ``simulate_conversions`` takes the telco's subscriber table (as the generator wrote
it), the mobile numbers of the campaign's treatment and holdout arms, and a seed, and returns the
bank's post-campaign conversions (new app registrations, keyed by the mobile number the person
registered with — what the bank would hold) together with the TRUE per-arm conversion rates and the
true uplift, so a campaign evaluation can be checked against the truth (demo/SYNTHETIC.md,
"Marketing ground truth").

Model: a subscriber's baseline probability of registering within the campaign window is
``σ(z0)`` with ``z0 = intercept + 0.06·peer_app_days30 + 0.04·competitor_app_days30
+ 0.4·(ln data_usage_gb − 2.6) + 0.3·app_shopping + 0.3·white_collar_high − 1.5·bank_app_installed``;
a treated subscriber's is ``σ(z0 + effect)``. Each person's draw is a uniform derived from
``(seed, msisdn)`` alone (splitmix64), so the result does not depend on row order or on which other
people are passed. Subscribers in neither arm convert at their baseline (``background=True``): the
bank's registrations include people the campaign never touched, as they would.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["CONVERSION_FEATURES", "Conversions", "baseline_logit", "simulate_conversions", "write_conversions"]

DEFAULT_EFFECT = 0.8
"""Logit shift of outreach on the probability of registering (the documented true effect)."""
DEFAULT_INTERCEPT = -3.0
CONVERSION_FEATURES = ("peer_app_days30", "competitor_app_days30", "data_usage_gb", "app_shopping",
                       "white_collar_high", "bank_app_installed")
_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclass(frozen=True)
class Conversions:
    """The bank's conversions after a campaign, and the ground truth behind them.

    Attributes:
        mobiles: mobile numbers that registered (sorted; the bank's new registrations), all arms.
        n_treated, n_holdout: arm sizes.
        converted_treated, converted_holdout: realised conversions per arm (what PSI cardinality
            of ``mobiles`` with each arm should find).
        true_rate_treated, true_rate_holdout: expected conversion rate of each arm (mean probability).
        true_uplift: mean over both arms' people of ``σ(z0 + effect) − σ(z0)`` — the average effect
            of treating the audience, what ``rate_treated − rate_holdout`` estimates under a random split.
        effect: the logit shift used.
    """

    mobiles: tuple[str, ...]
    n_treated: int
    n_holdout: int
    converted_treated: int
    converted_holdout: int
    true_rate_treated: float
    true_rate_holdout: float
    true_uplift: float
    effect: float


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
        return z ^ (z >> np.uint64(31))


def person_uniforms(mobiles: np.ndarray, seed: int) -> np.ndarray:
    """A uniform in [0, 1) per mobile number, a function of ``(seed, number)`` only."""
    key = _splitmix64(np.array([seed], dtype=np.uint64))[0]
    nums = np.asarray([int(m) for m in mobiles], dtype=np.uint64)
    return (_splitmix64(nums ^ key) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def baseline_logit(subscribers: pd.DataFrame, intercept: float = DEFAULT_INTERCEPT) -> np.ndarray:
    """``z0`` of every row (see the module docstring); raises ValueError naming a missing column."""
    missing = [c for c in CONVERSION_FEATURES if c not in subscribers.columns]
    if missing:
        raise ValueError(f"telco_subscribers lacks column(s) {missing}: regenerate it with demo.synthetic")
    f = {c: subscribers[c].to_numpy(dtype=float) for c in CONVERSION_FEATURES}
    return np.asarray(intercept + 0.06 * f["peer_app_days30"] + 0.04 * f["competitor_app_days30"]
            + 0.4 * (np.log(f["data_usage_gb"]) - 2.6) + 0.3 * f["app_shopping"] + 0.3 * f["white_collar_high"]
            - 1.5 * f["bank_app_installed"])


def _arm_mask(msisdn: np.ndarray, arm: Iterable[str], name: str) -> np.ndarray:
    wanted = {str(m) for m in arm}
    mask = pd.Series(msisdn, dtype=object).isin(wanted).to_numpy(bool)  # hashed; np.isin on objects is O(n*m)
    unknown = len(wanted) - int(mask.sum())
    if unknown:
        raise ValueError(f"{name}: {unknown} mobile number(s) are not telco subscribers; pass numbers from "
                         "telco_subscribers.msisdn")
    return mask


def simulate_conversions(
    telco_subscribers: pd.DataFrame,
    treated_mobiles: Iterable[str],
    holdout_mobiles: Iterable[str],
    seed: int,
    *,
    effect: float = DEFAULT_EFFECT,
    intercept: float = DEFAULT_INTERCEPT,
    background: bool = True,
) -> Conversions:
    """Simulate the bank's app registrations after an outreach to ``treated_mobiles``.

    Args:
        telco_subscribers: the telco's table (needs ``msisdn`` and ``CONVERSION_FEATURES``).
        treated_mobiles: numbers that received the outreach.
        holdout_mobiles: numbers of the audience held out (no outreach); disjoint from the treated.
        seed: seed of the draws; the same seed gives the same conversions.
        effect: logit shift of the outreach (the true effect).
        intercept: baseline intercept (lower means rarer conversions).
        background: also let subscribers in neither arm convert at their baseline.

    Returns:
        The conversions and the ground truth (``Conversions``).

    Raises:
        ValueError: a missing column, an arm naming a number that is not a subscriber, or
            overlapping arms — the message names which and how to fix it.
    """
    if "msisdn" not in telco_subscribers.columns:
        raise ValueError("telco_subscribers lacks column 'msisdn': pass the telco's subscriber table")
    msisdn = telco_subscribers["msisdn"].astype(str).to_numpy(dtype=object)
    treated = _arm_mask(msisdn, treated_mobiles, "treated_mobiles")
    holdout = _arm_mask(msisdn, holdout_mobiles, "holdout_mobiles")
    if (treated & holdout).any():
        raise ValueError(f"treated_mobiles and holdout_mobiles share {int((treated & holdout).sum())} "
                         "number(s): the arms must be disjoint")
    z0 = baseline_logit(telco_subscribers, intercept)
    p0, p1 = 1.0 / (1.0 + np.exp(-z0)), 1.0 / (1.0 + np.exp(-(z0 + effect)))
    prob = np.where(treated, p1, p0)
    converted = person_uniforms(msisdn, seed) < prob
    if not background:
        converted &= treated | holdout
    audience = treated | holdout

    def mean(x: np.ndarray) -> float:
        return float(x.mean()) if x.size else 0.0

    return Conversions(
        mobiles=tuple(sorted(msisdn[converted].tolist())),
        n_treated=int(treated.sum()), n_holdout=int(holdout.sum()),
        converted_treated=int((converted & treated).sum()), converted_holdout=int((converted & holdout).sum()),
        true_rate_treated=mean(p1[treated]), true_rate_holdout=mean(p0[holdout]),
        true_uplift=mean(p1[audience] - p0[audience]), effect=effect,
    )


def write_conversions(path: Path, conversions: Conversions) -> Path:
    """Write the bank's conversions table (``mobile,app_registered``; dataset ``bank_conversions``) as CSV.

    Returns ``path``. Governance: demo/governance/bank_conversions.yaml.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fh.write("mobile,app_registered\n")
        fh.writelines(f"{m},1\n" for m in conversions.mobiles)
    return path
