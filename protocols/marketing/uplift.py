"""Uplift of a campaign from per-arm counts: k-suppression, ε-noise, and a confidence interval.

A campaign splits its audience into a **treatment** arm (messaged) and a **holdout** arm (not
messaged). Its evaluation counts, per arm, the arm's size ``n`` and how many of the arm converted
``x`` (opened the bank's app or a product); the uplift is the difference of proportions
``x_t/n_t − x_h/n_h``.

Release. A cell of fewer than k people is never released: per arm, the size, the converters and the
non-converters (``n − x``) must each be at least k, else the arm is "suppressed (< k)" and no uplift is
released. With ``epsilon`` set, every released count carries discrete-Laplace (two-sided geometric)
noise: one person sits in one arm and changes that arm's size by 1 and its conversions by at most 1,
so the vector ``(n_t, x_t, n_h, x_h)`` has L1 sensitivity :data:`SENSITIVITY` = 2 and noise of scale
``Δ/ε`` on each of the four counts makes the whole release ε-DP (the caller draws the noise, with
``node.jobs.sites.demand.two_sided_geometric_noise(ε, 4, rng, sensitivity=2)``). Noised counts are
clamped to ``0 ≤ x ≤ n``; k is checked on the noised values (as ``audience_overlap`` does).

Confidence interval (``confidence``, default 95 %, ``z`` the normal quantile):

* exact counts: **Newcombe's hybrid score interval** (Newcombe 1998, method 10) from the two Wilson
  score intervals ``[l_i, u_i]``: ``d − √((p_t−l_t)² + (u_h−p_h)²)`` to ``d + √((u_t−p_t)² + (p_h−l_h)²)``;
  it stays inside [−1, 1] and behaves well for small or extreme proportions;
* noised counts: a **Wald interval whose variance adds the noise** (delta method): for an arm with
  released ``ñ``, ``x̃`` and ``p = x̃/ñ``, ``Var(p) ≈ p(1−p)/ñ + σ²(1 + p²)/ñ²`` where
  ``σ² = 2α/(1−α)²``, ``α = exp(−ε/Δ)`` is the variance of each count's noise; the interval is
  ``d ± z·√(Var_t + Var_h)``, clipped to [−1, 1]. It widens with smaller ε and is post-processing of the
  noised release (no further privacy cost).

What each party learns: nothing here — it is arithmetic over counts the caller already holds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

__all__ = ["ARMS", "SENSITIVITY", "SUPPRESSED", "ArmCounts", "UpliftInputError", "UpliftRelease", "evaluate_uplift",
           "newcombe_interval", "noise_variance", "noisy_wald_interval", "release_arms", "wilson_interval",
           "z_of"]

ARMS = ("treatment", "holdout")
"""The two arms of a campaign, in the order their counts are noised."""
SENSITIVITY = 2
"""L1 sensitivity of ``(n_t, x_t, n_h, x_h)`` to one person."""
SUPPRESSED = "suppressed (< k)"


class UpliftInputError(ValueError):
    """Counts or parameters the uplift cannot use; the message names the field and the fix."""

    def __init__(self, field: str, problem: str, fix: str) -> None:
        super().__init__(f"{field}: {problem}; {fix}")
        self.field = field


@dataclass(frozen=True)
class ArmCounts:
    """One arm: its size and its converters.

    Raises:
        UpliftInputError: Negative counts, or more converters than people.
    """

    size: int
    conversions: int

    def __post_init__(self) -> None:
        if self.size < 0 or self.conversions < 0 or self.conversions > self.size:
            raise UpliftInputError("arm", f"size {self.size} with {self.conversions} conversions",
                                   "give 0 ≤ conversions ≤ size")

    @property
    def rate(self) -> float:
        """Conversion rate (0 for an empty arm)."""
        return self.conversions / self.size if self.size else 0.0


def z_of(confidence: float) -> float:
    """The two-sided normal quantile of ``confidence`` (0.95 → 1.95996…)."""
    if not 0.5 <= confidence < 1.0:
        raise UpliftInputError("confidence", f"is {confidence!r}", "give a level in [0.5, 1), e.g. 0.95")
    return NormalDist().inv_cdf((1.0 + confidence) / 2.0)


def wilson_interval(arm: ArmCounts, z: float) -> tuple[float, float]:
    """Wilson's score interval for one proportion."""
    n, p = arm.size, arm.rate
    if n == 0:
        return 0.0, 1.0
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(treatment: ArmCounts, holdout: ArmCounts, z: float) -> tuple[float, float]:
    """Newcombe's hybrid score interval (method 10) for ``p_t − p_h``."""
    p1, p2 = treatment.rate, holdout.rate
    l1, u1 = wilson_interval(treatment, z)
    l2, u2 = wilson_interval(holdout, z)
    d = p1 - p2
    return d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def noise_variance(epsilon: float, sensitivity: float = SENSITIVITY) -> float:
    """Variance ``2α/(1−α)²`` of discrete-Laplace noise with ``α = exp(−ε/Δ)``."""
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise UpliftInputError("params.epsilon", f"is {epsilon!r}", "give a positive ε, e.g. 1.0")
    alpha = math.exp(-epsilon / sensitivity)
    return 2 * alpha / (1 - alpha) ** 2


