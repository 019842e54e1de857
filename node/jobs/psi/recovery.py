"""Job ``recovery`` (失联复联): reach bank customers whose phone number on file no longer works.

Parties: the bank is the **receiver** (client) with its lost-contact list (any of ID number, IMEI,
IDFA, MAC per customer, raw legacy formats); the telco is the **sender** (server) with its
subscribers. Only customers whose consent field is set take part; the others are never queried.
The bank's ``key_fields`` order is the priority (e.g. ID number, then IMEI, then IDFA, then MAC).

Reveal mode (the bank learns the current number of each matched customer)::

    telco  per key type, the epoch's labeled table (tag ‖ AES-GCM(msisdn)) keyed by its OPRF key k,
           prepared once per key epoch and reused (``tables.TableStore``); a key value held by more
           than ``psi.labeled.MAX_LABELS_PER_KEY`` different numbers (a cloned IMEI, a shop's MAC) is
           left out and reported as ``<key_type>:shared_key_value`` (counts only), and the job goes on
    bank   for each key type in priority order, only for customers not matched by an earlier key:
           one labeled-PSI session on ``psi.<key_type>`` (hello, query chunks k·r·H(x), table chunks)
    telco  meters OPRF evaluations: a hello whose size would take the job past ``match_cap`` is
           refused; the bank therefore queries at most ``match_cap`` identifiers in all
    bank   closes; keeps customer id, matching key type and number in its job directory (listings
           mask the number: 138****1234); a customer whose match holds several numbers is a
           conflict, counted, and no number is chosen

Relay mode (the bank learns counts only)::

    bank   for each key type: one ECDH-PSI session with output to the *sender* (``psi.ecdh``)
    telco  learns which of its subscribers' keys the bank holds (a key value of more than
           ``MAX_LABELS_PER_KEY`` numbers is left out of its set and reported as in reveal mode);
           in priority order, each subscriber counts once (keys shared by several subscribers are
           conflicts, skipped); queues the
           approved ``message_template`` for at most ``match_cap`` of them in its outreach channel
           (``outreach.OutboxChannel``), and answers the close with counts

What each party learns (semi-honest parties; OPRF one-more-DH / DDH in ristretto255):

* reveal — bank: the current number of its matched consenting customers (≤ ``match_cap``), the
  table sizes; telco: how many identifiers were queried per key type, not which, nor which matched.
* relay — bank: counts (per-key hits, conflicts, messages queued) and the telco's set sizes; telco:
  which of its subscribers are on the bank's consenting lost-contact list (inherent: it must message
  them) and how many identifiers the bank queried.
* coordinator: counts only (per-key queries and hits, conflicts, invalid identifiers by type and
  reason, shared key values left out — how many values and subscribers, never which — evaluations,
  bytes each way); never an identifier or a number.

Caveats: not secure against a malicious party (a bank could query identifiers of people not on its
list, up to the cap — which is why the telco meters and the job needs approval by both owners and
compliance); in one key epoch the bank sees the same tag for the same identifier across jobs.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from node.runner import JobContext
from node.settings import NodeSettings
from protocols.wire.control import JobParams, KeyType
from protocols.wire.errors import ConfigError
from protocols.wire.psi import OutputTo, PsiJobSummary
from psi import BatchMapper, InvalidIdentifier, RandomSource, Session, serial_map
from psi.ecdh import EcdhPsiReceiver, EcdhPsiSender
from psi.engine import ProcessPoolMapper
from psi.identifiers import normalise_column, normaliser
from psi.labeled import LabeledPsiReceiver, LabeledPsiSender, SharedKeys, refuse_shared_keys
from psi.multi_key import MultiKeyMatcher

from ._link import SessionLink, drive, session_channel
from ._node import ONE_INPUT, link_to_peer, load_rows, progress_of
from ._rows import PartyRows
from ._sender import DEFAULT_PATIENCE, EvaluationMeter, Patience, SenderJob, SenderRegistry
from .outreach import OutreachChannel
from .results import RECOVERED_FILE, write_rows
from .tables import TableStore

__all__ = ["RecoveryTerms", "bank_recovery", "mapper_for", "normalise_labels", "pair_records", "receive_recovery",
           "recovery_sender_job", "recovery_terms", "run_recovery_receiver", "telco_recovery"]

Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class RecoveryTerms:
    """What both sides agreed to (from the approved job)."""

    job_id: str
    priority: tuple[KeyType, ...]
    mode: Literal["reveal", "relay"]
    match_cap: int | None
    message_template: str | None = None


def recovery_terms(job_id: str, priority: Sequence[KeyType], params: JobParams) -> RecoveryTerms:
    """The terms of an approved job.

    Raises:
        ConfigError: For another output mode, reveal without a cap, or relay without a template.
    """
    mode = params.output_mode
    if mode not in ("reveal", "relay"):
        raise ConfigError(f"recovery has no output mode {mode!r} (use reveal or relay)")
    if mode == "reveal" and params.match_cap is None:
        raise ConfigError("reveal-mode recovery needs params.match_cap")
    if mode == "relay" and not params.message_template:
        raise ConfigError("relay-mode recovery needs params.message_template")
    return RecoveryTerms(job_id, tuple(priority), mode, params.match_cap, params.message_template)


def _invalid(counter: Counter[tuple[str, str]]) -> dict[str, int]:
    return {f"{kt}:{reason}": n for (kt, reason), n in sorted(counter.items())}


def _customers(rows: PartyRows, priority: Sequence[KeyType]) -> list[dict[KeyType, str | None]]:
    return [{kt: rows.keys[kt][i] for kt in priority} for i in range(rows.size)]


# ---------------------------------------------------------------- the bank (receiver)


def run_recovery_receiver(link: SessionLink, rows: PartyRows, terms: RecoveryTerms, *,
                          rng: RandomSource | None = None, mapper: BatchMapper = serial_map,
                          progress: Progress | None = None) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """The bank's side of either mode.

    Returns:
        Outputs for the coordinator (counts only) and, in reveal mode, the recovered contacts
        ``(customer id, key type, number)`` that stay at the bank.
    """
    if terms.mode == "reveal":
        return _reveal(link, rows, terms, rng, mapper, progress)
    return _relay(link, rows, terms, rng, mapper, progress), []


def _reveal(link: SessionLink, rows: PartyRows, terms: RecoveryTerms, rng: RandomSource | None,
            mapper: BatchMapper, progress: Progress | None) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    matcher = MultiKeyMatcher(_customers(rows, terms.priority), terms.priority)
    remaining = terms.match_cap if terms.match_cap is not None else None
    ran: list[KeyType] = []
    not_queried = 0
    while (query := matcher.next_query()) is not None:
        key_type, values = query
        asked = values if remaining is None else values[:remaining]
        not_queried += len(values) - len(asked)
        labels: Mapping[str, Sequence[str]] = {}
        if asked:
            if progress is not None:
                progress(f"{session_channel(key_type)} session", len(ran) / len(terms.priority))
            session = LabeledPsiReceiver(asked, key_type=key_type, job_id=terms.job_id, rng=rng, mapper=mapper)
            drive(session, link, session_channel(key_type))
            labels = session.result().labels
            ran.append(key_type)
            remaining = None if remaining is None else remaining - len(asked)
        matcher.add_results(key_type, labels)
    summary = link.close(ran)
    result = matcher.result()
    recovered = [(rows.record_ids[i], str(kt), label) for i, (kt, label) in sorted(result.matches.items())]
    outputs = {
        "role": "receiver", "mode": "reveal", "priority": [str(k) for k in terms.priority],
        "match_cap": terms.match_cap, "lost_rows": rows.total_rows, "excluded_no_consent": rows.no_consent,
        "customers_queried": rows.size, "queried_by_key": {str(k): v for k, v in result.queried_by_key.items()},
        "hits_by_key": {str(k): v for k, v in result.hits_by_key.items()},
        "conflicts": len(result.conflicts), "conflicts_by_key": {str(k): v for k, v in result.conflicts_by_key.items()},
        "recovered": len(recovered), "not_queried_cap": not_queried,
        "invalid_identifiers": _invalid(result.invalid), "telco_evaluations": summary.evaluations,
        **link.stats.as_dict(),
    }
    return outputs, recovered


def _relay(link: SessionLink, rows: PartyRows, terms: RecoveryTerms, rng: RandomSource | None,
           mapper: BatchMapper, progress: Progress | None) -> dict[str, Any]:
    remaining = terms.match_cap
    ran: list[KeyType] = []
    invalid: Counter[tuple[str, str]] = Counter()
    queried: dict[str, int] = {}
    for index, key_type in enumerate(terms.priority):
        column = normalise_column(key_type, rows.keys[key_type])
        invalid.update(column.invalid)
        values = list(dict.fromkeys(column.values))
        asked = values if remaining is None else values[:remaining]
        queried[str(key_type)] = len(asked)
        if not asked:
            continue
        if progress is not None:
            progress(f"{session_channel(key_type)} session", index / len(terms.priority))
        session = EcdhPsiReceiver(asked, key_type=key_type, job_id=terms.job_id, output_to=OutputTo.SENDER,
                                  rng=rng, mapper=mapper)
        drive(session, link, session_channel(key_type))
        ran.append(key_type)
        remaining = None if remaining is None else remaining - len(asked)
    summary = link.close(ran)
    return {
        "role": "receiver", "mode": "relay", "priority": [str(k) for k in terms.priority],
        "match_cap": terms.match_cap, "lost_rows": rows.total_rows, "excluded_no_consent": rows.no_consent,
        "customers_queried": rows.size, "queried_by_key": queried,
        "hits_by_key": {str(k): v for k, v in summary.hits_by_key.items()}, "conflicts": summary.conflicts,
        "relayed": summary.relayed, "invalid_identifiers": _invalid(invalid),
        "telco_evaluations": summary.evaluations, **link.stats.as_dict(),
    }


# ---------------------------------------------------------------- the telco (sender)


@dataclass
class SenderReport:
    """What the telco reports about its side (counts only).

    Attributes:
        tables: Per key type, the table's size and how it was obtained.
        invalid: Refused rows by ``(key type, reason)``; rows whose key value was left out of a
            table as shared by too many numbers count under ``shared_key_value``.
        shared: Per key type, how many key values were left out as shared and how many subscribers held them.
    """

    tables: dict[str, dict[str, Any]]
    invalid: Counter[tuple[str, str]]
    shared: dict[str, dict[str, int]] = field(default_factory=dict)

    def count_shared(self, key_type: KeyType, shared: SharedKeys) -> None:
        """Count the key values of ``key_type`` left out as shared (the values themselves are not kept)."""
        if shared.values:
            self.invalid[(str(key_type), "shared_key_value")] += shared.records
            self.shared[str(key_type)] = {"key_values": shared.values, "subscribers": shared.records}


def _labels(rows: PartyRows, invalid: Counter[tuple[str, str]]) -> list[str | None]:
    """Each subscriber's normalised number; ``None`` if missing (not counted) or invalid (counted)."""
    assert rows.labels is not None
    return normalise_labels(rows.labels, invalid)


