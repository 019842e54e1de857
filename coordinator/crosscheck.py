"""The ledger cross-check: whether the nodes' egress ledgers and the coordinator's audit log tell one story.

Inputs are files, nothing else: each node's ledger export (``tandem-bank ledger export``, one
``ChainRecord`` per line, body ``{"peer", "job_id", "kind", "bytes", "digest", "ref"}``) and the
coordinator's audit export (``tandem-coordinator audit export``). Pure: no I/O, no clock, no store.

Which node a ledger belongs to is not taken on trust. Every ``job.result`` event in the audit log carries
the reporting party's ledger head at the time of its report; a ledger holding the record with that hash
is that party's. A ledger naming a party (``bank=FILE``) that its heads contradict, two ledgers of one
party, a ledger whose heads belong to two parties, and a ledger no reported head and no label place are
refused (``CrossCheckRefused``) before any finding is made.

What is checked, for each ledger of party P (each failure is one ``Finding``):

- ``chain_broken``: the ledger's hash chain verifies (an edited, deleted or reordered record breaks it);
- ``no_job``: every message to another party names a job;
- ``unknown_job``: every job a message names exists in the audit log (``job.submitted``);
- ``not_a_party`` / ``wrong_peer``: P and the message's peer are both parties of that job;
- ``head_missing``: each head P reported is in its ledger (a ledger cut short or rewritten loses it);
- ``totals_mismatch``: the messages and bytes P reported for a job equal its ledger's records for the job
  up to the head it reported;
- ``unknown_attempt``: a message naming the attempt of its job it was sent for (body ``attempt``) names
  one the audit log knows (1 at ``job.submitted``, each ``job.retried`` one more);
- ``unreported``: P reported a result for every job it sent data-plane messages for (messages after its
  last report of a job are counted in the summary, not flagged: a node still serves its peer's last
  requests after it reported). Reports of every attempt count, including a failure report the
  coordinator refused because the attempt had already failed or been retried (``job.result`` with
  ``accepted: false``): a killed or stale attempt's messages are matched to that attempt's report, and
  the summary lists the messages of attempts that did not succeed;
- ``peer_unaware``: when the peer's ledger is given too, the peer reported the job or sent something for it.

Errors::

    CrossCheckRefused   an input that cannot be checked: not an export, a broken audit chain, the wrong node
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from coordinator.audit.chain import verify_export
from protocols.crypto.hashchain import ChainRecord, verify_chain

__all__ = ["AuditFacts", "CrossCheck", "CrossCheckRefused", "Finding", "LedgerInput", "LedgerSummary",
           "audit_facts", "cross_check", "format_text", "grouped",
           "parse_ledger_label"]

COORDINATOR_PEER = "coordinator"
MAX_FINDINGS = 1000
_LEDGER_KEYS = frozenset({"peer", "job_id", "kind", "bytes", "digest"})


class CrossCheckRefused(Exception):
    """An input the cross-check cannot work with; ``field`` names it and ``fix`` says what to give instead."""

    def __init__(self, message: str, *, field: str, fix: str) -> None:
        super().__init__(message)
        self.message, self.field, self.fix = message, field, fix


@dataclass(frozen=True)
class LedgerInput:
    """One ledger export: where it came from (a file name), the party it is said to be (or None), its lines."""

    source: str
    lines: Sequence[str | bytes]
    party: str | None = None


@dataclass(frozen=True)
class Finding:
    """One message, report or ledger that is not accounted for."""

    code: str
    party: str
    message: str
    job_id: int | None = None
    seq: int | None = None


@dataclass(frozen=True)
class LedgerSummary:
    """What one ledger holds: its party, records, data-plane messages and the jobs they name."""

    source: str
    party: str
    records: int
    data_messages: int
    data_bytes: int
    jobs: tuple[int, ...]
    head: str | None
    chain_ok: bool
    after_report: tuple[int, ...] = ()
    failed_attempts: tuple[tuple[int, int, int], ...] = ()
    """``(job, attempt, data-plane messages)`` for each attempt of a job that failed (retried, or the job failed)."""


@dataclass(frozen=True)
class _Report:
    seq: int
    head: str | None
    messages: int
    bytes: int
    attempt: int | None = None


@dataclass
class AuditFacts:
    """What the audit export says: jobs with their parties, and each party's result reports in order."""

    events: int
    head_hash: str
    signature_checked: bool
    jobs: dict[int, tuple[str, ...]] = field(default_factory=dict)
    reports: dict[tuple[int, str], list[_Report]] = field(default_factory=dict)
    attempts: dict[int, int] = field(default_factory=dict)
    """Job -> its latest attempt (1 when submitted, one more per ``job.retried``)."""
    failed: dict[int, set[int]] = field(default_factory=dict)
    """Job -> the attempts that failed (moved to ``failed``, or retried)."""

    def head_owners(self) -> dict[str, str]:
        """Reported ledger head -> the party that reported it."""
        return {r.head: party for (_, party), reps in self.reports.items() for r in reps if r.head}


