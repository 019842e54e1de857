"""Both PSI jobs between two real nodes (pinned mutual TLS on loopback): results are right, and no
identifier of either party — in any normalised form, nor its SHA-256, SHA-1 or MD5, hex or raw —
appears in any byte either node sent (to the peer or to the coordinator). The same search, run over
the same capture with leaks planted in it, finds exactly those leaks."""

from __future__ import annotations

import csv
import hashlib

import pytest

from demo.synthetic import generate
from node.jobs.psi import Patience, PsiReceiver, PsiSender, recovery
from node.jobs.psi.outreach import OutboxChannel
from protocols.wire.control import JobInput, JobKind, JobParams, KeyType, Purpose
from psi import normalise
from tests.support.leaks import Needles, identifier_forms, plant, search, with_hashes
from tests.support.world import psi_world

KEYS = ["id_number", "imei", "idfa", "mac"]
COLUMN_TYPES = {"id_number": KeyType.ID_NUMBER, "imei": KeyType.IMEI, "idfa": KeyType.IDFA, "mac": KeyType.MAC,
                "msisdn": KeyType.MOBILE, "mobile": KeyType.MOBILE, "customer_id": KeyType.CUSTOMER_ID}


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _forms(column: str, raw: str) -> set[bytes]:
    return with_hashes(identifier_forms(column, raw))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("psi-world")
    paths = generate(tmp / "data", n=900, seed=11, progress=False)
    data = {"bank_customers": paths.bank_customers, "bank_lost_contacts": paths.bank_lost_contacts,
            "telco_subscribers": paths.telco_subscribers}
    telco = PsiSender(patience=Patience(start=60, idle=30)).handlers()
    w = psi_world(tmp, data, handlers={"bank": PsiReceiver().handlers(), "telco": telco})
    w.data = data
    yield w
    w.close()


def _identifiers(world) -> dict[bytes, str]:
    """Every form of every identifier in the three tables, mapped to where it came from."""
    needles: dict[bytes, str] = {}
    for name, path in world.data.items():
        for row in _rows(path):
            for column in COLUMN_TYPES:
                if row.get(column):
                    needles.update(dict.fromkeys(_forms(column, row[column]), f"{name}:{column}={row[column]}"))
    return needles


def _capture(world) -> dict[str, list[tuple[str, bytes]]]:
    """Every payload each node sent, as ``(name, bytes)``."""
    return {name: [(f"{name}[{i}]", blob) for i, blob in enumerate(node.sent)] for name, node in world.nodes.items()}


def _run_jobs(world):
    ds = world.dataset_ids
    world.submit(1, JobKind.AUDIENCE_OVERLAP, Purpose.APP_PROMOTION,
                 [JobInput(dataset_id=ds["bank_customers"], key_fields=["id_number"]),
                  JobInput(dataset_id=ds["telco_subscribers"], key_fields=["id_number"], filter="age >= 18")],
                 JobParams(output_mode="bank_ids", min_cell=50))
    world.submit(2, JobKind.RECOVERY, Purpose.RECOVERY,
                 [JobInput(dataset_id=ds["bank_lost_contacts"], key_fields=KEYS, consent_field="consent_recovery"),
                  JobInput(dataset_id=ds["telco_subscribers"], key_fields=KEYS, output_fields=["msisdn"])],
                 JobParams(output_mode="reveal", match_cap=5000))
    world.submit(3, JobKind.RECOVERY, Purpose.RECOVERY,
                 [JobInput(dataset_id=ds["bank_lost_contacts"], key_fields=KEYS, consent_field="consent_recovery"),
                  JobInput(dataset_id=ds["telco_subscribers"], key_fields=KEYS)],
                 JobParams(output_mode="relay", match_cap=5000, message_template="Please call your bank."))
    for _ in range(3):
        world.run()