def normalise_labels(raw_labels: Sequence[str | None], invalid: Counter[tuple[str, str]]) -> list[str | None]:
    """Each raw number normalised; ``None`` if missing (not counted) or invalid (counted in ``invalid``).

    Pure; every engine (serial, pool, a Spark partition) labels subscribers with this function.
    """
    mobile = normaliser(KeyType.MOBILE)
    out: list[str | None] = []
    append = out.append
    for raw in raw_labels:
        try:
            append(mobile(raw) if raw else None)
        except InvalidIdentifier as exc:
            invalid[(str(KeyType.MOBILE), exc.reason)] += 1
            append(None)
    return out


def _records(rows: PartyRows, key_type: KeyType, labels: list[str | None],
             invalid: Counter[tuple[str, str]]) -> list[tuple[str, str]]:
    """``(canonical key, number)`` of every subscriber with a valid key of ``key_type`` and a valid number."""
    return pair_records(rows.keys[key_type], key_type, labels, invalid)


def pair_records(raw_keys: Sequence[str | None], key_type: KeyType, labels: list[str | None],
                 invalid: Counter[tuple[str, str]]) -> list[tuple[str, str]]:
    """``(canonical key, number)`` of every row whose raw key of ``key_type`` and number (``labels``) are valid.

    Pure; refused keys are counted in ``invalid``. Every engine pairs records with this function.
    """
    column = normalise_column(key_type, raw_keys)
    invalid.update(column.invalid)
    if len(column.values) == column.total == len(labels) and None not in labels:  # all valid: pair at C speed
        return list(zip(column.values, labels, strict=True))  # type: ignore[arg-type]  # no None in labels
    return [(v, lab) for v, i in zip(column.values, column.indices, strict=True) if (lab := labels[i]) is not None]


