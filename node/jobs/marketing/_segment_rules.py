"""Segment membership and the release arithmetic of ``segment_sizes`` (pure: frames and arrays in, arrays out).

``members`` evaluates each segment's rule (the filter grammar of :mod:`protocols.wire.filters`, through
the one evaluator the PSI jobs use, ``node.jobs.psi._rows.filter_mask``) over the telco's rows;
``release`` turns exact counts into what may leave a node: two-sided geometric noise of the job's ε
(split between the per-segment sizes and the segment × product cells, each calibrated to its vector's L1
sensitivity: a person is in at most every segment, and holds at most every product), then
"suppressed (< k)" for any released figure below k. ``pad`` fills a PSI set with random dummy elements
to a public size, so the set's size says nothing about how many people are in it.

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

__all__ = ["SUPPRESSED", "Release", "SegmentJobError", "check_segments_here", "members", "pad", "release"]

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
