"""Tamper-evident audit log: event bodies, signed heads, JSONL export and the offline verifier.

The audit log is a hash chain (``protocols.crypto.hashchain``) whose records carry an event body
``{"actor", "action", "object", "details"}`` (DESIGN.md §5). The coordinator signs the chain's head
with its Ed25519 key; an export is the records plus that signed head, and anyone holding the
coordinator's public key can check it offline with one command::

    python -m coordinator.audit.chain verify EXPORT.jsonl --key <64 hex> | --key-file PATH

Export format (JSON Lines): every line is the canonical JSON (``protocols.wire.canonical``) of one
``ChainRecord.to_dict()`` followed by a newline; the last line is ``{"signed_head": {...}}``. The
verifier demands that each line be exactly the canonical encoding of what it parses to, so any byte
changed anywhere either breaks the JSON, breaks canonical form, changes a record's content (its hash no
longer matches), changes a hash (the next link or the signed head no longer matches) or changes the
signed head (its signature no longer verifies). Deleting, inserting, reordering or truncating lines
breaks the sequence numbers, a link, or the head.

The head signature covers ``HEAD_CONTEXT + canonical_json({"seq", "hash", "signed_at"})``. Signing
``signed_at`` too (not only seq and hash) keeps every byte of the export authenticated.

What it does not prove: that the coordinator logged every event (a coordinator can omit events before
it signs); cross-check node egress ledgers for that. A chain re-signed by whoever holds the private key
verifies, so keep the key offline from the export's readers.

Errors::

    AuditError    an event body that must not be recorded (not JSON-able, too large, payload-like keys)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from protocols.crypto.hashchain import GENESIS, ChainRecord, next_record
from protocols.crypto.signing import SigningKey, verify_signature
from protocols.wire.canonical import canonical_json
from protocols.wire.errors import CryptoError

__all__ = [
    "FORBIDDEN_DETAIL_KEYS",
    "HEAD_CONTEXT",
    "MAX_DETAILS_BYTES",
    "MAX_LINE_BYTES",
    "AuditError",
    "SignedHead",
    "VerifyReport",
    "append_event",
    "event_body",
    "export_lines",
    "format_report",
    "head_message",
    "main",
    "sign_head",
    "verify_export",
    "verify_head",
]

HEAD_CONTEXT = b"tandem/audit-head/v1\x00"
MAX_DETAILS_BYTES = 16_384
MAX_LINE_BYTES = 1 << 20
FORBIDDEN_DETAIL_KEYS = frozenset(
    {"payload", "content", "plaintext", "ciphertext", "rows", "password", "token", "secret", "seed", "private_key"}
)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX128 = re.compile(r"[0-9a-f]{128}")
_RECORD_KEYS = frozenset({"seq", "ts", "body", "prev_hash", "hash"})
_HEAD_KEYS = frozenset({"seq", "hash", "signed_at", "key", "signature"})


class AuditError(Exception):
    """Root of this module's errors: an event that must not be recorded or a head that does not fit."""


# ---------------------------------------------------------------- events


