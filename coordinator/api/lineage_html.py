"""HTML of the lineage pages and the ledger cross-check, in the audit pages' look and under their CSP.

Standard library only, no script: every value passes through ``_e`` (``html.escape`` with quotes), including
uploaded file names, job titles and ledger kinds, which come from outside. The upload form posts
``multipart/form-data`` to this origin only (``form-action 'self'``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from html import escape

from coordinator.api.audit_html import page
from coordinator.crosscheck import CrossCheck, grouped
from coordinator.lineage import DatasetLineage, DatasetUse, EventRow, JobLineage, PartyMessages

__all__ = ["crosscheck_page", "dataset_page", "job_lineage_page"]

MAX_DETAILS_CHARS = 200
_UPLOAD = """<form id="crosscheck-form" method="post" action="/console/crosscheck" enctype="multipart/form-data">
<p>The coordinator's audit export (<code>tandem-coordinator audit export --out audit.jsonl</code>, or the
<a href="/audit/export.jsonl">export link</a>) and each node's egress ledger
(<code>tandem-bank ledger export --out bank.jsonl</code>, <code>tandem-telco ledger export --out telco.jsonl</code>).
Which node a ledger belongs to is read from the ledger heads the nodes reported; a party named here must agree.</p>
<table>
<tr><th>audit export</th><td><input type="file" name="audit" required></td><td></td></tr>
<tr><th>ledger 1</th><td><input type="file" name="ledger_1" required></td>
<td><label>its party (optional) <input name="party_1" size="10" maxlength="63"></label></td></tr>
<tr><th>ledger 2</th><td><input type="file" name="ledger_2"></td>
<td><label>its party (optional) <input name="party_2" size="10" maxlength="63"></label></td></tr>
</table>
<button type="submit" id="run-crosscheck">Cross-check</button>
</form>"""


def _e(value: object) -> str:
    """Escape anything for HTML text or a quoted attribute."""
    return escape(str(value), quote=True)


def _table(table_id: str, heads: Sequence[str], rows: Iterable[Sequence[str]], empty: str) -> str:
    """A table of already-escaped cells (or ``empty`` as a paragraph when there are no rows)."""
    body = "\n".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        return f'<p id="{_e(table_id)}">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in heads)
    return f'<table id="{_e(table_id)}"><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>'


def _details(details: dict[str, object]) -> str:
    text = json.dumps(details, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return _e(text if len(text) <= MAX_DETAILS_CHARS else text[: MAX_DETAILS_CHARS - 1] + "…")


def _events(table_id: str, events: Sequence[EventRow], empty: str) -> str:
    rows = ((_e(ev.seq), _e(ev.ts), _e(ev.actor), _e(ev.action), f"<code>{_details(ev.details)}</code>")
            for ev in events)
    return _table(table_id, ("seq", "time", "actor", "action", "details"), rows, empty)


def _dataset_html(use: DatasetUse, index: int) -> str:
    ds, v = use.dataset, use.version_at_submission
    version = (f"registered at seq {_e(v.seq)} ({_e(v.ts)}), schema <code>{_e(v.schema_digest)}</code>"
               if v else "no registration before the job in the audit log")
    changed = ' <strong class="err">re-registered with another schema since</strong>' if use.changed_since else ""
    fields = _table(f"fields-{index}", ("field", "type", "category", "level", "desensitisation", "used as"),
                    ((_e(f.name), _e(f.type), _e(f.category), _e(f.security_level), _e(f.desensitisation),
                      _e(", ".join(f.uses) or "-")) for f in use.fields), "no fields")
    return (f'<h3><a href="/console/datasets/{_e(ds.id)}">dataset {_e(ds.id)}: {_e(ds.party)}/{_e(ds.name)}</a></h3>'
            f"<p>Catalog now: schema <code>{_e(ds.schema_digest)}</code>, created {_e(ds.created_at.isoformat())}, "
            f"{_e(ds.row_count)} rows. Version the job was submitted against: {version}.{changed}</p>{fields}")


def _messages_html(msgs: PartyMessages) -> str:
    if msgs.status is None:
        return f"<h3>{_e(msgs.party)}</h3><p>{_e(msgs.party)} has not reported a result.</p>"
    listed = "" if msgs.listed_all else f" (the report lists the first {len(msgs.entries)})"
    rows = ((_e(m.seq), _e(m.kind), _e(m.peer), _e(m.bytes), f'<code class="d">{_e(m.digest)}</code>')
            for m in msgs.entries)
    return (f"<h3>{_e(msgs.party)}: {_e(msgs.messages_sent)} messages, {_e(msgs.bytes_sent)} bytes{listed}</h3>"
            f"<p>Reported {_e(msgs.status)}; ledger head <code>{_e(msgs.ledger_head or '-')}</code>; output keys: "
            f"{_e(', '.join(msgs.output_keys) or '-')}</p>"
            + _table(f"messages-{msgs.party}", ("seq", "kind", "peer", "bytes", "sha256"), rows,
                     "no ledger entries listed"))


def job_lineage_page(lin: JobLineage, user: str) -> str:
    """One job's lineage: terms, datasets and fields, policy, approvals, messages, outputs and their readers."""
    job = lin.job
    summary = (("title", job.title), ("kind", job.kind), ("purpose", job.purpose), ("status", job.status),
               ("attempt", job.attempt), ("digest", job.digest), ("policy version", job.policy_version),
               ("policy digest", lin.policy_digest or "not in the audit log"), ("created by", job.created_by))
    cells = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in summary)
    approvals = _table("approvals", ("seq", "time", "approver", "by", "signer key", "digest signed"),
                       ((_e(a.seq), _e(a.ts), _e(a.approver), _e(a.actor), f"<code>{_e(a.signer_key)}</code>",
                         f"<code>{_e(a.digest)}</code>") for a in lin.approvals), "no approvals")
    body = "\n".join((
        f'<p><a href="/audit/jobs/{_e(job.id)}">all events of job {_e(job.id)}</a></p>',
        f'<table id="job">{cells}</table>',
        "<h2>Datasets and fields</h2>", *(_dataset_html(u, i) for i, u in enumerate(lin.datasets)),
        "<h2>Policy decisions and status</h2>", _events("decisions", lin.decisions, "none"),
        "<h2>Approvals</h2>", approvals,
        "<h2>Data-plane and control messages, as each node's egress ledger recorded them</h2>",
        '<div id="messages">', *(_messages_html(m) for m in lin.messages), "</div>",
        "<h2>Results reported</h2>", _events("results", lin.results, "no results reported"),
        "<h2>Who read or exported the outputs</h2>",
        _events("accesses", lin.accesses, "nobody has read or exported them"),
    ))
    return page(f"Lineage of job {job.id}", body, user)


