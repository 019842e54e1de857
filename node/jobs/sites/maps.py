"""Pictures of a site-selection run: a PNG map, a self-contained HTML map and GeoJSON of the release.

Everything drawn is already releasable: the demand surface is the released (k-suppressed, noised)
aggregates, or what the bank derived from them; branches and sites are the bank's own. Nothing here
takes per-person data. The HTML map needs no internet (no tiles, no CDN): hexagons are inline SVG
polygons in an equirectangular projection around the map's centre, each with a hover title; the mouse
wheel zooms and dragging pans. Files are written atomically (temporary file, then rename), so a failed
run never leaves half a map.
"""

from __future__ import annotations

import html
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from io import BytesIO
from pathlib import Path
from typing import Any

import h3
import matplotlib
import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.colors import Normalize, to_hex
from matplotlib.figure import Figure

from node.jobs.sites.coverage import BranchTable, RankedSite
from node.jobs.sites.demand import DemandRelease
from node.jobs.sites.grid import EARTH_RADIUS_KM

__all__ = ["MapLayers", "release_geojson", "render_html", "write_geojson", "write_html", "write_png"]

FloatArray = npt.NDArray[np.float64]
_CMAP = "YlOrRd"


class MapLayers:
    """What a map shows: demand per cell, existing branches, proposed sites and their catchment.

    Args:
        demand: Cell → demand (any H3 resolution; shaded by demand per km²).
        branches: Existing branches.
        sites: Proposed sites, ranked.
        radius_km: Catchment radius drawn around branches and sites (None: no circles).
        title: Map title.
    """

    def __init__(self, demand: Mapping[str, float], branches: BranchTable | None = None,
                 sites: Sequence[RankedSite] = (), radius_km: float | None = None, title: str = "Demand") -> None:
        # Coarser cells first, so finer cells are drawn on top of them.
        self.cells = sorted(demand, key=lambda c: (h3.get_resolution(c), c))
        self.values = np.array([demand[c] for c in self.cells], dtype=np.float64)
        areas = np.array([h3.cell_area(c, "km^2") for c in self.cells], dtype=np.float64)
        self.density = self.values / np.maximum(areas, 1e-12)
        self.rings = [[(lng, lat) for lat, lng in h3.cell_to_boundary(c)] for c in self.cells]
        self.branches = branches or BranchTable.empty()
        self.sites = tuple(sites)
        self.radius_km = radius_km
        self.title = title

    def norm(self) -> Normalize:
        """Colour scale: 0 to the 99th percentile of density (outliers saturate)."""
        top = float(np.percentile(self.density, 99)) if self.density.size else 1.0
        return Normalize(0.0, max(top, 1e-9), clip=True)

    def bounds(self) -> tuple[float, float, float, float]:
        """(min_lng, min_lat, max_lng, max_lat) of everything drawn."""
        pts = [p for ring in self.rings for p in ring] + list(zip(self.branches.lng, self.branches.lat, strict=True))
        pts += [(s.lng, s.lat) for s in self.sites]
        if not pts:
            return (-1.0, -1.0, 1.0, 1.0)
        arr = np.array(pts, dtype=np.float64)
        return float(arr[:, 0].min()), float(arr[:, 1].min()), float(arr[:, 0].max()), float(arr[:, 1].max())


def circle(lat: float, lng: float, radius_km: float, n: int = 64) -> list[tuple[float, float]]:
    """A catchment circle as (lng, lat) vertices (small-circle approximation, fine below ~100 km)."""
    theta = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    d = radius_km / EARTH_RADIUS_KM
    lats = lat + np.degrees(d * np.cos(theta))
    lngs = lng + np.degrees(d * np.sin(theta)) / max(math.cos(math.radians(lat)), 1e-6)
    return list(zip(lngs.tolist(), lats.tolist(), strict=True))


