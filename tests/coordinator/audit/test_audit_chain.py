"""Audit chain: clean exports verify; every byte flip, deletion, insertion, swap and wrong key is caught."""

from __future__ import annotations

import io
import math
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.audit.chain import (
    HEAD_CONTEXT,
    AuditError,
    SignedHead,
    append_event,
    event_body,
    export_lines,
    format_report,
    head_message,
    main,
    sign_head,
    verify_export,
    verify_head,
)
from protocols.crypto.hashchain import ChainRecord, next_record, verify_chain
from protocols.crypto.signing import SigningKey
from protocols.wire.canonical import canonical_json
from protocols.wire.errors import CryptoError

KEY = SigningKey.from_seed(bytes(range(32)))
OTHER = SigningKey.from_seed(bytes(range(1, 33)))
SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63), st.booleans(), st.none(), st.text(max_size=12),
    st.floats(allow_nan=False, allow_infinity=False),
)
_details = st.dictionaries(st.text("abcdefgh_", min_size=1, max_size=6), st.one_of(_scalars, st.lists(_scalars,
                           max_size=3)), max_size=4)
_event = st.tuples(st.sampled_from(["user:alice", "party:bank-a", "coordinator"]),
                   st.sampled_from(["job.create", "approval.add", "message.relay"]),
                   st.text("abc:0123456789", min_size=1, max_size=10), _details)
_events = st.lists(_event, min_size=1, max_size=6)


def build(events: list[tuple[str, str, str, dict[str, Any]]]) -> list[ChainRecord]:
    records: list[ChainRecord] = []
    for i, (actor, action, obj, details) in enumerate(events):
        records.append(append_event(records[-1] if records else None, f"2026-11-27T10:00:{i:02d}Z", actor, action,
                                    obj, details))
    return records


def export(records: list[ChainRecord], key: SigningKey = KEY) -> list[str]:
    head = sign_head(key, records[-1], signed_at="2026-11-27T11:00:00Z")
    return list(export_lines(records, head))


def lines_of(data: bytes) -> list[bytes]:
    """Split on b"\\n" only, as a file opened in binary mode does."""
    return list(io.BytesIO(data))


def verify_bytes(data: bytes, key: str = KEY.public_hex) -> Any:
    return verify_export(lines_of(data), key)


# ---------------------------------------------------------------- clean exports


@SETTINGS
@given(_events)
def test_clean_export_verifies(events: list[Any]) -> None:
    # Prepare
    records = build(events)
    lines = export(records)

    # Execute
    as_str = verify_export(lines, KEY.public_hex)
    as_bytes = verify_bytes("".join(lines).encode("utf-8"))
    stripped = verify_export([line.rstrip("\n") for line in lines], KEY.public_hex)

    # Assert
    for report in (as_str, as_bytes, stripped):
        assert report.ok, report.reason
        assert report.count == len(records) and report.head_hash == records[-1].hash
    assert verify_chain(records).ok
    assert format_report(as_str) == f"OK: {len(records)} events, head {records[-1].hash} signed by {KEY.public_hex}"


# ---------------------------------------------------------------- tampering


@settings(SETTINGS, max_examples=100)
@given(_events, st.data())
def test_any_byte_flip_is_detected(events: list[Any], data: st.DataObject) -> None:
    raw = "".join(export(build(events))).encode("utf-8")
    pos = data.draw(st.integers(0, len(raw) - 1), label="pos")
    mask = data.draw(st.integers(1, 255), label="mask")
    tampered = bytearray(raw)
    tampered[pos] ^= mask

    report = verify_bytes(bytes(tampered))

    assert not report.ok
    assert report.reason


@pytest.mark.parametrize("mask", [0x01, 0x20])
def test_every_byte_flip_of_a_small_export_is_detected(mask: int) -> None:
    raw = "".join(export(build([("coordinator", "job.create", "job:1", {"digest": "ab" * 32, "n": 1.5}),
                                ("user:alice", "approval.add", "job:1", {"ok": True})]))).encode("utf-8")

    survivors = []
    for pos in range(len(raw)):
        tampered = bytearray(raw)
        tampered[pos] ^= mask
        if verify_bytes(bytes(tampered)).ok:
            survivors.append(pos)

    assert survivors == []


