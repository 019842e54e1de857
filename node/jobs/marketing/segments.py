"""Job ``segment_sizes``: how many people are in each telco segment, and how many of the bank's product holders.

Parties: the telco holds the subscribers and evaluates the segments, versioned YAML carried in the signed
terms (``params.segments`` with its ``segments_sha256`` and ``segments_version``; grammar and checks:
:mod:`protocols.wire.segments`); the bank holds its customers and names its products as its input's
``feature_fields`` (0/1 holding fields such as ``has_fund``). Both inputs match on one key field of the
same key type (e.g. ``id_number``). The bank is the PSI **receiver**, the telco the **sender**, over the
data plane (channels ``psi.<key_type>`` and ``psi.close``, routed by the telco's PSI sender registry).

Steps::

    telco  checks the segments against its own governance, reads the key and the rule fields,
           evaluates every rule (node.jobs.marketing._segment_rules); in an exact job (no params.epsilon)
           refuses segments whose sizes could be subtracted down to fewer than k people (a segment of
           all but < k subscribers, two segments differing in < k: refuse_differencing); releases each segment's size
           (distinct valid keys) with two-sided geometric noise of ε/2 (L1 sensitivity = number of
           segments) when params.epsilon is set, "suppressed (< k)" below k = params.min_cell
    for each segment s, then each product p (one cardinality-PSI run per cell, psi.cardinality, with a
    fresh key on each side, so runs cannot be linked):
      bank   hello, query chunks a·H(x) of the holders of p, padded with random dummies to all its
             customers with a valid key
      telco  re-blinds and *shuffles* them, sends b·H(y) of the members of s, padded with random
             dummies to all its subscribers with a valid key
      bank   counts the matches: |members of s ∩ holders of p|; closes the run
    bank   releases every cell with noise of ε/2 (L1 sensitivity = segments × products) when
           params.epsilon is set, "suppressed (< k)" below k; keeps the released table in its job
           directory (segment_sizes.csv) and reports it

What each party learns (semi-honest, DDH in ristretto255):

* bank: per cell, the exact size of (segment ∩ product holders) — computed on its node; only the
  k-suppressed, possibly noised figure leaves it — and the number of telco subscribers with a valid key
  (every padded set has that size); the per-segment sizes only as the telco released them (noised,
  suppressed). Never which customer is in which segment, nor any telco identifier or attribute.
* telco: the number of bank customers with a valid key (every padded query has that size); nothing
  about who holds which product or who matched.
* coordinator: the released figures (per segment, per cell), the segment file's version and hash, k, ε
  and byte counts. Never an identifier, a list of people, or a feature value.

Caveats: an exact job's refusal (refuse_differencing) tells the bank only that two of its segments, or
one segment and everyone, differ in fewer than k subscribers; a series of exact jobs (shifted thresholds)
is not checked across jobs: only ε-noised jobs bound what such a series tells. The bank chooses its
product fields, so a "product" held by one customer makes its node's exact count of that cell say whether
that customer is in the segment (inherent in cardinality PSI, as in audience_overlap count mode; the
released figure is suppressed). The bank's node sees exact cell counts (inherent in cardinality PSI; noise protects the
release, not the receiver's own computation), as in ``audience_overlap`` count mode. Padding makes
every run cost a full pass over both parties' keyed populations: segments × products runs of
(bank customers + telco subscribers) group operations each.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from node.governance import Governance
from node.jobs.marketing._bank_link import aborting, reopening_link
from node.jobs.marketing._segment_rules import (
    SUPPRESSED,
    Release,
    SegmentJobError,
    check_segments_here,
    members,
    pad,
    refuse_differencing,
    release,
)
from node.jobs.psi import PsiSender
from node.jobs.psi._link import SessionLink, drive, session_channel
from node.jobs.psi._node import k_of, key_columns, progress_of
from node.jobs.psi._sender import EvaluationMeter, Patience, SenderJob, SenderRegistry
from node.jobs.psi.results import write_rows
from node.runner import JobContext, JobHandler
from protocols.wire.control import JobInput, JobKind, JobPublic, KeyType
from protocols.wire.psi import PsiJobSummary
from protocols.wire.segments import SegmentError, SegmentSet, parse_segments
from psi.cardinality import CardinalityReceiver, CardinalitySender
from psi.identifiers import NormalisedColumn, normalise_column

__all__ = ["RESULT_FILE", "SUPPRESSED", "BankSegmentSizes", "SegmentJobError", "SegmentTerms", "TelcoSegmentSizes",
           "segment_terms"]

logger = logging.getLogger(__name__)

RESULT_FILE = "segment_sizes.csv"
_PREFIX = "segment_sizes"
_TWO_INPUTS = "job {job} has {count} inputs on this node; segment_sizes takes exactly one per party"
Rng = Callable[[], np.random.Generator]


def _error(field_name: str, problem: str, fix: str) -> SegmentJobError:
    return SegmentJobError(f"{field_name}: {problem}; {fix}")


@dataclass(frozen=True)
class SegmentTerms:
    """What both sides agreed to (from the approved, signed job).

    Attributes:
        job_id: The coordinator's job id, as text.
        segments: The parsed segment file (its SHA-256 and version equal the signed params').
        products: The bank's product fields (the bank input's ``feature_fields``), in order.
        k: Least released figure (``params.min_cell``).
        epsilon: The job's ε, split evenly between the segment sizes and the cells (None: exact).
    """

    job_id: str
    segments: SegmentSet
    products: tuple[str, ...]
    k: int
    epsilon: float | None

    @property
    def half_epsilon(self) -> float | None:
        """The ε of each of the two released vectors."""
        return None if self.epsilon is None else self.epsilon / 2

    @property
    def cells(self) -> list[tuple[int, int]]:
        """(segment index, product index) of every run, in run order."""
        return [(s, p) for s in range(len(self.segments.segments)) for p in range(len(self.products))]


def _bank_input(job: JobPublic, own: JobInput, is_bank: bool) -> JobInput:
    if is_bank:
        return own
    others = [i for i in job.inputs if i is not own and i != own]
    if len(others) != 1:
        raise _error("inputs", f"the job has {len(job.inputs)} inputs", "give the telco's subscribers and the "
                     "bank's customers as its two inputs")
    return others[0]


def segment_terms(job: JobPublic, own: JobInput, *, is_bank: bool) -> SegmentTerms:
    """The terms of an approved ``segment_sizes`` job, as this node reads them.

    Raises:
        SegmentJobError: The segment file does not parse or is not the one the params bind; no products.
    """
    params = job.params
    if params.output_mode not in (None, "count"):
        raise _error("params.output_mode", f"segment_sizes has no output mode {params.output_mode!r}",
                     "omit output_mode or use 'count'")
    if params.segments is None:
        raise _error("params.segments", "is missing", "submit the segment file's text with the job")
    try:
        parsed = parse_segments(params.segments)
    except SegmentError as exc:
        raise SegmentJobError(str(exc)) from None
    if (parsed.sha256, parsed.version) != (params.segments_sha256, params.segments_version):
        raise _error("params.segments_sha256", "the segment file is not the one the signed terms name",
                     "resubmit with the file's SHA-256 and version")
    products = tuple(_bank_input(job, own, is_bank).feature_fields)
    if not products:
        raise _error("bank input feature_fields", "names no product", "name the bank's 0/1 product fields")
    return SegmentTerms(str(job.id), parsed, products, k_of(params), params.epsilon)


def _read(ctx: JobContext, inp: JobInput, columns: Sequence[str]) -> tuple[pd.DataFrame, KeyType, Governance]:
    if len(inp.key_fields) != 1:
        raise _error("key_fields", f"names {len(inp.key_fields)} fields", "match on exactly one key field per input")
    source, governance = ctx.open_dataset(inp.dataset_id)
    key = key_columns(governance, list(inp.key_fields))[0]
    with source:
        frame = source.read(list(dict.fromkeys([key.field, *columns])))
    return frame, key.key_type, governance


def _keys(frame: pd.DataFrame, field: str, key_type: KeyType) -> NormalisedColumn:
    raw = [None if pd.isna(v) else str(v) for v in frame[field].tolist()]
    return normalise_column(key_type, raw)


def _subset(column: NormalisedColumn, rows: np.ndarray) -> list[str]:
    """Distinct valid keys of the rows where ``rows`` (a bool mask over the frame) is set, sorted."""
    return sorted({v for v, i in zip(column.values, column.indices, strict=True) if rows[i]})


def _released_sizes(terms: SegmentTerms, sizes: Release) -> list[dict[str, Any]]:
    return [{"segment": s.name, "title": s.title, "size": size}
            for s, size in zip(terms.segments.segments, sizes.values, strict=True)]


# ---------------------------------------------------------------- telco (sender)


def _summary(sessions: object, meter: EvaluationMeter) -> PsiJobSummary:
    return PsiJobSummary(job_id="x", evaluations=meter.evaluated)


def serve_cells(registry: SenderRegistry, terms: SegmentTerms, key_type: KeyType, sets: Sequence[list[str]],
                padded_to: int, *, patience: Patience, progress: Callable[[str, float], None]) -> int:
    """One cardinality-PSI sender run per cell, in ``terms.cells`` order; return the bank's queries in all."""
    queries = 0
    for n, (s, _p) in enumerate(terms.cells):
        session = CardinalitySender(pad(sets[s], padded_to), key_type=key_type, job_id=terms.job_id)
        job = SenderJob(terms.job_id, {key_type: session}, meter=EvaluationMeter(None), summarise=_summary)
        with registry.opened(job):
            progress(f"serving cell {n + 1} of {len(terms.cells)}", round(0.1 + 0.85 * n / len(terms.cells), 2))
            queries += job.wait(patience).evaluations
    return queries


