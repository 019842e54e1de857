"""HTML of the compliance pages, rendered with the standard library only (no template engine, no JS, no CDN).

Every value that reaches the page passes through ``_e`` (``html.escape`` with quotes), including event
details, which may hold user-supplied job titles. Links are built with ``urllib.parse.urlencode``. The
only style is the inline ``CSS`` below, which the ``Content-Security-Policy`` admits by its hash, so
the browser refuses any script, frame or other style even if escaping were ever missed.
"""

from __future__ import annotations

import base64
import hashlib
import json
from html import escape
from string import Template
from typing import Any
from urllib.parse import urlencode

from coordinator.audit.review import AuditReview, ChainStatus, EventFilter
from protocols.wire.control import AuditEventPublic, JobPublic

__all__ = ["SECURITY_HEADERS", "error_page", "login_page", "outputs_html", "page", "review_page"]

CSS = ("body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}"
       "table{border-collapse:collapse;width:100%}th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;"
       "vertical-align:top}th{background:#f0f0f0}td.d{font-family:monospace;font-size:12px;word-break:break-all}"
       ".ok{background:#e3f6e3;border:1px solid #4a4;padding:.6em}.bad{background:#fde2e2;border:1px solid #c33;"
       "padding:.6em}code,pre{font-family:monospace;word-break:break-all;white-space:pre-wrap}"
       "form.f input{width:10em}nav a{margin-right:1em}.err{color:#a00}header{display:flex;gap:1em;"
       "align-items:baseline}header form{margin-left:auto}")
_CSS_HASH = base64.b64encode(hashlib.sha256(CSS.encode("utf-8")).digest()).decode("ascii")
SECURITY_HEADERS = {
    "Content-Security-Policy": f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # "no-referrer" would make form posts send "Origin: null"
    "Cache-Control": "no-store",
}
NAV = ('<nav id="console-nav"><a href="/audit">Audit log</a><a href="/console/approvals">Approvals</a>'
       '<a href="/console/policy">Policy</a><a href="/console/crosscheck">Ledger cross-check</a>'
       '<a href="/console/reports/period.html">Period report</a></nav>')
"""The compliance console's pages, linked from every page an officer sees signed in."""
DETAILS_SUMMARY_CHARS = 160
VERIFY_COMMAND = "python -m coordinator.audit.chain verify audit.jsonl --key $key"

_LAYOUT = Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>$title</title><style>$css</style></head>
<body><header><h1>$title</h1>$user</header>
$nav$body
</body></html>
""")
_LOGIN = Template("""<p>$message</p>
<form method="post" action="/login">
<input type="hidden" name="next" value="$next">
<label>API token <input type="password" name="token" autocomplete="off" required autofocus></label>
<button type="submit">Sign in</button>
</form>
<p>Compliance officers (auditors) see the audit log and the console. Party users see their own party's jobs
and outputs, desensitised to their clearance; they read their party's audit events through the API.</p>""")
_FILTERS = Template("""<form class="f" method="get" action="$action">
<label>action prefix <input name="action" value="$act"></label>
<label>actor <input name="actor" value="$actor"></label>
<label>object <input name="object" value="$obj"></label>
$job_input<button type="submit">Filter</button> <a href="$action">clear</a>
</form>""")


def _e(value: object) -> str:
    """Escape anything for HTML text or a quoted attribute."""
    return escape(str(value), quote=True)


def page(title: str, body: str, user: str | None = None) -> str:
    """A page in the console's layout; signed in (``user``), with the sign-out button and the navigation."""
    signed_in = (f'<span>signed in as {_e(user)}</span><form method="post" action="/logout">'
                 '<button type="submit">Sign out</button></form>') if user else ""
    return _LAYOUT.substitute(title=_e(title), css=CSS, user=signed_in, nav=NAV if user else "", body=body)


def login_page(message: str, next_path: str, error: bool = False) -> str:
    """The login form; ``message`` is shown (as an error if ``error``), ``next_path`` is where to go after."""
    shown = f'<span class="err">{_e(message)}</span>' if error else _e(message)
    return page("Tandem audit: sign in", _LOGIN.substitute(message=shown, next=_e(next_path)))


def error_page(status: int, message: str, fix: str | None = None) -> str:
    """A refusal or error, with the fix if there is one."""
    extra = f"<p>{_e(fix)}</p>" if fix else ""
    return page(f"Tandem audit: {status}", f'<p class="err">{_e(message)}</p>{extra}<p><a href="/audit">back</a></p>')


def _chain_html(chain: ChainStatus) -> str:
    if not chain.ok:
        return (f'<div class="bad" id="chain"><strong>Chain TAMPERED at seq {_e(chain.bad_seq)}</strong>: '
                f"{_e(chain.reason)}. {chain.count} records before it verify. No head is signed for a broken "
                "chain.</div>")
    head = chain.head
    assert head is not None
    command = Template(VERIFY_COMMAND).substitute(key=head.key)
    return (f'<div class="ok" id="chain"><strong>Chain verified</strong>: {chain.count} events; '
            f'<span id="hashed">{chain.hashed}</span> re-hashed now against the stored chain, the '
            f"{chain.count - chain.hashed} before them by an earlier view, whose head is unchanged "
            '(<a id="verify-full" href="?verify=full">re-hash every event now</a>).<br>'
            f"Signed head: seq {head.seq}, hash <code>{_e(head.hash)}</code>, "
            f"signed at {_e(head.signed_at)}<br>Signature <code>{_e(head.signature)}</code><br>Coordinator "
            f'public key <code id="key">{_e(head.key)}</code></div>'
            f'<p><a id="export" href="/audit/export.jsonl" download>Download the JSONL export</a> '
            f'(saved as audit.jsonl), then verify it offline:</p><pre id="verify">{_e(command)}</pre>')


