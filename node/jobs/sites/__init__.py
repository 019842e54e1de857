"""Branch site selection from the operator's location data: the pure core.

The telco aggregates subscribers' home and work cells into k-suppressed, ε-DP counts per H3 cell
(:mod:`.demand`); the bank ranks new branch sites over the released demand by maximum coverage
(:mod:`.coverage`) and draws maps (:mod:`.maps`). :mod:`.grid` holds the H3 grid and the mapping of
the synthetic km grid onto it. No I/O here except the map writers. :mod:`.job` runs the governed job
``site_selection`` between the two nodes (``TelcoSiteSelection``, ``BankSiteSelection``); import it from there.
"""

from node.jobs.sites.coverage import (
    BranchTable,
    ClosureRank,
    CoverageProblem,
    MilpResult,
    RankedSite,
    SitePlan,
    build_problem,
    coverage_fraction,
    greedy_sites,
    rank_closures,
    read_branches,
    solve_milp,
)
from node.jobs.sites.demand import (
    DemandDiagnostics,
    DemandRelease,
    DemandResult,
    DemandSpec,
    Measure,
    ReleasedCell,
    aggregate_demand,
    expand_demand,
    release_from_wire,
    release_to_wire,
    two_sided_geometric_noise,
)
from node.jobs.sites.grid import (
    COARSE_RESOLUTION,
    FINE_RESOLUTION,
    CellAssignment,
    GridArea,
    KmGrid,
    Refusal,
    SiteInputError,
    assign_km_cells,
    cell_boundaries,
    cell_centres,
    great_circle_km,
    latlng_to_cells,
    parent_cells,
)
from node.jobs.sites.maps import MapLayers, release_geojson, render_html, write_geojson, write_html, write_png

__all__ = [
    "COARSE_RESOLUTION",
    "FINE_RESOLUTION",
    "BranchTable",
    "CellAssignment",
    "ClosureRank",
    "CoverageProblem",
    "DemandDiagnostics",
    "DemandRelease",
    "DemandResult",
    "DemandSpec",
    "GridArea",
    "KmGrid",
    "MapLayers",
    "Measure",
    "MilpResult",
    "RankedSite",
    "ReleasedCell",
    "Refusal",
    "SiteInputError",
    "SitePlan",
    "aggregate_demand",
    "assign_km_cells",
    "build_problem",
    "cell_boundaries",
    "cell_centres",
    "coverage_fraction",
    "expand_demand",
    "great_circle_km",
    "greedy_sites",
    "latlng_to_cells",
    "parent_cells",
    "rank_closures",
    "read_branches",
    "release_from_wire",
    "release_geojson",
    "release_to_wire",
    "render_html",
    "solve_milp",
    "two_sided_geometric_noise",
    "write_geojson",
    "write_html",
    "write_png",
]