def _check_keys(value: Any, path: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if str(key).lower() in FORBIDDEN_DETAIL_KEYS:
                raise AuditError(f"details key {path}{key!r} looks like payload or secret content; record its size "
                                 "and digest instead")
            _check_keys(item, f"{path}{key}.")
    elif isinstance(value, list):
        for item in value:
            _check_keys(item, path)


def _check_label(value: str, what: str) -> None:
    if not isinstance(value, str) or not value or len(value) > 200:
        raise AuditError(f"{what} must be a non-empty string of at most 200 characters")


def event_body(actor: str, action: str, obj: str, details: Mapping[str, Any]) -> dict[str, Any]:
    """Build the body of one audit event, normalised so it hashes the same before and after export.

    Args:
        actor: who acted, e.g. ``user:alice``, ``party:bank-a``, ``coordinator``.
        action: what happened, e.g. ``job.create``, ``approval.add``, ``message.relay``.
        obj: what it happened to, e.g. ``job:42``.
        details: small JSON-able metadata (ids, counts, sizes, digests). Never payload contents,
            identifiers, features or keys: the audit log is exported to compliance in full.

    Raises:
        AuditError: if details are not JSON-able (NaN, bytes, objects, non-string keys collapse),
            exceed ``MAX_DETAILS_BYTES``, or use a key in ``FORBIDDEN_DETAIL_KEYS``.
    """
    for value, what in ((actor, "actor"), (action, "action"), (obj, "object")):
        _check_label(value, what)
    if not isinstance(details, Mapping):
        raise AuditError("details must be a mapping")
    try:
        encoded = canonical_json(dict(details))
    except (TypeError, ValueError) as exc:
        raise AuditError(f"details are not JSON-able: {exc}") from exc
    if len(encoded) > MAX_DETAILS_BYTES:
        raise AuditError(f"details take {len(encoded)} bytes > {MAX_DETAILS_BYTES}; record sizes and digests only")
    normalised = json.loads(encoded)
    _check_keys(normalised, "")
    return {"actor": actor, "action": action, "object": obj, "details": normalised}


def append_event(
    prev: ChainRecord | None, ts: str, actor: str, action: str, obj: str, details: Mapping[str, Any]
) -> ChainRecord:
    """The record that follows ``prev`` for one event (``next_record`` over ``event_body``)."""
    return next_record(prev, ts, event_body(actor, action, obj, details))


# ---------------------------------------------------------------- signed head


@dataclass(frozen=True)
class SignedHead:
    """The coordinator's signature over the chain head (sequence number, hash and signing time)."""

    seq: int
    hash: str
    signed_at: str
    key: str
    signature: str

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, as exported under ``signed_head``."""
        return {"seq": self.seq, "hash": self.hash, "signed_at": self.signed_at, "key": self.key,
                "signature": self.signature}


def head_message(seq: int, head_hash: str, signed_at: str) -> bytes:
    """Bytes the coordinator signs for a head."""
    return HEAD_CONTEXT + canonical_json({"seq": seq, "hash": head_hash, "signed_at": signed_at})


def sign_head(key: SigningKey, record: ChainRecord, *, signed_at: str | None = None) -> SignedHead:
    """Sign ``record`` as the chain head.

    Args:
        key: the coordinator's audit key. Whoever holds it can sign a rewritten chain.
        record: the last record of the chain.
        signed_at: ISO 8601 time to state; defaults to now (UTC). Inject it for reproducible tests.
    """
    when = signed_at or datetime.now(UTC).isoformat(timespec="seconds")
    signature = key.sign(head_message(record.seq, record.hash, when))
    return SignedHead(record.seq, record.hash, when, key.public_hex, signature)


def verify_head(head: SignedHead, public_key_hex: str) -> None:
    """Check that ``head`` is signed by ``public_key_hex``.

    Raises:
        CryptoError: if the key differs from the head's or the signature does not verify.
    """
    if head.key != public_key_hex:
        raise CryptoError()
    verify_signature(public_key_hex, head_message(head.seq, head.hash, head.signed_at), head.signature)


# ---------------------------------------------------------------- export


def export_lines(records: Iterable[ChainRecord], head: SignedHead) -> Iterator[str]:
    """Yield the export, one line per record (each ending in a newline) then the signed head.

    Streams: holds one record at a time. Write with ``file.writelines(export_lines(...))``.

    Raises:
        AuditError: at the end, if ``head`` does not name the last record (nothing is yielded after).
    """
    last: ChainRecord | None = None
    for rec in records:
        last = rec
        yield canonical_json(rec.to_dict()).decode("utf-8") + "\n"
    if last is None or (last.seq, last.hash) != (head.seq, head.hash):
        raise AuditError("signed head does not name the last exported record")
    yield canonical_json({"signed_head": head.to_dict()}).decode("utf-8") + "\n"


# ---------------------------------------------------------------- verification


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of ``verify_export``.

    Attributes:
        ok: the chain is intact and its head is signed by the expected key.
        count: records checked before the first problem (all of them when ``ok``).
        head_hash: hash of the last good record (``GENESIS`` if none).
        bad_seq: sequence number of the first bad record, when the problem is a record.
        reason: what is wrong, starting with ``line N:`` when a line is at fault; "" when ok.
        line: 1-based line number at fault, if any.
        key: the public key the head was checked against.
    """

    ok: bool
    count: int
    head_hash: str
    bad_seq: int | None = None
    reason: str = ""
    line: int | None = None
    key: str = ""


class _Tampered(Exception):
    def __init__(self, reason: str, line: int | None = None, seq: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.line, self.seq = reason, line, seq


def _floats_agree(value: Any) -> bool:
    """Whether ``orjson`` writes every float in ``value`` byte for byte as ``json`` does.

    Both write the shortest round-trip digits; ``json`` (``repr``) switches to an exponent below 1e-4 and from
    1e16 on, and below 1e-4 ``orjson`` writes ``0.00001`` or ``1e-7`` where ``json`` writes ``1e-05`` and
    ``1e-07``. From 1e16 on both write ``1e+16``. So a float in [1e-4, 1e16), or zero, is written alike.
    """
    if type(value) is float:
        return value == 0 or 1e-4 <= abs(value) < 1e16
    if type(value) is dict:
        return all(_floats_agree(v) for v in value.values())
    if type(value) is list:
        return all(_floats_agree(v) for v in value)
    return True


def _fast_canonical(data: bytes) -> Any:
    """The parsed line if ``data`` is certainly ``canonical_json`` of it, else ``_SLOW`` (then ask ``json``).

    ``orjson`` parses and re-encodes with sorted keys; where its output equals the line byte for byte, so does
    ``canonical_json``'s, because the two encoders agree on every value a JSON line parses to (strings and
    their escapes, key order by code point, integers) except floats below 1e-4 (``_floats_agree``), which
    ``orjson`` writes with ``0.0000`` or ``e-``: only a line holding either text is searched for such floats.
    Integers beyond 64 bits parse as floats here and never re-encode to the same bytes; lone surrogates, NaN
    and invalid UTF-8 make ``orjson`` raise. Checked against the ``json`` path, over a million random floats
    among others, in ``tests/coordinator/audit/test_verify_fast_path.py``. This more than halves the
    verifier's time.
    """
    try:
        obj = orjson.loads(data)
        same = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS) == data
    except (orjson.JSONDecodeError, TypeError):  # TypeError: nested too deeply for orjson
        return _SLOW
    if not same or ((b"0.0000" in data or b"e-" in data) and not _floats_agree(obj)):
        return _SLOW
    return obj


_SLOW = object()


def _parse_line(raw: str | bytes, lineno: int) -> tuple[Any, bytes]:
    """Parse one export line, which must be canonical JSON (plus an optional final newline).

    Returns the parsed object and the line's bytes without the newline (equal to ``canonical_json(obj)``).
    Lines ``orjson`` confirms canonical take a fast path (``_fast_canonical``); every other line, and every
    line that fails, is judged by ``_parse_line_strict``, so the verdicts and messages are exactly its.
    """
    if len(raw) > MAX_LINE_BYTES:
        raise _Tampered(f"line {lineno}: longer than {MAX_LINE_BYTES} bytes", lineno)
    data = raw if type(raw) is bytes else raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    if data.endswith(b"\n"):
        data = data[:-1]
    obj = _fast_canonical(data)
    if obj is not _SLOW:
        return obj, data
    return _parse_line_strict(data, lineno)


def _parse_line_strict(data: bytes, lineno: int) -> tuple[Any, bytes]:
    """``_parse_line`` by the definition: ``json`` parses the line and ``canonical_json`` must give it back."""
    try:
        text = data.decode("utf-8")
        obj = json.loads(text)
        canonical = canonical_json(obj) == data
    except UnicodeDecodeError as exc:
        raise _Tampered(f"line {lineno}: not valid UTF-8 at byte {exc.start}", lineno) from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity in canonical_json
        raise _Tampered(f"line {lineno}: not valid JSON ({exc})", lineno) from None
    except RecursionError:
        raise _Tampered(f"line {lineno}: JSON nested too deeply", lineno) from None
    if not canonical:
        raise _Tampered(f"line {lineno}: not in canonical form (edited or re-encoded)", lineno)
    return obj, data


def _hex64(value: Any) -> bool:
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


def _link_preimage(data: bytes, digest: str) -> bytes:
    """The bytes ``link_hash`` hashes, cut from a record line already known to be canonical.

    A canonical record line is ``{"body":B,"hash":"H","prev_hash":"P","seq":N,"ts":"T"}`` (keys sorted);
    dropping ``"hash":"H",`` leaves exactly ``canonical_json({"body","prev_hash","seq","ts"})``, the
    preimage of ``protocols.crypto.hashchain.link_hash``. The last structural ``,"hash":"H",`` is the top-level
    one: inside JSON strings every quote is escaped, and nothing after it is an object. This saves a
    second JSON encoding per line (half the verifier's time).
    """
    marker = b',"hash":"' + digest.encode("ascii") + b'",'
    at = data.rfind(marker)
    return data[: at + 1] + data[at + len(marker):]


def _check_record(obj: dict[str, Any], data: bytes, lineno: int, expected_seq: int, prev_hash: str) -> str:
    """Check one record (parsed ``obj``, canonical line ``data``) against its predecessor; return its hash.

    An intact record passes the first test alone (its hash equal to a SHA-256 hex digest and its
    ``prev_hash`` to the previous one's are well formed); anything else takes the checks in order, which
    name the first fault.
    """
    digest = obj.get("hash")
    if obj.keys() == _RECORD_KEYS and type(obj["seq"]) is int and obj["seq"] == expected_seq \
            and obj["prev_hash"] == prev_hash and isinstance(obj["ts"], str) and isinstance(obj["body"], dict) \
            and type(digest) is str and digest.isascii() \
            and hashlib.sha256(_link_preimage(data, digest)).hexdigest() == digest:
        return digest
    if obj.keys() != _RECORD_KEYS:
        raise _Tampered(f"line {lineno}: not a chain record (keys {sorted(obj)})", lineno)
    seq, ts, body, prev, digest = obj["seq"], obj["ts"], obj["body"], obj["prev_hash"], obj["hash"]
    if type(seq) is not int or not isinstance(ts, str) or not isinstance(body, dict) \
            or not _hex64(prev) or not _hex64(digest):
        raise _Tampered(f"line {lineno}: malformed record fields", lineno, seq if type(seq) is int else None)
    if seq != expected_seq:
        raise _Tampered(f"line {lineno}: expected seq {expected_seq}, found {seq}", lineno, seq)
    if prev != prev_hash:
        raise _Tampered(f"line {lineno}: prev_hash does not match the previous record", lineno, seq)
    if hashlib.sha256(_link_preimage(data, digest)).hexdigest() != digest:
        raise _Tampered(f"line {lineno}: record content does not match its hash", lineno, seq)
    return str(digest)


def _check_head(obj: Any, lineno: int, last_seq: int, last_hash: str, public_key_hex: str) -> None:
    head = obj.get("signed_head")
    if len(obj) != 1 or not isinstance(head, dict) or head.keys() != _HEAD_KEYS:
        raise _Tampered(f"line {lineno}: malformed signed head", lineno)
    signature = head["signature"]
    well_formed = type(head["seq"]) is int and isinstance(head["signed_at"], str) and _hex64(head["hash"]) \
        and _hex64(head["key"]) and isinstance(signature, str) and _HEX128.fullmatch(signature) is not None
    if not well_formed:
        raise _Tampered(f"line {lineno}: malformed signed head fields", lineno)
    if last_seq < 0:
        raise _Tampered(f"line {lineno}: signed head but no records", lineno)
    if (head["seq"], head["hash"]) != (last_seq, last_hash):
        raise _Tampered(f"line {lineno}: signed head names seq {head['seq']} hash {head['hash'][:16]}…, but the last "
                        f"record is seq {last_seq} hash {last_hash[:16]}…", lineno, last_seq)
    if head["key"] != public_key_hex:
        raise _Tampered(f"line {lineno}: head signed by key {head['key']}, not the expected key", lineno)
    try:
        verify_head(SignedHead(**head), public_key_hex)
    except CryptoError:
        raise _Tampered(f"line {lineno}: signed head signature does not verify", lineno) from None


@dataclass
class _Progress:
    """How far verification got: records checked and the hash of the last good one."""

    count: int = 0
    head_hash: str = GENESIS


def _walk(lines: Iterable[str | bytes], public_key_hex: str, progress: _Progress) -> None:
    """Check every line in order, advancing ``progress``; raise ``_Tampered`` at the first fault."""
    lineno, head_line = 0, 0
    for lineno, raw in enumerate(lines, start=1):
        if head_line:
            raise _Tampered(f"line {lineno}: data after the signed head (line {head_line})", lineno)
        obj, data = _parse_line(raw, lineno)
        if not isinstance(obj, dict):
            raise _Tampered(f"line {lineno}: not a JSON object", lineno)
        if "signed_head" in obj:
            _check_head(obj, lineno, progress.count - 1, progress.head_hash, public_key_hex)
            head_line = lineno
            continue
        progress.head_hash = _check_record(obj, data, lineno, progress.count, progress.head_hash)
        progress.count += 1
    if not head_line:
        raise _Tampered(f"missing signed head after line {lineno} (truncated export?)" if lineno else
                        "missing signed head: the export is empty")


def verify_export(lines: Iterable[str | bytes], public_key_hex: str) -> VerifyReport:
    """Verify an export line by line in constant memory.

    Args:
        lines: the export's lines, as ``str`` or ``bytes``, with or without their final newline (e.g. a file
            opened in binary mode; binary avoids newline translation and catches invalid UTF-8 per line).
        public_key_hex: the coordinator's Ed25519 public key, 64 hex characters, obtained out of band.
            Trusting the key written in the export itself would let anyone re-sign a rewritten chain.

    Returns:
        A ``VerifyReport``; never raises for malformed, truncated or tampered input.
    """
    progress = _Progress()
    if not _hex64(public_key_hex):
        return VerifyReport(False, 0, GENESIS, reason="the expected key is not 64 lowercase hex characters",
                            key=str(public_key_hex))
    try:
        _walk(lines, public_key_hex, progress)
    except _Tampered as bad:
        return VerifyReport(False, progress.count, progress.head_hash, bad.seq, bad.reason, bad.line, public_key_hex)
    return VerifyReport(True, progress.count, progress.head_hash, key=public_key_hex)


def format_report(report: VerifyReport) -> str:
    """One line for people: ``OK: ...`` or ``TAMPERED: ...``."""
    if report.ok:
        return f"OK: {report.count} events, head {report.head_hash} signed by {report.key}"
    where = f"event seq {report.bad_seq}: " if report.bad_seq is not None else ""
    return f"TAMPERED: {where}{report.reason}"


# ---------------------------------------------------------------- command line


def _bounded_lines(fh: BinaryIO) -> Iterator[bytes]:
    """Lines of ``fh``, each read with a size bound so one huge line cannot exhaust memory."""
    while line := fh.readline(MAX_LINE_BYTES + 1):
        yield line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m coordinator.audit.chain",
        description="Offline tools for Tandem's tamper-evident audit log.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    verify = sub.add_parser(
        "verify",
        help="verify an audit export (JSONL) against the coordinator's public key",
        description="Verify every record's hash and link and the signed head. Exit 0 if intact, 1 if "
        "tampered, 2 on usage errors.",
    )
    verify.add_argument("export", type=Path, help="export file, one JSON record per line, signed head last")
    key = verify.add_mutually_exclusive_group(required=True)
    key.add_argument("--key", help="coordinator's Ed25519 public key, 64 hex characters")
    key.add_argument("--key-file", type=Path, help="file holding that key as hex text")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 intact, 1 tampered, 2 usage error)."""
    args = _parser().parse_args(argv)
    try:
        key = (args.key if args.key is not None else args.key_file.read_text(encoding="utf-8")).strip().lower()
        if not _hex64(key):
            print("ERROR: the key must be 64 hex characters (the coordinator's Ed25519 public key)", file=sys.stderr)
            return 2
        with args.export.open("rb") as fh:
            report = verify_export(_bounded_lines(fh), key)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
