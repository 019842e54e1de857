"""HTML of the compliance console: the approvals inbox, one job's approval page, the policy and its history.

Rendered like ``audit_html`` (standard library only, no script, no CDN) and with its ``CSS`` and
``SECURITY_HEADERS``, so the same Content-Security-Policy admits the same single inline style. Every
value passes through ``_e`` (``html.escape`` with quotes); job titles, filters and rejection reasons
are user-supplied. Forms post to the same origin only (``form-action 'self'``); the approval form
takes a signature made outside the browser and never asks for a key.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from string import Template

from coordinator.api.audit_html import outputs_html, page
from coordinator.console import JobReview, PolicyVersion, RuleText, missing_approvals, sign_command
from coordinator.policy import Policy
from protocols.crypto.signing import APPROVAL_CONTEXT
from protocols.wire.control import DatasetPublic, FieldSpec, JobInput, JobPublic, JobStatus

__all__ = ["approvals_page", "job_page", "my_job_page", "my_jobs_page", "policy_page"]

_APPROVE = Template("""<h2>Approve as $approver</h2>
<form id="approve-form" method="post" action="/console/jobs/$job/approve">
<p>Sign on your own machine with your own key; this page never asks for it. The command shows these
terms, recomputes the digest from them (it must read <code>$digest</code>) and prints the signature:</p>
<pre id="sign-command">$command</pre>
<p>(It reads your API token from <code>TANDEM_API_TOKEN</code> and this coordinator's address from
<code>TANDEM_COORDINATOR_URL</code>; <code>job auditor-key --out officer.key</code> made the key.)</p>
<label>Signature (128 hex characters)<br>
<textarea name="signature" rows="3" cols="70" required minlength="128" maxlength="200"
 autocomplete="off" spellcheck="false"></textarea></label><br>
<button type="submit" id="approve">Approve job $job as $approver</button>
</form>""")
_REJECT = Template("""<h2>Reject</h2>
<form id="reject-form" method="post" action="/console/jobs/$job/reject">
<label>Reason (stored with the job and in the audit log)<br>
<input name="reason" size="70" maxlength="500" required></label>
<button type="submit" id="reject">Reject job $job</button>
</form>""")
_USES = (("key_fields", "match key"), ("feature_fields", "feature"), ("output_fields", "output"))


def _e(value: object) -> str:
    """Escape anything for HTML text or a quoted attribute."""
    return escape(str(value), quote=True)


def _table(table_id: str, head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A table of already-escaped cells."""
    ths = "".join(f"<th>{_e(h)}</th>" for h in head)
    trs = "\n".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><thead><tr>{ths}</tr></thead><tbody>\n{trs}\n</tbody></table>'


def _job_link(job_id: int) -> str:
    return f'<a href="/console/jobs/{int(job_id)}">job {int(job_id)}</a>'


def _parties(job: JobPublic) -> str:
    return ", ".join(sorted({i.party for i in job.inputs if i.party})) or "?"


# ---------------------------------------------------------------- the inbox


def approvals_page(waiting: list[JobPublic], approver: str | None, user: str, notice: str = "") -> str:
    """The jobs that wait for the signed-in user's signature (as ``approver``), each linked to its page."""
    note = f'<p class="ok" id="notice">{_e(notice)}</p>' if notice else ""
    if approver is None:
        body = "<p>Your role signs no approvals.</p>"
    elif not waiting:
        body = f'<p id="empty">Nothing waits for your signature as {_e(approver)}.</p>'
    else:
        rows = [(_job_link(j.id), _e(j.title), _e(j.kind), _e(j.purpose), _e(_parties(j)), _e(j.created_by),
                 _e(j.created_at.isoformat(timespec="seconds")), _e(", ".join(missing_approvals(j))))
                for j in waiting]
        body = (f"<p>{len(waiting)} job(s) wait for your signature as {_e(approver)}.</p>"
                + _table("inbox", ("job", "title", "kind", "purpose", "parties", "submitted by", "submitted",
                                   "still waiting for"), rows))
    return page("Tandem console: approvals", note + body, user)


# ---------------------------------------------------------------- one job