class TelcoSegmentSizes:
    """The telco's ``segment_sizes`` role, sharing the node's PSI sender registry.

    Args:
        psi: The node's PSI sender family (its registry routes ``psi.*`` frames; its patience applies).
        rng: The noise source of the per-segment sizes (default: OS entropy; seed it only in tests).
    """

    def __init__(self, psi: PsiSender, *, rng: Rng | None = None) -> None:
        self.psi, self._rng = psi, rng or np.random.default_rng

    def handlers(self) -> dict[JobKind, JobHandler]:
        """The handler per job kind."""
        return {JobKind.SEGMENT_SIZES: self.handle}

    def handle(self, ctx: JobContext) -> dict[str, Any]:
        """``JobHandler`` of the telco."""
        progress = progress_of(ctx, _PREFIX)
        progress("evaluating the segments", 0.0)
        own = ctx.own_input(refusal=_TWO_INPUTS)
        terms = segment_terms(ctx.job, own, is_bank=False)
        frame, key_type, governance = _read(ctx, own, terms.segments.fields)
        check_segments_here(terms.segments, governance, ctx.job.purpose)
        column = _keys(frame, own.key_fields[0], key_type)
        inside = members(frame, terms.segments.segments)
        sets = [_subset(column, inside[:, s]) for s in range(inside.shape[1])]
        everyone = len(set(column.values))
        if terms.epsilon is None:  # exact figures: no two of them may be subtracted down to fewer than k people
            refuse_differencing(terms.segments.names, sets, everyone, terms.k)
        sizes = release([len(m) for m in sets], terms.k, terms.half_epsilon, len(sets), self._rng())
        registry = self.psi.registry
        if ctx.inbox is not None:
            registry.attach(ctx.inbox)
        with registry.bound(terms.job_id, ctx.peer_party(), still_running=ctx.check_current):
            queries = serve_cells(registry, terms, key_type, sets, everyone, patience=self.psi.patience,
                                  progress=progress)
        progress("done", 1.0)
        logger.info("segment_sizes: %d subscribers with a valid key, %d rows", everyone, len(frame))
        return {"role": "telco", "segments_version": terms.segments.version,
                "segments_sha256": terms.segments.sha256, "k": terms.k, "epsilon": terms.epsilon,
                "epsilon_sizes": terms.half_epsilon, "segments": _released_sizes(terms, sizes),
                "cells_served": len(terms.cells), "bank_queries": queries}


