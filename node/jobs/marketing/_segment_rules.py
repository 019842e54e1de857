"""Segment membership and the release arithmetic of ``segment_sizes`` (pure: frames and arrays in, arrays out).

``members`` evaluates each segment's rule (the filter grammar of :mod:`protocols.wire.filters`, through
the one evaluator the PSI jobs use, ``node.jobs.psi._rows.filter_mask``) over the telco's rows;
``release`` turns exact counts into what may leave a node: two-sided geometric noise of the job's ε
(split between the per-segment sizes and the segment × product cells, each calibrated to its vector's L1
sensitivity: a person is in at most every segment, and holds at most every product), then
"suppressed (< k)" for any released figure below k. ``pad`` fills a PSI set with random dummy elements
to a public size, so the set's size says nothing about how many people are in it. ``refuse_differencing``
guards an exact (un-noised) job: k-suppression alone does not stop a reader from subtracting two
released figures, so the telco refuses segments whose sizes would tell fewer than k people apart.

What each party learns from this module: nothing; it runs inside one node on that node's own rows.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from node.governance import Governance
from node.jobs.psi._rows import filter_mask
from node.jobs.sites.demand import two_sided_geometric_noise
from protocols.wire.control import Purpose
from protocols.wire.errors import ConfigError
from protocols.wire.segments import Segment, SegmentSet, check_fields

__all__ = ["SUPPRESSED", "Release", "SegmentJobError", "check_segments_here", "members", "pad",
           "refuse_differencing", "release"]

SUPPRESSED = "suppressed (< k)"
_ANY_LEVEL = 6  # the policy's level ceiling was checked by the coordinator (R17); the node checks the rest


class SegmentJobError(ConfigError):
    """A segment_sizes job cannot run: the message names the segment or field and the fix (reported verbatim)."""

    status_hint = 422


def check_segments_here(segments: SegmentSet, governance: Governance, purpose: Purpose) -> None:
    """Refuse segments the telco's own governance does not allow (unknown, not a feature, wrong purpose).

    Raises:
        SegmentJobError: naming the first offending segment and field.
    """
    errors = check_fields(segments, governance.dataset, governance.fields, purpose, _ANY_LEVEL)
    if errors:
        raise SegmentJobError(str(errors[0]))
    scored = [s.name for s in segments.segments if s.score is not None]
    if scored:
        raise SegmentJobError(f"segment {scored[0]!r}: score: segment_sizes evaluates rules only; "
                              "give the segment a rule (score thresholds are app_promotion's)")


def members(frame: pd.DataFrame, segments: Sequence[Segment]) -> np.ndarray:
    """Membership matrix (rows × segments, bool): row r satisfies segment s's rule."""
    out = np.zeros((len(frame), len(segments)), dtype=bool)
    for j, segment in enumerate(segments):
        out[:, j] = filter_mask(frame, segment.predicates).to_numpy(dtype=bool)
    return out


def refuse_differencing(names: Sequence[str], sets: Sequence[Sequence[str]], everyone: int, k: int) -> None:
    """Refuse an exact job whose released figures, subtracted, would count fewer than ``k`` people.

    Two checks, on the member sets (distinct valid keys) before anything is released or served:

    * complement: the bank learns ``everyone`` (the padded PSI size), so a segment holding all but
      ``0 < n < k`` subscribers tells it ``n``, a figure k-suppression would have hidden;
    * pairs: two segments whose members differ in ``0 < n < k`` subscribers (e.g. ``age >= 30`` and
      ``age >= 30 and tenure != 37``) tell, by difference of their sizes and of their cells, about those
      few people — with one, whether that person holds a product.

    The check is on the segments of one job; it does not make an exact job safe against a series of
    jobs (ε-noised counts are, up to the budget).

    Raises:
        SegmentJobError: naming the segment(s), the size of the difference bound (< k) and the fix.
    """
    fix = "merge or widen these segments, or set params.epsilon (noised sizes may be subtracted safely)"
    members_of = [set(m) for m in sets]
    for name, inside in zip(names, members_of, strict=True):
        if 0 < everyone - len(inside) < k:
            raise SegmentJobError(f"params.segments: {name}: holds all but fewer than k={k} of the telco's "
                                  f"{everyone} subscribers, so its exact size would count them; {fix}")
    for i, (a, first) in enumerate(zip(names, members_of, strict=True)):
        for b, second in zip(names[i + 1:], members_of[i + 1:], strict=True):
            if 0 < len(first ^ second) < k:
                raise SegmentJobError(f"params.segments: {a}, {b}: the two segments differ in fewer than k={k} "
                                      f"subscribers, so the difference of their exact sizes would count them; {fix}")


def pad(values: Sequence[str], size: int) -> list[str]:
    """``values`` plus random dummies up to ``size`` (a dummy never equals a canonical identifier).

    Raises:
        ValueError: more values than ``size``.
    """
    if len(values) > size:
        raise ValueError(f"{len(values)} values do not fit a padded set of {size}")
    return [*values, *(f"~pad:{secrets.token_hex(16)}" for _ in range(size - len(values)))]


@dataclass(frozen=True)
class Release:
    """Released figures (int, or ``SUPPRESSED``) in the shape of the exact counts."""

    values: list[int | str]
    epsilon: float | None
    sensitivity: int


def release(exact: Sequence[int], k: int, epsilon: float | None, sensitivity: int,
            rng: np.random.Generator) -> Release:
    """Noise (when ``epsilon`` is set; L1 ``sensitivity``), clamp at 0, then suppress below ``k``."""
    counts = np.asarray(exact, dtype=np.int64)
    if epsilon is not None and counts.size:
        counts = np.maximum(counts + two_sided_geometric_noise(epsilon, counts.size, rng, sensitivity=sensitivity), 0)
    return Release([int(c) if c >= k else SUPPRESSED for c in counts.tolist()], epsilon, sensitivity)
