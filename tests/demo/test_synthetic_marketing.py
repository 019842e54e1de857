"""Marketing signals of the synthetic population and the campaign-response simulator (issue 12)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from demo.synthetic import simulate_conversions, write_conversions
from tests.demo.conftest import SYNTHETIC_N
from tests.demo.test_synthetic import BANK_FEATURES, auc

N = SYNTHETIC_N  # the shared population (tests/demo/conftest.py)
TELCO_NEW = ["bank_app_installed", "bank_app_days30", "peer_app_days30", "competitor_app_days30", "has_children",
             "business_traveller", "white_collar_high", "car_interest", "house_interest", "wealth_fixed_interest",
             "wealth_high_yield_interest", "fund_interest", "stock_interest", "number_changed_90d", "silent_days",
             "home_cell_moved_90d", "bank_app_stopped_30d", "competitor_app_started_30d"]
BANK_NEW = ["app_registered", "has_fixed_term", "has_high_yield", "has_fund", "has_stock", "has_car_loan",
            "has_mortgage", "churned"]
APP_USAGE = ["bank_app_installed", "bank_app_days30", "peer_app_days30", "competitor_app_days30"]
CHURN_SIGNALS = ["number_changed_90d", "silent_days", "home_cell_moved_90d", "bank_app_stopped_30d",
                 "competitor_app_started_30d"]
HOLDING_OF = {"has_fixed_term": "wealth_fixed_interest", "has_high_yield": "wealth_high_yield_interest",
              "has_fund": "fund_interest", "has_stock": "stock_interest", "has_car_loan": "car_interest",
              "has_mortgage": "house_interest"}


@pytest.fixture(scope="module")
def pop(synthetic_population: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The ``N``-person population, seed 7 (generated once per session, shared with test_synthetic)."""
    return synthetic_population


