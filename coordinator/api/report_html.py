"""A compliance report as one self-contained HTML page, in the look of the audit pages.

Every value passes through ``html.escape``; the only style is the audit pages' ``CSS`` (admitted by
hash in their ``Content-Security-Policy``). The report's proof is a JSON data block
(``<script type="application/json" id="tandem-report">``), which browsers never execute and the CSP
forbids running anyway; ``coordinator.report_proof.read_proof`` finds it in a saved copy of the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from coordinator.api.audit_html import CSS, NAV
from coordinator.report_proof import proof_json
from coordinator.reports import ReportJob, SignedReport

__all__ = ["render_html"]


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], mono: int | None = None) -> str:
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td{" class=d" if i == mono else ""}>{_e(v)}</td>' for i, v in enumerate(row))
                   + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _dl(rows: Sequence[tuple[str, object]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _outputs(job: ReportJob) -> str:
    rows = []
    for out in job.outputs:
        shown = [f"{k} = {v:g}" for k, v in out.figures.items()] + [f"{k}: {n} items" for k, n in out.sizes.items()]
        rows.append((out.party, ", ".join(shown + [f"{k}: withheld" for k in out.withheld]) or "nothing"))
    return _table(("released to", "what (figures and sizes only)"), rows)


def _job(job: ReportJob, pdf_link: bool) -> str:
    eps = job.epsilon
    spent = ("none (no noised release)" if eps is None else
             f"{eps.epsilon:g} on pair ({eps.bank_dataset_id}, {eps.telco_dataset_id}), charged {eps.charged_at}"
             + (f", refunded {eps.refunded_at}" if eps.refunded_at else ""))
    link = f' <a href="/console/reports/jobs/{job.id}.pdf">PDF</a>' if pdf_link else ""
    summary = _dl([
        ("what ran", f"{job.kind}, purpose {job.purpose}; status {job.status} (attempt {job.attempt})"
                     + (f": {job.status_detail}" if job.status_detail else "")),
        ("submitted", f"{job.created_at} by {job.created_by}; last change {job.updated_at}"),
        ("policy", f"version {job.policy_version}, digest {job.policy_digest or 'not in the audit log'}"),
        ("decision", ("allowed" if job.decision_allowed else "denied") + ": " + ", ".join(job.rules)),
        ("terms digest", job.terms_digest), ("approvals required", ", ".join(job.required_approvals)),
        ("ε spent", spent),
        ("audit evidence", ", ".join(f"#{e.seq} {e.action}" for e in job.evidence)),
    ])
    return (f'<section id="job-{job.id}"><h2>Job {_e(job.id)}: {_e(job.title)}{link}</h2>{summary}'
            "<h3>Datasets</h3>"
            + _table(("party", "dataset", "schema digest", "registered", "fields used"),
                     [(d.party, f"{d.name} (#{d.id})", d.schema_digest, d.registered_at, "; ".join(d.fields_used))
                      for d in job.datasets], mono=2)
            + "<h3>Who approved</h3>"
            + _table(("approver", "user", "signing key", "signed at"),
                     [(a.approver, a.user, a.signer_key, a.signed_at) for a in job.approvals], mono=2)
            + "<h3>What left each node (as its node reported)</h3>"
            + _table(("party", "result", "messages", "bytes", "ledger head"),
                     [(e.party, e.status, f"{e.messages_sent:,}", f"{e.bytes_sent:,}", e.ledger_head or "—")
                      for e in job.egress], mono=4)
            + "<h3>Outputs released</h3>" + _outputs(job) + "</section>")


def render_html(signed: SignedReport, user: str | None = None, pdf_href: str | None = None) -> str:
    """The report page; ``pdf_href`` links its PDF, ``user`` shows who is signed in (pages only)."""
    report = signed.report
    totals = report.totals
    signed_in = (f'<span>signed in as {_e(user)}</span><form method="post" action="/logout">'
                 '<button type="submit">Sign out</button></form>') if user else ""
    pdf = f'<p><a id="pdf" href="{_e(pdf_href)}">Download this report as PDF</a></p>' if pdf_href else ""
    head = report.head
    summary = _dl([
        ("produced", f"{report.produced_at} by {report.produced_by}"),
        *([("period", f"from {report.period_from} to {report.period_to} (jobs active in it)")]
          if report.scope == "period" else []),
        ("policy in force", f"{report.policy_in_force}, digest {report.policy_in_force_digest}"),
        ("audit head", f"seq {head.seq}, hash {head.hash}, signed {head.signed_at}"),
        ("coordinator key", report.coordinator_key), ("report digest", signed.digest),
        ("totals", totals.summary()),
    ])
    verify = ('<p class="ok">Verify later, offline: save this page or its PDF and run <code>tandem-coordinator '
              'report verify FILE --audit audit.jsonl --key ' + _e(report.coordinator_key) + "</code> against an "
              "audit export taken after this report.</p>")
    jobs = "".join(_job(j, pdf_link=report.scope == "period") for j in report.jobs) or "<p>No jobs.</p>"
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(report.title)}</title>'
            f"<style>{CSS}</style></head>\n<body><header><h1>{_e(report.title)}</h1>{signed_in}</header>\n"
            f'{NAV}{pdf}{summary}{verify}{jobs}\n'
            f'<script type="application/json" id="tandem-report">{proof_json(signed)}</script>\n</body></html>\n')