def _terms(job: JobPublic) -> str:
    p = job.params
    eps = (f"{p.epsilon:g} (noised release, charged to the dataset pair's budget)" if p.epsilon is not None
           else "none: exact counts, suppressed below k; nothing charged")
    rows = [("title", job.title), ("kind", job.kind), ("purpose", job.purpose), ("parties", _parties(job)),
            ("attempt", job.attempt), ("submitted by", job.created_by),
            ("submitted at", job.created_at.isoformat(timespec="seconds")),
            ("output mode", p.output_mode or "the kind's default"),
            ("smallest released count (k, min_cell)", p.min_cell if p.min_cell is not None else "policy default"),
            ("ε (epsilon)", eps), ("match cap", p.match_cap if p.match_cap is not None else "none set")]
    rest = p.model_dump(exclude_none=True, exclude={"output_mode", "min_cell", "epsilon", "match_cap"})
    rows += [(k, v) for k, v in sorted(rest.items())]
    return '<table id="terms">' + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows) + "</table>"


def _uses(inp: JobInput) -> list[tuple[str, str]]:
    """(field, how the job uses it) for each field an input names."""
    uses = [(name, label) for attr, label in _USES for name in getattr(inp, attr)]
    if inp.label_field:
        uses.append((inp.label_field, "label (stays with its owner)"))
    if inp.consent_field:
        uses.append((inp.consent_field, "consent"))
    return uses


def _field_cells(spec: FieldSpec | None) -> tuple[str, str, str]:
    if spec is None:
        return ("not in the catalog", "", "")
    return (f"level {spec.security_level}", _e(spec.desensitisation), _e(spec.category))


def _datasets(job: JobPublic, datasets: dict[int, DatasetPublic]) -> str:
    rows = []
    for inp in job.inputs:
        ds = datasets.get(inp.dataset_id)
        name = (f"{ds.name} (dataset {ds.id}, {ds.row_count} rows)" if ds
                else f"dataset {inp.dataset_id}: not in the catalog")
        specs = {f.name: f for f in ds.fields} if ds else {}
        uses = _uses(inp) or [("", "no fields named")]
        for field, use in uses:
            level, desens, category = _field_cells(specs.get(field)) if field else ("", "", "")
            rows.append((_e(name), _e(inp.party or (ds.party if ds else "?")), _e(field), _e(use), _e(level),
                         desens, category))
        if inp.filter:
            rows.append((_e(name), _e(inp.party or "?"), "", f"filter <code>{_e(inp.filter)}</code>", "", "", ""))
    return _table("datasets", ("dataset", "party", "field", "used as", "level (JR/T 0197)", "desensitisation",
                               "category"), rows)


def _decision(job: JobPublic) -> str:
    d = job.decision
    verdict = "allowed" if d.allowed else "DENIED"
    rows = [(_e(r.rule_id), "ok" if r.allowed else '<strong class="err">DENY</strong>', _e(r.field or ""),
             _e(r.message.removeprefix(f"{r.rule_id}: ")), _e(r.fix or "")) for r in d.rules]
    return (f'<p id="verdict">Policy <a href="/console/policy">{_e(d.policy_version)}</a>: {verdict}; '
            f"required approvals: {_e(', '.join(d.required_approvals) or 'none')}</p>"
            + _table("decision", ("rule", "verdict", "field", "message", "fix"), rows))


def _approvals(job: JobPublic) -> str:
    by = {a.approver: a for a in job.approvals}
    rows = []
    for approver in job.required_approvals:
        a = by.get(approver)
        rows.append((_e(approver), "signed" if a else "<strong>waiting</strong>", _e(a.user if a else ""),
                     _e(a.created_at.isoformat(timespec="seconds") if a else ""),
                     f"<code>{_e(a.signer_key)}</code>" if a else ""))
    return _table("approvals", ("approver", "state", "by", "at", "signing key"), rows)


def _digest(job: JobPublic) -> str:
    context = _e(APPROVAL_CONTEXT.decode("ascii").rstrip("\x00"))
    return (f'<p>Digest of the terms (SHA-256 of their canonical JSON, policy version and attempt included): '
            f'<code id="digest">{_e(job.digest)}</code><br>An approval is an Ed25519 signature over '
            f"<code>{context}\\0</code> followed by these 32 bytes, with the approver's registered key.</p>")


def _links(job_id: int) -> str:
    """Where else the officer reads this job: its audit events, lineage and compliance report."""
    return (f'<p id="links"><a href="/audit/jobs/{job_id}">audit events</a> · '
            f'<a href="/console/jobs/{job_id}/lineage">lineage</a> · '
            f'<a href="/console/reports/jobs/{job_id}.html">compliance report</a> '
            f'(<a href="/console/reports/jobs/{job_id}.pdf">PDF</a>)</p>')


