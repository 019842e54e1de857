"""Every job kind, end to end, with every byte each node sent captured: no identifier, no feature value.

Runs the demo itself (coordinator, bank and telco node processes, SuperLink and both SuperNodes) on a
small synthetic population with test-only 512-bit Paillier keys, with ``egress_capture_dir`` set on
both nodes: each node's egress ledger then keeps a copy of every payload it records, and every path
by which a node sends (coordinator API, mutual-TLS data plane requests and replies, peer calls,
Flower round replies) goes through the ledger. The test checks that

* every job kind the demo runs succeeded: audience overlap (count and bank ids), recovery (reveal
  and relay), train_risk, train_propensity, the batch score job, a real-time scoring call,
  site_selection, and the marketing loop's campaign_evaluation, churn_warning and win_back;
* the capture holds traffic of every one of those kinds and matches the ledger (same count, same
  SHA-256 per record), so nothing is captured that the ledger did not see or the other way round;
* none of the captured bytes contains an identifier of either party in any normalised form, nor its
  SHA-256, SHA-1 or MD5 (hex or raw), nor a high-entropy feature value of either party (its CSV
  text, or its IEEE float64 bytes either way round), nor a telco location cell id. (float32 is not
  searched: 4-byte needles match by chance in megabytes of ciphertext.)
* the telco's site_selection release holds no H3 cell of fewer than k people: released cells are
  aggregates (H3 ids, never the "G…" km cells of individuals, which stay needles above), so the
  fine H3 cells under k in both measures are needles of the telco's traffic. (Not of the bank's:
  its ranked sites may be children of a pooled parent, chosen from the released aggregate.)
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sqlite3
import struct
from pathlib import Path

import pytest

from node.jobs.sites import assign_km_cells
from protocols.wire.control import KeyType
from psi import normalise
from tests.support.leaks import IDENTIFIER_COLUMNS, Needles, identifier_forms, plant, search, with_hashes

pytestmark = [pytest.mark.flower, pytest.mark.slow]

QUASI_IDENTIFIERS = ("home_cell", "work_cell")
FEATURES = {"bank_customers.csv": ("balance", "monthly_txn_amount"),
            "telco_subscribers.csv": ("arpu", "data_usage_gb", "night_usage_ratio")}
MIN_TEXT = 7  # shorter decimal strings can occur by chance in megabytes of ciphertext
K_MIN_CELL = 50  # the policy's k_min_cell, and the demo site_selection job's min_cell
JOB_KINDS = ("audience_overlap", "recovery", "train_risk", "train_propensity", "score", "site_selection",
             # the marketing loop (demo.marketing):
             "segment_sizes", "app_promotion", "campaign_evaluation", "churn_warning", "win_back")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def _high_entropy(text: str) -> bool:
    """A decimal with at least 5 significant digits (shorter values are too common to be telling)."""
    return bool(_NUMBER.fullmatch(text)) and len(text.lstrip("-").replace(".", "").lstrip("0")) >= 5


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _needles(data: Path) -> dict[bytes, str]:
    """Every byte string that must not leave a node, mapped to a description for the failure message."""
    needles: dict[bytes, str] = {}
    for file in ("bank_customers.csv", "bank_lost_contacts.csv", "telco_subscribers.csv"):
        for row in _rows(data / file):
            for column in IDENTIFIER_COLUMNS:
                if row.get(column):
                    for needle in with_hashes(identifier_forms(column, row[column])):
                        needles[needle] = f"{file}:{column}={row[column]}"
            for column in QUASI_IDENTIFIERS:
                if row.get(column):
                    needles[row[column].encode()] = f"{file}:{column}={row[column]}"
            for column in FEATURES.get(file, ()):
                text = row.get(column, "")
                if not _high_entropy(text):
                    continue
                value = float(text)
                what = f"{file}:{column}={text}"
                if len(text) >= MIN_TEXT:
                    needles[text.encode()] = what
                needles[struct.pack("<d", value)] = what
                needles[struct.pack(">d", value)] = what
    return needles


def _ledger(state: Path, party: str) -> list[dict[str, object]]:
    con = sqlite3.connect(state / party / "node.db")
    try:
        return [json.loads(body) for (body,) in con.execute("SELECT body FROM egress_ledger ORDER BY seq")]
    finally:
        con.close()


def _job_kinds(state: Path) -> dict[int, str]:
    """``job id → kind`` from the exported audit log."""
    out: dict[int, str] = {}
    for line in (state / "audit.jsonl").read_text().splitlines():
        body = json.loads(line).get("body", {})
        if body.get("action") == "job.submitted":
            out[int(str(body["object"]).removeprefix("job:"))] = str(body["details"]["kind"])
    return out


def _job_outcomes(state: Path) -> dict[str, list[str]]:
    """``kind → [last status, ...]`` of every job, from the exported audit log."""
    kinds: dict[str, str] = {}
    last: dict[str, str] = {}
    for line in (state / "audit.jsonl").read_text().splitlines():
        record = json.loads(line)
        body = record.get("body", record)
        obj, details = str(body.get("object", "")), body.get("details") or {}
        if not obj.startswith("job:"):
            continue
        if body.get("action") == "job.submitted":
            kinds[obj] = str(details["kind"])
        elif body.get("action") == "job.status":
            last[obj] = str(details["to"])
    out: dict[str, list[str]] = {}
    for obj, kind in kinds.items():
        out.setdefault(kind, []).append(last.get(obj, "unknown"))
    return out


# ``demo_run`` (tests/demo/conftest.py): one demo run per session, shared with test_demo_training.


def test_every_job_kind_ran_and_succeeded(demo_run: Path) -> None:
    outcomes = _job_outcomes(demo_run)
    for kind in JOB_KINDS:
        assert outcomes.get(kind), f"no {kind} job in the audit log: {outcomes}"
        assert "succeeded" in outcomes[kind], f"{kind}: {outcomes[kind]}"


@pytest.mark.parametrize("party", ["bank", "telco"])
def test_capture_is_exactly_the_ledger_and_covers_every_kind(demo_run: Path, party: str) -> None:
    ledger = _ledger(demo_run, party)
    files = sorted((demo_run.parent / "capture" / party).iterdir())
    assert len(files) == len(ledger) > 0
    for body, file in zip(ledger, files, strict=True):
        assert hashlib.sha256(file.read_bytes()).hexdigest() == body["digest"], file.name
    kinds = _job_kinds(demo_run)
    sent_for = {kinds[int(str(b["job_id"]))] for b in ledger if b["job_id"] is not None and b["peer"] != "coordinator"}
    assert sent_for >= set(JOB_KINDS), sent_for
    assert any(b["kind"] == "flower.round_reply" for b in ledger)  # Flower traffic goes through the ledger too
    realtime = [b for b in ledger if str(b["ref"]).startswith("calls/") or str(b["kind"]).startswith("score.")]
    assert realtime, sorted({str(b["kind"]) for b in ledger})  # the real-time scoring call (bank) and reply (telco)


@pytest.mark.parametrize("party", ["bank", "telco"])
def test_nothing_identifying_or_any_feature_value_left_the_node(demo_run: Path, party: str) -> None:
    needles = Needles(_needles(demo_run / "data"))
    assert needles.count > 10_000
    capture = _capture(demo_run, party)
    assert sum(len(blob) for _, blob in capture) > 100_000
    found = search(needles, capture)
    assert not found, f"{len(found)} hits, e.g.\n" + "\n".join(found[:20])


def _capture(state: Path, party: str) -> list[tuple[str, bytes]]:
    """Every payload ``party``'s node sent, as ``(file name, bytes)`` in ledger order."""
    return [(file.name, file.read_bytes()) for file in sorted((state.parent / "capture" / party).iterdir())]


