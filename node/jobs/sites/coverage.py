"""Branch site selection as maximum coverage over released demand, greedy with an exact MILP check.

**Model.** Demand sits at H3 cell centres with a weight (released, noised aggregates — see
:mod:`node.jobs.sites.demand`). A site covers every demand cell whose centre lies within the catchment
radius (great-circle km). Demand already within reach of an existing branch counts as covered and earns
nothing; demand within reach of a competitor is worth ``1 − competitor_discount`` of its weight
(contested). Choosing N new sites among the candidate cells to maximise the newly covered weight is the
maximum coverage problem; capacities of existing branches are validated and carried, but the model is
uncapacitated.

**Greedy.** Pick, N times, the candidate with the largest marginal gain (newly covered weight). The
objective ``f(S) = weight covered by S and not by existing branches`` is monotone and submodular, so
greedy achieves ``f(greedy) ≥ (1 − 1/e)·f(OPT) ≈ 0.632·f(OPT)`` (Nemhauser, Wolsey & Fisher 1978); in
practice it is usually within a few percent. Each step is one sparse matrix-vector product over the
candidate × demand cover matrix (built with a k-d tree over unit-sphere points, where chord length is
monotone in great-circle distance), so N = 50 over 10⁴ cells takes well under a second.

**Exact.** :func:`solve_milp` solves the same problem with ``scipy.optimize.milp`` (HiGHS)::

    max Σ_i w_i·y_i   s.t.  y_i ≤ Σ_{j covers i} x_j,  Σ_j x_j = N,  x ∈ {0,1},  0 ≤ y ≤ 1

for small instances, to report greedy's gap.

**Closures.** :func:`rank_closures` ranks existing branches by unique coverage — the weight only that
branch reaches once the new sites open — smallest first: the first rows are the candidates to close.

Inputs are validated before anything is computed; a bad input raises :class:`SiteInputError` naming the
field (and, for branch tables, the offending lines) and the fix.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import h3
import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.spatial import cKDTree

from node.jobs.sites.grid import (
    GridArea,
    SiteInputError,
    cell_centres,
    chord_to_km,
    km_to_chord,
    unit_vectors,
)

__all__ = [
    "BranchTable",
    "ClosureRank",
    "CoverageProblem",
    "MilpResult",
    "RankedSite",
    "SitePlan",
    "build_problem",
    "coverage_fraction",
    "greedy_sites",
    "rank_closures",
    "read_branches",
    "solve_milp",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class BranchTable:
    """Validated point locations (existing branches or competitors).

    Attributes:
        lat: Latitudes, degrees.
        lng: Longitudes, degrees.
        capacity: Per row capacity (NaN where not given).
    """

    lat: FloatArray
    lng: FloatArray
    capacity: FloatArray

    @classmethod
    def empty(cls) -> BranchTable:
        """No points."""
        return cls(np.zeros(0), np.zeros(0), np.zeros(0))

    def __len__(self) -> int:
        return int(self.lat.size)


def _column(frame: pd.DataFrame, name: str) -> FloatArray:
    values: FloatArray = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return values


def read_branches(rows: pd.DataFrame | Sequence[Mapping[str, object]] | None, field: str = "branches",
                  area: GridArea | None = None, first_line: int = 2) -> BranchTable:
    """Validate a table of points with ``lat``, ``lng`` and optional ``capacity`` columns.

    Args:
        rows: The table (a DataFrame or a list of row mappings); None or empty means no points.
        field: The argument's name, used in errors.
        area: Accepted latitude/longitude box (default :class:`GridArea`).
        first_line: Line number of the first row (2: a CSV file whose line 1 is the header).

    Returns:
        The validated points.

    Raises:
        SiteInputError: Columns are missing, or rows have missing, non-numeric, non-finite or
            out-of-area coordinates, or a negative capacity; ``rows`` lists every bad line.
    """
    if rows is None or len(rows) == 0:
        return BranchTable.empty()
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    missing = [c for c in ("lat", "lng") if c not in frame.columns]
    if missing:
        raise SiteInputError(field, f"columns {missing} missing (has {list(frame.columns)})",
                             "give each row 'lat' and 'lng' in decimal degrees (WGS 84)")
    lat, lng = _column(frame, "lat"), _column(frame, "lng")
    cap = _column(frame, "capacity") if "capacity" in frame.columns else np.full(lat.size, np.nan)
    cap_given = frame["capacity"].notna().to_numpy() if "capacity" in frame.columns else np.zeros(lat.size, bool)
    bad_cap = cap_given & ~(np.isfinite(cap) & (cap >= 0))
    bad = ~(area or GridArea()).contains(lat, lng) | bad_cap
    if bad.any():
        lines = (np.flatnonzero(bad) + first_line).tolist()
        raise SiteInputError(field, f"{len(lines)} row(s) with missing, non-numeric or out-of-area lat/lng "
                                    "or a negative/non-numeric capacity", "fix or drop those rows and resubmit",
                             rows=lines)
    return BranchTable(lat, lng, cap)


@dataclass(frozen=True)
class CoverageProblem:
    """A validated maximum-coverage instance.

    Attributes:
        demand_cells: Demand cells (H3 ids).
        weight: Effective demand weight per cell (competitor discount applied).
        covered_before: Demand cells already within reach of an existing branch.
        candidate_cells: Distinct candidate cells, in order of decreasing own demand.
        candidate_demand: Effective demand in each candidate's own cell (0 if none).
        cover: Sparse candidates × demand 0/1 matrix: candidate j reaches demand cell i.
        branch_cover: Sparse branches × demand matrix of existing branches.
        nearest_branch_km: Per candidate, great-circle km to the nearest existing branch (NaN if none).
        n_sites: New sites to open.
        radius_km: Catchment radius.
    """

    demand_cells: tuple[str, ...]
    weight: FloatArray
    covered_before: npt.NDArray[np.bool_]
    candidate_cells: tuple[str, ...]
    candidate_demand: FloatArray
    cover: sparse.csr_matrix
    branch_cover: sparse.csr_matrix
    nearest_branch_km: FloatArray
    n_sites: int
    radius_km: float

    @property
    def total_demand(self) -> float:
        """Sum of effective demand."""
        return float(self.weight.sum())


@dataclass(frozen=True)
class RankedSite:
    """One proposed site, in greedy order.

    Attributes:
        rank: 1 for the first pick.
        cell: H3 cell of the site.
        lat: Cell centre latitude.
        lng: Cell centre longitude.
        demand: Effective demand in the site's own cell.
        gain: Marginal newly covered demand when it was picked.
        nearest_branch_km: Distance to the nearest existing branch (NaN if there is none).
    """

    rank: int
    cell: str
    lat: float
    lng: float
    demand: float
    gain: float
    nearest_branch_km: float


@dataclass(frozen=True)
class SitePlan:
    """The ranked new sites and the coverage they reach.

    Attributes:
        sites: Proposed sites, best first.
        total_demand: Effective demand of the instance.
        covered_before: Demand covered by existing branches alone.
        covered_after: Demand covered by existing branches and the new sites.
    """

    sites: tuple[RankedSite, ...]
    total_demand: float
    covered_before: float
    covered_after: float

    @property
    def gain(self) -> float:
        """Newly covered demand."""
        return self.covered_after - self.covered_before

    @property
    def coverage_fraction(self) -> float:
        """Covered share of demand after opening the sites."""
        return self.covered_after / self.total_demand if self.total_demand > 0 else 0.0

    def to_frame(self) -> pd.DataFrame:
        """The ranked sites as a table."""
        return pd.DataFrame([s.__dict__ for s in self.sites],
                            columns=["rank", "cell", "lat", "lng", "demand", "gain", "nearest_branch_km"])


@dataclass(frozen=True)
class MilpResult:
    """The exact optimum (or the best found within the time limit).

    Attributes:
        cells: Chosen cells.
        gain: Newly covered demand of the chosen cells.
        optimal: Whether HiGHS proved optimality.
        seconds: Solve time.
        status: HiGHS's message.
    """

    cells: tuple[str, ...]
    gain: float
    optimal: bool
    seconds: float
    status: str


@dataclass(frozen=True)
class ClosureRank:
    """An existing branch and the demand only it reaches.

    Attributes:
        branch: Row index in the branch table.
        unique_demand: Demand no other open site (branch or new site) reaches.
        demand_reached: All demand within its catchment.
    """

    branch: int
    unique_demand: float
    demand_reached: float


def _validate_numbers(n_sites: int, radius_km: float, competitor_discount: float) -> None:
    if isinstance(n_sites, bool) or not isinstance(n_sites, int | np.integer) or n_sites < 1:
        raise SiteInputError("n_sites", f"must be a positive integer, got {n_sites!r}", "ask for at least 1 site")
    if not (isinstance(radius_km, int | float) and math.isfinite(radius_km) and radius_km > 0):
        raise SiteInputError("radius_km", f"must be a finite number > 0, got {radius_km!r}",
                             "give the catchment radius in km, e.g. 1.5")
    if not (isinstance(competitor_discount, int | float) and 0 <= competitor_discount <= 1):
        raise SiteInputError("competitor_discount", f"must be in [0, 1], got {competitor_discount!r}",
                             "use 0 to ignore competitors, 1 to treat contested demand as lost")


def _check_cells(field: str, cells: Sequence[str]) -> None:
    bad = [c for c in cells if not (isinstance(c, str) and h3.is_valid_cell(c))]
    if bad:
        raise SiteInputError(field, f"{len(bad)} value(s) are not H3 cell ids, e.g. {bad[0]!r}",
                             "pass H3 cell ids as hex strings, e.g. '8830995921fffff'")


def _demand_arrays(demand: Mapping[str, float]) -> tuple[tuple[str, ...], FloatArray]:
    if not demand:
        raise SiteInputError("demand", "is empty", "pass the released demand per cell (expand_demand)")
    cells = tuple(demand)
    _check_cells("demand", cells)
    weight = np.array([demand[c] for c in cells], dtype=np.float64)
    bad = ~np.isfinite(weight) | (weight < 0)
    if bad.any():
        raise SiteInputError("demand", f"{int(bad.sum())} cell(s) with negative or non-finite demand, e.g. "
                                       f"{cells[int(np.flatnonzero(bad)[0])]}", "pass finite demand >= 0")
    return cells, weight


def _reach(points: FloatArray, tree: cKDTree, n_cols: int, radius_km: float) -> sparse.csr_matrix:
    """Sparse rows = points, cols = tree points within ``radius_km`` great-circle."""
    if points.shape[0] == 0:
        return sparse.csr_matrix((0, n_cols), dtype=np.float64)
    hits = tree.query_ball_point(points, km_to_chord(radius_km), return_sorted=False)
    lengths = np.fromiter((len(h) for h in hits), dtype=np.int64, count=len(hits))
    indices = np.fromiter((i for h in hits for i in h), dtype=np.int64, count=int(lengths.sum()))
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    return sparse.csr_matrix((np.ones(indices.size), indices, indptr), shape=(points.shape[0], n_cols))


def _nearest_km(points: FloatArray, targets: FloatArray) -> FloatArray:
    if targets.shape[0] == 0:
        return np.full(points.shape[0], np.nan)
    chord, _ = cKDTree(targets).query(points, k=1)
    return chord_to_km(chord)


def build_problem(
    demand: Mapping[str, float],
    n_sites: int,
    radius_km: float,
    candidates: Sequence[str] | None = None,
    branches: pd.DataFrame | Sequence[Mapping[str, object]] | BranchTable | None = None,
    competitors: pd.DataFrame | Sequence[Mapping[str, object]] | BranchTable | None = None,
    competitor_discount: float = 0.5,
    area: GridArea | None = None,
) -> CoverageProblem:
    """Validate inputs and build the cover matrices.

    Args:
        demand: Cell → demand (e.g. :func:`node.jobs.sites.demand.expand_demand`).
        n_sites: New sites to open.
        radius_km: Catchment radius, km.
        candidates: Cells a site may open in (default: every demand cell).
        branches: Existing branches: ``lat``, ``lng``, optional ``capacity``.
        competitors: Competitor locations: ``lat``, ``lng``.
        competitor_discount: Share of demand lost where a competitor is within reach.
        area: Accepted latitude/longitude box for branches and competitors.

    Returns:
        The problem.

    Raises:
        SiteInputError: Naming the bad field (and lines of bad branch rows) and the fix.
    """
    _validate_numbers(n_sites, radius_km, competitor_discount)
    cells, weight = _demand_arrays(demand)
    own = dict(zip(cells, weight.tolist(), strict=True))
    cand = list(dict.fromkeys(cells if candidates is None else candidates))
    _check_cells("candidates", cand)
    if n_sites > len(cand):
        raise SiteInputError("n_sites", f"asks for {n_sites} sites but only {len(cand)} eligible candidate cells",
                             "lower n_sites or pass more candidate cells")
    bt = branches if isinstance(branches, BranchTable) else read_branches(branches, "branches", area)
    ct = competitors if isinstance(competitors, BranchTable) else read_branches(competitors, "competitors", area)
    demand_pts = unit_vectors(*cell_centres(cells))
    tree = cKDTree(demand_pts)
    if len(ct):
        contested = np.asarray(_reach(unit_vectors(ct.lat, ct.lng), tree, len(cells), radius_km).sum(axis=0)).ravel()
        weight = np.where(contested > 0, weight * (1.0 - competitor_discount), weight)
        own = dict(zip(cells, weight.tolist(), strict=True))
    cand.sort(key=lambda c: -own.get(c, 0.0))
    cand_pts = unit_vectors(*cell_centres(cand))
    branch_pts = unit_vectors(bt.lat, bt.lng)
    branch_cover = _reach(branch_pts, tree, len(cells), radius_km)
    return CoverageProblem(
        demand_cells=cells, weight=weight,
        covered_before=np.asarray(branch_cover.sum(axis=0)).ravel() > 0,
        candidate_cells=tuple(cand), candidate_demand=np.array([own.get(c, 0.0) for c in cand]),
        cover=_reach(cand_pts, tree, len(cells), radius_km), branch_cover=branch_cover,
        nearest_branch_km=_nearest_km(cand_pts, branch_pts), n_sites=int(n_sites), radius_km=float(radius_km),
    )


def greedy_sites(problem: CoverageProblem) -> SitePlan:
    """Greedy maximum coverage: N times, open the candidate with the largest marginal gain.

    Ties go to the candidate with more demand in its own cell. Guarantee: at least ``1 − 1/e`` of the
    optimal newly covered demand (see the module docstring).

    Args:
        problem: The instance.

    Returns:
        The ranked sites and the coverage before and after.
    """
    residual = np.where(problem.covered_before, 0.0, problem.weight)
    available = np.ones(len(problem.candidate_cells), dtype=bool)
    lat, lng = cell_centres(problem.candidate_cells)
    sites = []
    for rank in range(1, problem.n_sites + 1):
        gains = np.where(available, problem.cover @ residual, -1.0)
        j = int(np.argmax(gains))
        available[j] = False
        residual[problem.cover.indices[problem.cover.indptr[j]:problem.cover.indptr[j + 1]]] = 0.0
        sites.append(RankedSite(rank, problem.candidate_cells[j], float(lat[j]), float(lng[j]),
                                float(problem.candidate_demand[j]), float(gains[j]),
                                float(problem.nearest_branch_km[j])))
    before = float(problem.weight[problem.covered_before].sum())
    return SitePlan(tuple(sites), problem.total_demand, before, before + sum(s.gain for s in sites))


def solve_milp(problem: CoverageProblem, time_limit_s: float = 60.0) -> MilpResult:
    """Exact maximum coverage with HiGHS (use on small instances, to measure greedy's gap).

    Args:
        problem: The instance.
        time_limit_s: HiGHS time limit; the best solution found is returned when it is hit.

    Returns:
        The chosen cells and their newly covered demand.
    """
    open_w = np.where(problem.covered_before, 0.0, problem.weight)
    reachable = np.asarray(problem.cover.sum(axis=0)).ravel() > 0
    keep = np.flatnonzero(reachable & (open_w > 0))
    a = problem.cover[:, keep].T.tocsr()  # demand × candidates
    n_c, n_d = len(problem.candidate_cells), keep.size
    c = np.concatenate([np.zeros(n_c), -open_w[keep]])
    link = sparse.hstack([-a, sparse.identity(n_d)], format="csr")  # y_i − Σ_j a_ij x_j ≤ 0
    count = sparse.csr_matrix(np.concatenate([np.ones(n_c), np.zeros(n_d)])[None, :])
    constraints = [LinearConstraint(link, -np.inf, 0.0), LinearConstraint(count, problem.n_sites, problem.n_sites)]
    integrality = np.concatenate([np.ones(n_c), np.zeros(n_d)])
    start = time.perf_counter()
    res = milp(c, integrality=integrality, bounds=Bounds(0, 1), constraints=constraints,
               options={"time_limit": time_limit_s, "disp": False})
    seconds = time.perf_counter() - start
    if res.x is None:
        raise RuntimeError(f"HiGHS found no solution: {res.message}")
    chosen = np.flatnonzero(res.x[:n_c] > 0.5)
    gain = float(open_w[np.asarray(problem.cover[chosen].sum(axis=0)).ravel() > 0].sum())
    return MilpResult(tuple(problem.candidate_cells[j] for j in chosen), gain, res.status == 0, seconds,
                      str(res.message))


def rank_closures(problem: CoverageProblem, plan: SitePlan) -> tuple[ClosureRank, ...]:
    """Existing branches by unique coverage once the plan's sites open, smallest first.

    Args:
        problem: The instance (with its existing branches).
        plan: The new sites.

    Returns:
        One row per existing branch; the first rows are the closure candidates.
    """
    index = {c: j for j, c in enumerate(problem.candidate_cells)}
    chosen = [index[s.cell] for s in plan.sites]
    reach_new = np.asarray(problem.cover[chosen].sum(axis=0)).ravel() if chosen else np.zeros(problem.weight.size)
    per_cell = np.asarray(problem.branch_cover.sum(axis=0)).ravel() + reach_new
    ranks = []
    for b in range(problem.branch_cover.shape[0]):
        cols = problem.branch_cover.indices[problem.branch_cover.indptr[b]:problem.branch_cover.indptr[b + 1]]
        only = cols[per_cell[cols] == 1]
        ranks.append(ClosureRank(b, float(problem.weight[only].sum()), float(problem.weight[cols].sum())))
    return tuple(sorted(ranks, key=lambda r: (r.unique_demand, r.branch)))


def coverage_fraction(demand: Mapping[str, float], sites: Sequence[str], radius_km: float,
                      branches: BranchTable | None = None) -> float:
    """Share of ``demand`` within ``radius_km`` of a site cell's centre or an existing branch.

    Use it to score a plan against another demand surface (e.g. ground truth in an evaluation).

    Args:
        demand: Cell → demand.
        sites: Site cells.
        radius_km: Catchment radius, km.
        branches: Existing branches, if any.

    Returns:
        Covered share in [0, 1].
    """
    _validate_numbers(max(len(sites), 1), radius_km, 0.0)
    cells, weight = _demand_arrays(demand)
    tree = cKDTree(unit_vectors(*cell_centres(cells)))
    bt = branches or BranchTable.empty()
    pts = np.vstack([unit_vectors(*cell_centres(list(sites))), unit_vectors(bt.lat, bt.lng)])
    reached = np.asarray(_reach(pts, tree, len(cells), radius_km).sum(axis=0)).ravel() > 0
    total = weight.sum()
    return float(weight[reached].sum() / total) if total > 0 else 0.0