# ---------------------------------------------------------------- bank (receiver)


def _holders(frame: pd.DataFrame, product: str) -> np.ndarray:
    values = pd.to_numeric(frame[product], errors="coerce")
    if values.isna().any() or not values.isin([0, 1]).all():
        raise _error(f"bank input feature_fields: {product}", "holds values other than 0 and 1",
                     "name 0/1 product-holding fields (1 = the customer holds the product)")
    return np.asarray((values == 1).to_numpy(), dtype=bool)


def run_cells(link: SessionLink, terms: SegmentTerms, key_type: KeyType, holders: Sequence[list[str]],
              padded_to: int, *, reopen: Callable[[], None],
              progress: Callable[[str, float], None]) -> tuple[list[int], int]:
    """One cardinality-PSI receiver run per cell; return the exact counts (stay here) and the telco's padded size."""
    exact, sender_size = [], 0
    for n, (_s, p) in enumerate(terms.cells):
        if n:
            reopen()
        progress(f"cell {n + 1} of {len(terms.cells)}", round(0.1 + 0.85 * n / len(terms.cells), 2))
        session = CardinalityReceiver(pad(holders[p], padded_to), key_type=key_type, job_id=terms.job_id)
        drive(session, link, session_channel(key_type))
        link.close([key_type])
        exact.append(session.result().intersection_size)
        sender_size = session.result().sender_size
    return exact, sender_size


