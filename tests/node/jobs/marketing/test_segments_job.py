"""``segment_sizes`` between two real nodes: sizes per segment and per segment × product, checked exactly.

The population is the demo's synthetic one (demo.synthetic); the expected figures are computed directly
from both CSV files (a join the job never does). Also: k-suppression, the seeded noise reproduced, nothing
identifying or any feature value in anything either node sent, and a segment naming a field the telco's
governance does not allow failing at the telco with the segment and field named.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from demo.steps import GOVERNANCE
from demo.synthetic import generate
from node.jobs.marketing._segment_rules import SUPPRESSED
from node.jobs.marketing.segments import RESULT_FILE, BankSegmentSizes, TelcoSegmentSizes
from node.jobs.psi import Patience, PsiSender
from node.jobs.sites.demand import two_sided_geometric_noise
from protocols.wire.control import JobInput, JobKind, JobParams, Purpose
from protocols.wire.segments import segment_params
from tests.support.leaks import Needles, identifier_forms, plant, search, with_hashes
from tests.support.world import World

SEGMENTS = """version: "t-1"
segments:
  - name: families
    rule: "has_children == 1"
  - name: fund_fans
    title: Interest in funds
    rule: "fund_interest >= 0.6 and white_collar_high == 0"
"""
PRODUCTS = ["has_fund", "has_mortgage"]
BANK, TELCO = 1, 2
STR = {"id_number": str, "msisdn": str, "mobile": str, "customer_id": str, "imei": str, "idfa": str, "mac": str}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = generate(tmp_path_factory.mktemp("seg"), n=2_000, seed=11, progress=False)
    return {"bank": out.bank_customers, "telco": out.telco_subscribers}


@pytest.fixture(scope="module")
def truth(data: dict[str, Path]) -> dict[str, object]:
    bank, telco = pd.read_csv(data["bank"], dtype=STR), pd.read_csv(data["telco"], dtype=STR)
    rules = {"families": telco["has_children"] == 1,
             "fund_fans": (telco["fund_interest"] >= 0.6) & (telco["white_collar_high"] == 0)}
    sizes = {name: int(mask.sum()) for name, mask in rules.items()}
    cells = {(name, p): int(bank.loc[bank[p] == 1, "id_number"].isin(telco.loc[mask, "id_number"]).sum())
             for name, mask in rules.items() for p in PRODUCTS}
    return {"sizes": sizes, "cells": cells, "bank": bank, "telco": telco}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, data: dict[str, Path]):
    psi = PsiSender(patience=Patience(start=30.0, idle=30.0))
    w = World(tmp_path_factory.mktemp("world"), handlers={
        "bank": BankSegmentSizes(rng=lambda: np.random.default_rng(3), ready_timeout=30.0).handlers(),
        "telco": TelcoSegmentSizes(psi, rng=lambda: np.random.default_rng(4)).handlers()})
    w.register(BANK, "bank", data["bank"], GOVERNANCE / "bank_customers.yaml")
    w.register(TELCO, "telco", data["telco"], GOVERNANCE / "telco_subscribers.yaml")
    yield w
    w.close()


def submit(world: World, job_id: int, *, k: int = 5, epsilon: float | None = None, text: str = SEGMENTS) -> None:
    inputs = [JobInput(dataset_id=BANK, key_fields=["id_number"], feature_fields=PRODUCTS),
              JobInput(dataset_id=TELCO, key_fields=["id_number"])]
    params = JobParams(output_mode="count", min_cell=k, epsilon=epsilon, **segment_params(text))
    world.submit(job_id, JobKind.SEGMENT_SIZES, Purpose.MARKETING, inputs, params, title="segments")


def _reports(world: World, job_id: int) -> dict:
    world.run(timeout=180)
    return world.coordinator.results[job_id]


def _cells(out: dict) -> dict[tuple[str, str], object]:
    return {(c["segment"], c["product"]): c["size"] for c in out["cells"]}


def test_exact_sizes_match_a_direct_computation(world: World, truth) -> None:
    submit(world, 1, k=5)
    reports = _reports(world, 1)
    assert reports["telco"].status == "succeeded", reports["telco"].detail
    assert reports["bank"].status == "succeeded", reports["bank"].detail
    bank, telco = reports["bank"].outputs, reports["telco"].outputs
    assert min(truth["cells"].values()) >= 5 and max(truth["cells"].values()) > 20  # the check is not vacuous
    assert _cells(bank) == truth["cells"]
    assert {s["segment"]: s["size"] for s in telco["segments"]} == truth["sizes"]
    assert bank["segments_version"] == telco["segments_version"] == "t-1"
    assert bank["segments_sha256"] == segment_params(SEGMENTS)["segments_sha256"]
    # Padded sets: the telco learns only how many bank customers have a valid key, for every run.
    assert telco["bank_queries"] == 4 * len(truth["bank"]) and telco["cells_served"] == 4
    assert bank["telco_keys"] == len(truth["telco"])
    kept = (world.runtimes["bank"].settings.state_path / "jobs" / "1" / RESULT_FILE).read_text().splitlines()
    assert kept[0] == "segment,product,size" and len(kept) == 5


def test_cells_below_k_are_suppressed(world: World, truth) -> None:
    k = sorted(truth["cells"].values())[1] + 1  # the two smallest cells fall below k
    submit(world, 2, k=k)
    bank = _reports(world, 2)["bank"].outputs
    got = _cells(bank)
    for cell, exact in truth["cells"].items():
        assert got[cell] == (exact if exact >= k else SUPPRESSED), cell
    assert list(got.values()).count(SUPPRESSED) == 2


def test_noise_is_the_seeded_geometric_noise_of_half_epsilon(world: World, truth) -> None:
    submit(world, 3, k=5, epsilon=1.0)
    reports = _reports(world, 3)
    bank, telco = reports["bank"].outputs, reports["telco"].outputs
    cell_noise = two_sided_geometric_noise(0.5, 4, np.random.default_rng(3), sensitivity=4)
    want = {cell: max(v + int(z), 0) for (cell, v), z in zip(truth["cells"].items(), cell_noise, strict=True)}
    assert _cells(bank) == {c: v if v >= 5 else SUPPRESSED for c, v in want.items()}
    size_noise = two_sided_geometric_noise(0.5, 2, np.random.default_rng(4), sensitivity=2)
    assert [s["size"] for s in telco["segments"]] == [
        max(v + int(z), 0) for v, z in zip(truth["sizes"].values(), size_noise, strict=True)]
    assert bank["epsilon_cells"] == telco["epsilon_sizes"] == 0.5 and any(cell_noise)


def _feature_forms(value: float) -> set[bytes]:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    forms = {f",{text},", f"[{text},", f" {text}]", f": {text}", f":{text}", f'"{text}"'}
    return {f.encode() for f in forms} | {struct.pack("<d", value), struct.pack(">d", value)}


def test_nothing_identifying_and_no_feature_value_on_the_wire(world: World, truth) -> None:
    submit(world, 4, k=5)
    reports = _reports(world, 4)
    assert {r.status for r in reports.values()} == {"succeeded"}
    bank, telco = truth["bank"], truth["telco"]
    needles: dict[bytes, str] = {}
    for frame, cols in ((bank, ["id_number", "mobile", "customer_id"]), (telco, ["id_number", "msisdn"])):
        for col in cols:
            for raw in frame[col].dropna()[:1500]:
                needles.update({b: f"{col} {raw[:4]}…" for b in with_hashes(identifier_forms(col, raw))})
    for col in ("fund_interest", "house_interest"):
        for v in telco[col][:1500]:
            if len(f"{v:.3f}".rstrip("0")) >= 5:
                needles.update({b: f"{col} value" for b in _feature_forms(float(v))})
    found = Needles(needles)
    for party, sent in world.sent.items():
        capture = [(f"{party}#{i}", blob) for i, blob in enumerate(sent)]  # every job so far
        assert len(capture) > 8
        assert search(found, capture) == [], party
        leak = [telco["id_number"].iloc[0].encode(), _feature_forms(float(telco["fund_interest"].iloc[7])).pop()]
        assert len(search(found, plant(capture, leak))) >= 2, "the search must find planted leaks"


def test_a_segment_on_a_field_the_telco_does_not_allow_fails_naming_it(world: World) -> None:
    bad = SEGMENTS.replace("has_children == 1", "night_usage_ratio >= 0.2")  # purposes: risk, scoring only
    submit(world, 5, text=bad)
    reports = _reports(world, 5)
    assert reports["telco"].status == "failed"
    detail = reports["telco"].detail
    assert "'families'" in detail and "telco_subscribers.night_usage_ratio" in detail and "marketing" in detail
    assert reports["bank"].status == "failed"