def noisy_wald_interval(treatment: ArmCounts, holdout: ArmCounts, z: float, variance: float
                        ) -> tuple[float, float]:
    """Wald interval of ``p_t − p_h`` whose variance adds count noise of ``variance`` (delta method)."""
    def var(arm: ArmCounts) -> float:
        n, p = arm.size, arm.rate
        return p * (1 - p) / n + variance * (1 + p * p) / (n * n)

    d = treatment.rate - holdout.rate
    half = z * math.sqrt(var(treatment) + var(holdout))
    return max(-1.0, d - half), min(1.0, d + half)


def release_arms(exact: Mapping[str, ArmCounts], *, k: int, noise: Sequence[int] | None = None
                 ) -> dict[str, ArmCounts | None]:
    """The releasable counts per arm: noised when ``noise`` is given, ``None`` for an arm below k.

    Args:
        exact: Exact counts of both arms (:data:`ARMS`).
        k: Minimum people behind each released cell (size, converters, non-converters).
        noise: Four draws ``(n_t, x_t, n_h, x_h)`` of discrete-Laplace noise of sensitivity 2, or None.

    Raises:
        UpliftInputError: An arm is missing, k < 1, or the noise is not four draws.
    """
    if set(exact) != set(ARMS):
        raise UpliftInputError("arms", f"are {sorted(exact)}", f"give counts for exactly {list(ARMS)}")
    if k < 1:
        raise UpliftInputError("params.min_cell", f"is {k}", "give k ≥ 1")
    if noise is not None and len(noise) != 2 * len(ARMS):
        raise UpliftInputError("noise", f"has {len(noise)} draws", "draw 4: size and conversions per arm")
    out: dict[str, ArmCounts | None] = {}
    for index, arm in enumerate(ARMS):
        n, x = exact[arm].size, exact[arm].conversions
        if noise is not None:
            n = max(0, n + int(noise[2 * index]))
            x = min(n, max(0, x + int(noise[2 * index + 1])))
        out[arm] = ArmCounts(n, x) if min(n, x, n - x) >= k else None
    return out


@dataclass(frozen=True)
class UpliftRelease:
    """What an evaluation releases.

    Attributes:
        arms: Per arm, the released counts, or None when suppressed.
        uplift: ``rate_t − rate_h``, or None when an arm is suppressed.
        interval: The confidence interval of the uplift, or None.
        method: ``newcombe`` (exact counts) or ``wald+noise`` (noised counts).
        k: The suppression threshold applied.
        epsilon: The ε of the noise, or None.
        confidence: The interval's level.
    """

    arms: dict[str, ArmCounts | None]
    uplift: float | None
    interval: tuple[float, float] | None
    method: str
    k: int
    epsilon: float | None
    confidence: float

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON for job outputs (rates and bounds rounded to 6 decimals)."""
        def arm(counts: ArmCounts | None) -> dict[str, Any]:
            if counts is None:
                return {"size": SUPPRESSED, "conversions": SUPPRESSED, "rate": None}
            return {"size": counts.size, "conversions": counts.conversions, "rate": round(counts.rate, 6)}

        return {
            "arms": {name: arm(c) for name, c in self.arms.items()},
            "uplift": None if self.uplift is None else round(self.uplift, 6),
            "ci_low": None if self.interval is None else round(self.interval[0], 6),
            "ci_high": None if self.interval is None else round(self.interval[1], 6),
            "ci_method": self.method, "confidence": self.confidence, "k": self.k, "epsilon": self.epsilon,
        }


def evaluate_uplift(exact: Mapping[str, ArmCounts], *, k: int, epsilon: float | None = None,
                    noise: Sequence[int] | None = None, confidence: float = 0.95) -> UpliftRelease:
    """Release the arms (k, noise) and the uplift with its confidence interval (module docstring).

    Raises:
        UpliftInputError: ``epsilon`` without ``noise`` or the reverse, or bad counts or parameters.
    """
    if (epsilon is None) != (noise is None):
        raise UpliftInputError("params.epsilon", "and the noise draws must come together",
                               "draw the noise with the job's ε, or set neither")
    z = z_of(confidence)
    arms = release_arms(exact, k=k, noise=noise)
    method = "newcombe" if epsilon is None else "wald+noise"
    treatment, holdout = arms[ARMS[0]], arms[ARMS[1]]
    if treatment is None or holdout is None:
        return UpliftRelease(arms, None, None, method, k, epsilon, confidence)
    if epsilon is None:
        interval = newcombe_interval(treatment, holdout, z)
    else:
        interval = noisy_wald_interval(treatment, holdout, z, noise_variance(epsilon))
    return UpliftRelease(arms, treatment.rate - holdout.rate, interval, method, k, epsilon, confidence)
