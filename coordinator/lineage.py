"""Lineage: where a job's data came from and went, and every job a dataset took part in.

A job's lineage joins what the store holds now (the job, its datasets in the catalog, each party's final
report with the egress-ledger entries it listed) with what the audit log says happened (each dataset's
registrations, the policy version in force, approvals, results, and who read or exported the outputs).
The audit log is the history: approvals of earlier attempts and catalog versions that were replaced
are still in it. ``assemble`` and ``dataset_jobs`` are pure; ``job_lineage`` and ``dataset_lineage`` read.

What a viewer sees: an auditor everything; a user of one of the job's parties the same terms, datasets,
approvals and message receipts (the peer saw those bytes arrive), and of the audit events only those
``coordinator.audit.scope`` shows its party. Output values are never shown here, only which keys each
party reported and the digest of what it reported (the values go through ``coordinator.disclosure``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from coordinator.accounts import Principal
from coordinator.audit.log import EXPORT_PAGE
from coordinator.audit.scope import EVERYONE, Scope, Visibility, read_records
from coordinator.context import Context
from coordinator.disclosure import disclosed
from coordinator.errors import NotFound
from protocols.crypto.hashchain import ChainRecord
from protocols.wire.control import DatasetPublic, JobInput, JobPublic, JobResultReport, LedgerEntry, Role
from protocols.wire.filters import FilterSyntaxError, parse_filter

__all__ = ["ApprovalRow", "DatasetLineage", "DatasetUse", "DatasetVersion", "EventRow", "FieldUse", "JobLineage",
           "JobTouch", "PartyMessages", "assemble", "dataset_jobs", "dataset_lineage", "field_uses", "is_output_access",
           "job_lineage"]

_ACCESS_PREFIXES = ("output.", "outputs.", "results.", "psi_results.", "disclosure.", "report.")
_ACCESS_SUFFIXES = (".read", ".viewed", ".exported", ".export", ".downloaded", ".disclosed")


@dataclass(frozen=True)
class FieldUse:
    """One catalog field of an input dataset and how the job uses it (empty ``uses``: not used)."""

    name: str
    type: str
    category: str
    security_level: int
    desensitisation: str
    uses: tuple[str, ...]


@dataclass(frozen=True)
class DatasetVersion:
    """One registration of a dataset as the audit log recorded it."""

    seq: int
    ts: str
    action: str
    schema_digest: str
    row_count: int


@dataclass(frozen=True)
class DatasetUse:
    """One input of the job: the dataset now, the version the job was submitted against, its fields' uses."""

    dataset: DatasetPublic
    version_at_submission: DatasetVersion | None
    fields: tuple[FieldUse, ...]

    @property
    def changed_since(self) -> bool:
        """Whether the catalog entry was re-registered with another schema after the job was submitted."""
        v = self.version_at_submission
        return v is not None and v.schema_digest != self.dataset.schema_digest


@dataclass(frozen=True)
class ApprovalRow:
    """One approval as the audit log recorded it (earlier attempts' approvals included)."""

    seq: int
    ts: str
    approver: str
    actor: str
    signer_key: str
    digest: str


@dataclass(frozen=True)
class PartyMessages:
    """What one party's node reported sending for the job (None fields: it has not reported)."""

    party: str
    status: str | None
    ledger_head: str | None
    messages_sent: int
    bytes_sent: int
    entries: tuple[LedgerEntry, ...]
    output_keys: tuple[str, ...]

    @property
    def listed_all(self) -> bool:
        """Whether the report listed every message it counted."""
        return len(self.entries) == self.messages_sent


@dataclass(frozen=True)
class EventRow:
    """An audit event shown in a lineage (who read or exported outputs, results, decisions)."""

    seq: int
    ts: str
    actor: str
    action: str
    details: dict[str, Any]


@dataclass(frozen=True)
class JobLineage:
    """Everything ``job_lineage`` gathers about one job."""

    job: JobPublic
    datasets: tuple[DatasetUse, ...]
    policy_digest: str | None
    decisions: tuple[EventRow, ...]
    approvals: tuple[ApprovalRow, ...]
    messages: tuple[PartyMessages, ...]
    results: tuple[EventRow, ...]
    accesses: tuple[EventRow, ...]