@dataclass(frozen=True)
class CrossCheck:
    """The outcome: one summary per ledger, the findings (empty when every message is accounted for)."""

    audit_events: int
    audit_head: str
    signature_checked: bool
    ledgers: tuple[LedgerSummary, ...]
    findings: tuple[Finding, ...]
    truncated: bool = False

    @property
    def ok(self) -> bool:
        """True when nothing was flagged."""
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (the page and the CLI's ``--json``)."""
        return {"ok": self.ok, "audit_events": self.audit_events, "audit_head": self.audit_head,
                "signature_checked": self.signature_checked, "truncated": self.truncated,
                "ledgers": [vars(s) | {"jobs": list(s.jobs), "after_report": list(s.after_report)}
                            | {"failed_attempts": [list(a) for a in s.failed_attempts]} for s in self.ledgers],
                "findings": [vars(f) for f in self.findings]}


def parse_ledger_label(value: str) -> tuple[str | None, str]:
    """``"bank=path"`` -> ``("bank", "path")``; ``"path"`` -> ``(None, "path")``."""
    name, sep, rest = value.partition("=")
    if sep and name and name.replace("_", "").replace("-", "").isalnum() and name.islower():
        return name, rest
    return None, value


# ---------------------------------------------------------------- the audit export


def _json_line(raw: str | bytes, where: str, lineno: int, fix: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise CrossCheckRefused(f"{where} line {lineno} is not JSON", field=where, fix=fix) from None


def _audit_records(lines: Iterable[str | bytes]) -> list[ChainRecord]:
    fix = "give the file `tandem-coordinator audit export --out FILE` wrote, unchanged"
    records = []
    for lineno, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        obj = _json_line(raw, "audit", lineno, fix)
        if isinstance(obj, dict) and "signed_head" in obj:
            continue
        try:
            records.append(ChainRecord.from_dict(obj))
        except (KeyError, TypeError, ValueError):
            raise CrossCheckRefused(f"audit line {lineno} is not an audit record", field="audit", fix=fix) from None
    if not records:
        raise CrossCheckRefused("the audit export holds no events", field="audit", fix=fix)
    return records


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def audit_facts(lines: Sequence[str | bytes], public_key_hex: str | None = None) -> AuditFacts:
    """Read jobs and result reports out of an audit export, after checking its chain.

    Args:
        lines: the export's lines.
        public_key_hex: the coordinator's public key; when given the signed head is checked as well.

    Raises:
        CrossCheckRefused: not an audit export, or its chain (or head signature) does not verify.
    """
    records = _audit_records(lines)
    verdict = verify_chain(records)
    if not verdict.ok:
        raise CrossCheckRefused(f"the audit export does not verify: seq {verdict.bad_seq}: {verdict.reason}",
                                field="audit", fix="export the log again; a changed export proves nothing")
    if public_key_hex is not None:
        report = verify_export(lines, public_key_hex)
        if not report.ok:
            raise CrossCheckRefused(f"the audit export's signed head does not verify: {report.reason}",
                                    field="audit",
                                    fix="check the key (`tandem-coordinator public-key`) and export again")
    facts = AuditFacts(events=len(records), head_hash=records[-1].hash, signature_checked=public_key_hex is not None)
    for rec in records:
        _note_event(facts, rec)
    return facts


def _job_id(obj: Any) -> int | None:
    kind, _, ident = str(obj).partition(":")
    return int(ident) if kind == "job" and ident.isdigit() else None


def _note_event(facts: AuditFacts, rec: ChainRecord) -> None:
    body, job_id = rec.body, _job_id(rec.body.get("object"))
    details = body.get("details") or {}
    if job_id is None or not isinstance(details, dict):
        return
    action = body.get("action")
    if action == "job.submitted":
        facts.jobs[job_id] = tuple(str(p) for p in details.get("parties", []))
        facts.attempts[job_id] = 1
    elif action == "job.retried":
        failed = facts.attempts.get(job_id, 1)
        facts.failed.setdefault(job_id, set()).add(failed)
        facts.attempts[job_id] = max(_int(details.get("attempt")), failed + 1)
    elif action == "job.status" and details.get("to") == "failed":
        facts.failed.setdefault(job_id, set()).add(facts.attempts.get(job_id, 1))
    elif action == "job.result" and isinstance(details.get("party"), str):
        head, attempt = details.get("ledger_head"), details.get("attempt")
        facts.reports.setdefault((job_id, details["party"]), []).append(
            _Report(rec.seq, head if isinstance(head, str) else None,
                    _int(details.get("messages_sent")), _int(details.get("bytes_sent")),
                    attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else None))


# ---------------------------------------------------------------- ledgers


def _ledger_records(led: LedgerInput) -> list[ChainRecord]:
    fix = "give the file `tandem-<party> ledger export --out FILE` wrote"
    records = []
    for lineno, raw in enumerate(led.lines, 1):
        if not raw.strip():
            continue
        obj = _json_line(raw, f"ledger {led.source}", lineno, fix)
        try:
            rec = ChainRecord.from_dict(obj)
        except (KeyError, TypeError, ValueError):
            rec = None
        if rec is None or not _LEDGER_KEYS <= set(rec.body):
            raise CrossCheckRefused(f"ledger {led.source} line {lineno} is not an egress ledger record "
                                    "(an audit export given as a ledger?)", field=f"ledger {led.source}", fix=fix)
        records.append(rec)
    return records


def _owner(led: LedgerInput, records: list[ChainRecord], owners: Mapping[str, str]) -> str:
    found = sorted({owners[r.hash] for r in records if r.hash in owners})
    where = f"ledger {led.source}"
    if len(found) > 1:
        raise CrossCheckRefused(f"{where} holds heads reported by {' and '.join(found)}: it is not one node's ledger",
                                field=where, fix="export each node's ledger separately, unchanged")
    if led.party is not None and found and found[0] != led.party:
        raise CrossCheckRefused(
            f"{where} was given as {led.party}'s ledger, but it is {found[0]}'s (it holds the ledger heads "
            f"{found[0]} reported to the coordinator)", field=where,
            fix=f"give {led.party}'s own export (`tandem-{led.party} ledger export`), or label this file {found[0]}=")
    if found:
        return found[0]
    if led.party is not None:
        return led.party
    raise CrossCheckRefused(f"cannot tell whose ledger {led.source} is: it holds no head any party reported",
                            field=where, fix="name its party: --ledger PARTY=FILE")


def _data_plane(rec: ChainRecord) -> bool:
    return rec.body.get("peer") != COORDINATOR_PEER


def _message_findings(party: str, records: list[ChainRecord], facts: AuditFacts) -> list[Finding]:
    out: list[Finding] = []
    for rec in records:
        b, job_id = rec.body, rec.body.get("job_id")
        what = f"seq {rec.seq}: {b.get('kind')!s} ({_int(b.get('bytes'))} bytes) to {b.get('peer')!s}"
        if job_id is None:
            if _data_plane(rec):
                out.append(Finding("no_job", party, f"{what} names no job", None, rec.seq))
            continue
        if not isinstance(job_id, int) or job_id not in facts.jobs:
            out.append(Finding("unknown_job", party, f"{what} is for job {job_id}, which the coordinator "
                               "never heard of", job_id if isinstance(job_id, int) else None, rec.seq))
            continue
        parties, attempt = facts.jobs[job_id], b.get("attempt")
        if attempt is not None and not (isinstance(attempt, int) and 1 <= attempt <= facts.attempts.get(job_id, 1)):
            out.append(Finding("unknown_attempt", party, f"{what} is for attempt {attempt!s} of job {job_id}, which "
                               f"the coordinator never ran (it knows attempts 1..{facts.attempts.get(job_id, 1)})",
                               job_id, rec.seq))
        if party not in parties:
            out.append(Finding("not_a_party", party, f"{what}: {party} is not a party of job {job_id} "
                               f"({', '.join(parties)})", job_id, rec.seq))
        elif _data_plane(rec) and (b.get("peer") not in parties or b.get("peer") == party):
            out.append(Finding("wrong_peer", party, f"{what}: job {job_id}'s parties are {', '.join(parties)}",
                               job_id, rec.seq))
    return out


def _report_findings(party: str, records: list[ChainRecord], facts: AuditFacts) -> list[Finding]:
    out: list[Finding] = []
    seq_of = {r.hash: r.seq for r in records}
    by_job: dict[Any, list[ChainRecord]] = defaultdict(list)
    for r in records:
        by_job[r.body.get("job_id")].append(r)
    for (job_id, who), reports in sorted(facts.reports.items()):
        if who != party:
            continue
        for rep in reports:
            if rep.head is not None and rep.head not in seq_of:
                out.append(Finding("head_missing", party, f"the head {rep.head[:16]}… {party} reported for job "
                                   f"{job_id} is not in its ledger (cut short or rewritten)", job_id))
                continue
            last = -1 if rep.head is None else seq_of[rep.head]
            mine = [r for r in by_job.get(job_id, []) if r.seq <= last]
            count, size = len(mine), sum(_int(r.body.get("bytes")) for r in mine)
            if (count, size) != (rep.messages, rep.bytes):
                out.append(Finding("totals_mismatch", party, f"{party} reported {rep.messages} messages, "
                                   f"{rep.bytes} bytes for job {job_id}; its ledger holds {count}, {size}", job_id))
    return out


def _unreported(party: str, records: list[ChainRecord], facts: AuditFacts) -> tuple[list[Finding], list[int]]:
    """Messages of jobs ``party`` never reported (findings), and the seqs of those sent after its last report.

    A message after the report is not a finding: a node still answers its peer's requests for a job (the
    peer fetching the last response chunks) after its own handler returned and it reported. Such a message
    has passed the job and peer checks; it is only outside the totals, so the summary counts it.
    """
    out: list[Finding] = []
    late: list[int] = []
    seq_of = {r.hash: r.seq for r in records}
    for rec in records:
        job_id = rec.body.get("job_id")
        if not _data_plane(rec) or not isinstance(job_id, int) or job_id not in facts.jobs:
            continue
        reports = facts.reports.get((job_id, party), [])
        last = max((seq_of.get(r.head or "", -1) for r in reports), default=None)
        if last is None:
            out.append(Finding("unreported", party, f"seq {rec.seq}: {party} sent it for job {job_id} but never "
                               "reported a result for that job", job_id, rec.seq))
        elif rec.seq > last:
            late.append(rec.seq)
    return out, late


def _failed_attempts(records: list[ChainRecord], facts: AuditFacts) -> tuple[tuple[int, int, int], ...]:
    """Data-plane messages of attempts the audit log shows failed, per (job, attempt)."""
    counts: dict[tuple[int, int], int] = defaultdict(int)
    for rec in records:
        job_id, attempt = rec.body.get("job_id"), rec.body.get("attempt")
        if _data_plane(rec) and isinstance(job_id, int) and isinstance(attempt, int) \
                and attempt in facts.failed.get(job_id, ()):
            counts[(job_id, attempt)] += 1
    return tuple((j, a, n) for (j, a), n in sorted(counts.items()))


def _peer_findings(ledgers: Mapping[str, list[ChainRecord]], facts: AuditFacts) -> list[Finding]:
    out: list[Finding] = []
    jobs_of = {p: {r.body.get("job_id") for r in recs} for p, recs in ledgers.items()}
    seen: set[tuple[str, str, int]] = set()
    for party, records in ledgers.items():
        for rec in records:
            peer, job_id = rec.body.get("peer"), rec.body.get("job_id")
            if (not _data_plane(rec) or peer not in ledgers or not isinstance(job_id, int)
                    or job_id not in facts.jobs or (party, str(peer), job_id) in seen):
                continue
            seen.add((party, str(peer), job_id))
            if (job_id, peer) not in facts.reports and job_id not in jobs_of[str(peer)]:
                out.append(Finding("peer_unaware", party, f"{party} sent job {job_id}'s messages to {peer}, whose "
                                   "ledger and reports know nothing of that job", job_id, rec.seq))
    return out


def cross_check(ledgers: Sequence[LedgerInput], audit_lines: Sequence[str | bytes],
                public_key_hex: str | None = None) -> CrossCheck:
    """Check every message in ``ledgers`` against the audit export (see the module docstring).

    Raises:
        CrossCheckRefused: an input that is not what it should be (named by ``field``), before any finding.
    """
    if not ledgers:
        raise CrossCheckRefused("no ledger export given", field="ledger", fix="give each node's ledger export")
    facts = audit_facts(audit_lines, public_key_hex)
    owners = facts.head_owners()
    parsed: dict[str, list[ChainRecord]] = {}
    summaries: list[LedgerSummary] = []
    findings: list[Finding] = []
    for led in ledgers:
        records = _ledger_records(led)
        party = _owner(led, records, owners)
        if party in parsed:
            raise CrossCheckRefused(f"two ledgers of {party} given (the second is {led.source})",
                                    field=f"ledger {led.source}", fix="give each node's ledger once")
        parsed[party] = records
        verdict = verify_chain(records)
        if not verdict.ok:
            findings.append(Finding("chain_broken", party, f"ledger {led.source} breaks at seq {verdict.bad_seq}: "
                                    f"{verdict.reason}", None, verdict.bad_seq))
        data = [r for r in records if _data_plane(r)]
        unreported, late = _unreported(party, records, facts)
        summaries.append(LedgerSummary(
            led.source, party, len(records), len(data), sum(_int(r.body.get("bytes")) for r in data),
            tuple(sorted({j for r in records if isinstance(j := r.body.get("job_id"), int)})),
            records[-1].hash if records else None, verdict.ok, tuple(late), _failed_attempts(records, facts)))
        findings += _message_findings(party, records, facts)
        findings += _report_findings(party, records, facts)
        findings += unreported
    findings += _peer_findings(parsed, facts)
    return CrossCheck(facts.events, facts.head_hash, facts.signature_checked, tuple(summaries),
                      tuple(findings[:MAX_FINDINGS]), truncated=len(findings) > MAX_FINDINGS)


def format_text(result: CrossCheck) -> str:
    """The outcome as lines of text: one per ledger, one per finding, then the verdict."""
    signature = "signature checked" if result.signature_checked else "links checked; give --key to check the signature"
    out = [f"audit export: {result.audit_events} events, head {result.audit_head[:16]}… ({signature})"]
    for s in result.ledgers:
        late = (f"; {len(s.after_report)} sent after the node's last report of their job (seq "
                f"{', '.join(map(str, s.after_report[:20]))}: outside the reported totals)") if s.after_report else ""
        failed = ("; of attempts that failed: " + ", ".join(f"job {j} attempt {a}: {n}" for j, a, n in
                                                             s.failed_attempts[:20])) if s.failed_attempts else ""
        out.append(f"ledger {s.source}: {s.party}, {s.records} records, chain {'ok' if s.chain_ok else 'BROKEN'}, "
                   f"{s.data_messages} data-plane messages ({s.data_bytes} bytes) for jobs "
                   f"{', '.join(map(str, s.jobs)) or '-'}{late}{failed}")
    out += [f"FLAGGED {f.code} [{f.party}]: {f.message}" for f in result.findings]
    if result.truncated:
        out.append(f"(only the first {MAX_FINDINGS} findings are listed)")
    counts = ", ".join(f"{n} {code}" for code, n in sorted(grouped(result.findings).items()))
    out.append("cross-check ok: every message is accounted for" if result.ok else f"cross-check FAILED: {counts}")
    return "\n".join(out)


def grouped(findings: Iterable[Finding]) -> dict[str, int]:
    """Finding counts by code."""
    counts: dict[str, int] = defaultdict(int)
    for f in findings:
        counts[f.code] += 1
    return dict(counts)