def _expected_recovery(world):
    """Plain-Python reference: consenting lost customers, keys in priority order, current msisdn."""
    subscribers = _rows(world.data["telco_subscribers"])
    index = {kt: {} for kt in KEYS}
    for s in subscribers:
        for kt in KEYS:
            if s[kt]:
                index[kt].setdefault(normalise(KeyType(kt), s[kt]), set()).add(s["msisdn"])
    expected = {}
    for row in _rows(world.data["bank_lost_contacts"]):
        if row["consent_recovery"] != "1":
            continue
        for kt in KEYS:
            if row[kt] and (found := index[kt].get(normalise(KeyType(kt), row[kt]))):
                if len(found) == 1:
                    expected[row["customer_id"]] = (kt, next(iter(found)))
                break
    return expected


@pytest.fixture(scope="module")
def ran(world):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(recovery, "POOL_MIN_ROWS", 0)  # the telco prepares on its fork-server pool, as at scale
        _run_jobs(world)
    return world


def test_both_jobs_succeed_and_nothing_identifying_leaves_either_node(ran):
    world = ran

    results = world.coordinator.results
    for job_id in (1, 2, 3):
        assert {p: r.status for p, r in results[job_id].items()} == {"bank": "succeeded", "telco": "succeeded"}, (
            job_id, {p: r.detail for p, r in results[job_id].items()})

    bank_state = world.nodes["bank"].runtime.settings.state_path
    bank_ids = {r["customer_id"] for r in _rows(world.data["bank_customers"])}
    telco_ids = {r["id_number"] for r in _rows(world.data["telco_subscribers"])}
    expected_ids = {r["customer_id"] for r in _rows(world.data["bank_customers"]) if r["id_number"] in telco_ids}
    kept_ids = {r["customer_id"] for r in _rows(bank_state / "jobs" / "1" / "matched_customer_ids.csv")}
    assert kept_ids == expected_ids and kept_ids <= bank_ids
    assert results[1]["bank"].outputs["overlap"] == len(expected_ids)

    recovered = {r["customer_id"]: (r["matched_by"], r["msisdn"])
                 for r in _rows(bank_state / "jobs" / "2" / "recovered_contacts.csv")}
    assert recovered == _expected_recovery(world)
    assert results[2]["bank"].outputs["recovered"] == len(recovered) > 0

    outbox = OutboxChannel(world.nodes["telco"].runtime.settings.state_path / "node.db")
    try:
        assert outbox.count("3") == results[3]["telco"].outputs["relayed"] == results[3]["bank"].outputs["relayed"]
    finally:
        outbox.close()
    assert results[3]["bank"].outputs["relayed"] == len({m for _, m in recovered.values()})

    needles = Needles(_identifiers(world))
    assert needles.count > 10_000
    for name, capture in _capture(world).items():
        assert sum(len(blob) for _, blob in capture) > 50_000, name
        leaked = search(needles, capture)
        assert leaked == [], f"{name} sent {len(leaked)} identifier forms, e.g. {leaked[:5]}"


@pytest.mark.parametrize("party", ["bank", "telco"])
def test_the_search_finds_leaks_planted_in_the_real_capture(ran, party):
    needles = _identifiers(ran)
    subscriber = _rows(ran.data["telco_subscribers"])[3]
    customer = _rows(ran.data["bank_customers"])[5]
    leaks = [hashlib.md5(subscriber["id_number"].encode()).hexdigest().encode(),  # hashed, hex
             hashlib.sha256(normalise(KeyType.IMEI, subscriber["imei"]).encode()).digest(),  # hashed, raw
             subscriber["msisdn"].encode(), customer["customer_id"].encode()]
    capture = _capture(ran)[party]

    found = search(Needles(needles), plant(capture, leaks))

    largest = max(capture, key=lambda item: len(item[1]))[0]
    print(f"{party}: {len(leaks)} leaks planted in {largest} of {len(capture)} payloads; found {found}")
    assert sorted(found) == sorted(f"{largest}: {needles[leak]}" for leak in leaks)
