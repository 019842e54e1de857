"""A compliance report as PDF (fpdf2, pure Python): the report's sections, and its proof attached.

The proof (``coordinator.report_proof.proof_json``: content, digest, signature) is attached to the PDF as an
uncompressed embedded file, ``tandem-report.json``, so ``report_proof.read_proof`` finds it in the bytes and
any PDF reader lists it as an attachment. The text uses DejaVu Sans when the system has it (Unicode:
ε, CJK titles show as ``?`` where the font has no glyph), else the PDF core font Helvetica (Latin-1).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from coordinator.report_proof import proof_json
from coordinator.reports import Report, ReportJob, SignedReport

__all__ = ["PROOF_FILE", "render_pdf"]

PROOF_FILE = "tandem-report.json"
_FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
_REGULAR, _BOLD, _MONO = "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansMono.ttf"
_LABEL_W = 48.0
_LINE_H = 5.0


class _ReportPdf(FPDF):
    """An A4 page with the report's title and the audit head in the footer of every page."""

    def __init__(self, report: Report) -> None:
        super().__init__(format="A4")
        self.report = report
        self.unicode = all((_FONT_DIR / name).exists() for name in (_REGULAR, _BOLD, _MONO))
        if self.unicode:
            self.add_font("body", "", str(_FONT_DIR / _REGULAR))
            self.add_font("body", "B", str(_FONT_DIR / _BOLD))
            self.add_font("mono", "", str(_FONT_DIR / _MONO))
        self.set_auto_page_break(auto=True, margin=18)
        self.set_title(report.title)
        self.set_author("Tandem coordinator")
        self.set_subject(f"audit head seq {report.head.seq} hash {report.head.hash}")
        self.set_creation_date(datetime.fromisoformat(report.produced_at))

    def use(self, style: str = "", size: float = 9, mono: bool = False) -> None:
        """Select the body (or monospace) font."""
        if self.unicode:
            self.set_font("mono" if mono else "body", "" if mono else style, size)
        else:
            self.set_font("Courier" if mono else "Helvetica", style, size)

    def clean(self, text: object) -> str:
        """``text`` with characters the current font cannot draw replaced by ``?``."""
        value = str(text)
        if self.unicode:
            cmap = self.current_font.cmap  # type: ignore[union-attr]
            return "".join(c if ord(c) in cmap or c in "\n\t" else "?" for c in value)
        return value.replace("ε", "epsilon").encode("latin-1", "replace").decode("latin-1")

    def footer(self) -> None:
        """Page number and the audit head on every page."""
        self.set_y(-12)
        self.use(size=7)
        self.set_text_color(110)
        head = self.report.head
        self.cell(0, 4, self.clean(f"{self.report.title} · audit head seq {head.seq} {head.hash[:16]}… · "
                                   f"page {self.page_no()}/{{nb}}"), align="C")
        self.set_text_color(0)


