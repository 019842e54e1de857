"""Compliance reports: what ran, under which policy, who approved, what left each node, ε spent, outputs.

A report covers one job (``job_report``) or every job active in a period (``period_report``). Its
content is read in one read transaction from the store and the audit log, so it describes one moment:
the audit head it was produced against (seq and hash), signed with the coordinator's audit key like an
export's head. The whole content is then digested (SHA-256 of its canonical JSON) and the digest signed
with the same key, and producing it is audited (``report.produced`` with the digest and the head).

A report travels with its proof (``SignedReport``: the content, its digest, the signature), embedded in
the PDF (an attached file) and the HTML (a JSON data block); ``coordinator.report_proof`` reads it back
and checks a report later, offline, against an audit export and the coordinator's public key.

What each section says, and where it comes from:

- what ran: the job's terms (kind, purpose, title, datasets with their catalog schema digests and the
  fields used and how), status and attempt;
- policy: the version the job was decided under, and that version's digest from the ``policy.loaded``
  events of the audit log ("" if the log never recorded it);
- approvals: approver, user, signing key and time, as recorded (their signatures verified at approval);
- egress: per party, the messages and bytes it sent and its egress-ledger head, as its node reported in
  its result (``job.result``);
- ε: the job's charge on its dataset pair's budget (``coordinator.budgets``), refunded or not;
- outputs: per party, the released figures only (numbers), the sizes of lists and objects, and the names
  of text fields withheld; never row-level values.

Errors: ``NotFound`` (a job the caller may not see, audited as ``report.refused``), ``BadRequest`` (a
period that cannot be read or is too wide or holds too many jobs).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from pydantic import BaseModel

from coordinator import jobs as job_service
from coordinator.accounts import Principal
from coordinator.audit import log as audit_log
from coordinator.audit.chain import SignedHead, sign_head
from coordinator.context import Context
from coordinator.errors import BadRequest, CoordinatorError
from coordinator.store import Transaction
from protocols.crypto.hashchain import ChainRecord
from protocols.wire.canonical import canonical_json, sha256_hex
from protocols.wire.control import DatasetPublic, JobInput, JobPublic, Role

__all__ = [
    "MAX_PERIOD_DAYS",
    "MAX_PERIOD_JOBS",
    "REPORT_CONTEXT",
    "Report",
    "SignedReport",
    "job_report",
    "parse_period",
    "period_report",
]

REPORT_CONTEXT = b"tandem-compliance-report-v1\x00"
"""Prefix of the bytes the coordinator signs for a report: ``REPORT_CONTEXT + digest`` (hex, ASCII)."""
MAX_PERIOD_DAYS = 366
MAX_PERIOD_JOBS = 1000
_EVIDENCE_ACTIONS = frozenset({"job.submitted", "approval.added", "job.result", "budget.charged", "budget.refunded"})
_AUDIT_PAGE = 2000


# ---------------------------------------------------------------- content


class ReportHead(BaseModel):
    """The audit head the report was produced against, signed by the coordinator (as an export's head)."""

    seq: int
    hash: str
    signed_at: str
    key: str
    signature: str


class ReportDataset(BaseModel):
    """One input dataset: its catalog entry and how the job used its fields."""

    id: int
    party: str
    name: str
    schema_digest: str
    registered_at: str
    fields_used: list[str]


class ReportApproval(BaseModel):
    """One recorded approval (its signature was verified over the job digest when it was added)."""

    approver: str
    user: str
    signer_key: str
    signed_at: str


class ReportEgress(BaseModel):
    """What one party's node reported it sent for the job (from its egress ledger)."""

    party: str
    status: str
    messages_sent: int
    bytes_sent: int
    ledger_head: str


class ReportEpsilon(BaseModel):
    """The job's ε charge on its (bank dataset, telco dataset) pair."""

    epsilon: float
    bank_dataset_id: int
    telco_dataset_id: int
    charged_at: str
    refunded_at: str


class ReportOutput(BaseModel):
    """One party's released outputs, desensitised: figures, sizes, and the names of withheld text."""

    party: str
    figures: dict[str, float]
    sizes: dict[str, int]
    withheld: list[str]


class ReportEvidence(BaseModel):
    """An audit event the report rests on, by sequence number and hash."""

    seq: int
    hash: str
    action: str


class ReportJob(BaseModel):
    """Everything the report says about one job."""

    id: int
    kind: str
    purpose: str
    title: str
    status: str
    status_detail: str
    attempt: int
    created_by: str
    created_at: str
    updated_at: str
    terms_digest: str
    policy_version: str
    policy_digest: str
    decision_allowed: bool
    rules: list[str]
    required_approvals: list[str]
    datasets: list[ReportDataset]
    approvals: list[ReportApproval]
    egress: list[ReportEgress]
    epsilon: ReportEpsilon | None
    outputs: list[ReportOutput]
    evidence: list[ReportEvidence]


class ReportTotals(BaseModel):
    """Sums over the report's jobs."""

    jobs: int
    by_status: dict[str, int]
    messages_sent: int
    bytes_sent: int
    epsilon_spent: float

    def summary(self) -> str:
        """One line for people: jobs by status, messages, bytes and ε."""
        statuses = ", ".join(f"{n} {s}" for s, n in self.by_status.items()) or "none"
        return (f"{self.jobs} job{'' if self.jobs == 1 else 's'} ({statuses}); {self.messages_sent:,} messages, "
                f"{self.bytes_sent:,} bytes sent; ε spent {self.epsilon_spent:g}")


class Report(BaseModel):
    """A compliance report's content (what is digested and signed)."""

    scope: Literal["job", "period"]
    title: str
    produced_at: str
    produced_by: str
    period_from: str
    period_to: str
    policy_in_force: str
    policy_in_force_digest: str
    coordinator_key: str
    jobs: list[ReportJob]
    totals: ReportTotals
    head: ReportHead


class SignedReport(BaseModel):
    """A report with its proof: the digest of its content and the coordinator's signature of the digest."""

    report: Report
    digest: str
    signature: str


# ---------------------------------------------------------------- reading the audit log


@dataclass
class _AuditFacts:
    """What the report needs from the audit log, gathered in one walk up to the head."""

    policy_digests: dict[str, str] = field(default_factory=dict)
    evidence: dict[int, list[ReportEvidence]] = field(default_factory=dict)


def _job_id(obj: str) -> int | None:
    match = re.fullmatch(r"job:(\d+)", obj)
    return int(match.group(1)) if match else None


def _records(tx: Transaction, last_seq: int) -> Iterator[ChainRecord]:
    after = -1
    while after < last_seq:
        page = tx.audit.events(after, min(_AUDIT_PAGE, last_seq - after))
        if not page:
            return
        yield from page
        after = page[-1].seq


def _audit_facts(tx: Transaction, last_seq: int, job_ids: set[int]) -> _AuditFacts:
    facts = _AuditFacts()
    for rec in _records(tx, last_seq):
        action, details = str(rec.body.get("action", "")), rec.body.get("details", {})
        if action == "policy.loaded" and isinstance(details, dict):
            facts.policy_digests.setdefault(str(details.get("version", "")), str(details.get("digest", "")))
            continue
        job_id = _job_id(str(rec.body.get("object", "")))
        if job_id in job_ids and action in _EVIDENCE_ACTIONS:
            facts.evidence.setdefault(job_id, []).append(ReportEvidence(seq=rec.seq, hash=rec.hash, action=action))
    return facts


# ---------------------------------------------------------------- assembling one job


def _fields_used(inp: JobInput) -> list[str]:
    used = [f"{name} (key)" for name in inp.key_fields] + [f"{name} (feature)" for name in inp.feature_fields]
    used += [f"{inp.label_field} (label)"] if inp.label_field else []
    used += [f"{name} (output)" for name in inp.output_fields]
    used += [f"{inp.consent_field} (consent)"] if inp.consent_field else []
    used += [f"filter: {inp.filter}"] if inp.filter else []
    return used


def _dataset(inp: JobInput, ds: DatasetPublic) -> ReportDataset:
    return ReportDataset(id=ds.id, party=ds.party, name=ds.name, schema_digest=ds.schema_digest,
                         registered_at=ds.created_at.isoformat(), fields_used=_fields_used(inp))


def _output(party: str, outputs: Any) -> ReportOutput:
    """Counts only: numbers are released figures, lists and objects are sized, text is named, not shown."""
    figures: dict[str, float] = {}
    sizes: dict[str, int] = {}
    withheld: list[str] = []
    items = outputs.items() if isinstance(outputs, dict) else [("value", outputs)]
    for key, value in sorted(items):
        if isinstance(value, bool) or value is None or isinstance(value, str):
            withheld.append(str(key))
        elif isinstance(value, int | float):
            figures[str(key)] = value
        elif isinstance(value, list | dict):
            sizes[str(key)] = len(value)
    return ReportOutput(party=party, figures=figures, sizes=sizes, withheld=withheld)


def _epsilon(tx: Transaction, job_id: int) -> ReportEpsilon | None:
    for charge in tx.budgets.charges():
        if charge.job_id == job_id:
            refunded = charge.refunded_at.isoformat() if charge.refunded_at else ""
            return ReportEpsilon(epsilon=charge.epsilon, bank_dataset_id=charge.bank_dataset_id,
                                 telco_dataset_id=charge.telco_dataset_id, charged_at=charge.charged_at.isoformat(),
                                 refunded_at=refunded)
    return None


def _job(tx: Transaction, job: JobPublic, facts: _AuditFacts) -> ReportJob:
    datasets = [_dataset(inp, tx.catalog.get_dataset(inp.dataset_id)) for inp in job.inputs]
    approvals = [ReportApproval(approver=a.approver, user=a.user, signer_key=a.signer_key,
                                signed_at=a.created_at.isoformat()) for a in job.approvals]
    egress = [ReportEgress(party=party, status=r.status, messages_sent=r.messages_sent, bytes_sent=r.bytes_sent,
                           ledger_head=r.ledger_head or "") for party, r in sorted(tx.jobs.results(job.id).items())]
    return ReportJob(
        id=job.id, kind=job.kind.value, purpose=job.purpose.value, title=job.title, status=job.status.value,
        status_detail=job.status_detail, attempt=job.attempt, created_by=job.created_by,
        created_at=job.created_at.isoformat(), updated_at=job.updated_at.isoformat(), terms_digest=job.digest,
        policy_version=job.policy_version, policy_digest=facts.policy_digests.get(job.policy_version, ""),
        decision_allowed=job.decision.allowed,
        rules=[f"{r.rule_id}: {'pass' if r.allowed else 'deny'}" for r in job.decision.rules],
        required_approvals=list(job.required_approvals), datasets=datasets, approvals=approvals, egress=egress,
        epsilon=_epsilon(tx, job.id),
        outputs=[_output(party, out) for party, out in sorted(job.outputs.items())],
        evidence=facts.evidence.get(job.id, []))


def _totals(report_jobs: list[ReportJob]) -> ReportTotals:
    by_status: dict[str, int] = {}
    for job in report_jobs:
        by_status[job.status] = by_status.get(job.status, 0) + 1
    spent = sum(j.epsilon.epsilon for j in report_jobs if j.epsilon and not j.epsilon.refunded_at)
    return ReportTotals(jobs=len(report_jobs), by_status=dict(sorted(by_status.items())),
                        messages_sent=sum(e.messages_sent for j in report_jobs for e in j.egress),
                        bytes_sent=sum(e.bytes_sent for j in report_jobs for e in j.egress),
                        epsilon_spent=round(spent, 6))


# ---------------------------------------------------------------- producing, signing, auditing


@dataclass(frozen=True)
class _Scope:
    kind: Literal["job", "period"]
    title: str
    period_from: str = ""
    period_to: str = ""


def _sign(ctx: Context, report: Report) -> SignedReport:
    digest = sha256_hex(canonical_json(report.model_dump(mode="json")))
    return SignedReport(report=report, digest=digest, signature=ctx.audit_key.sign(REPORT_CONTEXT + digest.encode()))


def _produce(ctx: Context, actor: str, scope: _Scope, selected: list[JobPublic], tx: Transaction) -> Report:
    head_record = tx.audit.head()
    assert head_record is not None  # the app records policy.loaded at start-up
    head: SignedHead = sign_head(ctx.audit_key, head_record, signed_at=ctx.clock().isoformat())
    facts = _audit_facts(tx, head.seq, {j.id for j in selected})
    report_jobs = [_job(tx, j, facts) for j in sorted(selected, key=lambda j: j.id)]
    return Report(scope=scope.kind, title=scope.title, produced_at=head.signed_at, produced_by=actor,
                  period_from=scope.period_from, period_to=scope.period_to, policy_in_force=ctx.policy.version,
                  policy_in_force_digest=ctx.policy.digest, coordinator_key=ctx.audit_key.public_hex,
                  jobs=report_jobs, totals=_totals(report_jobs), head=ReportHead(**head.to_dict()))


def _audited(ctx: Context, actor: str, obj: str, signed: SignedReport) -> SignedReport:
    audit_log.record_alone(ctx, actor, "report.produced", obj,
                           {"scope": signed.report.scope, "digest": signed.digest, "head_seq": signed.report.head.seq,
                            "jobs": [j.id for j in signed.report.jobs][:50],
                            "period": [signed.report.period_from, signed.report.period_to]})
    return signed


def _refused(ctx: Context, actor: str, obj: str, exc: CoordinatorError) -> CoordinatorError:
    audit_log.record_alone(ctx, actor, "report.refused", obj, {"reason": exc.message[:500]})
    exc.audited = True
    return exc


def job_report(ctx: Context, actor: Principal, job_id: int, *, audit_actor: str | None = None) -> SignedReport:
    """The signed report of one job, produced now; audited as ``report.produced`` on the job.

    Args:
        ctx: service context.
        actor: who asks (what they may see decides the answer).
        job_id: the job.
        audit_actor: how the audit log names the caller, if not ``actor.actor`` (``cli``).

    Raises:
        NotFound: the job does not exist or the caller may not see it (audited as ``report.refused``).
    """
    obj, who = f"job:{job_id}", audit_actor or actor.actor
    try:
        job_service.get_job(ctx, actor, job_id)
    except CoordinatorError as exc:
        raise _refused(ctx, who, obj, exc) from None
    with ctx.store.read() as tx:
        job = tx.jobs.get_job(job_id)
        report = _produce(ctx, who, _Scope("job", f"Compliance report: job {job_id}"), [job], tx)
    return _audited(ctx, who, obj, _sign(ctx, report))


def _parse_day(value: str, name: str) -> datetime:
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text) if "T" in text else datetime.combine(date.fromisoformat(text), time())
    except ValueError:
        raise BadRequest(f"{name} must be a date (YYYY-MM-DD) or an ISO 8601 time, not {value[:40]!r}",
                         field=f"query.{name}", fix=f"give {name} like 2026-12-01") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_period(start: str, end: str) -> tuple[datetime, datetime]:
    """The period ``[start, end)`` from two dates or ISO times; a bare ``end`` date includes that whole day.

    Raises:
        BadRequest: a value that is not a date, ``end`` before ``start``, or more than ``MAX_PERIOD_DAYS``.
    """
    begin, finish = _parse_day(start, "from"), _parse_day(end, "to")
    if "T" not in end.strip():
        finish += timedelta(days=1)
    if finish <= begin:
        raise BadRequest(f"the period ends ({end}) before it starts ({start})", field="query.to",
                         fix="give a 'to' on or after 'from'")
    if finish - begin > timedelta(days=MAX_PERIOD_DAYS):
        raise BadRequest(f"a period is at most {MAX_PERIOD_DAYS} days", field="query.to",
                         fix="split the period into years")
    return begin, finish


