"""The released overlap carries ε-DP noise of the right law: a goodness-of-fit test, not a smoke test.

The receiver of cardinality PSI releases ``max(0, |X∩Y| + N)`` with N two-sided geometric,
P(N = k) = (1-α)/(1+α)·α^|k| with α = e^(-ε). Each test draws a few thousand values with a fixed
seed and runs Pearson's chi-square test against that law (adjacent tail bins merged until every
expected count is at least 5). Removing the noise, halving or doubling its scale, or making it
one-sided each moves the p-value to about 0; the law itself passes (p well above the 0.001 line).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable

import pytest
from scipy.stats import chisquare

from psi import two_sided_geometric
from psi.engine import run_local

ALPHA_LINE = 1e-3
MIN_EXPECTED = 5.0


def geometric_pmf(epsilon: float) -> Callable[[int], float]:
    """P(N = k) of the two-sided geometric law with parameter ε."""
    alpha = math.exp(-epsilon)
    return lambda k: (1 - alpha) / (1 + alpha) * alpha ** abs(k)


def released_pmf(epsilon: float, true: int) -> Callable[[int], float]:
    """P(released = r) for released = max(0, true + N): the mass below zero is clamped onto 0."""
    alpha, noise = math.exp(-epsilon), geometric_pmf(epsilon)
    return lambda r: alpha**true / (1 + alpha) if r == 0 else (noise(r - true) if r > 0 else 0.0)


def chi_square_p(draws: list[int], pmf: Callable[[int], float], low: int, high: int) -> float:
    """Pearson's test of ``draws`` against ``pmf``; values outside ``[low, high]`` go to the two tail bins.

    Bins are the integers ``low..high``; the tails (``< low`` and ``> high``) get the rest of the mass,
    and then the rarest bins at either end are merged inwards until each expects ``MIN_EXPECTED``.
    """
    n, seen = len(draws), Counter(draws)
    inner = list(range(low, high + 1))
    probs = [pmf(k) for k in inner]
    below = 1.0 - sum(probs) - sum(pmf(k) for k in range(high + 1, high + 2000))
    above = 1.0 - sum(probs) - below
    observed = [sum(c for v, c in seen.items() if v < low), *(seen[k] for k in inner),
                sum(c for v, c in seen.items() if v > high)]
    expected = [n * below, *(n * p for p in probs), n * above]
    observed, expected = _merge_sparse(observed, expected)
    return float(chisquare(observed, expected).pvalue)


def _merge_sparse(observed: list[float], expected: list[float]) -> tuple[list[float], list[float]]:
    obs, exp = list(observed), list(expected)
    for end in (0, -1):
        while len(exp) > 2 and exp[end] < MIN_EXPECTED:
            rare_exp, rare_obs = exp.pop(end), obs.pop(end)
            exp[end] += rare_exp  # after the pop, ``end`` is the neighbour
            obs[end] += rare_obs
    if exp[0] < MIN_EXPECTED or exp[-1] < MIN_EXPECTED:
        raise AssertionError("too few draws for a chi-square test")
    total = sum(obs) / sum(exp)  # numerically tiny correction so both sums agree exactly
    return obs, [e * total for e in exp]


@pytest.mark.parametrize("epsilon", [0.25, 0.5, 1.0])
def test_two_sided_geometric_follows_its_law(epsilon: float) -> None:
    rng = random.Random(20250)

    draws = [two_sided_geometric(epsilon, rng) for _ in range(6000)]

    p = chi_square_p(draws, geometric_pmf(epsilon), -25, 25)
    print(f"two_sided_geometric(ε={epsilon}): chi-square p = {p:.3f} over {len(draws)} draws")
    assert p > ALPHA_LINE


def test_the_law_is_not_satisfied_by_a_wrong_scale() -> None:
    # The same test rejects draws made at twice or half the scale: it has the power the others rely on.
    rng = random.Random(20251)
    for wrong in (0.25, 1.0):
        draws = [two_sided_geometric(wrong, rng) for _ in range(6000)]
        assert chi_square_p(draws, geometric_pmf(0.5), -25, 25) < 1e-6


def test_the_released_overlap_is_the_true_count_plus_geometric_noise() -> None:
    values = [f"138{i:08d}" for i in range(6)]
    epsilon, true = 0.5, 3
    rng = random.Random(20252)

    results = [run_local(values, values[:true], "cardinality", epsilon=epsilon, rng=rng).receiver
               for _ in range(3000)]

    assert {r.intersection_size for r in results} == {true}
    released = [r.released_size for r in results]
    p = chi_square_p(released, released_pmf(epsilon, true), 0, 25)
    print(f"released overlap (true {true}, ε={epsilon}): chi-square p = {p:.3f} over {len(released)} runs,"
          f" {sum(r != true for r in released)} differ from the true count")
    assert p > ALPHA_LINE


@pytest.mark.parametrize("epsilon", [0.0, -1.0, float("nan")])
def test_a_non_positive_epsilon_is_refused(epsilon: float) -> None:
    with pytest.raises(ValueError, match="epsilon must be positive"):
        two_sided_geometric(epsilon, random.Random(0))