def _heading(pdf: _ReportPdf, text: str, size: float = 12) -> None:
    pdf.ln(2)
    pdf.use("B", size)
    pdf.multi_cell(0, 6, pdf.clean(text), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.use()


def _row(pdf: _ReportPdf, label: str, value: object, mono: bool = False) -> None:
    pdf.use("B")
    pdf.cell(_LABEL_W, _LINE_H, pdf.clean(label))
    pdf.use(mono=mono, size=8 if mono else 9)
    pdf.multi_cell(0, _LINE_H, pdf.clean(value if value != "" else "—"), align="L", new_x=XPos.LMARGIN,
                   new_y=YPos.NEXT)
    pdf.use()


def _label(pdf: _ReportPdf, text: str) -> None:
    pdf.ln(1.5)
    pdf.use("B")
    pdf.cell(0, _LINE_H, pdf.clean(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _table(pdf: _ReportPdf, header: Sequence[str], rows: Sequence[Sequence[object]], widths: Sequence[int]) -> None:
    if not rows:
        pdf.use(size=9)
        pdf.multi_cell(0, _LINE_H, "none", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        return
    pdf.use(size=8)
    with pdf.table(col_widths=tuple(widths), text_align="LEFT", line_height=4.5, padding=1) as table:
        for line in (header, *rows):
            cells = table.row()
            for value in line:
                cells.cell(pdf.clean(value))
    pdf.use()


def _job(pdf: _ReportPdf, job: ReportJob) -> None:
    _heading(pdf, f"Job {job.id}: {job.title}")
    _row(pdf, "What ran", f"{job.kind}, purpose {job.purpose}; status {job.status} (attempt {job.attempt})"
                          + (f": {job.status_detail}" if job.status_detail else ""))
    _row(pdf, "Submitted", f"{job.created_at} by {job.created_by}; last change {job.updated_at}")
    _row(pdf, "Policy", f"version {job.policy_version}, digest {job.policy_digest or 'not in the audit log'}")
    _row(pdf, "Decision", ("allowed" if job.decision_allowed else "denied") + ": " + ", ".join(job.rules))
    _row(pdf, "Terms digest", job.terms_digest, mono=True)
    _row(pdf, "Approvals required", ", ".join(job.required_approvals))
    _label(pdf, "Datasets")
    _table(pdf, ("party", "dataset", "schema digest", "fields used"),
           [(d.party, f"{d.name} (#{d.id})", d.schema_digest[:16] + "…", "; ".join(d.fields_used))
            for d in job.datasets],
           (14, 22, 22, 42))
    _label(pdf, "Who approved")
    _table(pdf, ("approver", "user", "key", "signed at"),
           [(a.approver, a.user, a.signer_key[:24] + "…", a.signed_at) for a in job.approvals], (18, 18, 34, 30))
    _label(pdf, "What left each node (as its node reported)")
    _table(pdf, ("party", "result", "messages", "bytes", "ledger head"),
           [(e.party, e.status, f"{e.messages_sent:,}", f"{e.bytes_sent:,}", e.ledger_head[:24] or "—")
            for e in job.egress], (14, 14, 14, 18, 40))
    eps = job.epsilon
    _row(pdf, "ε spent", "none (no noised release)" if eps is None else
         f"{eps.epsilon:g} on pair ({eps.bank_dataset_id}, {eps.telco_dataset_id}), charged {eps.charged_at}"
         + (f", refunded {eps.refunded_at}" if eps.refunded_at else ""))
    for out in job.outputs or []:
        shown = [f"{k} = {v:g}" for k, v in out.figures.items()] + [f"{k}: {n} items" for k, n in out.sizes.items()]
        shown += [f"{k}: withheld" for k in out.withheld]
        _row(pdf, f"Released to {out.party}", ", ".join(shown) or "nothing")
    if not job.outputs:
        _row(pdf, "Outputs released", "none")
    _row(pdf, "Audit evidence", ", ".join(f"#{e.seq} {e.action}" for e in job.evidence))


def render_pdf(signed: SignedReport) -> bytes:
    """The report as PDF bytes, with its proof attached as ``tandem-report.json``."""
    report = signed.report
    pdf = _ReportPdf(report)
    pdf.add_page()
    _heading(pdf, report.title, 16)
    _row(pdf, "Produced", f"{report.produced_at} by {report.produced_by}")
    if report.scope == "period":
        _row(pdf, "Period", f"from {report.period_from} to {report.period_to} (jobs active in it)")
    _row(pdf, "Policy in force", f"{report.policy_in_force}, digest {report.policy_in_force_digest}")
    _row(pdf, "Audit head", f"seq {report.head.seq}, hash {report.head.hash}, signed {report.head.signed_at}",
         mono=True)
    _row(pdf, "Coordinator key", report.coordinator_key, mono=True)
    _row(pdf, "Report digest", signed.digest, mono=True)
    _row(pdf, "Verify with", "tandem-coordinator report verify THIS.pdf --audit audit.jsonl --key <coordinator key>",
         mono=True)
    totals = report.totals
    _row(pdf, "Totals", totals.summary())
    for job in report.jobs:
        _job(pdf, job)
    pdf.embed_file(bytes=proof_json(signed).encode("ascii"), basename=PROOF_FILE, compress=False,
                   desc="Tandem report proof: content, digest, coordinator signature")
    return bytes(pdf.output())
