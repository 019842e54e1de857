"""The lift of the app-adoption model: what the telco's features add to the bank's own (for the demo and bench).

:func:`adoption_lift` fits, on the aligned customers of a synthetic population (``demo.synthetic``), the
``app_registered`` label three ways and reports the held-out AUC of each: the bank's features alone, bank +
telco features (centralised logistic regression: what the federated hetero LR converges to), and the
telco-alone score the ``app_promotion`` job uses on non-customers (the joint model's telco weights plus the
one offset the bank releases, :mod:`protocols.vfl.standalone`). Evaluation code over one party's view of
synthetic data; it runs no protocol and sends nothing.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from protocols.vfl.standalone import StandaloneLr, score_standalone

__all__ = ["LIFT_BANK_FEATURES", "LIFT_TELCO_FEATURES", "adoption_lift"]

LIFT_BANK_FEATURES = ("age", "balance", "products_held", "monthly_txn_count", "monthly_txn_amount", "credit_limit",
                      "has_fixed_term", "has_high_yield", "has_fund", "has_stock", "has_car_loan", "has_mortgage")
LIFT_TELCO_FEATURES = ("tenure_months", "arpu", "data_usage_gb", "night_usage_ratio", "peer_app_days30",
                       "competitor_app_days30", "app_shopping", "app_wealth", "has_children", "business_traveller",
                       "white_collar_high", "car_interest", "house_interest", "wealth_fixed_interest",
                       "wealth_high_yield_interest", "fund_interest", "stock_interest")
"""The bank app's own install and usage columns are left out: they are the screening criterion (always 0
in the audience) and nearly the label itself."""


def _standardise(x: npt.NDArray[np.float64], train: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    sd = x[train].std(0)
    out: npt.NDArray[np.float64] = (x - x[train].mean(0)) / np.where(sd > 0, sd, 1.0)
    return out


def adoption_lift(bank: pd.DataFrame, telco: pd.DataFrame, *, seed: int = 0, test_share: float = 0.3
                  ) -> dict[str, float | int]:
    """Held-out AUCs of ``app_registered``: bank alone, bank + telco, and the telco-alone score.

    Args:
        bank: the bank's customers (``id_number``, ``app_registered`` and :data:`LIFT_BANK_FEATURES`).
        telco: the telco's subscribers (``id_number`` and :data:`LIFT_TELCO_FEATURES`).
        seed: seed of the train/test split.
        test_share: share of aligned customers held out.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    joined = bank.merge(telco, on="id_number", suffixes=("", "_telco"))
    y = joined["app_registered"].to_numpy(int)
    test = np.random.default_rng(seed).random(len(y)) < test_share
    xb = _standardise(joined[list(LIFT_BANK_FEATURES)].to_numpy(float), ~test)
    xt = _standardise(joined[list(LIFT_TELCO_FEATURES)].to_numpy(float), ~test)
    both = np.hstack([xb, xt])
    bank_only = LogisticRegression(max_iter=2000).fit(xb[~test], y[~test])
    joint = LogisticRegression(max_iter=2000).fit(both[~test], y[~test])
    wb, wt = joint.coef_[0][: xb.shape[1]], joint.coef_[0][xb.shape[1]:]
    offset = float(joint.intercept_[0] + xb[~test].mean(0) @ wb)  # the one scalar the bank releases
    alone = score_standalone(StandaloneLr(wt, offset), xt[test])
    return {"bank_only_auc": float(roc_auc_score(y[test], bank_only.decision_function(xb[test]))),
            "federated_auc": float(roc_auc_score(y[test], joint.decision_function(both[test]))),
            "telco_alone_auc": float(roc_auc_score(y[test], alone)),
            "lift_rows": int(len(y)), "lift_test_rows": int(test.sum())}
