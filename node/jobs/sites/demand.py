"""Telco-side demand aggregation for branch site selection: k-suppressed, ε-DP counts per H3 cell.

**Measures.** Per subscriber the operator holds a home cell and a work cell. From them it can release
residents (people whose home is in the cell), workers (people whose work place is), night-time population
and day-time population. With only home and work locations, night-time population *is* the residents
count and day-time population *is* the workers count: each distinct source column is aggregated, noised
and charged to the budget **once**, and an alias is the same noised vector reported under a second name
(post-processing, no extra ε). Optionally every count is weighted by a per-subscriber propensity score
(clipped to [0, 1], so one person still adds at most 1); a weighted sum is floored before noising
(``⌊a⌋ − ⌊b⌋ ≤ 1`` when ``a − b ≤ 1``, so the sensitivity stays 1). Weights are rounded to integer
units of 2^-32 of a person (:data:`WEIGHT_SCALE`, still at most one person each) and summed as integers,
so a sum is exact whatever the order of the rows.

**Partitions.** The aggregation is split in two: :func:`partial_demand` turns any batch of rows into
exact, additive sums (people and weight units per H3 cell, refusals per reason, rows), and
:func:`demand_from_partials` applies the merge rule and the noise to their sum, taking cells in cell-id
order. The in-process engine (:func:`aggregate_demand`) runs the first over the whole table; the Spark
engine (``node.spark.aggregate_demand_spark``) runs it per partition and sums with a ``groupBy``; the
release is the same, byte for byte, for the same noise source.

**k-suppression (merge rule).** For each released vector separately, a resolution-8 cell with at least k
people (people, not weight) is released as is. The people of every cell below k are pooled into their
resolution-6 parent, which is released — as "the rest of this parent", never a total that could be
differenced against its released children — if the pooled people reach k, and suppressed otherwise. So
no released cell ever holds fewer than k people. The threshold is applied to exact counts, as the
coordinator's k-anonymity policy (``k_min_cell``) requires; the set of released cells therefore depends
on the data, and the ε guarantee below holds for the counts *given* that set (a cell at exactly k could
flip between released and merged when one person leaves; noising the threshold would remove that, at
the price of cells that may hold fewer than k people).

**Noise and sensitivity.** Neighbouring datasets differ by one subscriber (added or removed). A person
has one home cell and one work cell, and after the merge rule their home lands in at most one released
home cell, and their work place in at most one released work cell: each released vector has L1
sensitivity 1. The job's ε is split equally across the distinct vectors (home, work); each gets
two-sided geometric (discrete Laplace) noise ``P(z) ∝ exp(−ε_v·|z|)``, which makes that vector
ε_v-DP; by sequential composition the release is ε-DP with ``ε = Σ ε_v``. Released values are clamped at
0 (post-processing). Randomness comes from an injected ``numpy.random.Generator``: seed it in tests, use
``np.random.default_rng()`` (OS entropy) in production.

**What each party learns.** The bank learns, per released cell, noised aggregates of at least k people,
the resolution, k and the ε spent — never a person's location — and, from its own optimisation, the ranked
sites. The telco learns the bank's branch locations and proposed sites only if the bank's terms share
them (``protocols.wire.sites.BranchShare``); otherwise the optimisation runs at the bank over the released
aggregates and the telco learns nothing beyond the job's parameters. Refusal counts and suppression
statistics (:class:`DemandDiagnostics`) are exact and stay with the telco.

**Differencing across jobs.** Two overlapping jobs (say, one with and one without a subscriber segment,
or with shifted areas) could be differenced to isolate a few people. Each job's noise is fresh, and the
coordinator debits every job's ε from the dataset pair's budget: by sequential composition any
combination of jobs over the pair is at most the budget's ε-DP, so a differencing attack gains no more
than the budget allows, however the jobs overlap.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import h3
import numpy as np
import numpy.typing as npt
import pandas as pd

from node.jobs.sites.grid import (
    COARSE_RESOLUTION,
    FINE_RESOLUTION,
    KmGrid,
    Refusal,
    SiteInputError,
    assign_km_cells,
    parent_cells,
)
from protocols.wire.sites import ReleasedCellWire, SiteDemandRelease

__all__ = [
    "PARTIAL_COLUMNS",
    "WEIGHT_SCALE",
    "DemandDiagnostics",
    "DemandRelease",
    "DemandResult",
    "DemandSpec",
    "Measure",
    "ReleasedCell",
    "aggregate_demand",
    "check_demand_columns",
    "demand_from_partials",
    "expand_demand",
    "merge_partials",
    "partial_demand",
    "release_from_wire",
    "release_to_wire",
    "two_sided_geometric_noise",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


class Measure(StrEnum):
    """A released per-cell measure."""

    RESIDENTS = "residents"
    WORKERS = "workers"
    NIGHT_POPULATION = "night_population"
    DAY_POPULATION = "day_population"


HOME, WORK = "home", "work"
SOURCE: dict[Measure, str] = {
    Measure.RESIDENTS: HOME,
    Measure.NIGHT_POPULATION: HOME,
    Measure.WORKERS: WORK,
    Measure.DAY_POPULATION: WORK,
}
ALL_MEASURES: tuple[Measure, ...] = tuple(Measure)

ROWS, CELL, REFUSED = "rows", "cell", "refused"
"""Kinds of a partial's lines (:func:`partial_demand`)."""
PARTIAL_COLUMNS = ("source", "kind", "key", "people", "weight")
"""Columns of a partial: source vector, line kind, H3 cell or refusal reason, exact people, Σ weight units."""
WEIGHT_SCALE = 1 << 32
"""Weights are summed as integers in units of 2^-32 of a person, so sums are exact in any order."""
_WEIGHT_SLACK = WEIGHT_SCALE >> 20
"""A weighted value is ⌊(Σ units + 2^-20 person) / WEIGHT_SCALE⌋: the slack absorbs the rounding of weights like 1/3."""
_CHUNK = 1 << 20