@dataclass(frozen=True)
class JobTouch:
    """One job that used a dataset, and how."""

    job: JobPublic
    fields: tuple[FieldUse, ...]


@dataclass(frozen=True)
class DatasetLineage:
    """A dataset, its registrations, and every job that touched it."""

    dataset: DatasetPublic
    versions: tuple[DatasetVersion, ...]
    jobs: tuple[JobTouch, ...]


# ---------------------------------------------------------------- pure assembly


def _filter_fields(text: str | None) -> set[str]:
    if not text:
        return set()
    try:
        return {p.field for p in parse_filter(text)}
    except FilterSyntaxError:
        return set()


def field_uses(dataset: DatasetPublic, inp: JobInput) -> tuple[FieldUse, ...]:
    """Each catalog field of ``dataset`` with its uses in ``inp`` (key, feature, label, filter, output, consent)."""
    filtered = _filter_fields(inp.filter)
    out = []
    for f in dataset.fields:
        uses = [use for use, hit in (("key", f.name in inp.key_fields), ("feature", f.name in inp.feature_fields),
                                     ("label", f.name == inp.label_field), ("filter", f.name in filtered),
                                     ("output", f.name in inp.output_fields), ("consent", f.name == inp.consent_field))
                if hit]
        out.append(FieldUse(f.name, f.type, str(f.category), f.security_level, str(f.desensitisation), tuple(uses)))
    return tuple(out)


def is_output_access(action: str) -> bool:
    """Whether an audit action records someone reading, disclosing or exporting a job's outputs."""
    return action.startswith(_ACCESS_PREFIXES) or action.endswith(_ACCESS_SUFFIXES)


def _row(rec: ChainRecord) -> EventRow:
    details = rec.body.get("details")
    return EventRow(rec.seq, rec.ts, str(rec.body.get("actor", "")), str(rec.body.get("action", "")),
                    dict(details) if isinstance(details, dict) else {})


def _version(rec: ChainRecord) -> DatasetVersion:
    d = _row(rec).details
    rows = d.get("row_count")
    return DatasetVersion(rec.seq, rec.ts, str(rec.body.get("action", "")), str(d.get("schema_digest", "")),
                          rows if isinstance(rows, int) else 0)


def _is_registration(rec: ChainRecord) -> bool:
    return str(rec.body.get("action", "")) in ("dataset.registered", "dataset.updated")


def _messages(job: JobPublic, parties: Iterable[str],
              results: Mapping[str, JobResultReport]) -> tuple[PartyMessages, ...]:
    out = []
    for party in parties:
        rep = results.get(party)
        if rep is None:
            out.append(PartyMessages(party, None, None, 0, 0, (), ()))
            continue
        out.append(PartyMessages(party, rep.status, rep.ledger_head, rep.messages_sent, rep.bytes_sent,
                                 tuple(rep.ledger_entries), tuple(sorted(job.outputs.get(party, {}) or rep.outputs))))
    return tuple(out)


def assemble(job: JobPublic, parties: Iterable[str], datasets: Mapping[int, DatasetPublic],
             results: Mapping[str, JobResultReport], job_events: Iterable[ChainRecord],
             registrations: Iterable[ChainRecord], policy_loads: Iterable[ChainRecord]) -> JobLineage:
    """A job's lineage from the store's view (job, datasets, results) and its audit records.

    Args:
        job: the job.
        parties: the job's parties.
        datasets: its input datasets by id.
        results: each party's final report (with the ledger entries it listed).
        job_events: the audit records whose object is ``job:<id>``, in order.
        registrations: the ``dataset.registered``/``dataset.updated`` records of its datasets, in order.
        policy_loads: the ``policy.loaded`` records, in order.
    """
    events = list(job_events)
    submitted = next((r.seq for r in events if r.body.get("action") == "job.submitted"), None)
    regs = list(registrations)
    uses = []
    for inp in job.inputs:
        ds = datasets[inp.dataset_id]
        before = [r for r in regs if r.body.get("object") == f"dataset:{ds.id}"
                  and (submitted is None or r.seq < submitted)]
        uses.append(DatasetUse(ds, _version(before[-1]) if before else None, field_uses(ds, inp)))
    digests = [_row(r).details.get("digest") for r in policy_loads
               if _row(r).details.get("version") == job.policy_version]
    approvals = [ApprovalRow(r.seq, r.ts, str(d.get("approver", "")), str(r.body.get("actor", "")),
                             str(d.get("signer_key", "")), str(d.get("digest", "")))
                 for r in events if r.body.get("action") == "approval.added" for d in [_row(r).details]]
    rows = [_row(r) for r in events]
    return JobLineage(
        job=job, datasets=tuple(uses), policy_digest=str(digests[-1]) if digests else None,
        decisions=tuple(r for r in rows if r.action in ("policy.decided", "job.status", "job.retried")),
        approvals=tuple(approvals), messages=_messages(job, parties, results),
        results=tuple(r for r in rows if r.action == "job.result"),
        accesses=tuple(r for r in rows if is_output_access(r.action)))


