"""One key value held by thousands of subscribers never fails a recovery job, and never leaves the telco.

Two real nodes (pinned mutual TLS on loopback) run reveal- and relay-mode recovery over the demo's
synthetic tables, with 3,000 extra telco subscribers whose phones all report one cloned IMEI, and a
few placeholder IMEIs on both sides. Before the defence the telco's labeled table gave that IMEI one
record holding 3,000 numbers: the record outgrew the wire's record size and the whole job failed with
a validation traceback (and, had it fitted, a bank querying that IMEI would have received every
number on it). Now the value is left out and counted by reason, and the rest completes exactly as a
plain-Python reference says.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from demo.synthetic import generate
from node.jobs.psi import Patience, PsiReceiver, PsiSender
from protocols.wire.control import JobInput, JobKind, JobParams, KeyType, Purpose
from psi import InvalidIdentifier, luhn_check_digit, normalise
from psi.labeled import MAX_LABELS_PER_KEY
from tests.support.leaks import Needles, identifier_forms, search, with_hashes
from tests.support.world import psi_world

KEYS = ["id_number", "imei", "idfa", "mac"]
CLONED_BODY = "86981203777123"
CLONED_IMEI = CLONED_BODY + luhn_check_digit(CLONED_BODY)  # a valid IMEI that 3,000 phones report
SHARERS = 3000
PLACEHOLDER = "000000000000000"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _cloned_numbers() -> list[str]:
    return [f"199{i:08d}" for i in range(SHARERS)]


def _add_shared_and_placeholder_rows(data: dict[str, Path]) -> None:
    """3,000 subscribers on one cloned IMEI and 3 on the placeholder; the bank looks both up."""
    telco = _rows(data["telco_subscribers"])
    template = {column: "" for column in telco[0]} | {"age": "30", "gender": "F", "region_code": "110101",
                                                      "tenure_months": "12", "arpu": "50", "app_bank": "0"}
    extra = [template | {"msisdn": number, "imei": CLONED_IMEI} for number in _cloned_numbers()]
    extra += [template | {"msisdn": f"198{i:08d}", "imei": PLACEHOLDER} for i in range(3)]
    _write(data["telco_subscribers"], telco + extra)
    lost = _rows(data["bank_lost_contacts"])
    blank = {column: "" for column in lost[0]} | {"consent_recovery": "1"}
    lost += [blank | {"customer_id": "C-CLONED", "imei": CLONED_IMEI},
             blank | {"customer_id": "C-PLACEHOLDER", "imei": PLACEHOLDER}]
    _write(data["bank_lost_contacts"], lost)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    tmp = tmp_path_factory.mktemp("psi-shared-key")
    paths = generate(tmp / "data", n=600, seed=23, progress=False)
    data = {"bank_customers": paths.bank_customers, "bank_lost_contacts": paths.bank_lost_contacts,
            "telco_subscribers": paths.telco_subscribers}
    _add_shared_and_placeholder_rows(data)
    telco = PsiSender(patience=Patience(start=60, idle=30)).handlers()
    w = psi_world(tmp, data, handlers={"bank": PsiReceiver().handlers(), "telco": telco})
    w.data = data
    yield w
    w.close()


def _canonical(key_type: str, raw: str) -> str | None:
    try:
        return normalise(KeyType(key_type), raw) if raw else None
    except InvalidIdentifier:
        return None


def _expected_recovery(data: dict[str, Path]) -> dict[str, tuple[str, str]]:
    """Plain Python: consenting customers, keys in priority order; a key value with more than
    ``MAX_LABELS_PER_KEY`` numbers is not in the table; one with several (up to that) is a conflict."""
    index: dict[str, dict[str, set[str]]] = {kt: {} for kt in KEYS}
    for s in _rows(data["telco_subscribers"]):
        for kt in KEYS:
            if (value := _canonical(kt, s[kt])) is not None:
                index[kt].setdefault(value, set()).add(s["msisdn"])
    expected = {}
    for row in _rows(data["bank_lost_contacts"]):
        if row["consent_recovery"] != "1":
            continue
        for kt in KEYS:
            found = index[kt].get(_canonical(kt, row[kt]) or "", set())
            if found and len(found) <= MAX_LABELS_PER_KEY:
                if len(found) == 1:
                    expected[row["customer_id"]] = (kt, next(iter(found)))
                break
    return expected


def _submit(world, job_id: int, params: JobParams) -> None:  # noqa: ANN001
    ds = world.dataset_ids
    telco = JobInput(dataset_id=ds["telco_subscribers"], key_fields=KEYS,
                     output_fields=["msisdn"] if params.output_mode == "reveal" else [])
    world.submit(job_id, JobKind.RECOVERY, Purpose.RECOVERY,
                 [JobInput(dataset_id=ds["bank_lost_contacts"], key_fields=KEYS, consent_field="consent_recovery"),
                  telco], params)


def test_a_key_value_held_by_thousands_is_refused_by_reason_and_the_job_completes(world) -> None:  # noqa: ANN001
    _submit(world, 1, JobParams(output_mode="reveal", match_cap=5000))
    _submit(world, 2, JobParams(output_mode="relay", match_cap=5000, message_template="Please call your bank."))

    world.run()
    world.run()

    results = world.coordinator.results
    for job_id in (1, 2):
        assert {p: r.status for p, r in results[job_id].items()} == {"bank": "succeeded", "telco": "succeeded"}, (
            job_id, {p: r.detail for p, r in results[job_id].items()})
    telco_out, bank_out = results[1]["telco"].outputs, results[1]["bank"].outputs
    print(f"telco refused: shared_key_values={telco_out['shared_key_values']}, "
          f"invalid_identifiers={telco_out['invalid_identifiers']}; bank invalid={bank_out['invalid_identifiers']}")
    for job_id in (1, 2):  # reveal and relay report the refusal alike
        assert results[job_id]["telco"].outputs["shared_key_values"] == {"imei": {"key_values": 1,
                                                                                  "subscribers": SHARERS}}
    assert telco_out["invalid_identifiers"]["imei:shared_key_value"] == SHARERS
    assert telco_out["invalid_identifiers"]["imei:placeholder"] == 3
    assert bank_out["invalid_identifiers"]["imei:placeholder"] == 1

    bank_state = world.nodes["bank"].runtime.settings.state_path
    recovered = {r["customer_id"]: (r["matched_by"], r["msisdn"])
                 for r in _rows(bank_state / "jobs" / "1" / "recovered_contacts.csv")}
    assert recovered == _expected_recovery(world.data) and len(recovered) > 0
    assert "C-CLONED" not in recovered and "C-PLACEHOLDER" not in recovered
    assert not set(_cloned_numbers()) & {number for _, number in recovered.values()}
    assert results[2]["telco"].outputs["relayed"] == results[2]["bank"].outputs["relayed"] > 0

    # The refused value is reported as a reason and counts: none of its forms leaves either node.
    needles = Needles({n: f"imei={CLONED_IMEI}" for n in with_hashes(identifier_forms("imei", CLONED_IMEI))})
    reports = [("outputs", json.dumps(r.outputs).encode()) for job in results.values() for r in job.values()]
    sent = [(f"{name}[{i}]", blob) for name, node in world.nodes.items() for i, blob in enumerate(node.sent)]
    assert search(needles, reports + sent) == []