def job_page(review: JobReview, user: str, may_reject: bool, notice: str = "") -> str:
    """One job for its approvers: terms in words, datasets and fields, the decision, the digest, who signed.

    Args:
        review: the job, its datasets, and what the viewer signs as if the job waits on the viewer.
        user: the signed-in user's name.
        may_reject: show the rejection form (the job is pending and the viewer may reject it).
        notice: a line to show on top (e.g. after an approval).
    """
    job = review.job
    status = f"{job.status}" + (f": {job.status_detail}" if job.status_detail else "")
    parts = [f'<p class="ok" id="notice">{_e(notice)}</p>' if notice else "",
             f'<p id="status" class="{"ok" if job.status != JobStatus.CANCELLED else "bad"}">Status: {_e(status)}</p>',
             "<h2>Terms</h2>", _terms(job), "<h2>Datasets and fields</h2>", _datasets(job, review.datasets),
             "<h2>Policy decision</h2>", _decision(job), "<h2>Digest to be signed</h2>", _digest(job),
             "<h2>Approvals</h2>", _approvals(job),
             _links(int(job.id))]
    if review.approver:
        parts.append(_APPROVE.substitute(approver=_e(review.approver), job=int(job.id), digest=_e(job.digest),
                                         command=_e(sign_command(job.id, review.approver))))
    if may_reject:
        parts.append(_REJECT.substitute(job=int(job.id)))
    return page(f"Tandem console: job {int(job.id)}", "\n".join(parts), user)


# ---------------------------------------------------------------- the policy


def _history(history: list[PolicyVersion]) -> str:
    rows = []
    for v in history:
        state = "in force" if v.in_force else "past"
        if v.ambiguous:
            state += '; <strong class="err">same version, other digest</strong>'
        jobs = ", ".join(_job_link(j) for j in v.job_ids) or "none"
        loaded = f"{v.first_ts} (seq {v.first_seq})" if v.first_seq >= 0 else "not in the audit log"
        rows.append((_e(v.version), f"<code>{_e(v.digest)}</code>", state, _e(loaded), _e(v.last_ts), _e(v.loads),
                     jobs))
    return _table("history", ("version", "digest (SHA-256 of the file)", "state", "first loaded", "last loaded",
                              "loads", "jobs decided under it"), rows)


def policy_page(policy: Policy, rules: list[RuleText], history: list[PolicyVersion], user: str) -> str:
    """The policy in force (version, digest), every rule with its text and parameters, and past versions."""
    rows = [(f'<code id="rule-{_e(r.rule_id)}">{_e(r.rule_id)}</code>', _e(r.text),
             "<br>".join(f"{_e(k)} = {_e(v)}" for k, v in r.parameters.items()) or "none")
            for r in rules]
    body = "\n".join((
        f'<p id="in-force">In force: version <strong>{_e(policy.version)}</strong>, digest '
        f'<code id="policy-digest">{_e(policy.digest)}</code> (SHA-256 of the policy file; every decision records '
        "its version, and approvals sign it)</p>",
        "<h2>Rules</h2>", _table("rules", ("rule", "what it checks", "parameters (this policy)"), rows),
        "<h2>Versions</h2><p>Each coordinator start audits the policy it loaded (<code>policy.loaded</code>); "
        "each job keeps the version it was decided under.</p>", _history(history),
    ))
    return page("Tandem console: policy", body, user)


# ---------------------------------------------------------------- a party user's own jobs


def my_jobs_page(found: list[JobPublic], user: str) -> str:
    """The jobs the user may see, newest first, linked to their outputs."""
    rows = [(f'<a href="/console/my-jobs/{int(j.id)}">{int(j.id)}</a>', _e(j.title), _e(j.kind), _e(j.status))
            for j in sorted(found, key=lambda j: j.id, reverse=True)]
    body = _table("my-jobs", ("job", "title", "kind", "status"), rows) if rows else '<p id="my-jobs">no jobs</p>'
    return page("Tandem: your jobs", body, user)


def my_job_page(job: JobPublic, user: str) -> str:
    """One job's status and the outputs the user may see (already per party and desensitised)."""
    status = f"{job.status}" + (f": {job.status_detail}" if job.status_detail else "")
    body = "\n".join((f'<p id="status">Status: {_e(status)}</p>', _terms(job), outputs_html(job.outputs),
                      '<p>Values above your clearance are shown masked or generalised, as the dataset owners\' '
                      'governance rules say; the compliance officer sees them as the policy allows.</p>'))
    return page(f"Tandem: job {int(job.id)}", body, user)
