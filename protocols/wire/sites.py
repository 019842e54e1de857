"""Wire models of branch site selection: what the telco releases, and what the bank may share.

``SiteDemandRelease`` (telco → bank) carries only k-suppressed, ε-DP aggregates per H3 cell: every
cell holds at least ``k`` people, values are noised counts (see ``node.jobs.sites.demand``).
``BranchShare`` (bank → telco) exists only when the bank's terms share its branch locations (and
proposed sites) with the operator; otherwise the optimisation stays at the bank and nothing flows back.
``SiteReleaseAck`` is the bank's reply to a release (counts only); ``SiteReleaseAbort`` (telco → bank)
tells the bank the telco will not release, and why (a reason naming the field and the fix).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

__all__ = [
    "MAX_RELEASED_CELLS",
    "SITE_MEASURES",
    "BranchLocation",
    "BranchShare",
    "ReleasedCellWire",
    "SiteDemandRelease",
    "SiteReleaseAbort",
    "SiteReleaseAck",
]

MAX_RELEASED_CELLS = 2_000_000
SITE_MEASURES = ("residents", "workers", "night_population", "day_population")

H3Cell = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{15}$")]
Measure = Literal["residents", "workers", "night_population", "day_population"]


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be finite")
    return value


Finite = Annotated[float, AfterValidator(_finite)]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    protocol_version: Literal["1"] = "1"


class ReleasedCellWire(_Wire):
    """One released aggregate: the noised value of one measure in one cell of ≥ k people."""

    kind: Literal["sites.cell"] = "sites.cell"
    measure: Measure
    cell: H3Cell
    resolution: int = Field(ge=0, le=15)
    value: int = Field(ge=0)


class SiteDemandRelease(_Wire):
    """Telco → bank: the released demand aggregates of a site-selection job."""

    kind: Literal["sites.demand_release"] = "sites.demand_release"
    job_id: str = Field(min_length=1, max_length=64)
    k: int = Field(ge=1)
    epsilon_spent: Finite = Field(gt=0)
    epsilon_per_measure: dict[Measure, Finite]
    fine_resolution: int = Field(ge=0, le=15)
    coarse_resolution: int = Field(ge=0, le=15)
    weighted: bool
    cells: list[ReleasedCellWire] = Field(max_length=MAX_RELEASED_CELLS)

    @model_validator(mode="after")
    def _consistent(self) -> SiteDemandRelease:
        if self.coarse_resolution >= self.fine_resolution:
            raise ValueError("coarse_resolution must be smaller than fine_resolution")
        if any(not 0 < e <= self.epsilon_spent * (1 + 1e-9) for e in self.epsilon_per_measure.values()):
            raise ValueError("each measure's epsilon must be in (0, epsilon_spent]")
        allowed = {self.fine_resolution, self.coarse_resolution}
        if any(c.resolution not in allowed or c.measure not in self.epsilon_per_measure for c in self.cells):
            raise ValueError("every cell must be at the fine or coarse resolution, of a measure with an epsilon")
        return self


class BranchLocation(_Wire):
    """A branch (existing or proposed) the bank chose to share."""

    kind: Literal["sites.branch"] = "sites.branch"
    lat: Finite = Field(ge=-90, le=90)
    lng: Finite = Field(ge=-180, le=180)
    capacity: Finite | None = Field(default=None, ge=0)
    proposed: bool = False


class BranchShare(_Wire):
    """Bank → telco, only if the job's terms share them: branch locations and proposed sites."""

    kind: Literal["sites.branch_share"] = "sites.branch_share"
    job_id: str = Field(min_length=1, max_length=64)
    branches: list[BranchLocation] = Field(max_length=100_000)


class SiteReleaseAck(_Wire):
    """Bank → telco, the reply to a release: how many cells the bank accepted (counts only)."""

    kind: Literal["sites.release_ack"] = "sites.release_ack"
    job_id: str = Field(min_length=1, max_length=64)
    cells: int = Field(ge=0)


class SiteReleaseAbort(_Wire):
    """Telco → bank: no release will come for this job, and why."""

    kind: Literal["sites.release_abort"] = "sites.release_abort"
    job_id: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=500)