def recovery_sender_job(rows: PartyRows, terms: RecoveryTerms, *, tables: TableStore, outreach: OutreachChannel,
                        rng: RandomSource | None = None, mapper: BatchMapper = serial_map,
                        progress: Progress | None = None) -> tuple[SenderJob, SenderReport]:
    """The telco's sessions (labeled tables for reveal, ECDH-to-sender for relay) and its close."""
    report = SenderReport({}, Counter())
    labels = _labels(rows, report.invalid)
    sessions: dict[KeyType, Session] = {}
    for index, key_type in enumerate(terms.priority):
        if progress is not None:
            progress(f"preparing {key_type}", index / len(terms.priority))
        records = _records(rows, key_type, labels, report.invalid)
        if terms.mode == "reveal":
            prepared = tables.table(key_type, records, mapper=mapper)
            report.count_shared(key_type, prepared.shared)
            sessions[key_type] = LabeledPsiSender(prepared.table, key=prepared.key, job_id=terms.job_id, mapper=mapper)
            report.tables[str(key_type)] = {"records": prepared.table.count, "epoch": prepared.epoch,
                                            "reused": prepared.reused, "seconds": round(prepared.seconds, 3)}
        else:
            kept, shared = refuse_shared_keys(records)
            report.count_shared(key_type, shared)
            sessions[key_type] = EcdhPsiSender([v for v, _ in kept], key_type=key_type, job_id=terms.job_id,
                                               output_to=OutputTo.SENDER, rng=rng, mapper=mapper)
            report.tables[str(key_type)] = {"records": len(kept)}
    summarise = _relay_summary(rows, labels, terms, outreach) if terms.mode == "relay" else _reveal_summary
    job = SenderJob(terms.job_id, sessions, meter=EvaluationMeter(terms.match_cap), summarise=summarise)
    return job, report


