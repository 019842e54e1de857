"""``churn_warning`` and ``win_back`` between two real nodes.

churn_warning: the bank gets, for exactly its customers the telco knows, the band the telco's rule
gives their signals (recomputed here from the telco's table), counts per band k-suppressed at the
coordinator, and nothing for the customers the telco does not know; no number in any form on the
wire; bad signal columns fail with the field named. win_back: recovery of the top ``match_cap`` lost
customers by the bank's propensity column only — reveal (the bank's file) and relay (the telco's
outbox) — and the recovery rules' own refusals.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from node.jobs.marketing.retention import BANDS_FILE, BankRetention, TelcoRetention
from node.jobs.psi import OutboxChannel, Patience, PsiSender, mask_msisdn
from node.node_db import NODE_DB
from protocols.marketing.bands import SIGNALS, bands
from protocols.wire.control import JobInput, JobKind, JobParams, Purpose
from tests.support.leaks import Needles, identifier_forms, search, with_hashes
from tests.support.world import World


def _field(kind: str, level: int, purposes: list[str], key_type: str | None = None) -> dict:
    spec: dict = {"type": "string" if kind == "identifier" else "integer", "category": kind,
                  "security_level": level, "purposes": purposes}
    if key_type:
        spec.update(desensitisation="mask", key_type=key_type)
    return spec


def _gov(dataset: str, fields: dict[str, dict]) -> str:
    return yaml.safe_dump({"dataset": dataset, "fields": fields})


RET, REC = ["retention"], ["recovery", "retention"]
TELCO_GOV = _gov("telco_subscribers", {
    "msisdn": _field("identifier", 4, REC, "mobile"), "id_number": _field("identifier", 4, REC, "id_number"),
    **{s: _field("feature", 3, RET) for s in SIGNALS}})
BANK_GOV = _gov("bank_customers", {"customer_id": _field("identifier", 3, RET, "customer_id"),
                                   "mobile": _field("identifier", 4, RET, "mobile")})
LOST_GOV = _gov("bank_lost_contacts", {
    "customer_id": _field("identifier", 3, REC, "customer_id"), "id_number": _field("identifier", 4, REC, "id_number"),
    "propensity": {**_field("feature", 2, REC), "type": "float"}, "consent": _field("feature", 2, REC)})
K = 10


def _id_number(i: int) -> str:
    body = f"110101{1950 + i // 336:04d}{1 + (i // 28) % 12:02d}{1 + i % 28:02d}123"
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]


@pytest.fixture
def world(tmp_path: Path):
    rng = np.random.default_rng(9)
    n = 600
    numbers = [f"139{x:08d}" for x in rng.choice(10**8, size=n, replace=False)]
    telco = pd.DataFrame({"msisdn": numbers, "id_number": [_id_number(i) for i in range(n)],
                          "number_changed_90d": rng.random(n) < 0.15, "silent_days": rng.poisson(6, n),
                          "home_cell_moved_90d": rng.random(n) < 0.1, "bank_app_stopped_30d": rng.random(n) < 0.2,
                          "competitor_app_started_30d": rng.random(n) < 0.2})
    for s in SIGNALS:
        telco[s] = telco[s].astype(int)
    strangers = [f"158{x:08d}" for x in rng.choice(10**8, size=80, replace=False)]
    customers = pd.DataFrame({"customer_id": [f"C{i:05d}" for i in range(380)],
                              "mobile": numbers[:300] + strangers})
    lost = pd.DataFrame({"customer_id": [f"L{i:05d}" for i in range(200)],
                         "id_number": [_id_number(i) for i in range(100, 250)]
                         + [_id_number(i) for i in range(5000, 5050)],
                         "propensity": np.round(rng.random(200), 6), "consent": 1})
    data = tmp_path / "data"
    data.mkdir()
    for name, frame, gov in (("telco", telco, TELCO_GOV), ("bank", customers, BANK_GOV), ("lost", lost, LOST_GOV)):
        frame.to_csv(data / f"{name}.csv", index=False)
        (data / f"{name}.yaml").write_text(gov)
    psi = PsiSender(patience=Patience(start=30.0, idle=30.0))
    handlers = {"bank": BankRetention(ready_timeout=15.0).handlers(), "telco": TelcoRetention(psi).handlers()}
    w = World(tmp_path, handlers=handlers)
    w.register(1, "telco", data / "telco.csv", data / "telco.yaml")
    w.register(2, "bank", data / "bank.csv", data / "bank.yaml")
    w.register(3, "bank", data / "lost.csv", data / "lost.yaml")
    w.frames = {"telco": telco, "bank": customers, "lost": lost}  # type: ignore[attr-defined]
    yield w
    w.close()


def _churn(world: World, job_id: int, *, features: tuple[str, ...] = SIGNALS) -> dict:
    inputs = [JobInput(dataset_id=1, key_fields=["msisdn"], feature_fields=list(features)),
              JobInput(dataset_id=2, key_fields=["mobile"])]
    world.submit(job_id, JobKind.CHURN_WARNING, Purpose.RETENTION, inputs,
                 JobParams(output_mode="bands", min_cell=K), title="churn")
    world.run(timeout=120)
    return world.coordinator.results[job_id]


def _bands_file(world: World, job_id: int) -> dict[str, str]:
    path = world.runtimes["bank"].settings.state_path / "jobs" / str(job_id) / BANDS_FILE
    with path.open() as f:
        return {r["customer_id"]: r["band"] for r in csv.DictReader(f)}


def test_churn_bands_reach_the_bank_for_its_matched_customers_only(world: World) -> None:
    reports = _churn(world, 1)
    assert reports["telco"].status == "succeeded", reports["telco"].detail
    assert reports["bank"].status == "succeeded", reports["bank"].detail
    telco, customers = world.frames["telco"], world.frames["bank"]  # type: ignore[attr-defined]
    expected_band = dict(zip(telco["msisdn"], bands({s: telco[s].to_numpy() for s in SIGNALS}), strict=True))
    got = _bands_file(world, 1)
    matched = customers[customers["mobile"].isin(expected_band)]
    assert len(matched) == 300 and set(got) == set(matched["customer_id"])  # the 80 strangers get nothing
    assert got == {c: expected_band[m] for c, m in zip(matched["customer_id"], matched["mobile"], strict=True)}
    out = reports["bank"].outputs
    counts = pd.Series(list(got.values())).value_counts()
    assert out["customers_matched"] == 300 and out["customers_asked"] == 380
    for band in ("low", "medium", "high"):
        n = int(counts.get(band, 0))
        assert out["bands"][band] == (n if n >= K else "suppressed (< k)")
    assert len(set(got.values())) == 3  # the population exercises every band
    assert reports["telco"].outputs["bank_queries"] == 380 and "bands" not in reports["telco"].outputs


def test_churn_warning_sends_no_number(world: World) -> None:
    reports = _churn(world, 2)
    assert {r.status for r in reports.values()} == {"succeeded"}
    numbers = list(world.frames["telco"]["msisdn"]) + list(world.frames["bank"]["mobile"])  # type: ignore[attr-defined]
    needles = Needles({b: f"mobile {m[:3]}…" for m in numbers for b in with_hashes(identifier_forms("mobile", m))})
    for party, sent in world.sent.items():
        assert sent and search(needles, [(f"{party}#{i}", blob) for i, blob in enumerate(sent)]) == [], party


def test_churn_warning_without_the_signals_fails_naming_the_field(world: World) -> None:
    reports = _churn(world, 3, features=SIGNALS[:-1])
    assert reports["telco"].status == "failed"
    assert "feature_fields" in reports["telco"].detail and "competitor_app_started_30d" in reports["telco"].detail
    assert reports["bank"].status == "failed"
    assert not (world.runtimes["bank"].settings.state_path / "jobs" / "3").exists()


def _win_back(world: World, job_id: int, mode: str, *, cap: int = 40) -> dict:
    outputs = ["msisdn"] if mode == "reveal" else []  # relay names no output (policy R05): the number stays
    inputs = [JobInput(dataset_id=1, key_fields=["id_number"], output_fields=outputs),
              JobInput(dataset_id=3, key_fields=["id_number"], feature_fields=["propensity"],
                       consent_field="consent")]
    params = JobParams(output_mode=mode, min_cell=K, match_cap=cap,
                       message_template="Come back to Example Bank: reply 1" if mode == "relay" else None)
    world.submit(job_id, JobKind.WIN_BACK, Purpose.RECOVERY, inputs, params, title="win back")
    world.run(timeout=120)
    return world.coordinator.results[job_id]


def _top(world: World, cap: int) -> pd.DataFrame:
    lost = world.frames["lost"]  # type: ignore[attr-defined]
    return lost.sort_values("propensity", ascending=False, kind="stable").head(cap)


def _number_of(world: World) -> dict[str, str]:
    telco = world.frames["telco"]  # type: ignore[attr-defined]
    return dict(zip(telco["id_number"], telco["msisdn"], strict=True))


def test_win_back_reveal_recovers_the_top_ranked_only(world: World) -> None:
    reports = _win_back(world, 4, "reveal")
    assert reports["bank"].status == "succeeded", reports["bank"].detail
    top, number = _top(world, 40), _number_of(world)
    expected = {c: number[i] for c, i in zip(top["customer_id"], top["id_number"], strict=True) if i in number}
    path = world.runtimes["bank"].settings.state_path / "jobs" / "4" / "recovered_contacts.csv"
    with path.open() as f:
        got = {r["customer_id"]: r["msisdn"] for r in csv.DictReader(f)}
    assert got == expected and 0 < len(got) < 40
    out = reports["bank"].outputs
    assert out["chosen"] == 40 and out["candidates"] == 200 and out["recovered"] == len(expected)


def test_win_back_relay_messages_the_top_ranked_through_the_telco(world: World) -> None:
    reports = _win_back(world, 5, "relay", cap=30)
    assert reports["telco"].status == "succeeded", reports["telco"].detail
    assert reports["bank"].status == "succeeded", reports["bank"].detail
    top, number = _top(world, 30), _number_of(world)
    expected = sorted(mask_msisdn(number[i]) for i in top["id_number"] if i in number)
    outbox = OutboxChannel(world.runtimes["telco"].settings.state_path / NODE_DB)
    try:
        queued = sorted(r.recipient_masked for r in outbox.rows("5", limit=1000))
    finally:
        outbox.close()
    assert queued == expected and reports["bank"].outputs["relayed"] == len(expected)
    assert not (world.runtimes["bank"].settings.state_path / "jobs" / "5" / "recovered_contacts.csv").exists()


def test_win_back_without_a_propensity_column_fails_naming_it(world: World) -> None:
    inputs = [JobInput(dataset_id=1, key_fields=["id_number"], output_fields=["msisdn"]),
              JobInput(dataset_id=3, key_fields=["id_number"], consent_field="consent")]
    world.submit(6, JobKind.WIN_BACK, Purpose.RECOVERY, inputs, JobParams(output_mode="reveal", min_cell=K,
                                                                         match_cap=10), title="win back")
    world.run(timeout=120)
    bank = world.coordinator.results[6]["bank"]
    assert bank.status == "failed" and "feature_fields" in bank.detail and "propensity" in bank.detail