def period_report(ctx: Context, actor: Principal, start: str, end: str, *,
                  audit_actor: str | None = None) -> SignedReport:
    """The signed report of every job the caller may see that was active in the period.

    A job is active in ``[from, to)`` if its life so far (created to last updated) overlaps it.
    ``audit_actor`` is as for ``job_report``.

    Raises:
        BadRequest: a bad period (``parse_period``) or more than ``MAX_PERIOD_JOBS`` jobs in it
            (audited as ``report.refused``).
    """
    obj, who = "report:period", audit_actor or actor.actor
    try:
        begin, finish = parse_period(start, end)
    except BadRequest as exc:
        raise _refused(ctx, who, obj, exc) from None
    scope = _Scope("period", f"Compliance report: {begin.date()} to {(finish - timedelta(seconds=1)).date()}",
                   begin.isoformat(), finish.isoformat())
    party = None if actor.role == Role.AUDITOR else actor.party
    with ctx.store.read() as tx:
        selected = [j for j in tx.jobs.list_jobs(party=party) if j.created_at < finish and j.updated_at >= begin]
        report = _produce(ctx, who, scope, selected, tx) if len(selected) <= MAX_PERIOD_JOBS else None
    if report is None:
        too_many = BadRequest(f"{len(selected)} jobs in the period; a report holds at most {MAX_PERIOD_JOBS}",
                              field="query.to", fix="choose a shorter period")
        raise _refused(ctx, who, obj, too_many)
    return _audited(ctx, who, obj, _sign(ctx, report))
