"""The spatial grid of branch site selection: H3 hexagons, and the synthetic km grid mapped onto them.

**Resolution.** Demand is aggregated on H3 hexagons at resolution 8 (:data:`FINE_RESOLUTION`):
≈ 0.74 km² per cell, ≈ 0.53 km edge. That is close to the 1 km squares the operator's location data
comes in (a finer grid would only invent precision the data does not have and push more cells under the
k threshold), and about the walking distance a bank branch serves, so one cell ≈ "one neighbourhood".
Cells too sparse to release on their own are merged into their parent at resolution 6
(:data:`COARSE_RESOLUTION`, ≈ 36 km², 49 resolution-8 children), the scale of a suburban district.
Hexagons rather than squares: every neighbour is at the same distance, and H3 ids are a global,
hierarchical, well-known format the bank can map without our code.

**The synthetic km grid.** ``demo.synthetic`` places people on a national 1 km grid: a cell id is
``"G"`` + 4-digit x + 4-digit y, in km east and north of the anchor (73° E, 18° N), on an
equirectangular projection with true scale at 30° N (see demo/SYNTHETIC.md). :class:`KmGrid` inverts
that local equirectangular projection::

    lat = anchor_lat + (y + ½) / 110.57            (km per degree of latitude)
    lng = anchor_lng + (x + ½) / (111.32·cos 30°)   (km per degree of longitude at 30° N)

— the ½ takes the centre of the 1 km square. The degree lengths are the ellipsoid's, while H3 measures
distances on a sphere (111.19 km per degree): grid km and great-circle km differ by < 1%. East-west
scale is true at 30° N and off by ``cos 30°/cos φ`` elsewhere (≈ 13% at Beijing's 40° N), but the
mapping is exact in the sense that matters: it inverts the generator, so every synthetic district lands
on its real coordinates (checked in the tests), and distances are then measured on the sphere.

**Validation.** Nothing here fails a whole job for a bad row: malformed, missing or out-of-area cells
are counted by reason (:class:`Refusal`) and left out. Only the unique km cells are converted (the
synthetic population has a few thousand unique cells per million people), then mapped back to rows by
integer codes, so 10⁷ rows cost one factorisation and a few thousand H3 calls.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import h3
import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = [
    "COARSE_RESOLUTION",
    "FINE_RESOLUTION",
    "CellAssignment",
    "GridArea",
    "KmGrid",
    "Refusal",
    "SiteInputError",
    "assign_km_cells",
    "cell_boundaries",
    "cell_centres",
    "great_circle_km",
    "latlng_to_cells",
    "parent_cells",
]

FINE_RESOLUTION = 8
COARSE_RESOLUTION = 6
EARTH_RADIUS_KM = 6371.007180918475  # the authalic radius h3 uses for great_circle_distance(..., "km")
_CHUNK = 1 << 20  # rows per bincount pass
_KM_CELL = re.compile(r"^G(\d{4})(\d{4})$")

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class SiteInputError(ValueError):
    """Bad input to a site-selection core: names the field, what is wrong and how to fix it.

    Attributes:
        field: The argument or column at fault.
        fix: What the caller should do.
        rows: Line numbers of the offending rows, when rows are at fault (empty otherwise).
    """

    def __init__(self, field: str, problem: str, fix: str, rows: Sequence[int] = ()) -> None:
        self.field = field
        self.fix = fix
        self.rows = tuple(rows)
        where = f" (lines {', '.join(map(str, self.rows[:20]))}{', …' if len(self.rows) > 20 else ''})" if rows else ""
        super().__init__(f"{field}: {problem}{where}; {fix}")


class Refusal(StrEnum):
    """Why a row's location was left out of the aggregation."""

    MISSING = "missing"
    MALFORMED = "malformed"
    OUTSIDE_AREA = "outside_area"