def dataset_jobs(dataset_id: int, jobs: Iterable[JobPublic], dataset: DatasetPublic) -> tuple[JobTouch, ...]:
    """The jobs among ``jobs`` with ``dataset_id`` as an input, newest first, with the fields each used."""
    touched = [JobTouch(j, field_uses(dataset, inp)) for j in jobs for inp in j.inputs if inp.dataset_id == dataset_id]
    return tuple(sorted(touched, key=lambda t: t.job.id, reverse=True))


# ---------------------------------------------------------------- reading


def _records(ctx: Context) -> Iterator[ChainRecord]:
    after = -1
    while True:
        page = read_records(ctx, after, EXPORT_PAGE)
        if not page:
            return
        yield from page
        after = page[-1].seq


def _scope(actor: Principal) -> Scope:
    return EVERYONE if actor.role == Role.AUDITOR else Scope(party=actor.party)


def job_lineage(ctx: Context, actor: Principal, job_id: int) -> JobLineage:
    """Job ``job_id``'s lineage as ``actor`` may see it.

    Raises:
        NotFound: no such job, or ``actor`` is not an auditor and its party is not one of the job's.
    """
    with ctx.store.read() as tx:
        job, parties = tx.jobs.get_job(job_id), tx.jobs.job_parties(job_id)
        if actor.role != Role.AUDITOR and actor.party not in parties:
            raise NotFound(f"job {job_id} does not exist")
        job = disclosed(ctx, tx, actor, job)  # its own party's outputs, desensitised to its clearance
        datasets = {i.dataset_id: tx.catalog.get_dataset(i.dataset_id) for i in job.inputs}
        results = {party: report for party, report in tx.jobs.results(job_id).items()
                   if actor.role == Role.AUDITOR or party == actor.party}  # another party's report is its own
    wanted = {f"dataset:{d}" for d in datasets}
    visible = Visibility(ctx, _scope(actor))
    job_events, regs, loads = [], [], []
    for rec in _records(ctx):
        obj, action = str(rec.body.get("object", "")), str(rec.body.get("action", ""))
        if obj == f"job:{job_id}" and visible.shows(rec):
            job_events.append(rec)
        elif obj in wanted and _is_registration(rec):
            regs.append(rec)
        elif action == "policy.loaded":
            loads.append(rec)
    return assemble(job, parties, datasets, results, job_events, regs, loads)


def dataset_lineage(ctx: Context, actor: Principal, dataset_id: int) -> DatasetLineage:
    """Dataset ``dataset_id``, its registrations and the jobs that used it, as ``actor`` may see them.

    Raises:
        NotFound: no such dataset, or ``actor`` is not an auditor and the dataset is another party's.
    """
    with ctx.store.read() as tx:
        dataset = tx.catalog.get_dataset(dataset_id)
        if actor.role != Role.AUDITOR and actor.party != dataset.party:
            raise NotFound(f"dataset {dataset_id} does not exist")
        jobs = [disclosed(ctx, tx, actor, job)
                for job in tx.jobs.list_jobs(party=None if actor.role == Role.AUDITOR else actor.party)]
    versions = tuple(_version(r) for r in _records(ctx)
                     if r.body.get("object") == f"dataset:{dataset_id}" and _is_registration(r))
    return DatasetLineage(dataset, versions, dataset_jobs(dataset_id, jobs, dataset))