def two_sided_geometric_noise(epsilon: float, size: int, rng: np.random.Generator,
                              sensitivity: float = 1.0) -> IntArray:
    """Discrete Laplace noise ``P(z) = (1−α)/(1+α)·α^|z|`` with ``α = exp(−ε/Δ)``, vectorised.

    The difference of two geometric variables — the distribution of
    :func:`psi.cardinality.two_sided_geometric`, drawn as a numpy array. Added to an integer vector of L1
    sensitivity Δ it gives ε-differential privacy.

    Args:
        epsilon: Privacy parameter, > 0 and finite.
        size: Number of draws.
        rng: The randomness (seed it only in tests).
        sensitivity: L1 sensitivity Δ of the vector, > 0.

    Returns:
        ``size`` integer draws.
    """
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise SiteInputError("epsilon", f"must be a finite positive number, got {epsilon!r}", "pass e.g. 1.0")
    if not (math.isfinite(sensitivity) and sensitivity > 0):
        raise SiteInputError("sensitivity", f"must be a finite positive number, got {sensitivity!r}", "pass 1")
    p = -math.expm1(-epsilon / sensitivity)  # 1 − α, accurate for small ε
    return (rng.geometric(p, size) - rng.geometric(p, size)).astype(np.int64)


@dataclass(frozen=True)
class DemandSpec:
    """What the telco releases.

    Attributes:
        epsilon: The job's total ε (debited from the dataset pair's budget), split across source vectors.
        k: Minimum people in a released cell (the coordinator's ``k_min_cell``).
        measures: Measures to release; aliases of one source share its vector.
        home_column: Column with the home km cell ("Gxxxxyyyy").
        work_column: Column with the work km cell.
        weight_column: Optional per-subscriber propensity score in [0, 1] weighting every count.
        fine_resolution: H3 resolution of released cells.
        coarse_resolution: H3 resolution sparse cells merge into.
    """

    epsilon: float
    k: int = 50
    measures: tuple[Measure, ...] = ALL_MEASURES
    home_column: str = "home_cell"
    work_column: str = "work_cell"
    weight_column: str | None = None
    fine_resolution: int = FINE_RESOLUTION
    coarse_resolution: int = COARSE_RESOLUTION

    def __post_init__(self) -> None:
        if not (isinstance(self.epsilon, int | float) and math.isfinite(self.epsilon) and self.epsilon > 0):
            raise SiteInputError("epsilon", f"must be a finite positive number, got {self.epsilon!r}",
                                 "pass the job's ε, e.g. 1.0")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise SiteInputError("k", f"must be a positive integer, got {self.k!r}", "pass the policy's k_min_cell")
        if not self.measures or len(set(self.measures)) != len(self.measures):
            raise SiteInputError("measures", "must be a non-empty list without repeats",
                                 f"choose from {[m.value for m in Measure]}")
        if not 0 <= self.coarse_resolution < self.fine_resolution <= 15:
            raise SiteInputError("coarse_resolution", "must be coarser (smaller) than fine_resolution, both in 0..15",
                                 "use the defaults 6 and 8")

    @property
    def sources(self) -> tuple[str, ...]:
        """The distinct source vectors released (home and/or work), in a fixed order."""
        wanted = {SOURCE[m] for m in self.measures}
        return tuple(s for s in (HOME, WORK) if s in wanted)

    @property
    def epsilon_per_source(self) -> float:
        """ε charged to each released vector (equal split)."""
        return self.epsilon / len(self.sources)

    def column_of(self, source: str) -> str:
        """The input column a source vector is read from."""
        return self.home_column if source == HOME else self.work_column