def dataset_page(lin: DatasetLineage, user: str) -> str:
    """One dataset: its catalog entry, its registrations, and every job that touched it."""
    ds = lin.dataset
    versions = _table("versions", ("seq", "time", "action", "schema digest", "rows"),
                      ((_e(v.seq), _e(v.ts), _e(v.action), f"<code>{_e(v.schema_digest)}</code>", _e(v.row_count))
                       for v in lin.versions), "no registrations in the audit log")
    jobs = _table("jobs", ("job", "title", "kind", "purpose", "status", "fields used"),
                  ((f'<a href="/console/jobs/{_e(t.job.id)}/lineage">{_e(t.job.id)}</a>', _e(t.job.title),
                    _e(t.job.kind), _e(t.job.purpose), _e(t.job.status),
                    _e("; ".join(f"{f.name} ({', '.join(f.uses)})" for f in t.fields if f.uses) or "-"))
                   for t in lin.jobs), "no job has used this dataset")
    body = (f"<p>Party {_e(ds.party)}; schema <code>{_e(ds.schema_digest)}</code>; created "
            f"{_e(ds.created_at.isoformat())}; {_e(ds.row_count)} rows; {len(ds.fields)} fields.</p>"
            f"<h2>Catalog versions</h2>{versions}<h2>Jobs that touched it</h2>{jobs}")
    return page(f"Dataset {ds.id}: {ds.party}/{ds.name}", body, user)


def crosscheck_page(user: str, result: CrossCheck | None = None, refusal: tuple[str, str, str] | None = None) -> str:
    """The upload form, with the outcome of a run (``result``) or a refusal (field, message, fix) above it."""
    parts = []
    if refusal is not None:
        field, message, fix = refusal
        parts.append(f'<div class="bad" id="outcome"><strong>Refused</strong> ({_e(field)}): {_e(message)}.<br>'
                     f"Fix: {_e(fix)}. This refusal is in the audit log.</div>")
    if result is not None:
        parts.append(_outcome_html(result))
    parts.append(_UPLOAD)
    return page("Ledger cross-check", "\n".join(parts), user)


def _outcome_html(result: CrossCheck) -> str:
    counts = ", ".join(f"{n} {code}" for code, n in sorted(grouped(result.findings).items()))
    verdict = ('<div class="ok" id="outcome"><strong>Cross-check passed</strong>: every message each node sent '
               "is accounted for by a job the coordinator and the other party know.</div>" if result.ok else
               f'<div class="bad" id="outcome"><strong>Cross-check FAILED</strong>: {_e(counts)}.</div>')
    signature = "its chain and signed head verify" if result.signature_checked else "its chain verifies"
    ledgers = _table("ledgers", ("file", "party", "records", "chain", "data-plane messages", "bytes", "jobs",
                                 "sent after the node's report (outside its totals)"),
                     ((_e(s.source), _e(s.party), _e(s.records), "ok" if s.chain_ok else "<strong>BROKEN</strong>",
                       _e(s.data_messages), _e(s.data_bytes), _e(", ".join(map(str, s.jobs)) or "-"),
                       _e(", ".join(f"seq {q}" for q in s.after_report[:20]) or "none")) for s in result.ledgers),
                     "no ledgers")
    findings = _table("findings", ("finding", "party", "job", "ledger seq", "what"),
                      ((_e(f.code), _e(f.party), _e(f.job_id if f.job_id is not None else "-"),
                        _e(f.seq if f.seq is not None else "-"), _e(f.message)) for f in result.findings),
                      "No findings.")
    return (f"{verdict}<p>Audit export: {_e(result.audit_events)} events, head <code>{_e(result.audit_head)}</code>; "
            f"{signature}.</p>{ledgers}<h2>Findings</h2>{findings}")