def _atomic_write(path: Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# --- PNG ----------------------------------------------------------------------------------------


def write_png(path: Path, layers: MapLayers, dpi: int = 120) -> Path:
    """Draw the map with matplotlib (Agg) and write it as PNG.

    Args:
        path: Output file.
        layers: What to draw.
        dpi: Resolution.

    Returns:
        The path written.
    """
    fig = Figure(figsize=(9, 8), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps[_CMAP]
    if layers.rings:
        hexes = PolyCollection(layers.rings, array=layers.density, cmap=cmap, norm=layers.norm(),
                               edgecolors="none", alpha=0.85)
        ax.add_collection(hexes)
        fig.colorbar(hexes, ax=ax, shrink=0.7, label="demand per km²")
    _draw_points(ax, layers)
    x0, y0, x1, y1 = layers.bounds()
    pad = max(x1 - x0, y1 - y0) * 0.03 + 1e-3
    ax.set_xlim(x0 - pad, x1 + pad)
    ax.set_ylim(y0 - pad, y1 + pad)
    ax.set_aspect(1.0 / max(math.cos(math.radians((y0 + y1) / 2)), 1e-6))
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title(layers.title)
    if len(layers.branches) or layers.sites:
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    buf = BytesIO()
    canvas.print_png(buf)  # type: ignore[no-untyped-call]
    return _atomic_write(path, buf.getvalue())


def _draw_points(ax: Any, layers: MapLayers) -> None:
    """Branches, sites and catchment circles."""
    if layers.radius_km:
        rings = [circle(lat, lng, layers.radius_km) for lat, lng in zip(layers.branches.lat, layers.branches.lng,
                                                                         strict=True)]
        rings += [circle(s.lat, s.lng, layers.radius_km) for s in layers.sites]
        ax.add_collection(PolyCollection(rings, facecolors="none", edgecolors="#1f4e79", linestyles="--",
                                         linewidths=0.7))
    if len(layers.branches):
        ax.scatter(layers.branches.lng, layers.branches.lat, marker="s", s=28, c="#1f4e79", label="existing branch",
                   zorder=3)
    if layers.sites:
        ax.scatter([s.lng for s in layers.sites], [s.lat for s in layers.sites], marker="*", s=120, c="#2ca02c",
                   edgecolors="black", linewidths=0.5, label="proposed site", zorder=4)
        for s in layers.sites:
            ax.annotate(str(s.rank), (s.lng, s.lat), textcoords="offset points", xytext=(4, 4), fontsize=7, zorder=5)


# --- HTML ---------------------------------------------------------------------------------------

_SCRIPT = """
const svg=document.getElementById('map');let vb=svg.viewBox.baseVal,drag=null;
svg.addEventListener('wheel',e=>{e.preventDefault();const f=e.deltaY>0?1.2:1/1.2,r=svg.getBoundingClientRect(),
mx=vb.x+(e.clientX-r.left)/r.width*vb.width,my=vb.y+(e.clientY-r.top)/r.height*vb.height;
vb.x=mx-(mx-vb.x)*f;vb.y=my-(my-vb.y)*f;vb.width*=f;vb.height*=f;});
svg.addEventListener('mousedown',e=>{drag=[e.clientX,e.clientY];});
window.addEventListener('mouseup',()=>{drag=null;});
svg.addEventListener('mousemove',e=>{if(!drag)return;const r=svg.getBoundingClientRect();
vb.x-=(e.clientX-drag[0])/r.width*vb.width;vb.y-=(e.clientY-drag[1])/r.height*vb.height;drag=[e.clientX,e.clientY];});
"""


class _Projector:
    """Equirectangular (lng, lat) → SVG (x, y) around the map's centre, 1000 units wide."""

    def __init__(self, bounds: tuple[float, float, float, float]) -> None:
        x0, y0, x1, y1 = bounds
        self.kx = math.cos(math.radians((y0 + y1) / 2))
        self.x0, self.y1 = x0, y1
        span = max((x1 - x0) * self.kx, y1 - y0, 1e-9)
        self.scale = 1000.0 / span
        self.width = (x1 - x0) * self.kx * self.scale
        self.height = (y1 - y0) * self.scale

    def __call__(self, lng: float, lat: float) -> tuple[float, float]:
        return (lng - self.x0) * self.kx * self.scale, (self.y1 - lat) * self.scale

    def points(self, ring: Sequence[tuple[float, float]]) -> str:
        return " ".join("{:.2f},{:.2f}".format(*self(lng, lat)) for lng, lat in ring)


def _svg_body(layers: MapLayers, proj: _Projector) -> list[str]:
    cmap, norm = matplotlib.colormaps[_CMAP], layers.norm()
    out = []
    for cell, ring, value, dens in zip(layers.cells, layers.rings, layers.values, layers.density, strict=True):
        tip = f"{cell} (res {h3.get_resolution(cell)}): demand {value:,.0f}, {dens:,.0f}/km²"
        out.append(f'<polygon points="{proj.points(ring)}" fill="{to_hex(cmap(norm(dens)))}" fill-opacity="0.85">'
                   f"<title>{html.escape(tip)}</title></polygon>")
    circles = [(lat, lng, "branch") for lat, lng in zip(layers.branches.lat, layers.branches.lng, strict=True)]
    circles += [(s.lat, s.lng, "site") for s in layers.sites]
    if layers.radius_km:
        for lat, lng, _ in circles:
            out.append(f'<polygon points="{proj.points(circle(lat, lng, layers.radius_km))}" fill="none" '
                       'stroke="#1f4e79" stroke-dasharray="4 3" stroke-width="0.8"/>')
    for i, (lat, lng) in enumerate(zip(layers.branches.lat, layers.branches.lng, strict=True)):
        x, y = proj(lng, lat)
        out.append(f'<rect x="{x - 4:.2f}" y="{y - 4:.2f}" width="8" height="8" fill="#1f4e79">'
                   f"<title>existing branch {i} ({lat:.5f}, {lng:.5f})</title></rect>")
    for s in layers.sites:
        x, y = proj(s.lng, s.lat)
        tip = (f"site #{s.rank} {s.cell}: gain {s.gain:,.0f}, own demand {s.demand:,.0f}, "
               f"nearest branch {s.nearest_branch_km:.2f} km")
        out.append(f'<circle cx="{x:.2f}" cy="{y:.2f}" r="6" fill="#2ca02c" stroke="black">'
                   f'<title>{html.escape(tip)}</title></circle><text x="{x + 7:.2f}" y="{y - 7:.2f}" '
                   f'font-size="11">{s.rank}</text>')
    return out


def render_html(layers: MapLayers) -> str:
    """A self-contained interactive HTML map (inline SVG and script; no network access needed).

    Args:
        layers: What to draw.

    Returns:
        The HTML document.
    """
    x0, y0, x1, y1 = layers.bounds()
    pad = max(x1 - x0, y1 - y0) * 0.03 + 1e-3
    proj = _Projector((x0 - pad, y0 - pad, x1 + pad, y1 + pad))
    rows = "".join(f"<tr><td>{s.rank}</td><td>{s.cell}</td><td>{s.lat:.5f}, {s.lng:.5f}</td><td>{s.gain:,.0f}</td>"
                   f"<td>{s.nearest_branch_km:.2f}</td></tr>" for s in layers.sites)
    table = ("<table><tr><th>#</th><th>cell</th><th>lat, lng</th><th>gain</th><th>nearest branch km</th></tr>"
             f"{rows}</table>") if rows else ""
    body = "\n".join(_svg_body(layers, proj))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(layers.title)}</title><style>body{{font-family:sans-serif;margin:1em}}"
        "svg{border:1px solid #ccc;width:100%;max-width:1000px;cursor:grab;background:#f7f7f7}"
        "td,th{padding:2px 8px;text-align:right}</style></head><body>"
        f"<h1>{html.escape(layers.title)}</h1><p>Hexagons: released demand per km² (hover for values). "
        "Squares: existing branches; green circles: proposed sites (ranked); dashed: catchment. "
        "Wheel to zoom, drag to pan.</p>"
        f'<svg id="map" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {proj.width:.2f} {proj.height:.2f}">\n'
        f"{body}\n</svg>{table}<script>{_SCRIPT}</script></body></html>\n"
    )