@dataclass(frozen=True)
class ReleasedCell:
    """One released aggregate: ``value`` is the noised (weighted) count of ≥ k people.

    Attributes:
        measure: The measure's name.
        cell: H3 cell id (hex string).
        resolution: The cell's H3 resolution (fine, or coarse for merged sparse cells).
        value: Noised count, clamped at 0.
    """

    measure: Measure
    cell: str
    resolution: int
    value: int


@dataclass(frozen=True)
class DemandRelease:
    """What leaves the telco: released cells and the privacy parameters.

    Attributes:
        cells: Released cells, by measure, then resolution (fine first), then cell id.
        k: Minimum people behind every released cell.
        epsilon: Total ε spent by this release.
        epsilon_per_measure: ε behind each measure's values (aliases share one vector and one charge).
        fine_resolution: Resolution of unmerged cells.
        coarse_resolution: Resolution of merged cells.
        weighted: Whether values are propensity-weighted counts.
    """

    cells: tuple[ReleasedCell, ...]
    k: int
    epsilon: float
    epsilon_per_measure: dict[str, float]
    fine_resolution: int
    coarse_resolution: int
    weighted: bool

    def to_frame(self) -> pd.DataFrame:
        """One row per cell, one column per measure (missing where a measure suppressed the cell)."""
        long = pd.DataFrame([(c.measure.value, c.cell, c.resolution, c.value) for c in self.cells],
                            columns=["measure", "cell", "resolution", "value"])
        if long.empty:
            return pd.DataFrame(columns=["cell", "resolution"])
        wide = long.pivot_table(index=["cell", "resolution"], columns="measure", values="value", aggfunc="first")
        return wide.reset_index().rename_axis(columns=None)

    def values(self, measure: Measure) -> dict[str, int]:
        """Released cell → value of one measure."""
        return {c.cell: c.value for c in self.cells if c.measure == measure}


@dataclass(frozen=True)
class DemandDiagnostics:
    """Exact job statistics; they stay with the telco (not DP, never released).

    Attributes:
        rows: Input rows.
        refused: Per source vector, refused rows by reason.
        fine_cells_released: Per source, cells released at the fine resolution.
        coarse_cells_released: Per source, merged parent cells released.
        cells_suppressed: Per source, fine cells whose people ended up in a suppressed parent.
        people_suppressed: Per source, people in suppressed cells.
    """

    rows: int
    refused: dict[str, dict[str, int]]
    fine_cells_released: dict[str, int] = field(default_factory=dict)
    coarse_cells_released: dict[str, int] = field(default_factory=dict)
    cells_suppressed: dict[str, int] = field(default_factory=dict)
    people_suppressed: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class DemandResult:
    """The release (for the bank) and the diagnostics (for the telco)."""

    release: DemandRelease
    diagnostics: DemandDiagnostics


@dataclass(frozen=True)
class _Vector:
    """Exact per-cell people and values of one source after the merge rule, before noise."""

    cells: tuple[str, ...]
    resolutions: IntArray
    people: IntArray
    values: IntArray
    suppressed_cells: int
    suppressed_people: int