def _details(details: dict[str, Any]) -> str:
    text = "; ".join(f"{k}={json.dumps(v, ensure_ascii=False, separators=(',', ':'))}" for k, v in details.items())
    return text if len(text) <= DETAILS_SUMMARY_CHARS else text[: DETAILS_SUMMARY_CHARS - 1] + "…"


def _object_cell(obj: str) -> str:
    kind, _, ident = obj.partition(":")
    if kind == "job" and ident.isdigit():
        return f'<a href="/audit/jobs/{ident}">{_e(obj)}</a>'
    return _e(obj)


def _row(ev: AuditEventPublic) -> str:
    cells = (_e(ev.seq), _e(ev.ts), _e(ev.actor), _e(ev.action), _object_cell(ev.object),
             f'<span title="{_e(json.dumps(ev.details, ensure_ascii=False))}">{_e(_details(ev.details))}</span>')
    classes = ("", "", "", "", "", ' class="d"')
    return "<tr>" + "".join(f"<td{c}>{v}</td>" for c, v in zip(classes, cells, strict=True)) + "</tr>"


def _table(events: list[AuditEventPublic]) -> str:
    if not events:
        return "<p>No events match.</p>"
    head = "".join(f"<th>{h}</th>" for h in ("seq", "time", "actor", "action", "object", "details"))
    rows = "\n".join(_row(ev) for ev in events)
    return f'<table id="events"><thead><tr>{head}</tr></thead><tbody>\n{rows}\n</tbody></table>'


def _query(flt: EventFilter, page: int, with_job: bool) -> str:
    params: dict[str, Any] = {"action": flt.action_prefix, "actor": flt.actor, "object": flt.object}
    if with_job and flt.job_id is not None:
        params["job"] = flt.job_id
    params["page"] = page
    return urlencode({k: v for k, v in params.items() if v not in ("", None)})


def _pager(view: AuditReview, flt: EventFilter, base: str, with_job: bool) -> str:
    links = [("first", 1), ("previous", view.page - 1), ("next", view.page + 1), ("last", view.pages)]
    parts = [f'<a href="{_e(base)}?{_e(_query(flt, p, with_job))}">{label}</a>' for label, p in links
             if 1 <= p <= view.pages and p != view.page]
    return (f"<nav>{view.matched} matching events, page {view.page} of {view.pages} "
            f"({view.per_page} per page, oldest first) {' '.join(parts)}</nav>")


def _filters(flt: EventFilter, action: str, with_job: bool) -> str:
    job = f'<label>job id <input name="job" value="{_e(flt.job_id if flt.job_id is not None else "")}"></label>\n' \
        if with_job else ""
    return _FILTERS.substitute(action=_e(action), act=_e(flt.action_prefix), actor=_e(flt.actor),
                               obj=_e(flt.object), job_input=job)


def _job_html(job: JobPublic) -> str:
    approvals = "".join(f"<li>{_e(a.approver)} by {_e(a.user)} at {_e(a.created_at.isoformat())}</li>"
                        for a in job.approvals) or "<li>none</li>"
    rows = (("title", job.title), ("kind", job.kind), ("purpose", job.purpose), ("status", job.status),
            ("status detail", job.status_detail), ("created by", job.created_by), ("digest", job.digest),
            ("policy version", job.policy_version), ("required approvals", ", ".join(job.required_approvals)))
    cells = "".join(f"<tr><th>{k}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return (f'<table id="job">{cells}</table><p>Approvals:</p><ul>{approvals}</ul>{outputs_html(job.outputs)}'
            f'<h2>Events of job {job.id}</h2>')


MAX_OUTPUT_ROWS = 300
"""Output values shown per party on a job page; the rest are counted, not shown."""


def _flat(value: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in _flat(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list):
        return [pair for i, v in enumerate(value) for pair in _flat(v, f"{path}.{i}")] or [(path, "[]")]
    return [(path, value)]


def outputs_html(outputs: dict[str, Any]) -> str:
    """A job's outputs, one table per party, each value escaped.

    ``outputs`` must already be what the signed-in user may see (``coordinator.disclosure``: its own
    party's, desensitised to its clearance); ``jobs.get_job`` returns them so.
    """
    if not outputs:
        return '<h2>Outputs</h2><p id="outputs">none reported yet</p>'
    parts = ['<h2>Outputs</h2><div id="outputs">']
    for party, values in sorted(outputs.items()):
        flat = _flat(values)
        cells = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in flat[:MAX_OUTPUT_ROWS])
        more = f"<p>… {len(flat) - MAX_OUTPUT_ROWS} more values</p>" if len(flat) > MAX_OUTPUT_ROWS else ""
        parts.append(f'<h3>{_e(party)}</h3><table class="outputs" data-party="{_e(party)}">{cells}</table>{more}')
    return "".join([*parts, "</div>"])


def review_page(view: AuditReview, flt: EventFilter, user: str, job: JobPublic | None = None) -> str:
    """The audit log page (``job`` None) or one job's page: chain status, filters, events, pager."""
    base = f"/audit/jobs/{job.id}" if job else "/audit"
    with_job = job is None
    body = "\n".join((
        (f'<p><a href="/audit">all events</a> · <a href="/console/jobs/{job.id}">terms and approvals</a> · '
         f'<a href="/console/jobs/{job.id}/lineage">lineage</a> · '
         f'<a href="/console/reports/jobs/{job.id}.html">compliance report</a></p>') if job else "",
        _chain_html(view.chain),
        _job_html(job) if job else "",
        _filters(flt, base, with_job),
        _pager(view, flt, base, with_job),
        _table(view.events),
    ))
    title = f"Tandem audit: job {job.id}" if job else "Tandem audit log"
    return page(title, body, user)
