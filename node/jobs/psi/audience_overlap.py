"""Job ``audience_overlap``: how many bank customers are telco subscribers with a given trait.

Parties: the bank is the PSI **receiver** (client), the telco the **sender** (server); they talk over
the mutual-TLS data plane (channel ``psi.<key_type>``, then ``psi.close``). The job matches on one
key field pair (the first ``key_fields`` of each input, e.g. ``id_number``).

Steps::

    telco  reads its subscribers, keeps those satisfying the job filter (e.g.
           "app_bank == 0 and age >= 25 and age <= 45", ``protocols.wire.filters``), normalises the key
    bank   reads its customers, normalises the key (invalid values counted by type, never matched)
    count mode     one cardinality-PSI session (``psi.cardinality``): hello, query chunks (acked),
                   the telco's re-blinded, *shuffled* copy of the bank's elements, the telco's set
    bank_ids mode  one ECDH-PSI session with output to the receiver (``psi.ecdh``)
    bank   closes (``PsiJobClose``); the telco answers with its evaluation count (``PsiJobSummary``)
    bank   count mode: releases the count, plus two-sided geometric noise when ``epsilon`` is set, and
           "suppressed (< k)" when the released count is below k = params.min_cell of the signed terms;
           bank_ids mode: keeps its own matched customer ids in its job directory (never sent
           anywhere), or discards them when fewer than k matched.

What each party learns (semi-honest parties, DDH in ristretto255):

* bank: in count mode the exact size of the overlap (it computes it; only the released, possibly
  noised and suppressed, figure leaves the node) and the number of telco subscribers passing the
  filter; in bank_ids mode additionally *which* of its own customers are filtered subscribers. Never
  a telco identifier or attribute value.
* telco: the number of distinct bank keys queried; nothing about which matched.
* coordinator: counts only (released overlap or "suppressed (< k)", set sizes, invalid-identifier
  counts, bytes each way); never an identifier.

Caveats: the filter's predicate is known to the bank, so bank_ids mode tells the bank that those
customers satisfy it (that is the purpose, and why it needs approval); ε noise protects what is
released, not what the bank's node computes; the ε budget is tracked per dataset pair by the
coordinator, not here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from node.runner import JobContext
from protocols.wire.control import JobParams, KeyType
from protocols.wire.errors import ConfigError
from protocols.wire.psi import OutputTo, PsiJobSummary
from psi import BatchMapper, RandomSource, Session, serial_map
from psi.cardinality import CardinalityReceiver, CardinalitySender
from psi.ecdh import EcdhPsiReceiver, EcdhPsiSender
from psi.identifiers import NormalisedColumn, normalise_column

from ._link import SessionLink, drive, session_channel
from ._node import ONE_INPUT, k_of, link_to_peer, load_rows, progress_of
from ._rows import PartyRows
from ._sender import DEFAULT_PATIENCE, EvaluationMeter, Patience, SenderJob, SenderRegistry
from .recovery import mapper_for
from .results import MATCHED_IDS_FILE, write_rows

__all__ = ["OverlapTerms", "bank_overlap", "overlap_terms", "run_overlap_receiver", "overlap_sender_job",
           "telco_overlap"]

SUPPRESSED = "suppressed (< k)"
Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class OverlapTerms:
    """What both sides agreed to (from the approved job)."""

    job_id: str
    key_type: KeyType
    mode: Literal["count", "bank_ids"]
    k: int
    epsilon: float | None = None


def overlap_terms(job_id: str, key_type: KeyType, params: JobParams) -> OverlapTerms:
    """The terms of an approved job.

    Raises:
        ConfigError: For an output mode this job kind does not have.
    """
    mode = params.output_mode or "count"
    if mode not in ("count", "bank_ids"):
        raise ConfigError(f"audience_overlap has no output mode {mode!r} (use count or bank_ids)")
    return OverlapTerms(job_id, key_type, mode, k_of(params), params.epsilon)


def _invalid(column: NormalisedColumn) -> dict[str, int]:
    return {f"{kt}:{reason}": n for (kt, reason), n in sorted(column.invalid.items())}


def _released(value: int, k: int) -> int | str:
    return value if value >= k else SUPPRESSED


def run_overlap_receiver(link: SessionLink, rows: PartyRows, terms: OverlapTerms, *, rng: RandomSource | None = None,
                         mapper: BatchMapper = serial_map, progress: Progress | None = None
                         ) -> tuple[dict[str, Any], list[str] | None]:
    """The bank's side: run the session, close, and decide what may be released.

    Returns:
        The outputs for the coordinator (counts only) and, in bank_ids mode when not suppressed, the
        bank's own matched record ids (which stay at the bank).
    """
    column = normalise_column(terms.key_type, rows.keys[terms.key_type])
    common: dict[str, Any] = {"key_type": terms.key_type, "job_id": terms.job_id, "rng": rng, "mapper": mapper}
    channel = session_channel(terms.key_type)
    if progress is not None:
        progress(f"{channel} session", 0.1)
    ids: list[str] | None = None
    if terms.mode == "count":
        card = CardinalityReceiver(column.values, epsilon=terms.epsilon, **common)
        drive(card, link, channel)
        released, sender_size = card.result().released_size, card.result().sender_size
    else:
        ecdh = EcdhPsiReceiver(column.values, output_to=OutputTo.RECEIVER, **common)
        drive(ecdh, link, channel)
        hits = ecdh.result().intersection or frozenset()
        matched = sorted({rows.record_ids[i] for v, i in zip(column.values, column.indices, strict=True) if v in hits})
        released, sender_size = len(hits), ecdh.result().sender_size
        ids = matched if released >= terms.k else None
    summary = link.close([terms.key_type])
    outputs = {
        "role": "receiver", "mode": terms.mode, "key_type": str(terms.key_type), "k": terms.k,
        "epsilon": terms.epsilon, "overlap": _released(released, terms.k),
        "bank_rows": rows.total_rows, "bank_keys_valid": len(column.values),
        "bank_keys_distinct": len(set(column.values)),
        "invalid_identifiers": _invalid(column), "telco_set_size": _released(sender_size, terms.k),
        "telco_evaluations": summary.evaluations, **link.stats.as_dict(),
    }
    if terms.mode == "bank_ids":
        outputs["matched_records_kept"] = len(ids) if ids is not None else SUPPRESSED
    return outputs, ids


def overlap_sender_job(rows: PartyRows, terms: OverlapTerms, *, rng: RandomSource | None = None,
                       mapper: BatchMapper = serial_map) -> tuple[SenderJob, NormalisedColumn]:
    """The telco's side: one sender session over the filtered subscribers' keys."""
    column = normalise_column(terms.key_type, rows.keys[terms.key_type])
    common: dict[str, Any] = {"key_type": terms.key_type, "job_id": terms.job_id, "rng": rng, "mapper": mapper}
    session: Session
    if terms.mode == "count":
        session = CardinalitySender(column.values, **common)
    else:
        session = EcdhPsiSender(column.values, output_to=OutputTo.RECEIVER, **common)
    blind_ahead = getattr(mapper, "blind_ahead", None)
    if blind_ahead is not None:  # the spark engine: the whole set blinded in one Spark job, streamed out per chunk
        blind_ahead(session)

    job = SenderJob(terms.job_id, {terms.key_type: session}, meter=EvaluationMeter(None), summarise=_summary)
    return job, column


def _summary(sessions: object, meter: EvaluationMeter) -> PsiJobSummary:
    return PsiJobSummary(job_id="x", evaluations=meter.evaluated)


def sender_outputs(job: SenderJob, rows: PartyRows, column: NormalisedColumn, terms: OverlapTerms,
                   summary: PsiJobSummary) -> dict[str, Any]:
    """The telco's outputs for the coordinator (counts only)."""
    return {
        "role": "sender", "mode": terms.mode, "key_type": str(terms.key_type),
        "telco_rows": rows.total_rows, "filtered_out": rows.filtered_out,
        "telco_keys_distinct": _released(len(set(column.values)), terms.k),
        "invalid_identifiers": _invalid(column), "bank_queries": summary.evaluations,
        "bytes_to_peer": job.stats.bytes_sent, "bytes_from_peer": job.stats.bytes_received,
    }