def _weights(frame: pd.DataFrame, spec: DemandSpec) -> FloatArray | None:
    """Propensity weights clipped to [0, 1]; missing or non-finite weights count 0."""
    if spec.weight_column is None:
        return None
    raw = pd.to_numeric(frame[spec.weight_column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    clipped: FloatArray = np.clip(np.nan_to_num(raw, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    return clipped


def _weight_units(frame: pd.DataFrame, spec: DemandSpec) -> IntArray | None:
    """Clipped weights in integer units of ``1/WEIGHT_SCALE`` of a person (each at most one person)."""
    weights = _weights(frame, spec)
    return None if weights is None else np.rint(weights * WEIGHT_SCALE).astype(np.int64)


def _exact_sums(codes: npt.NDArray[np.signedinteger], units: IntArray, n: int) -> IntArray:
    """Σ units per code 0..n-1 (code -1 skipped), exactly: per 2^20-row chunk every float sum is an integer < 2^53."""
    total = np.zeros(n, dtype=np.int64)
    for start in range(0, codes.size, _CHUNK):
        chunk, weight = codes[start:start + _CHUNK], units[start:start + _CHUNK]
        ok = chunk >= 0
        total += np.bincount(chunk[ok], weights=weight[ok], minlength=n).astype(np.int64)
    return total


def _merge(cells: tuple[str, ...], people: IntArray, values: IntArray, spec: DemandSpec) -> _Vector:
    """Apply the merge rule: keep fine cells ≥ k, pool the rest into parents, keep parents ≥ k."""
    keep = people >= spec.k
    sparse = np.flatnonzero(~keep & (people > 0))
    parents = parent_cells([cells[i] for i in sparse.tolist()], spec.coarse_resolution)
    p_codes, p_cells = pd.factorize(pd.Series(parents, dtype=object))
    p_people = np.bincount(p_codes, weights=people[sparse], minlength=len(p_cells)).astype(np.int64)
    p_values = np.bincount(p_codes, weights=values[sparse], minlength=len(p_cells)).astype(np.int64)
    p_keep = p_people >= spec.k
    fine_idx = np.flatnonzero(keep)
    lost = ~p_keep[p_codes]
    return _Vector(
        cells=tuple(cells[i] for i in fine_idx.tolist()) + tuple(str(c) for c in p_cells[p_keep]),
        resolutions=np.concatenate([np.full(fine_idx.size, spec.fine_resolution),
                                    np.full(int(p_keep.sum()), spec.coarse_resolution)]).astype(np.int64),
        people=np.concatenate([people[fine_idx], p_people[p_keep]]),
        values=np.concatenate([values[fine_idx], p_values[p_keep]]),
        suppressed_cells=int(lost.sum()),
        suppressed_people=int(people[sparse][lost].sum()),
    )


def check_demand_columns(columns: Sequence[str], spec: DemandSpec) -> None:
    """Raise :class:`SiteInputError` naming the first column ``spec`` needs that ``columns`` lack."""
    needed = [spec.column_of(s) for s in spec.sources] + ([spec.weight_column] if spec.weight_column else [])
    missing = [c for c in needed if c not in columns]
    if missing:
        raise SiteInputError(missing[0], f"column missing from the subscriber table (has {list(columns)[:12]})",
                             "name the right column in DemandSpec or add it to the table")


def _partial_frame(source: list[str], kind: list[str], key: list[str], people: Sequence[int] | IntArray,
                   weight: Sequence[int] | IntArray) -> pd.DataFrame:
    return pd.DataFrame({"source": pd.Series(source, dtype=object), "kind": pd.Series(kind, dtype=object),
                         "key": pd.Series(key, dtype=object), "people": np.asarray(people, dtype=np.int64),
                         "weight": np.asarray(weight, dtype=np.int64)})


def partial_demand(subscribers: pd.DataFrame, spec: DemandSpec, grid: KmGrid | None = None) -> pd.DataFrame:
    """Exact sums of one batch of subscribers: what a partition contributes, before any merge or noise.

    Pure and additive: the partials of any split of the rows, summed per ``(source, kind, key)``
    (:func:`merge_partials`, or a ``groupBy().sum()`` on Spark), equal the partial of the whole table,
    so :func:`demand_from_partials` releases the same bytes whichever engine and partitioning ran.

    Args:
        subscribers: Rows with the columns ``spec`` names (any subset of the subscriber table).
        spec: Which sources and weight column to read.
        grid: The km grid's projection and area (default :class:`KmGrid`).

    Returns:
        Columns :data:`PARTIAL_COLUMNS`: one ``rows`` line (``people`` = input rows), per source one
        ``cell`` line per fine H3 cell with people (``people``, and ``weight`` — Σ weight in units of
        ``1/WEIGHT_SCALE``, 0 when unweighted) and one ``refused`` line per refusal reason that occurred.
        Exact counts: they stay with the telco (the executors of its own cluster).

    Raises:
        SiteInputError: A named column is missing (bad rows are refused and counted, never raised).
    """
    check_demand_columns(list(subscribers.columns), spec)
    units = _weight_units(subscribers, spec)
    parts = [_partial_frame([""], [ROWS], [""], [len(subscribers)], [0])]
    for source in spec.sources:
        assignment = assign_km_cells(subscribers[spec.column_of(source)], grid, spec.fine_resolution)
        n = len(assignment.cells)
        weight = np.zeros(n, np.int64) if units is None else _exact_sums(assignment.codes, units, n)
        has = np.flatnonzero(assignment.counts > 0)
        parts.append(_partial_frame([source] * has.size, [CELL] * has.size,
                                    [assignment.cells[i] for i in has.tolist()], assignment.counts[has], weight[has]))
        reasons = list(assignment.refused.items())
        parts.append(_partial_frame([source] * len(reasons), [REFUSED] * len(reasons), [r for r, _ in reasons],
                                    [c for _, c in reasons], [0] * len(reasons)))
    return pd.concat(parts, ignore_index=True)


def merge_partials(partials: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Sum partials per ``(source, kind, key)``, sorted by those keys: the canonical partial of their union."""
    frames = [p for p in partials if not p.empty]
    if not frames:
        return _partial_frame([], [], [], [], [])
    total = pd.concat(frames, ignore_index=True)[list(PARTIAL_COLUMNS)]
    summed = total.groupby(["source", "kind", "key"], sort=True, as_index=False)[["people", "weight"]].sum()
    return _partial_frame(summed["source"].astype(str).tolist(), summed["kind"].astype(str).tolist(),
                          summed["key"].astype(str).tolist(), summed["people"], summed["weight"])


def _source_vector(partial: pd.DataFrame, source: str, spec: DemandSpec) -> tuple[_Vector, dict[str, int]]:
    """One source's cells (in cell-id order) through the merge rule, and its refusals by reason."""
    mine = partial[partial["source"] == source]
    cells = mine[mine["kind"] == CELL]
    people = cells["people"].to_numpy(dtype=np.int64)
    values = people.copy() if spec.weight_column is None else \
        (cells["weight"].to_numpy(dtype=np.int64) + _WEIGHT_SLACK) // WEIGHT_SCALE
    refusals = dict(zip(mine.loc[mine["kind"] == REFUSED, "key"], mine.loc[mine["kind"] == REFUSED, "people"],
                        strict=True))
    refused = {r.value: int(refusals[r.value]) for r in Refusal if refusals.get(r.value, 0)}
    return _merge(tuple(cells["key"].astype(str)), people, values, spec), refused


def demand_from_partials(partials: pd.DataFrame, spec: DemandSpec, rng: np.random.Generator) -> DemandResult:
    """The release and diagnostics from (summed) partials: merge rule, then calibrated noise.

    Cells are taken in cell-id order and noise is drawn in that order, so the release depends only on the
    summed partials and ``rng``, never on how the rows were ordered or partitioned.

    Args:
        partials: Output of :func:`partial_demand` for the whole table, or partials of its parts (summed here).
        spec: The same spec the partials were computed with.
        rng: Source of the noise (seedable for tests).
    """
    partial = merge_partials([partials])
    eps_v = spec.epsilon_per_source
    released: list[ReleasedCell] = []
    refused: dict[str, dict[str, int]] = {}
    stats: dict[str, dict[str, int]] = {"fine": {}, "coarse": {}, "cells": {}, "people": {}}
    for source in spec.sources:
        vector, refused[source] = _source_vector(partial, source, spec)
        noised = np.maximum(vector.values + two_sided_geometric_noise(eps_v, len(vector.cells), rng), 0)
        for measure in (m for m in spec.measures if SOURCE[m] == source):
            released += [ReleasedCell(measure, c, int(r), int(v))
                         for c, r, v in zip(vector.cells, vector.resolutions, noised, strict=True)]
        stats["fine"][source] = int(np.count_nonzero(vector.resolutions == spec.fine_resolution))
        stats["coarse"][source] = int(np.count_nonzero(vector.resolutions == spec.coarse_resolution))
        stats["cells"][source], stats["people"][source] = vector.suppressed_cells, vector.suppressed_people
    order = {m: i for i, m in enumerate(Measure)}
    released.sort(key=lambda c: (order[c.measure], -c.resolution, c.cell))
    release = DemandRelease(
        cells=tuple(released), k=spec.k, epsilon=spec.epsilon,
        epsilon_per_measure={m.value: eps_v for m in spec.measures},
        fine_resolution=spec.fine_resolution, coarse_resolution=spec.coarse_resolution,
        weighted=spec.weight_column is not None,
    )
    rows = int(partial.loc[partial["kind"] == ROWS, "people"].sum())
    diagnostics = DemandDiagnostics(rows=rows, refused=refused, fine_cells_released=stats["fine"],
                                    coarse_cells_released=stats["coarse"], cells_suppressed=stats["cells"],
                                    people_suppressed=stats["people"])
    return DemandResult(release, diagnostics)


def aggregate_demand(subscribers: pd.DataFrame, spec: DemandSpec, rng: np.random.Generator,
                     grid: KmGrid | None = None) -> DemandResult:
    """Aggregate subscribers' home/work cells per H3 cell, suppress below k, add calibrated noise.

    The in-process engine: :func:`partial_demand` over the whole table, then :func:`demand_from_partials`.
    The Spark engine (``node.spark.aggregate_demand_spark``) runs the first per partition and gives the same bytes.

    Args:
        subscribers: One row per subscriber with the km-cell columns named in ``spec``.
        spec: Measures, ε, k and resolutions.
        rng: Source of the noise (seedable for tests).
        grid: The km grid's projection and area (default :class:`KmGrid`).

    Returns:
        The release for the bank and the exact diagnostics that stay with the telco.

    Raises:
        SiteInputError: A named column is missing (bad rows are refused and counted, never raised).
    """
    return demand_from_partials(partial_demand(subscribers, spec, grid), spec, rng)


def expand_demand(release: DemandRelease, weights: Mapping[Measure, float] | None = None,
                  resolution: int | None = None) -> dict[str, float]:
    """Per fine cell demand from a release: a weighted sum of measures, merged cells spread out.

    A merged parent's value is "the rest of the parent", so it is spread evenly over the parent's
    children that the same measure did not release on their own. Post-processing: no privacy cost.

    Args:
        release: The telco's release.
        weights: Weight per measure (default: residents and workers, 1 each, or every released
            measure if neither was released).
        resolution: Resolution of the result (default: the release's fine resolution).

    Returns:
        Fine cell → demand (cells with demand 0 omitted).
    """
    resolution = release.fine_resolution if resolution is None else resolution
    present = {c.measure for c in release.cells}
    if weights is None:
        preferred: dict[Measure, float] = {m: 1.0 for m in (Measure.RESIDENTS, Measure.WORKERS) if m in present}
        weights = preferred or dict.fromkeys(present, 1.0)
    demand: dict[str, float] = {}
    for measure, w in weights.items():
        cells = [c for c in release.cells if c.measure == measure]
        own = {c.cell for c in cells if c.resolution == resolution}
        for c in cells:
            spread = [c.cell] if c.resolution == resolution else _children_not_in(c.cell, resolution, own)
            for child in spread:
                demand[child] = demand.get(child, 0.0) + w * c.value / len(spread)
    return {cell: v for cell, v in demand.items() if v > 0}


def _children_not_in(cell: str, resolution: int, released: set[str]) -> Sequence[str]:
    """Children of ``cell`` at ``resolution`` not released on their own (all children if every one was)."""
    children = h3.cell_to_children(cell, resolution)
    rest = [c for c in children if c not in released]
    return rest or children


def release_to_wire(release: DemandRelease, job_id: str) -> SiteDemandRelease:
    """The release as the wire message the telco sends the bank."""
    return SiteDemandRelease(
        job_id=job_id, k=release.k, epsilon_spent=float(release.epsilon),
        epsilon_per_measure={m: float(e) for m, e in release.epsilon_per_measure.items()},  # type: ignore[misc]
        fine_resolution=release.fine_resolution, coarse_resolution=release.coarse_resolution,
        weighted=release.weighted,
        cells=[ReleasedCellWire(measure=c.measure.value, cell=c.cell, resolution=c.resolution, value=c.value)
               for c in release.cells],
    )


def release_from_wire(message: SiteDemandRelease) -> DemandRelease:
    """The bank's view of a received release."""
    return DemandRelease(
        cells=tuple(ReleasedCell(Measure(c.measure), c.cell, c.resolution, c.value) for c in message.cells),
        k=message.k, epsilon=message.epsilon_spent,
        epsilon_per_measure={str(m): e for m, e in message.epsilon_per_measure.items()},
        fine_resolution=message.fine_resolution, coarse_resolution=message.coarse_resolution,
        weighted=message.weighted,
    )