def _reveal_summary(sessions: Mapping[KeyType, Session], meter: EvaluationMeter) -> PsiJobSummary:
    return PsiJobSummary(job_id="x", evaluations=meter.evaluated)


def _relay_summary(rows: PartyRows, labels: list[str | None], terms: RecoveryTerms, outreach: OutreachChannel
                   ) -> Callable[[Mapping[KeyType, Session], EvaluationMeter], PsiJobSummary]:
    def summarise(sessions: Mapping[KeyType, Session], meter: EvaluationMeter) -> PsiJobSummary:
        chosen: dict[int, KeyType] = {}
        hits: dict[KeyType, int] = {}
        conflicts = 0
        for key_type, session in sessions.items():
            found = session.result().intersection if session.done else None  # type: ignore[attr-defined]
            owners = _owners(rows, key_type, labels, found or frozenset())
            hits[key_type] = 0
            for indices in owners.values():
                if len(indices) > 1:
                    conflicts += 1
                elif indices[0] not in chosen:
                    chosen[indices[0]] = key_type
                    hits[key_type] += 1
        recipients = [lab for i in sorted(chosen) if (lab := labels[i]) is not None][: terms.match_cap]
        assert terms.message_template is not None
        relayed = outreach.send(terms.job_id, recipients, terms.message_template)
        return PsiJobSummary(job_id="x", evaluations=meter.evaluated, hits_by_key=hits, conflicts=conflicts,
                             relayed=relayed)

    return summarise


def _owners(rows: PartyRows, key_type: KeyType, labels: list[str | None], found: frozenset[str]
            ) -> dict[str, list[int]]:
    owners: dict[str, list[int]] = {}
    column = normalise_column(key_type, rows.keys[key_type])
    for value, index in zip(column.values, column.indices, strict=True):
        if value in found and labels[index] is not None:
            owners.setdefault(value, []).append(index)
    return owners


def sender_outputs(job: SenderJob, rows: PartyRows, report: SenderReport, terms: RecoveryTerms,
                   summary: PsiJobSummary) -> dict[str, Any]:
    """The telco's outputs for the coordinator (counts only)."""
    out: dict[str, Any] = {
        "role": "sender", "mode": terms.mode, "telco_rows": rows.total_rows, "tables": report.tables,
        "invalid_identifiers": _invalid(report.invalid), "shared_key_values": report.shared,
        "oprf_evaluations": job.meter.evaluated,
        "evaluation_cap": terms.match_cap, "bytes_to_peer": job.stats.bytes_sent,
        "bytes_from_peer": job.stats.bytes_received,
    }
    if terms.mode == "relay":
        out.update({"hits_by_key": {str(k): v for k, v in summary.hits_by_key.items()},
                    "conflicts": summary.conflicts, "relayed": summary.relayed, "outbox": "node.db outreach_outbox"})
    return out