@pytest.mark.parametrize("party", ["bank", "telco"])
def test_the_search_finds_a_leak_planted_in_the_real_capture(demo_run: Path, party: str) -> None:
    data = demo_run / "data"
    needles = _needles(data)
    subscriber = _rows(data / "telco_subscribers.csv")[7]
    arpu = next(r["arpu"] for r in _rows(data / "telco_subscribers.csv") if _high_entropy(r["arpu"]))
    leaks = [hashlib.md5(subscriber["id_number"].encode()).hexdigest().encode(),  # a hashed identifier
             subscriber["msisdn"].encode(),                                       # a raw one
             hashlib.sha256(normalise(KeyType.IMEI, subscriber["imei"]).encode()).digest(),  # of a normalised one
             struct.pack("<d", float(arpu))]                                      # a feature value's float64
    capture = _capture(demo_run, party)

    found = search(Needles(needles), plant(capture, leaks))

    largest = max(capture, key=lambda item: len(item[1]))[0]
    print(f"{party}: planted {len(leaks)} leaks in {largest} ({len(capture)} payloads), the search found {found}")
    assert sorted(found) == sorted(f"{largest}: {needles[leak]}" for leak in leaks)


def _cells_below_k(data: Path) -> dict[bytes, str]:
    """H3 resolution-8 cells of the telco's subscribers with fewer than k residents and fewer than k workers."""
    rows = _rows(data / "telco_subscribers.csv")
    people: dict[str, list[int]] = {}
    for i, column in enumerate(QUASI_IDENTIFIERS):
        assignment = assign_km_cells([r[column] for r in rows])
        for cell, n in zip(assignment.cells, assignment.counts.tolist(), strict=True):
            people.setdefault(cell, [0, 0])[i] = n
    return {cell.encode(): f"H3 cell {cell} of {n} residents and {m} workers (< k)"
            for cell, (n, m) in people.items() if max(n, m) < K_MIN_CELL}


def test_the_telcos_site_release_holds_no_cell_below_k(demo_run: Path) -> None:
    ledger = _ledger(demo_run, "telco")
    assert any(b["kind"] == "sites.demand_release" for b in ledger)  # the release went through the ledger
    needles = Needles(_cells_below_k(demo_run / "data"))
    assert needles.count > 100
    found = search(needles, _capture(demo_run, "telco"))
    assert not found, f"{len(found)} hits, e.g.\n" + "\n".join(found[:20])
