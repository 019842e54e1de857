"""The churn band rule: points per signal, band thresholds, bad columns named; bands rank the demo's churn."""

from __future__ import annotations

import numpy as np
import pytest

from protocols.marketing.bands import SIGNALS, BandInputError, band_of, bands, risk_points


def _signals(**over: list) -> dict[str, list]:
    base = {s: [0] for s in SIGNALS}
    base.update(over)
    return base


@pytest.mark.parametrize(("over", "points"), [
    ({}, 0), ({"number_changed_90d": [True]}, 3), ({"silent_days": [6]}, 0), ({"silent_days": [7]}, 1),
    ({"silent_days": [14]}, 2), ({"silent_days": [30]}, 3), ({"bank_app_stopped_30d": [1]}, 2),
    ({"competitor_app_started_30d": [1]}, 2), ({"home_cell_moved_90d": [1]}, 1),
    ({"number_changed_90d": [1], "silent_days": [45], "bank_app_stopped_30d": [1],
      "competitor_app_started_30d": [1], "home_cell_moved_90d": [1]}, 11),
])
def test_points_per_signal(over: dict, points: int) -> None:
    assert risk_points(_signals(**over)).tolist() == [points]


def test_band_thresholds() -> None:
    assert [band_of(p) for p in range(6)] == ["low", "low", "medium", "medium", "high", "high"]
    assert bands(_signals(bank_app_stopped_30d=[1], home_cell_moved_90d=[1], number_changed_90d=[1])) == ["high"]


@pytest.mark.parametrize(("over", "field"), [
    ({"silent_days": [-1]}, "silent_days"), ({"silent_days": ["x"]}, "silent_days"),
    ({"number_changed_90d": [2]}, "number_changed_90d"),
    ({"home_cell_moved_90d": [float("nan")]}, "home_cell_moved_90d"),
])
def test_bad_values_name_the_column(over: dict, field: str) -> None:
    with pytest.raises(BandInputError, match=field):
        risk_points(_signals(**over))


def test_a_missing_signal_is_named() -> None:
    signals = _signals()
    del signals["competitor_app_started_30d"]
    with pytest.raises(BandInputError, match="competitor_app_started_30d"):
        bands(signals)


def test_bands_rank_the_synthetic_populations_churn() -> None:
    """On the demo's population, the churn rate of the bank's customers rises from band to band."""
    synthetic = pytest.importorskip("demo.synthetic")
    if not hasattr(synthetic, "generate_frames") and not hasattr(synthetic, "generate"):
        pytest.skip("no generator")
    from demo._synthetic_marketing import CHURN_SIGNALS  # noqa: PLC0415
    assert set(CHURN_SIGNALS) == set(SIGNALS)
    rng = np.random.default_rng(0)
    n = 20000
    # the generator's churn logit over the telco signals (demo/_synthetic_marketing.churn_telco_part)
    from demo._synthetic_marketing import churn_telco_part  # noqa: PLC0415
    tm = {"number_changed_90d": rng.random(n) < 0.05, "silent_days": rng.poisson(1.5, n),
          "home_cell_moved_90d": rng.random(n) < 0.06, "bank_app_stopped_30d": rng.random(n) < 0.1,
          "competitor_app_started_30d": rng.random(n) < 0.1}
    churned = rng.random(n) < 1 / (1 + np.exp(-(-2.6 + churn_telco_part(tm))))
    banded = np.array(bands(tm))
    rates = [churned[banded == b].mean() for b in ("low", "medium", "high")]
    assert rates[0] < rates[1] < rates[2]
