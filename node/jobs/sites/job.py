"""Job ``site_selection``: where should the bank open new branches, from the operator's location data.

Parties: the telco is the **releasing** party, the bank the **planning** party; both run their role as
a ``node.runner.JobFamily`` (:class:`TelcoSiteSelection`, :class:`BankSiteSelection`). The job's
inputs are the telco's subscribers (``feature_fields``: the home cell field, then optionally the work
cell field — string fields of ``"Gxxxxyyyy"`` km cells — and optionally one numeric propensity field
in [0, 1] weighting every count) and the bank's branches (``feature_fields``: ``lat``, ``lng`` and
optionally ``capacity``). Params: ``epsilon`` (required; debited from the dataset pair's ε budget by the
coordinator, rule R16), ``n_sites``, ``radius_km``, ``min_cell`` (k, which the
coordinator fills with the policy's ``k_min_cell`` unless the job asks for more; read from the signed
terms like every count job) and optionally
``pool_resolution`` (the H3 resolution sparse cells pool into, default 6; 5 for small populations).

Steps::

    telco  reads the named cell fields (and weight), aggregates per H3 cell, pools cells below k into
           their resolution-6 parent or suppresses them, adds two-sided geometric noise calibrated to ε
           (node.jobs.sites.demand; with the node's engine spark the per-row sums run per Spark partition,
           node.spark.aggregate_demand_spark, same bytes), and sends ONE message, SiteDemandRelease, on channel
           ``sites.release``; the bank answers SiteReleaseAck (counts only). If the telco cannot
           release (a bad field or param) it sends SiteReleaseAbort on ``sites.abort`` instead.
    bank   reads its own branches (never sent anywhere), checks the release against the signed terms
           (same ε, k at least the job's), spreads pooled cells over their children, ranks n_sites
           new sites by greedy maximum coverage within radius_km (plus the exact MILP and greedy's
           gap on small instances), writes map.png, map.html and release.geojson to a scratch
           directory and moves them to ``<state>/sites/<job_id>/`` only once everything succeeded.

What each party learns:

* bank: per released H3 cell, the noised (weighted) count of at least k people — never a person's
  location — the resolutions, k and ε; and, from its own optimisation, the ranked sites.
* telco: nothing of the branches or of the ranked sites (only the bank's count of cells received).
* coordinator: the released summary — the ranked sites (cell, cell centre, released demand, marginal
  gain, distance to the nearest existing branch), coverage fractions, k, ε, cell counts and map
  paths from the bank; counts from the telco (cells released, pooled, suppressed; rows refused by
  reason; ε spent). Never a row, a km cell or a branch location.

Bad params or inputs (missing ε, n_sites or radius_km; n_sites above the eligible cells; a missing
cell field; bad branch rows) fail the job with a reason naming the field and the fix, and leave no
file: the runner removes the job's scratch directory, and the maps move into place last.
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h3
import numpy as np
from pydantic import ValidationError

from node.adapters import DataSource
from node.coordinator_client import CoordinatorError
from node.governance import Governance
from node.jobs.psi._node import k_of
from node.jobs.sites.coverage import (
    BranchTable,
    CoverageProblem,
    SitePlan,
    build_problem,
    greedy_sites,
    read_branches,
    solve_milp,
)
from node.jobs.sites.demand import (
    SOURCE,
    DemandRelease,
    DemandResult,
    DemandSpec,
    Measure,
    aggregate_demand,
    expand_demand,
    release_from_wire,
    release_to_wire,
)
from node.jobs.sites.grid import COARSE_RESOLUTION, FINE_RESOLUTION, GridArea, KmGrid, SiteInputError
from node.jobs.sites.maps import MapLayers, write_geojson, write_html, write_png
from node.peer import PeerError, PeerInbox, PeerMessage
from node.runner import JobContext, JobHandler
from protocols.wire.control import JobInput, JobKind, JobPublic, JobStatus
from protocols.wire.errors import ConfigError, ProtocolError, RemoteProtocolError
from protocols.wire.sites import SiteDemandRelease, SiteReleaseAbort, SiteReleaseAck

logger = logging.getLogger(__name__)

__all__ = ["ABORT_CHANNEL", "MAP_FILES", "RELEASE_CHANNEL", "BankSiteSelection", "CellFields", "SiteJobError",
           "SitePatience", "SitePlanResult", "SiteTerms", "TelcoSiteSelection", "bank_outputs", "cell_fields",
           "plan_sites", "read_own_branches", "site_terms", "telco_outputs", "write_maps"]

RELEASE_CHANNEL, ABORT_CHANNEL = "sites.release", "sites.abort"
MAP_FILES = {"map_png": "map.png", "map_html": "map.html", "release_geojson": "release.geojson"}
MILP_MAX_CELLS = 6000
"""The exact MILP runs (to report greedy's gap) when candidates and demand cells are at most this many."""
_NOT_READY = frozenset({404, 409, 503})
_PREFIX = "site_selection"


class SiteJobError(ConfigError):
    """A site-selection job cannot run: the message names the field and the fix (reported verbatim)."""

    status_hint = 422

    @classmethod
    def of(cls, exc: SiteInputError) -> SiteJobError:
        """The job error for a core input error (its message names the field, rows and fix, never values)."""
        return cls(str(exc))


def _error(field_name: str, problem: str, fix: str) -> SiteJobError:
    return SiteJobError.of(SiteInputError(field_name, problem, fix))


@dataclass(frozen=True)
class SitePatience:
    """How long each side waits for the other, in seconds.

    Attributes:
        release: The bank, for the telco's release (or abort).
        ready: The telco, for the bank to open the job on its data plane.
        status_every: How often a waiting side asks the coordinator whether the job failed meanwhile.
    """

    release: float = 600.0
    ready: float = 600.0
    status_every: float = 5.0


@dataclass(frozen=True)
class SiteTerms:
    """What both sides agreed to (from the approved, signed job).

    Attributes:
        job_id: The coordinator's job id, as text.
        k: Minimum people behind a released cell: ``params.min_cell`` of the signed terms.
        epsilon: The release's ε (charged to the dataset pair's budget by the coordinator).
        n_sites: New sites to propose.
        radius_km: Catchment radius of a branch, km.
        pool_resolution: H3 resolution that cells of fewer than k people pool into.
        area: The study area; locations outside it are refused as ``outside_area`` (None: the whole grid).
    """

    job_id: str
    k: int
    epsilon: float
    n_sites: int
    radius_km: float
    pool_resolution: int = COARSE_RESOLUTION
    area: GridArea | None = None

    @property
    def grid(self) -> KmGrid:
        """The km grid restricted to the study area."""
        return KmGrid(area=self.area) if self.area is not None else KmGrid()


def site_terms(job: JobPublic) -> SiteTerms:
    """The terms of an approved ``site_selection`` job.

    Raises:
        SiteJobError: A param is missing or of a mode this job kind does not have.
    """
    params = job.params
    if params.output_mode not in (None, "count"):
        raise _error("params.output_mode", f"site_selection has no output mode {params.output_mode!r}",
                     "omit output_mode or use 'count'")
    if params.epsilon is None:
        raise _error("params.epsilon", "is missing; the release is noised", "set params.epsilon, e.g. 0.5")
    if params.n_sites is None:
        raise _error("params.n_sites", "is missing", "set params.n_sites, the number of new sites, e.g. 10")
    if params.radius_km is None:
        raise _error("params.radius_km", "is missing", "set params.radius_km, a branch's catchment in km, e.g. 2")
    pool = COARSE_RESOLUTION if params.pool_resolution is None else params.pool_resolution
    area = None
    if params.area is not None:
        south, west, north, east = params.area
        area = GridArea(min_lat=south, max_lat=north, min_lng=west, max_lng=east)
    return SiteTerms(str(job.id), k_of(params), float(params.epsilon), int(params.n_sites), float(params.radius_km),
                     pool, area)


def _progress(ctx: JobContext) -> Callable[[str, float], None]:
    def report(stage: str, fraction: float) -> None:
        ctx.progress(f"{_PREFIX}: {stage}", fraction)

    return report


def _peer_party(ctx: JobContext, wanted: str) -> str:
    try:
        return ctx.peer_party()
    except ConfigError:
        raise _error("inputs", f"a site_selection job run between two nodes needs exactly one {wanted} input",
                     "give the telco's subscribers and the bank's branches as the job's two inputs") from None


# ---------------------------------------------------------------- telco


@dataclass(frozen=True)
class CellFields:
    """The telco input's columns.

    Attributes:
        home: The home km-cell column.
        work: The work km-cell column, if named.
        weight: The propensity column in [0, 1] weighting every count, if named.
    """

    home: str
    work: str | None
    weight: str | None

    @property
    def columns(self) -> list[str]:
        """Every column to read."""
        return [c for c in (self.home, self.work, self.weight) if c]

    def spec(self, terms: SiteTerms) -> DemandSpec:
        """The release these columns and terms give: residents (and workers when a work cell is named)."""
        measures = (Measure.RESIDENTS, Measure.WORKERS) if self.work else (Measure.RESIDENTS,)
        return DemandSpec(epsilon=terms.epsilon, k=terms.k, measures=measures, home_column=self.home,
                          work_column=self.work or self.home, weight_column=self.weight,
                          coarse_resolution=terms.pool_resolution)


def cell_fields(governance: Governance, fields: Sequence[str]) -> CellFields:
    """Which of the telco input's ``feature_fields`` are the home cell, the work cell and the weight.

    Raises:
        SiteJobError: A field is unknown or of the wrong type, or no home cell field is named.
    """
    kinds: dict[str, list[str]] = {"string": [], "integer": [], "float": []}
    for name in fields:
        rule = governance.fields.get(name)
        if rule is None or rule.type not in kinds:
            raise _error(f"{governance.dataset}.{name}", "is not a string cell field or a numeric weight field "
                         "of the dataset", "name the home and work cell fields (and optionally one weight field)")
        kinds[rule.type].append(name)
    cells, weights = kinds["string"], kinds["integer"] + kinds["float"]
    if not 1 <= len(cells) <= 2:
        raise _error(f"{governance.dataset}.feature_fields", f"names {len(cells)} cell field(s)",
                     "name the home cell field, then optionally the work cell field, e.g. [home_cell, work_cell]")
    if len(weights) > 1:
        raise _error(f"{governance.dataset}.feature_fields", f"names {len(weights)} numeric fields",
                     "name at most one propensity field in [0, 1] as the weight")
    return CellFields(cells[0], cells[1] if len(cells) > 1 else None, weights[0] if weights else None)


def telco_outputs(result: DemandResult, bytes_sent: int) -> dict[str, Any]:
    """The telco's report for the coordinator (which every party of the job reads): nothing exact about people.

    Row counts, refusals per reason and suppressed cells stay in the telco's log: with a small study area,
    the rows refused as ``outside_area`` would give the exact number of people inside it, below k. The
    report names only which refusal reasons occurred, and the released cell counts the bank sees anyway.
    """
    diag, release = result.diagnostics, result.release
    logger.info("site_selection: %s rows, refused %s, cells suppressed %s", diag.rows, diag.refused,
                diag.cells_suppressed)
    return {
        "role": "telco", "k": release.k, "epsilon_spent": release.epsilon,
        "epsilon_per_measure": release.epsilon_per_measure, "weighted": release.weighted,
        "cells_released": diag.fine_cells_released, "cells_pooled": diag.coarse_cells_released,
        "refusal_reasons": {source: sorted(r for r, n in reasons.items() if n)
                            for source, reasons in diag.refused.items()},
        "bytes_to_peer": bytes_sent,
    }


class TelcoSiteSelection:
    """The telco's ``site_selection`` role: aggregate, noise, send one release to the bank.

    Args:
        patience: How long to wait for the bank to open the job.
        rng: The noise source (default: OS entropy; seed it only in tests).
    """

    def __init__(self, *, patience: SitePatience = SitePatience(), rng: Callable[[], np.random.Generator] | None = None
                 ) -> None:
        self.patience = patience
        self._rng = rng or np.random.default_rng

    def handlers(self) -> dict[JobKind, JobHandler]:
        """The handler per job kind."""
        return {JobKind.SITE_SELECTION: self.handle}

    def handle(self, ctx: JobContext) -> dict[str, Any]:
        """``JobHandler`` of the telco."""
        progress = _progress(ctx)
        progress("reading subscribers", 0.0)
        bank = _peer_party(ctx, "bank")
        try:
            result = self._aggregate(ctx)
        except Exception as exc:
            self._abort(ctx, bank, str(exc) if isinstance(exc, ProtocolError) else f"{type(exc).__name__} at the telco")
            raise
        message = release_to_wire(result.release, str(ctx.job.id))
        body = message.model_dump_json().encode()
        progress(f"sending {len(message.cells)} released cells to the bank", 0.6)
        reply = _send(ctx, bank, RELEASE_CHANNEL, body, "sites.demand_release", self.patience)
        ack = _ack(reply)
        if ack.cells != len(message.cells) or ack.job_id != message.job_id:
            raise RemoteProtocolError("the bank's acknowledgement does not match the release sent")
        progress("done", 1.0)
        return telco_outputs(result, len(body))

    def _aggregate(self, ctx: JobContext) -> DemandResult:
        terms = site_terms(ctx.job)
        inp = ctx.own_input()
        source, governance = ctx.open_dataset(inp.dataset_id)
        fields = cell_fields(governance, inp.feature_fields)
        try:
            spec = fields.spec(terms)
            with source:
                if ctx.settings.engine == "spark":
                    return _aggregate_on_spark(ctx, source, fields.columns, spec, self._rng(), terms.grid)
                return aggregate_demand(source.read(fields.columns), spec, self._rng(), terms.grid)
        except SiteInputError as exc:
            raise SiteJobError.of(exc) from None

    def _abort(self, ctx: JobContext, bank: str, reason: str) -> None:
        """Best effort: tell the bank no release will come, so it fails at once instead of timing out."""
        abort = SiteReleaseAbort(job_id=str(ctx.job.id), reason=reason[:500])
        try:
            _send(ctx, bank, ABORT_CHANNEL, abort.model_dump_json().encode(), "sites.release_abort",
                  SitePatience(ready=min(self.patience.ready, 60.0)))
        except ProtocolError:
            return


def _aggregate_on_spark(ctx: JobContext, source: DataSource, columns: list[str], spec: DemandSpec,
                        rng: np.random.Generator, grid: KmGrid) -> DemandResult:
    """The node's ``engine`` is spark: partial sums per Spark partition, merge and noise in the node (same bytes).

    A Spark source (``spark+parquet``, ``spark+table``) stays in Spark; any other source is read by the node
    and handed to its Spark session.

    Raises:
        ConfigError: PySpark or Java is missing.
    """
    from node.spark import (
        SparkConfig,
        SparkSource,
        aggregate_demand_spark,
        configure_spark,
        frame_to_spark,
        spark_session,
    )

    configure_spark(SparkConfig(ctx.settings.spark_master, ctx.settings.spark_conf))
    spark = spark_session()
    on_spark = isinstance(source, SparkSource)
    frame = source.frame(columns) if on_spark else frame_to_spark(spark, source.read(columns))
    logger.info("site_selection: partial sums on Spark %s (%s)", ctx.settings.spark_master,
                "the source's own DataFrame" if on_spark else "rows read by the node, handed to Spark")
    return aggregate_demand_spark(frame, spec, rng, grid)


def _send(ctx: JobContext, party: str, channel: str, body: bytes, kind: str, patience: SitePatience) -> bytes:
    """Send one message, waiting while the bank has not opened the job yet (or until the job failed)."""
    client = ctx.peer(party)
    deadline, next_check = time.monotonic() + patience.ready, time.monotonic() + patience.status_every
    while True:
        try:
            return client.exchange(ctx.job.id, channel, 1, body, kind=kind)
        except PeerError as exc:
            if exc.http_status not in _NOT_READY or time.monotonic() >= deadline:
                raise
        if time.monotonic() >= next_check:
            _stop_if_failed(ctx)
            next_check = time.monotonic() + patience.status_every
        time.sleep(1.0)


def _stop_if_failed(ctx: JobContext) -> None:
    try:
        job = ctx.coordinator.job(ctx.job.id)
    except CoordinatorError:
        return
    if job.status == JobStatus.FAILED:
        raise ProtocolError(f"the job failed at the other party meanwhile: {job.status_detail[:300]}")


def _ack(reply: bytes) -> SiteReleaseAck:
    try:
        return SiteReleaseAck.model_validate_json(reply)
    except ValidationError:
        raise RemoteProtocolError("malformed acknowledgement from the bank") from None


# ---------------------------------------------------------------- bank


@dataclass
class _Opened:
    """One bank job waiting for its release."""

    terms: SiteTerms
    telco: str
    arrived: threading.Event = field(default_factory=threading.Event)
    release: SiteDemandRelease | None = None
    abort: str | None = None


@dataclass(frozen=True)
class SitePlanResult:
    """What the bank computed.

    Attributes:
        release: The telco's release it planned over.
        demand: Demand per fine cell (pooled cells spread over their children).
        branches: The bank's existing branches.
        problem: The coverage instance.
        plan: The greedy plan.
        milp: The exact check (gain, optimality, greedy's gap), or None on large instances.
    """

    release: DemandRelease
    demand: dict[str, float]
    branches: BranchTable
    problem: CoverageProblem
    plan: SitePlan
    milp: dict[str, Any] | None


class BankSiteSelection:
    """The bank's ``site_selection`` role; one instance per node process owns the ``sites.*`` channels.

    Args:
        patience: How long to wait for the telco's release.
    """

    def __init__(self, *, patience: SitePatience = SitePatience()) -> None:
        self.patience = patience
        self._open: dict[int, _Opened] = {}
        self._cond = threading.Condition()
        self._attached: set[int] = set()

    def handlers(self) -> dict[JobKind, JobHandler]:
        """The handler per job kind."""
        return {JobKind.SITE_SELECTION: self.handle}

    def attach(self, inbox: PeerInbox) -> None:
        """Route ``sites.release`` and ``sites.abort`` of ``inbox`` to the open jobs (idempotent)."""
        if id(inbox) not in self._attached:
            inbox.register_handler(RELEASE_CHANNEL, self._on_release)
            inbox.register_handler(ABORT_CHANNEL, self._on_abort)
            self._attached.add(id(inbox))

    def _opened(self, msg: PeerMessage) -> _Opened:
        with self._cond:
            self._cond.wait_for(lambda: msg.job_id in self._open, timeout=min(self.patience.release, 60.0))
            opened = self._open.get(msg.job_id)
        if opened is None:
            raise ProtocolError(f"job {msg.job_id} is not running on this node (yet)", status_hint=409)
        if msg.sender != opened.telco:
            raise ProtocolError(f"job {msg.job_id} is not shared with party {msg.sender}", status_hint=403)
        if opened.arrived.is_set():
            raise ProtocolError(f"job {msg.job_id} already received its release", status_hint=409)
        return opened

    def _on_release(self, msg: PeerMessage) -> bytes:
        opened = self._opened(msg)
        try:
            release = SiteDemandRelease.model_validate_json(msg.body)
        except ValidationError:
            raise RemoteProtocolError("malformed site release") from None
        if release.job_id != opened.terms.job_id:
            raise RemoteProtocolError("the release names another job")
        opened.release = release
        opened.arrived.set()
        return SiteReleaseAck(job_id=release.job_id, cells=len(release.cells)).model_dump_json().encode()

    def _on_abort(self, msg: PeerMessage) -> bytes:
        opened = self._opened(msg)
        try:
            abort = SiteReleaseAbort.model_validate_json(msg.body)
        except ValidationError:
            raise RemoteProtocolError("malformed abort") from None
        opened.abort = abort.reason
        opened.arrived.set()
        return SiteReleaseAck(job_id=abort.job_id, cells=0).model_dump_json().encode()

    def handle(self, ctx: JobContext) -> dict[str, Any]:
        """``JobHandler`` of the bank."""
        progress = _progress(ctx)
        progress("reading branches", 0.0)
        terms = site_terms(ctx.job)
        branches = read_own_branches(ctx)
        if ctx.inbox is None:
            raise ConfigError("the bank needs the data plane to receive a site release")
        self.attach(ctx.inbox)
        opened = _Opened(terms, _peer_party(ctx, "telco"))
        progress("waiting for the telco's release", 0.1)
        release = self._wait(ctx, opened)
        progress("ranking sites", 0.5)
        result = plan_sites(release, terms, branches)
        progress("drawing maps", 0.8)
        files = write_maps(ctx, result, terms)
        progress("done", 1.0)
        return bank_outputs(result, terms, files)

    def _wait(self, ctx: JobContext, opened: _Opened) -> SiteDemandRelease:
        with self._cond:
            self._open[ctx.job.id] = opened
            self._cond.notify_all()
        try:
            self._await_arrival(ctx, opened)
        finally:
            with self._cond:
                self._open.pop(ctx.job.id, None)
        if opened.abort is not None:
            raise ProtocolError(f"the telco did not release: {opened.abort}")
        assert opened.release is not None
        return opened.release

    def _await_arrival(self, ctx: JobContext, opened: _Opened) -> None:
        """Wait for the release or an abort; stop early if the job failed at the telco meanwhile."""
        deadline = time.monotonic() + self.patience.release
        while not opened.arrived.wait(max(0.0, min(self.patience.status_every, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                raise ProtocolError(f"no release from the telco within {self.patience.release:g} s")
            _stop_if_failed(ctx)


def _branch_input(ctx: JobContext) -> JobInput | None:
    mine = ctx.own_inputs()
    if len(mine) > 1:
        raise _error("inputs", f"{len(mine)} inputs live on the bank's node", "give one branches dataset")
    return mine[0] if mine else None


def read_own_branches(ctx: JobContext) -> BranchTable:
    """The bank's branches (``lat``, ``lng``, optional ``capacity`` named in ``feature_fields``), validated.

    Raises:
        SiteJobError: The input does not name lat and lng, or rows are bad (lines named, never values).
    """
    inp = _branch_input(ctx)
    if inp is None:
        return BranchTable.empty()
    allowed = {"lat", "lng", "capacity"}
    named = [f for f in inp.feature_fields if f in allowed]
    if not {"lat", "lng"} <= set(named) or len(named) != len(inp.feature_fields):
        raise _error("branches.feature_fields", f"names {list(inp.feature_fields)}",
                     "name exactly lat and lng, and optionally capacity")
    source, _ = ctx.open_dataset(inp.dataset_id)
    with source:
        frame = source.read(named)
    try:
        return read_branches(frame, "branches")
    except SiteInputError as exc:
        raise SiteJobError.of(exc) from None


def check_release(release: SiteDemandRelease, terms: SiteTerms) -> DemandRelease:
    """The release as the bank accepts it: k at least the job's, the job's resolutions and ε exactly.

    Raises:
        RemoteProtocolError: The telco's release does not match the signed terms.
    """
    if release.k < terms.k:
        raise RemoteProtocolError(f"the release used k={release.k}, below the job's k={terms.k}")
    if (release.fine_resolution, release.coarse_resolution) != (FINE_RESOLUTION, terms.pool_resolution):
        raise RemoteProtocolError(f"the release is at resolutions {release.fine_resolution}/"
                                  f"{release.coarse_resolution}, not the job's "
                                  f"{FINE_RESOLUTION}/{terms.pool_resolution}")
    if not math.isclose(release.epsilon_spent, terms.epsilon, rel_tol=1e-9):
        raise RemoteProtocolError(f"the release spent epsilon {release.epsilon_spent:g}, not the job's "
                                  f"{terms.epsilon:g}")
    _check_epsilon_split(release, terms)
    _check_cells(release)
    return release_from_wire(release)


def _check_epsilon_split(release: SiteDemandRelease, terms: SiteTerms) -> None:
    """Aliases of one source share its ε, and the sources' ε add up to no more than the job's."""
    per_source: dict[str, set[float]] = {}
    for measure, epsilon in release.epsilon_per_measure.items():
        per_source.setdefault(SOURCE[Measure(measure)], set()).add(round(float(epsilon), 12))
    if any(len(values) != 1 for values in per_source.values()) or \
            sum(min(v) for v in per_source.values()) > terms.epsilon * (1 + 1e-9):
        raise RemoteProtocolError(f"the release's epsilon per measure {dict(release.epsilon_per_measure)} "
                                  f"adds up to more than the job's {terms.epsilon:g}")


def _check_cells(release: SiteDemandRelease) -> None:
    """Every cell a valid H3 id at the resolution it claims (a mislabelled coarse cell would expand hugely)."""
    for cell in release.cells:
        if not h3.is_valid_cell(cell.cell) or h3.get_resolution(cell.cell) != cell.resolution:
            raise RemoteProtocolError(f"the release's cell {cell.cell[:20]!r} is not an H3 cell of resolution "
                                      f"{cell.resolution}")


def plan_sites(message: SiteDemandRelease, terms: SiteTerms, branches: BranchTable) -> SitePlanResult:
    """Rank ``terms.n_sites`` new sites over the released demand (post-processing: no privacy cost).

    Raises:
        SiteJobError: No demand was released, or n_sites exceeds the eligible cells.
        RemoteProtocolError: The release does not match the signed terms.
    """
    release = check_release(message, terms)
    demand = expand_demand(release)
    if not demand:
        raise _error("release", "holds no cell with demand > 0: every cell and every pooled parent had fewer "
                     "than k people (or noised to 0)", "pool into larger cells (a smaller params.pool_resolution, "
                     "e.g. 5) or run over more subscribers; k cannot go below the policy's k_min_cell")
    try:
        problem = build_problem(demand, terms.n_sites, terms.radius_km, branches=branches)
    except SiteInputError as exc:
        raise SiteJobError.of(exc) from None
    plan = greedy_sites(problem)
    return SitePlanResult(release, demand, branches, problem, plan, _exact(problem, plan))


def _exact(problem: CoverageProblem, plan: SitePlan) -> dict[str, Any] | None:
    """The MILP optimum and greedy's gap, on small instances only."""
    if max(len(problem.candidate_cells), len(problem.demand_cells)) > MILP_MAX_CELLS:
        return None
    exact = solve_milp(problem, time_limit_s=30.0)
    gap = (exact.gain - plan.gain) / exact.gain if exact.gain > 0 else 0.0
    return {"gain": round(exact.gain, 3), "optimal": exact.optimal, "greedy_gap": round(max(gap, 0.0), 6),
            "seconds": round(exact.seconds, 3)}


def write_maps(ctx: JobContext, result: SitePlanResult, terms: SiteTerms) -> dict[str, str]:
    """Write the maps to the job's scratch directory, then move them to ``<state>/sites/<job_id>/`` (last step).

    Returns:
        Each file's path relative to the node's state directory.
    """
    scratch = ctx.workdir / "sites"
    scratch.mkdir(parents=True, exist_ok=True)
    title = f"Site selection, job {terms.job_id}: {terms.n_sites} new sites, {terms.radius_km:g} km catchment"
    layers = MapLayers(result.demand, result.branches, result.plan.sites, terms.radius_km, title)
    write_png(scratch / MAP_FILES["map_png"], layers)
    write_html(scratch / MAP_FILES["map_html"], layers)
    write_geojson(scratch / MAP_FILES["release_geojson"], result.release)
    final = ctx.settings.state_path / "sites" / terms.job_id
    _move_into_place(scratch, final)
    return {key: str(Path("sites") / terms.job_id / name) for key, name in MAP_FILES.items()}


def _move_into_place(scratch: Path, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.rmtree(final, ignore_errors=True)  # a retried job replaces the maps of its earlier attempt
    scratch.rename(final)


def _km(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 3)


def bank_outputs(result: SitePlanResult, terms: SiteTerms, files: dict[str, str]) -> dict[str, Any]:
    """The bank's report for the coordinator: the released summary and the ranked sites, aggregates only."""
    plan, release = result.plan, result.release
    total = plan.total_demand
    resolutions = [c.resolution for c in release.cells]
    return {
        "role": "bank", "k": release.k, "epsilon_spent": release.epsilon, "n_sites": terms.n_sites,
        "radius_km": terms.radius_km, "measures": sorted(release.epsilon_per_measure),
        "resolutions": {"cells": release.fine_resolution, "pooled": release.coarse_resolution},
        "cells_received": len(release.cells),
        "cells_released": resolutions.count(release.fine_resolution),
        "cells_pooled": resolutions.count(release.coarse_resolution),
        "demand_cells": len(result.demand), "existing_branches": len(result.branches),
        "coverage_before": round(plan.covered_before / total, 6) if total > 0 else 0.0,
        "coverage_after": round(plan.coverage_fraction, 6), "newly_covered_demand": round(plan.gain, 3),
        "sites": [{"rank": s.rank, "cell": s.cell, "lat": round(s.lat, 6), "lng": round(s.lng, 6),
                   "demand": round(s.demand, 3), "gain": round(s.gain, 3),
                   "nearest_branch_km": _km(s.nearest_branch_km)} for s in plan.sites],
        "milp": result.milp, "files": files, "stored_at": "bank node",
    }