# ---------------------------------------------------------------- node handlers


def _terms(ctx: JobContext) -> tuple[OverlapTerms, PartyRows]:
    inp = ctx.own_input(refusal=ONE_INPUT)
    if len(inp.key_fields) != 1:
        raise ConfigError("audience_overlap matches on exactly one key field per input")
    rows = load_rows(ctx, inp)
    key_type = next(iter(rows.keys))
    return overlap_terms(str(ctx.job.id), key_type, ctx.job.params), rows


def bank_overlap(ctx: JobContext) -> dict[str, Any]:
    """``JobHandler`` of the bank (receiver)."""
    progress = progress_of(ctx, "audience_overlap")
    progress("reading customers", 0.0)
    terms, rows = _terms(ctx)
    link = link_to_peer(ctx)
    try:
        outputs, ids = run_overlap_receiver(link, rows, terms, progress=progress)
    except Exception as exc:
        link.abort(f"receiver failed at {ctx.stage}: {type(exc).__name__}")
        raise
    if ids is not None:
        write_rows(ctx.workdir / MATCHED_IDS_FILE, ["customer_id"], ([i] for i in ids))
        outputs["matched_records_at"] = f"bank node: jobs/{ctx.job.id}/{MATCHED_IDS_FILE}"
    progress("done", 1.0)
    return outputs


def telco_overlap(ctx: JobContext, registry: SenderRegistry, *,
                  patience: Patience = DEFAULT_PATIENCE) -> dict[str, Any]:
    """``JobHandler`` of the telco (sender), given the node's sender registry."""
    if ctx.inbox is not None:
        registry.attach(ctx.inbox)
    progress = progress_of(ctx, "audience_overlap")
    progress("reading subscribers, applying the filter", 0.0)
    terms, rows = _terms(ctx)
    with mapper_for(rows, ctx.settings) as mapper:
        job, column = overlap_sender_job(rows, terms, mapper=mapper)
        with registry.opened(job):
            progress("serving the bank", 0.2)
            summary = job.wait(patience, on_tick=_ticker(progress))
    return sender_outputs(job, rows, column, terms, summary)


def _ticker(progress: Progress) -> Callable[[str], None]:
    seen: set[str] = set()

    def tick(stage: str) -> None:
        if stage not in seen:
            seen.add(stage)
            progress(stage, 0.5)

    return tick