@dataclass(frozen=True)
class GridArea:
    """The latitude/longitude box a job accepts locations in (default: mainland China's extent).

    Attributes:
        min_lat: Southern edge, degrees.
        max_lat: Northern edge, degrees.
        min_lng: Western edge, degrees.
        max_lng: Eastern edge, degrees.
    """

    min_lat: float = 18.0
    max_lat: float = 54.0
    min_lng: float = 73.0
    max_lng: float = 135.5

    def __post_init__(self) -> None:
        ok = -90 <= self.min_lat < self.max_lat <= 90 and -180 <= self.min_lng < self.max_lng <= 180
        if not ok:
            raise SiteInputError("area", "bounds are not an ordered latitude/longitude box",
                                 "give -90 <= min_lat < max_lat <= 90 and -180 <= min_lng < max_lng <= 180")

    def contains(self, lat: FloatArray, lng: FloatArray) -> npt.NDArray[np.bool_]:
        """Which points are finite and inside the box (edges included)."""
        lat, lng = np.asarray(lat, dtype=np.float64), np.asarray(lng, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            return ((lat >= self.min_lat) & (lat <= self.max_lat) & (lng >= self.min_lng)
                    & (lng <= self.max_lng))


@dataclass(frozen=True)
class KmGrid:
    """The synthetic national 1 km grid and its local equirectangular projection (see module docstring).

    Attributes:
        anchor_lat: Latitude of the grid origin (y = 0), degrees.
        anchor_lng: Longitude of the grid origin (x = 0), degrees.
        true_scale_lat: Latitude where east-west km are true, degrees.
        km_per_deg_lat: Kilometres per degree of latitude.
        km_per_deg_lng_equator: Kilometres per degree of longitude at the equator.
        area: Where converted points must fall.
    """

    anchor_lat: float = 18.0
    anchor_lng: float = 73.0
    true_scale_lat: float = 30.0
    km_per_deg_lat: float = 110.57
    km_per_deg_lng_equator: float = 111.32
    area: GridArea = field(default_factory=GridArea)

    @property
    def km_per_deg_lng(self) -> float:
        """Kilometres per degree of longitude at the true-scale latitude."""
        return self.km_per_deg_lng_equator * math.cos(math.radians(self.true_scale_lat))

    def to_latlng(self, x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Centres of the km squares (x, y) as (lat, lng) degrees."""
        lat = self.anchor_lat + (np.asarray(y, dtype=np.float64) + 0.5) / self.km_per_deg_lat
        lng = self.anchor_lng + (np.asarray(x, dtype=np.float64) + 0.5) / self.km_per_deg_lng
        return lat, lng

    def from_latlng(self, lat: FloatArray, lng: FloatArray) -> tuple[IntArray, IntArray]:
        """The km square (x, y) holding each point (inverse of :meth:`to_latlng`)."""
        x = np.floor((np.asarray(lng, dtype=np.float64) - self.anchor_lng) * self.km_per_deg_lng)
        y = np.floor((np.asarray(lat, dtype=np.float64) - self.anchor_lat) * self.km_per_deg_lat)
        return x.astype(np.int64), y.astype(np.int64)

    def cell_ids(self, x: IntArray, y: IntArray) -> list[str]:
        """The ``"Gxxxxyyyy"`` ids of km squares (x, y in 0..9999)."""
        return [f"G{a:04d}{b:04d}" for a, b in zip(np.asarray(x).tolist(), np.asarray(y).tolist(), strict=True)]


@dataclass(frozen=True)
class CellAssignment:
    """Rows mapped to H3 cells.

    Attributes:
        codes: Per row, an index into ``cells``, or -1 when the row was refused.
        cells: The distinct H3 cells (hex strings) the accepted rows fall in.
        resolution: H3 resolution of ``cells``.
        refused: Count of refused rows per :class:`Refusal` reason (reasons with no rows omitted).
        counts: Rows per cell (aligned with ``cells``), counted over distinct km cells, not rows.
    """

    codes: npt.NDArray[np.int32]
    cells: tuple[str, ...]
    resolution: int
    refused: dict[str, int]
    counts: IntArray

    @property
    def accepted(self) -> int:
        """Number of rows that were mapped to a cell."""
        return int(self.counts.sum())


def _factorize(values: pd.Series | Sequence[str] | npt.NDArray[np.object_]) -> tuple[npt.NDArray[np.signedinteger],
                                                                                     list[object]]:
    """Integer codes (-1 for null) and the distinct values; categorical input costs nothing."""
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    if isinstance(series.dtype, pd.CategoricalDtype):
        cat = series.array
        assert isinstance(cat, pd.Categorical)
        return cat.codes, list(cat.categories)  # the int8/16/32 codes themselves: no copy
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    return codes, list(uniques)


def _parse_km(uniques: Iterable[object]) -> tuple[IntArray, IntArray, IntArray]:
    """x, y and a reason code (-1 well formed, 0 missing, 1 malformed) of distinct ``"Gxxxxyyyy"`` ids."""
    xs, ys, reasons = [], [], []
    for value in uniques:
        match = _KM_CELL.match(value) if isinstance(value, str) else None
        xs.append(int(match.group(1)) if match else 0)
        ys.append(int(match.group(2)) if match else 0)
        blank = value is None or (isinstance(value, str) and not value.strip()) or (
            isinstance(value, float) and math.isnan(value))
        reasons.append(-1 if match else 0 if blank else 1)
    return np.array(xs, dtype=np.int64), np.array(ys, dtype=np.int64), np.array(reasons, dtype=np.int64)


def latlng_to_cells(lat: FloatArray, lng: FloatArray, resolution: int = FINE_RESOLUTION) -> list[str]:
    """H3 cells of points (one C call per point: use on distinct points only)."""
    return [h3.latlng_to_cell(a, b, resolution) for a, b in zip(np.asarray(lat).tolist(), np.asarray(lng).tolist(),
                                                                 strict=True)]


def assign_km_cells(
    values: pd.Series | Sequence[str] | npt.NDArray[np.object_],
    grid: KmGrid | None = None,
    resolution: int = FINE_RESOLUTION,
) -> CellAssignment:
    """Map ``"Gxxxxyyyy"`` km cells to H3 cells, refusing bad rows by reason.

    Args:
        values: One km cell id per row (strings, a pandas string or categorical column; nulls allowed).
        grid: The km grid's projection and accepted area (default :class:`KmGrid`).
        resolution: H3 resolution of the result.

    Returns:
        Per-row codes into the distinct H3 cells, and counts of refused rows by reason.
    """
    grid = grid or KmGrid()
    row_codes, uniques = _factorize(values)
    x, y, reason = _parse_km(uniques)
    lat, lng = grid.to_latlng(x.astype(np.float64), y.astype(np.float64))
    inside = (reason < 0) & grid.area.contains(lat, lng)
    h3_of_unique = np.full(len(uniques), -1, dtype=np.int32)
    distinct: dict[str, int] = {}
    for i in np.flatnonzero(inside).tolist():
        h3_of_unique[i] = distinct.setdefault(h3.latlng_to_cell(float(lat[i]), float(lng[i]), resolution),
                                              len(distinct))
    reason = np.where(inside, -1, np.where(reason < 0, 2, reason))
    lookup = np.append(h3_of_unique, np.int32(-1))  # code -1 (null) reads the sentinel at the end; stays int32
    rows_per_unique = _rows_per_code(row_codes, len(uniques))
    refused = _count_refusals(rows_per_unique, reason, int(row_codes.size - rows_per_unique.sum()))
    counts = np.bincount(h3_of_unique[inside], weights=rows_per_unique[inside], minlength=len(distinct))
    return CellAssignment(codes=lookup[row_codes], cells=tuple(distinct), resolution=resolution, refused=refused,
                          counts=np.rint(counts).astype(np.int64))


def _rows_per_code(row_codes: npt.NDArray[np.signedinteger], n: int) -> IntArray:
    """Rows per code 0..n-1 (nulls, -1, skipped), in chunks so memory stays O(chunk), not O(rows)."""
    total = np.zeros(n, dtype=np.int64)
    for start in range(0, row_codes.size, _CHUNK):
        chunk = row_codes[start:start + _CHUNK]
        total += np.bincount(chunk[chunk >= 0], minlength=n)
    return total


def _count_refusals(rows_per_unique: IntArray, reason_of_unique: IntArray, nulls: int) -> dict[str, int]:
    """Refused rows per reason: 0 missing, 1 malformed, 2 outside the area (-1: accepted); null rows are missing."""
    names = (Refusal.MISSING, Refusal.MALFORMED, Refusal.OUTSIDE_AREA)
    counts = {names[r].value: int(rows_per_unique[reason_of_unique == r].sum()) for r in range(3)}
    counts[Refusal.MISSING.value] += nulls
    return {name: n for name, n in counts.items() if n}


def parent_cells(cells: Sequence[str], resolution: int = COARSE_RESOLUTION) -> list[str]:
    """The ancestor of each cell at ``resolution`` (a cell already that coarse is its own parent)."""
    return [c if h3.get_resolution(c) <= resolution else h3.cell_to_parent(c, resolution) for c in cells]


def cell_centres(cells: Sequence[str]) -> tuple[FloatArray, FloatArray]:
    """Centre (lat, lng) of each cell, degrees."""
    if not cells:
        return np.zeros(0), np.zeros(0)
    pts: FloatArray = np.array([h3.cell_to_latlng(c) for c in cells], dtype=np.float64)
    return pts[:, 0], pts[:, 1]


def cell_boundaries(cells: Sequence[str]) -> list[tuple[tuple[float, float], ...]]:
    """Boundary vertices (lat, lng) of each cell."""
    return [h3.cell_to_boundary(c) for c in cells]


def unit_vectors(lat: FloatArray, lng: FloatArray) -> FloatArray:
    """Points on the unit sphere (n × 3): chord length between them is monotone in great-circle distance."""
    phi, lam = np.radians(np.asarray(lat, dtype=np.float64)), np.radians(np.asarray(lng, dtype=np.float64))
    return np.column_stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)])


def km_to_chord(km: float) -> float:
    """Chord length on the unit sphere of a great-circle distance in km."""
    return 2.0 * math.sin(min(km / EARTH_RADIUS_KM, math.pi) / 2.0)


def chord_to_km(chord: FloatArray) -> FloatArray:
    """Great-circle km of unit-sphere chord lengths (inverse of :func:`km_to_chord`)."""
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.clip(np.asarray(chord, dtype=np.float64) / 2.0, 0.0, 1.0))


def great_circle_km(lat1: FloatArray, lng1: FloatArray, lat2: FloatArray, lng2: FloatArray) -> FloatArray:
    """Great-circle (haversine) distance in km, vectorised; agrees with ``h3.great_circle_distance``."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lng2) - np.asarray(lng1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    out: FloatArray = 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
    return out