@SETTINGS
@given(_events, st.data())
def test_any_line_deletion_is_detected(events: list[Any], data: st.DataObject) -> None:
    lines = export(build(events))
    index = data.draw(st.integers(0, len(lines) - 1), label="index")

    report = verify_export(lines[:index] + lines[index + 1:], KEY.public_hex)

    assert not report.ok


@SETTINGS
@given(_events, st.data(), _event)
def test_forged_line_linked_from_its_predecessor_is_detected(events: list[Any], data: st.DataObject,
                                                             forged_event: Any) -> None:
    records = build(events)
    lines = export(records)
    index = data.draw(st.integers(0, len(records)), label="insert_at")  # before record `index` (or the head)
    actor, action, obj, details = forged_event
    forged = next_record(records[index - 1] if index else None, "2026-11-27T10:59:59Z",
                         event_body(actor, action, obj, details))
    forged_line = canonical_json(forged.to_dict()).decode("utf-8") + "\n"

    report = verify_export(lines[:index] + [forged_line] + lines[index:], KEY.public_hex)

    assert not report.ok
    assert report.line is not None and report.line >= index + 1


@SETTINGS
@given(st.lists(_event, min_size=2, max_size=6), st.data())
def test_any_swap_of_two_lines_is_detected(events: list[Any], data: st.DataObject) -> None:
    lines = export(build(events))
    i = data.draw(st.integers(0, len(lines) - 2), label="i")
    j = data.draw(st.integers(i + 1, len(lines) - 1), label="j")
    swapped = list(lines)
    swapped[i], swapped[j] = swapped[j], swapped[i]

    report = verify_export(swapped, KEY.public_hex)

    assert not report.ok


@SETTINGS
@given(_events, st.data())
def test_any_truncation_is_detected(events: list[Any], data: st.DataObject) -> None:
    raw = "".join(export(build(events))).encode("utf-8")
    # Cutting only the final newline leaves every byte that matters, so it is not tampering.
    cut = data.draw(st.integers(0, len(raw) - 2), label="cut")

    report = verify_bytes(raw[:cut])

    assert not report.ok


@SETTINGS
@given(_events)
def test_wrong_key_and_resigned_head_are_detected(events: list[Any]) -> None:
    records = build(events)
    lines = export(records)
    resigned = export(records, key=OTHER)

    wrong_key = verify_export(lines, OTHER.public_hex)
    other_signer = verify_export(resigned, KEY.public_hex)

    assert not wrong_key.ok and "not the expected key" in wrong_key.reason
    assert not other_signer.ok


def test_head_with_replaced_key_field_fails_signature() -> None:
    records = build([("coordinator", "job.create", "job:1", {"n": 1})])
    head = sign_head(OTHER, records[-1], signed_at="2026-11-27T11:00:00Z")
    lying = SignedHead(head.seq, head.hash, head.signed_at, KEY.public_hex, head.signature)

    report = verify_export(list(export_lines(records, lying)), KEY.public_hex)

    assert not report.ok and "does not verify" in report.reason


# ---------------------------------------------------------------- reports name the line and seq


def test_reports_name_line_and_seq() -> None:
    records = build([("coordinator", "job.create", f"job:{i}", {"i": i}) for i in range(5)])
    lines = export(records)
    edited = list(lines)
    edited[3] = edited[3].replace('"i":3', '"i":4')
    garbled = list(lines)
    garbled[2] = garbled[2][:20] + "\n"

    edited_report, garbled_report = verify_export(edited, KEY.public_hex), verify_export(garbled, KEY.public_hex)
    missing_head = verify_export(lines[:-1], KEY.public_hex)
    trailing = verify_export([*lines, lines[0]], KEY.public_hex)

    assert (edited_report.bad_seq, edited_report.line, edited_report.count) == (3, 4, 3)
    assert format_report(edited_report) == "TAMPERED: event seq 3: line 4: record content does not match its hash"
    assert garbled_report.line == 3 and "not valid JSON" in garbled_report.reason
    assert "missing signed head after line 5" in missing_head.reason
    assert trailing.line == 7 and "after the signed head" in trailing.reason


