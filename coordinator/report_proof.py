"""A compliance report's proof in its file, and checking a report later against an audit export.

The proof (``coordinator.reports.SignedReport``: content, digest, the coordinator's signature) is written
into each report file as one ASCII JSON block, ``{"tandem_report": {...}}``: an uncompressed attachment
in the PDF, a JSON data block in the HTML. ``read_proof`` finds it in the file's bytes; ``verify_report``
checks it offline, with nothing but an audit export taken after the report and the coordinator's public
key (obtained out of band, never the one written in the report):

1. the content still hashes to the digest, and the digest is signed by the key (nothing edited);
2. the audit head the report names is signed by the key, and the export (itself verified) holds that
   very record (seq, hash);
3. every audit event the report cites as evidence is in the export with the same hash;
4. the export holds the ``report.produced`` event naming this digest (the coordinator logged it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from coordinator.audit.chain import SignedHead, verify_export, verify_head
from coordinator.reports import REPORT_CONTEXT, SignedReport
from protocols.crypto.signing import verify_signature
from protocols.wire.canonical import canonical_json, sha256_hex
from protocols.wire.errors import CryptoError

__all__ = ["PROOF_KEY", "ReportCheck", "proof_json", "read_proof", "verify_report"]

PROOF_KEY = "tandem_report"
"""The top-level key of the proof JSON embedded in a report file."""


def proof_json(signed: SignedReport) -> str:
    """The proof block written into a report file: ASCII JSON, safe inside HTML (no ``<``, ``>`` or ``&``)."""
    text = json.dumps({PROOF_KEY: signed.model_dump(mode="json")}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def read_proof(data: bytes) -> dict[str, Any]:
    """Find the proof block in a report file (PDF or HTML) and return it as parsed JSON.

    Raises:
        ValueError: no proof block, or one that is not JSON.
    """
    marker = ('{"' + PROOF_KEY + '":').encode("ascii")
    at = data.find(marker)
    if at < 0:
        raise ValueError("no Tandem report proof in this file (is it a report produced by the coordinator?)")
    text = data[at:].decode("ascii", "replace")
    try:
        obj, _ = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the report proof is not valid JSON: {exc.msg}") from None
    inner = obj.get(PROOF_KEY)
    if not isinstance(inner, dict):
        raise ValueError("the report proof has no content")
    return inner


@dataclass(frozen=True)
class ReportCheck:
    """Outcome of ``verify_report``: ``ok`` and one line per check (``OK: ...`` or ``FAILED: ...``)."""

    ok: bool
    lines: list[str]


def _check_signatures(proof: dict[str, Any], key: str) -> list[str]:
    report = proof.get("report")
    if not isinstance(report, dict):
        return ["FAILED: the proof holds no report"]
    lines = []
    digest = sha256_hex(canonical_json(report))
    if digest != proof.get("digest"):
        lines.append("FAILED: the report's content does not hash to its digest (the report was edited)")
    else:
        lines.append(f"OK: content digest {digest}")
    try:
        verify_signature(key, REPORT_CONTEXT + str(proof.get("digest", "")).encode(), str(proof.get("signature", "")))
        lines.append("OK: the digest is signed by the coordinator key")
    except CryptoError:
        lines.append("FAILED: the report's signature does not verify with the coordinator key given")
    try:
        verify_head(SignedHead(**report["head"]), key)
        lines.append(f"OK: audit head seq {report['head']['seq']} is signed by the coordinator key")
    except (CryptoError, KeyError, TypeError):
        lines.append("FAILED: the report's audit head is not signed by the coordinator key given")
    return lines


def _check_export(report: dict[str, Any], digest: str, records: Iterable[dict[str, Any]]) -> list[str]:
    head = report.get("head", {})
    wanted = {(e["seq"], e["hash"]) for j in report.get("jobs", []) for e in j.get("evidence", [])}
    found_head = logged = False
    for rec in records:
        seq, rec_hash = rec.get("seq"), rec.get("hash")
        found_head |= (seq, rec_hash) == (head.get("seq"), head.get("hash"))
        wanted.discard((seq, rec_hash))
        body = rec.get("body", {})
        logged |= body.get("action") == "report.produced" and body.get("details", {}).get("digest") == digest
    return [
        f"OK: the export holds the report's head (seq {head.get('seq')})" if found_head else
        f"FAILED: the export does not hold the report's head (seq {head.get('seq')}, hash {head.get('hash')})",
        "OK: every audit event cited as evidence is in the export" if not wanted else
        f"FAILED: {len(wanted)} cited audit events are missing or differ in the export "
        f"(seq {', '.join(str(s) for s, _ in sorted(wanted)[:10])})",
        "OK: the export records that the coordinator produced this report" if logged else
        "FAILED: no report.produced event with this digest in the export (an export taken after the report?)",
    ]


def verify_report(proof: dict[str, Any], export_lines: list[bytes], key: str) -> ReportCheck:
    """Check a report's proof against an audit export and the coordinator's public key (offline).

    Args:
        proof: the report's proof block (``read_proof``).
        export_lines: the audit export's lines (held in memory: the export is read twice).
        key: the coordinator's Ed25519 public key, 64 hex, obtained out of band (never the one in the report).

    Returns:
        A ``ReportCheck``; never raises for a malformed report or export.
    """
    lines = _check_signatures(proof, key)
    exported = verify_export(export_lines, key)
    if not exported.ok:
        return ReportCheck(False, [*lines, f"FAILED: the audit export does not verify: {exported.reason}"])
    lines.append(f"OK: the audit export verifies ({exported.count} events)")
    records = (json.loads(raw) for raw in export_lines)
    try:
        lines += _check_export(proof["report"], str(proof.get("digest", "")),
                               (r for r in records if "signed_head" not in r))
    except (KeyError, TypeError, AttributeError):
        lines.append("FAILED: the report's head or evidence is malformed")
    return ReportCheck(all(line.startswith("OK") for line in lines), lines)