def write_html(path: Path, layers: MapLayers) -> Path:
    """Write :func:`render_html` atomically; returns the path."""
    return _atomic_write(path, render_html(layers).encode())


# --- GeoJSON ------------------------------------------------------------------------------------


def _ring(cell: str) -> list[list[float]]:
    """Closed, counter-clockwise (RFC 7946) exterior ring of a cell as [lng, lat] pairs."""
    ring = [[lng, lat] for lat, lng in h3.cell_to_boundary(cell)]
    signed = sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(ring, ring[1:] + ring[:1], strict=True))
    if signed < 0:
        ring.reverse()
    return ring + [ring[0]]


def release_geojson(release: DemandRelease) -> dict[str, Any]:
    """The released aggregates as a GeoJSON FeatureCollection: one polygon per released cell.

    Properties are the cell id, its resolution and each released measure's noised value — the
    release itself, nothing per person. k and ε ride along as foreign members of the collection.

    Args:
        release: The telco's release.

    Returns:
        A JSON-serialisable FeatureCollection.
    """
    props: dict[tuple[str, int], dict[str, Any]] = {}
    for c in release.cells:
        row = props.setdefault((c.cell, c.resolution), {"cell": c.cell, "resolution": c.resolution})
        row[c.measure.value] = c.value
    features = [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_ring(cell)]}, "properties": p}
                for (cell, _), p in props.items()]
    return {"type": "FeatureCollection", "features": features,
            "release": {"k": release.k, "epsilon": release.epsilon, "weighted": release.weighted,
                        "fine_resolution": release.fine_resolution, "coarse_resolution": release.coarse_resolution}}


def write_geojson(path: Path, release: DemandRelease) -> Path:
    """Write :func:`release_geojson` atomically; returns the path."""
    return _atomic_write(path, (json.dumps(release_geojson(release), separators=(",", ":")) + "\n").encode())