@pytest.mark.parametrize("line", [
    b"\xff\xfe{}\n", b"[]\n", b'{"seq":0}\n', b"\n", b'{"a":NaN}\n', b"[" * 100_000 + b"\n",
    b'{"signed_head":{"seq":0}}\n',
])
def test_malformed_lines_are_reports_not_tracebacks(line: bytes) -> None:
    report = verify_export([line], KEY.public_hex)

    assert not report.ok and report.line == 1


def test_empty_export_and_bad_expected_key() -> None:
    assert verify_export([], KEY.public_hex).reason == "missing signed head: the export is empty"
    assert "64 lowercase hex" in verify_export([], "XYZ").reason


def test_verify_streams_in_constant_memory() -> None:
    records = build([("coordinator", "job.step", f"job:{i % 7}", {"bytes": i}) for i in range(2_000)])
    lines = [line.encode("utf-8") for line in export(records)]
    tracemalloc.start()

    try:
        report = verify_export(iter(lines), KEY.public_hex)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert report.ok and report.count == 2_000
    assert peak < 256 * 1024  # holding the parsed export would take several MB


# ---------------------------------------------------------------- event bodies and heads


def test_event_body_normalises_and_rejects() -> None:
    body = event_body("user:alice", "job.create", "job:1", {"ids": (1, 2), "sizes": {"bytes": 10}})

    assert body == {"actor": "user:alice", "action": "job.create", "object": "job:1",
                    "details": {"ids": [1, 2], "sizes": {"bytes": 10}}}
    for bad in ({"x": math.nan}, {"x": b"raw"}, {"x": object()}, {"nested": {"Payload": "..."}},
                {"rows": []}, {"blob": "x" * 20_000}):
        with pytest.raises(AuditError):
            event_body("user:alice", "job.create", "job:1", bad)
    with pytest.raises(AuditError):
        event_body("", "job.create", "job:1", {})


def test_head_signature_covers_seq_hash_and_time() -> None:
    record = build([("coordinator", "job.create", "job:1", {})])[-1]

    head = sign_head(KEY, record, signed_at="2026-11-27T11:00:00Z")
    verify_head(head, KEY.public_hex)

    assert head_message(head.seq, head.hash, head.signed_at).startswith(HEAD_CONTEXT)
    for forged in (SignedHead(head.seq, head.hash, "2030-01-01T00:00:00Z", head.key, head.signature),
                   SignedHead(head.seq + 1, head.hash, head.signed_at, head.key, head.signature)):
        with pytest.raises(CryptoError):
            verify_head(forged, KEY.public_hex)


def test_export_refuses_head_of_another_record() -> None:
    records = build([("coordinator", "job.create", f"job:{i}", {}) for i in range(3)])
    head = sign_head(KEY, records[0], signed_at="2026-11-27T11:00:00Z")

    with pytest.raises(AuditError):
        list(export_lines(records, head))


# ---------------------------------------------------------------- command line


@pytest.fixture
def export_file(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    records = build([("coordinator", "job.create", f"job:{i}", {"i": i}) for i in range(4)])
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.writelines(export(records))
    return path


def test_cli_ok_and_tampered(export_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_file = tmp_path / "key.hex"
    key_file.write_text(KEY.public_hex + "\n", encoding="utf-8")

    ok_code = main(["verify", str(export_file), "--key", KEY.public_hex])
    ok_out = capsys.readouterr().out
    export_file.write_bytes(export_file.read_bytes().replace(b'"i":2', b'"i":7'))
    bad_code = main(["verify", str(export_file), "--key-file", str(key_file)])
    bad_out = capsys.readouterr().out

    assert ok_code == 0 and ok_out.startswith("OK: 4 events, head ") and ok_out.rstrip().endswith(KEY.public_hex)
    assert bad_code == 1 and bad_out.startswith("TAMPERED: event seq 2: line 3:")


def test_cli_usage_errors(export_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(tmp_path / "missing.jsonl"), "--key", KEY.public_hex]) == 2
    assert main(["verify", str(export_file), "--key", "not-hex"]) == 2
    with pytest.raises(SystemExit) as no_key:
        main(["verify", str(export_file)])
    assert no_key.value.code == 2
    capsys.readouterr()


def test_cli_help_runs_as_module() -> None:
    result = subprocess.run([sys.executable, "-m", "coordinator.audit.chain", "verify", "--help"],
                            capture_output=True, text=True, check=False)

    assert result.returncode == 0 and "--key-file" in result.stdout