@pytest.fixture(scope="module")
def joined(pop: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return pop["bank_customers"].merge(pop["telco_subscribers"], on="id_number", suffixes=("", "_telco"))


def test_announced_column_names_are_appended(pop: dict[str, pd.DataFrame]):
    assert list(pop["telco_subscribers"].columns)[-len(TELCO_NEW):] == TELCO_NEW
    assert list(pop["bank_customers"].columns)[-len(BANK_NEW):] == BANK_NEW


def test_value_ranges_and_consistency(pop: dict[str, pd.DataFrame]):
    t, b = pop["telco_subscribers"], pop["bank_customers"]
    for col in ("bank_app_days30", "peer_app_days30", "competitor_app_days30"):
        assert t[col].between(0, 30).all(), col
    for col in ("bank_app_installed", "has_children", "business_traveller", "white_collar_high",
                "number_changed_90d", "home_cell_moved_90d", "bank_app_stopped_30d", "competitor_app_started_30d"):
        assert set(t[col].unique()) <= {0, 1}, col
    for col in ("car_interest", "house_interest", "wealth_fixed_interest", "wealth_high_yield_interest",
                "fund_interest", "stock_interest"):
        assert t[col].between(0, 1).all() and t[col].nunique() > 100, col
    assert t["silent_days"].between(0, 90).all()
    for col in BANK_NEW:
        assert set(b[col].unique()) == {0, 1}, col
    # App usage is consistent with the older app flags: use implies installed and seen on the network.
    used = t["bank_app_days30"] > 0
    assert (t.loc[used, "bank_app_installed"] == 1).all() and (t.loc[used, "app_bank"] == 1).all()
    assert (t.loc[t["app_bank"] == 1, "bank_app_installed"] == 1).all()
    assert (t.loc[t["bank_app_stopped_30d"] == 1, "bank_app_days30"] == 0).all()
    assert ((t["competitor_app_days30"] > 0) == (t["app_competitor"] == 1)).all()
    assert (t.loc[t["competitor_app_started_30d"] == 1, "app_competitor"] == 1).all()
    assert 0.25 <= b["app_registered"].mean() <= 0.45
    assert 0.05 <= b["churned"].mean() <= 0.12


def test_segment_traits_follow_age_and_wealth(pop: dict[str, pd.DataFrame]):
    t = pop["telco_subscribers"]
    assert t.loc[t["age"].between(30, 45), "has_children"].mean() > 2 * t.loc[t["age"] >= 60, "has_children"].mean()
    high_arpu = t["arpu"] > t["arpu"].quantile(0.8)
    assert t.loc[high_arpu, "white_collar_high"].mean() > 2 * t.loc[~high_arpu, "white_collar_high"].mean()
    assert t.loc[t["business_trips_90d"] >= 3, "business_traveller"].mean() > 0.5
    assert t.loc[t["business_trips_90d"] == 0, "business_traveller"].mean() < 0.15
    assert t.loc[t["app_wealth"] == 1, "fund_interest"].mean() > t.loc[t["app_wealth"] == 0, "fund_interest"].mean()


def test_holdings_follow_interests(joined: pd.DataFrame):
    for product, interest in HOLDING_OF.items():
        high = joined[interest] >= 0.6
        assert joined.loc[high, product].mean() > 2.5 * joined.loc[~high, product].mean(), product


def test_app_registered_gains_auc_from_telco_app_usage(joined: pd.DataFrame):
    bank_only = auc(joined, BANK_FEATURES, "app_registered")
    both = auc(joined, BANK_FEATURES + APP_USAGE, "app_registered")
    print(f"app_registered: bank-only AUC {bank_only:.3f}, + telco app usage {both:.3f}")
    assert both - bank_only >= 0.05
    telco_only = auc(joined, ["peer_app_days30", "competitor_app_days30", "app_shopping", "data_usage_gb"],
                     "app_registered")
    assert telco_only >= 0.6  # the telco-alone scorer of non-customers has signal without bank_app_* too


def test_churned_depends_on_telco_churn_signals(joined: pd.DataFrame):
    bank_only = auc(joined, BANK_FEATURES, "churned")
    both = auc(joined, BANK_FEATURES + CHURN_SIGNALS, "churned")
    print(f"churned: bank-only AUC {bank_only:.3f}, + telco churn signals {both:.3f}")
    assert both - bank_only >= 0.05
    assert joined.loc[joined["bank_app_stopped_30d"] == 1, "churned"].mean() > 2 * joined["churned"].mean()


# --- campaign response ---------------------------------------------------------------------------


def _arms(pop: dict[str, pd.DataFrame], seed: int = 1) -> tuple[pd.Series, pd.Series]:
    t, b = pop["telco_subscribers"], pop["bank_customers"]
    audience = t.loc[(t["bank_app_installed"] == 0) & ~t["id_number"].isin(b["id_number"]), "msisdn"]
    treated = np.random.default_rng(seed).random(len(audience)) < 0.5
    return audience[treated], audience[~treated]


def test_conversions_match_the_true_rates_and_uplift(pop: dict[str, pd.DataFrame]):
    treated, holdout = _arms(pop)
    conv = simulate_conversions(pop["telco_subscribers"], treated, holdout, seed=5)
    got = set(conv.mobiles)
    assert conv.converted_treated == len(got & set(treated)) and conv.converted_holdout == len(got & set(holdout))
    rate_t, rate_h = conv.converted_treated / conv.n_treated, conv.converted_holdout / conv.n_holdout
    se_t = (conv.true_rate_treated * (1 - conv.true_rate_treated) / conv.n_treated) ** 0.5
    se_h = (conv.true_rate_holdout * (1 - conv.true_rate_holdout) / conv.n_holdout) ** 0.5
    assert abs(rate_t - conv.true_rate_treated) < 4 * se_t
    assert abs(rate_h - conv.true_rate_holdout) < 4 * se_h
    assert abs((rate_t - rate_h) - conv.true_uplift) < 4 * (se_t ** 2 + se_h ** 2) ** 0.5
    assert 0.04 < conv.true_uplift < 0.15
    # Background conversions: people outside the campaign register too, at their baseline.
    assert len(got - set(treated) - set(holdout)) > 0
    assert all(isinstance(m, str) and len(m) == 11 for m in conv.mobiles)


def test_conversions_are_seeded_and_order_invariant(pop: dict[str, pd.DataFrame]):
    treated, holdout = _arms(pop)
    t = pop["telco_subscribers"]
    a = simulate_conversions(t, treated, holdout, seed=5)
    b = simulate_conversions(t.sample(frac=1.0, random_state=3), list(reversed(list(treated))), holdout, seed=5)
    c = simulate_conversions(t, treated, holdout, seed=6)
    assert a == b
    assert c.mobiles != a.mobiles
    none = simulate_conversions(t, treated, holdout, seed=5, effect=0.0)
    assert none.true_uplift == 0.0 and none.true_rate_treated < a.true_rate_treated


def test_conversions_reject_bad_arms(pop: dict[str, pd.DataFrame]):
    treated, holdout = _arms(pop)
    t = pop["telco_subscribers"]
    with pytest.raises(ValueError, match="share 1 number"):
        simulate_conversions(t, treated, [*holdout, treated.iloc[0]], seed=1)
    with pytest.raises(ValueError, match="treated_mobiles: 1 mobile number"):
        simulate_conversions(t, [*treated, "13000000000"], holdout, seed=1)
    with pytest.raises(ValueError, match="peer_app_days30"):
        simulate_conversions(t.drop(columns=["peer_app_days30"]), treated, holdout, seed=1)


def test_write_conversions(pop: dict[str, pd.DataFrame], tmp_path: Path):
    from demo.steps import GOVERNANCE
    from node.adapters import CsvSource
    from node.governance import describe, load_governance

    treated, holdout = _arms(pop)
    conv = simulate_conversions(pop["telco_subscribers"], treated, holdout, seed=5)
    path = write_conversions(tmp_path / "bank_conversions.csv", conv)
    frame = pd.read_csv(path, dtype={"mobile": str})
    assert list(frame.columns) == ["mobile", "app_registered"] and tuple(frame["mobile"]) == conv.mobiles
    with CsvSource(path) as source:
        entry = describe(source, load_governance(GOVERNANCE / "bank_conversions.yaml"))
    assert entry.row_count == len(conv.mobiles)