# ---------------------------------------------------------------- node handlers


def _priority(rows: PartyRows) -> tuple[KeyType, ...]:
    return tuple(rows.keys)


def bank_recovery(ctx: JobContext) -> dict[str, Any]:
    """``JobHandler`` of the bank (receiver)."""
    progress = progress_of(ctx, "recovery")
    progress("reading the lost-contact list", 0.0)
    inp = ctx.own_input(refusal=ONE_INPUT)
    rows = load_rows(ctx, inp)
    terms = recovery_terms(str(ctx.job.id), _priority(rows), ctx.job.params)
    outputs = receive_recovery(ctx, rows, terms, progress)
    progress("done", 1.0)
    return outputs


def receive_recovery(ctx: JobContext, rows: PartyRows, terms: RecoveryTerms, progress: Progress, *,
                     ready_timeout: float = 600.0) -> dict[str, Any]:
    """The bank's side of one recovery run over ``rows`` (also win-back's): outputs, reveal-mode rows written."""
    link = link_to_peer(ctx, ready_timeout=ready_timeout)
    try:
        outputs, recovered = run_recovery_receiver(link, rows, terms, progress=progress)
    except Exception as exc:
        link.abort(f"receiver failed at {ctx.stage}: {type(exc).__name__}")
        raise
    if terms.mode == "reveal":
        write_rows(ctx.workdir / RECOVERED_FILE, ["customer_id", "matched_by", "msisdn"], recovered)
        outputs["recovered_at"] = f"bank node: jobs/{ctx.job.id}/{RECOVERED_FILE} (numbers masked in listings)"
    return outputs


def telco_recovery(ctx: JobContext, registry: SenderRegistry, *, tables: TableStore, outreach: OutreachChannel,
                   patience: Patience = DEFAULT_PATIENCE) -> dict[str, Any]:
    """``JobHandler`` of the telco (sender), given the node's registry, table store and outreach channel."""
    if ctx.inbox is not None:
        registry.attach(ctx.inbox)
    progress = progress_of(ctx, "recovery")
    progress("reading subscribers", 0.0)
    inp = ctx.own_input(refusal=ONE_INPUT)
    label = inp.output_fields[0] if inp.output_fields else None
    rows = load_rows(ctx, inp, label_field=label, want_label=KeyType.MOBILE)
    terms = recovery_terms(str(ctx.job.id), _priority(rows), ctx.job.params)
    with mapper_for(rows, ctx.settings) as mapper:
        job, report = recovery_sender_job(rows, terms, tables=tables, outreach=outreach, progress=progress,
                                          mapper=mapper)
        with registry.opened(job):
            progress("serving the bank", 0.5)
            summary = job.wait(patience)
    return sender_outputs(job, rows, report, terms, summary)


POOL_MIN_ROWS = 50_000
"""From this many subscriber rows the telco prepares tables and evaluates queries on a process pool."""


def mapper_for(rows: PartyRows, settings: NodeSettings) -> contextlib.AbstractContextManager[BatchMapper]:
    """The mapper of the node's ``engine`` setting: in-process, a process pool, or the node's Spark session.

    Raises:
        ConfigError: ``engine`` is spark and PySpark or Java is missing.
    """
    if settings.engine == "serial":
        return contextlib.nullcontext(serial_map)
    if settings.engine == "spark":
        from node.spark import SparkMapper, configure_from_settings, spark_session

        configure_from_settings(settings)
        workdir = settings.state_path / "spark"
        workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return SparkMapper(spark_session(), workdir=workdir)
    return _pool_for(rows)


def _pool_for(rows: PartyRows) -> contextlib.AbstractContextManager[BatchMapper]:
    """A process pool over the machine's cores (at most 2 workers below 4 cores) for big tables, else in-process.

    The node is multi-threaded, so workers start from a fork server, never by forking the node itself.
    """
    if rows.total_rows < POOL_MIN_ROWS or (os.cpu_count() or 1) < 2:
        return contextlib.nullcontext(serial_map)
    return ProcessPoolMapper(max(2, (os.cpu_count() or 2) - 1) if (os.cpu_count() or 2) >= 4 else 2,
                             start_method="forkserver")
