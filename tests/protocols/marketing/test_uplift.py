"""The uplift statistics against published and closed-form values; k-suppression and the noise's accounting.

Newcombe (1998, Statistics in Medicine 17:873-890, Table II, method 10) gives the hybrid score
interval for its examples (a), (b), (d), (e), (g). The Wilson bounds are checked against their
defining equation solved by bisection, independently of the closed form; the noised interval against
its formula written out, and its coverage of the true difference by simulation with the noise drawn.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from node.jobs.sites.demand import two_sided_geometric_noise
from protocols.marketing.uplift import (
    SUPPRESSED,
    ArmCounts,
    UpliftInputError,
    evaluate_uplift,
    newcombe_interval,
    noise_variance,
    noisy_wald_interval,
    release_arms,
    wilson_interval,
    z_of,
)

Z = z_of(0.95)


@pytest.mark.parametrize(("t", "h", "expected"), [
    ((56, 70), (48, 80), (0.0524, 0.3339)),
    ((9, 10), (3, 10), (0.1705, 0.8090)),
    ((5, 56), (0, 29), (-0.0381, 0.1926)),
    ((0, 10), (0, 20), (-0.1611, 0.2775)),
    ((10, 10), (0, 20), (0.6791, 1.0)),
])
def test_newcombe_hybrid_score_matches_the_published_table(t, h, expected) -> None:
    low, high = newcombe_interval(ArmCounts(t[1], t[0]), ArmCounts(h[1], h[0]), Z)
    assert (round(low, 4), round(high, 4)) == expected


def test_z_is_the_normal_quantile() -> None:
    assert z_of(0.95) == pytest.approx(1.959964, abs=1e-6) and z_of(0.9) == pytest.approx(1.644854, abs=1e-6)
    with pytest.raises(UpliftInputError, match="confidence"):
        z_of(1.0)


@pytest.mark.parametrize(("x", "n"), [(81, 263), (0, 50), (50, 50), (3, 1000)])
def test_wilson_bounds_solve_the_score_equation(x: int, n: int) -> None:
    p_hat = x / n

    def root(lo: float, hi: float) -> float:  # |p̂ − p| = z·√(p(1−p)/n), bisection on a monotone side
        f = lambda p: (p_hat - p) ** 2 - Z * Z * p * (1 - p) / n  # noqa: E731
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if (f(mid) > 0) == (f(lo) > 0) else (lo, mid)
        return (lo + hi) / 2

    low, high = wilson_interval(ArmCounts(n, x), Z)
    assert low == pytest.approx(0.0 if x == 0 else root(0.0, p_hat), abs=1e-9)
    assert high == pytest.approx(1.0 if x == n else root(p_hat, 1.0), abs=1e-9)


def test_noise_variance_is_the_discrete_laplace_variance() -> None:
    alpha = math.exp(-1.0 / 2)
    assert noise_variance(1.0) == pytest.approx(2 * alpha / (1 - alpha) ** 2)
    draws = two_sided_geometric_noise(1.0, 200_000, np.random.default_rng(1), sensitivity=2)
    assert draws.var() == pytest.approx(noise_variance(1.0), rel=0.03)


def test_noisy_wald_interval_written_out() -> None:
    t, h, var = ArmCounts(900, 225), ArmCounts(450, 68), noise_variance(0.5)
    p1, p2 = 0.25, 68 / 450
    half = Z * math.sqrt(p1 * (1 - p1) / 900 + var * (1 + p1 ** 2) / 900 ** 2
                         + p2 * (1 - p2) / 450 + var * (1 + p2 ** 2) / 450 ** 2)
    assert noisy_wald_interval(t, h, Z, var) == pytest.approx((p1 - p2 - half, p1 - p2 + half))


def test_noised_intervals_cover_the_true_difference() -> None:
    """Binomial arms plus the real noise, 2000 campaigns: the 95 % interval covers the truth 93-97 % of the time."""
    rng = np.random.default_rng(4)
    n_t, n_h, p_t, p_h, eps = 400, 400, 0.22, 0.12, 0.5
    covered = 0
    for _ in range(2000):
        exact = {"treatment": ArmCounts(n_t, int(rng.binomial(n_t, p_t))),
                 "holdout": ArmCounts(n_h, int(rng.binomial(n_h, p_h)))}
        noise = two_sided_geometric_noise(eps, 4, rng, sensitivity=2).tolist()
        release = evaluate_uplift(exact, k=1, epsilon=eps, noise=noise)
        assert release.interval is not None
        covered += release.interval[0] <= p_t - p_h <= release.interval[1]
    assert 0.93 <= covered / 2000 <= 0.97


def test_k_suppresses_an_arm_by_size_converters_or_non_converters() -> None:
    exact = {"treatment": ArmCounts(500, 120), "holdout": ArmCounts(100, 15)}
    assert release_arms(exact, k=15)["holdout"] == ArmCounts(100, 15)
    assert release_arms(exact, k=16)["holdout"] is None  # 15 converters
    assert release_arms({"treatment": ArmCounts(500, 490), "holdout": ArmCounts(100, 50)}, k=11)["treatment"] is None
    out = evaluate_uplift(exact, k=16).as_dict()
    assert out["arms"]["holdout"] == {"size": SUPPRESSED, "conversions": SUPPRESSED, "rate": None}
    assert out["uplift"] is None and out["ci_low"] is None


def test_noise_is_added_per_count_and_clamped() -> None:
    exact = {"treatment": ArmCounts(500, 120), "holdout": ArmCounts(100, 15)}
    arms = release_arms(exact, k=1, noise=[3, -2, -1, 80])
    assert arms["treatment"] == ArmCounts(503, 118) and arms["holdout"] == ArmCounts(99, 95)
    assert release_arms(exact, k=1, noise=[0, 0, 0, 200])["holdout"] is None  # clamped to 100 of 100: no non-converter
    assert release_arms(exact, k=1, noise=[-600, 0, 0, -50])["treatment"] is None  # size clamped to 0


def test_bad_input_names_the_field() -> None:
    exact = {"treatment": ArmCounts(10, 5), "holdout": ArmCounts(10, 5)}
    with pytest.raises(UpliftInputError, match="params.epsilon"):
        evaluate_uplift(exact, k=1, epsilon=1.0)
    with pytest.raises(UpliftInputError, match="arms"):
        evaluate_uplift({"treatment": ArmCounts(10, 5)}, k=1)
    with pytest.raises(UpliftInputError, match="arm"):
        ArmCounts(5, 6)
    with pytest.raises(UpliftInputError, match="min_cell"):
        release_arms(exact, k=0)