class BankSegmentSizes:
    """The bank's ``segment_sizes`` role (PSI receiver).

    Args:
        rng: The noise source of the cells (default: OS entropy; seed it only in tests).
        ready_timeout: How long to wait for the telco to open each run, seconds.
    """

    def __init__(self, *, rng: Rng | None = None, ready_timeout: float = 600.0) -> None:
        self._rng = rng or np.random.default_rng
        self.ready_timeout = ready_timeout

    def handlers(self) -> dict[JobKind, JobHandler]:
        """The handler per job kind."""
        return {JobKind.SEGMENT_SIZES: self.handle}

    def handle(self, ctx: JobContext) -> dict[str, Any]:
        """``JobHandler`` of the bank."""
        progress = progress_of(ctx, _PREFIX)
        progress("reading product holdings", 0.0)
        own = ctx.own_input(refusal=_TWO_INPUTS)
        terms = segment_terms(ctx.job, own, is_bank=True)
        frame, key_type, _ = _read(ctx, own, terms.products)
        column = _keys(frame, own.key_fields[0], key_type)
        holders = [_subset(column, _holders(frame, p)) for p in terms.products]
        link, reopen = reopening_link(ctx, ready_timeout=self.ready_timeout)
        with aborting(link, ctx):
            exact, telco_keys = run_cells(link, terms, key_type, holders, len(set(column.values)), reopen=reopen,
                                          progress=progress)
        cells = release(exact, terms.k, terms.half_epsilon, len(terms.cells), self._rng())
        table = self._table(terms, cells)
        write_rows(ctx.workdir / RESULT_FILE, ["segment", "product", "size"],
                   ([r["segment"], r["product"], str(r["size"])] for r in table))
        progress("done", 1.0)
        return {"role": "bank", "segments_version": terms.segments.version, "segments_sha256": terms.segments.sha256,
                "k": terms.k, "epsilon": terms.epsilon, "epsilon_cells": terms.half_epsilon,
                "products": list(terms.products), "cells": table,
                "telco_keys": telco_keys if telco_keys >= terms.k else SUPPRESSED,
                "result_at": f"bank node: jobs/{ctx.job.id}/{RESULT_FILE}", **link.stats.as_dict()}

    @staticmethod
    def _table(terms: SegmentTerms, cells: Release) -> list[dict[str, Any]]:
        names = terms.segments.names
        return [{"segment": names[s], "product": terms.products[p], "size": size}
                for (s, p), size in zip(terms.cells, cells.values, strict=True)]
