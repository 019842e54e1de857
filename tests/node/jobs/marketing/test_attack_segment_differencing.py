"""Attacks on an exact ``segment_sizes`` job by subtraction, through two real nodes.

k-suppression hides a figure below k, not the difference of two figures above it:

* two segments that differ by one subscriber ("families" and "families except the one with the highest
  fund_interest") have exact sizes one apart, and their cells per product tell whether that person
  holds the product;
* a segment of all subscribers but one, next to the telco's subscriber count the bank learns anyway
  (the padded PSI size), counts that one person.

The telco refuses both before it releases or serves anything, naming the segments and the fix (merge
them, or set params.epsilon). Without the fix both jobs succeed and the figures differ by exactly one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from demo.steps import GOVERNANCE
from demo.synthetic import generate
from node.jobs.marketing.segments import BankSegmentSizes, TelcoSegmentSizes
from node.jobs.psi import Patience, PsiSender
from protocols.wire.control import JobInput, JobKind, JobParams, Purpose
from protocols.wire.segments import segment_params
from tests.support.world import World

BANK, TELCO, K = 1, 2, 5


@pytest.fixture(scope="module")
def telco_rows(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], pd.DataFrame]:
    out = generate(tmp_path_factory.mktemp("seg"), n=1_500, seed=11, progress=False)
    return {"bank": out.bank_customers, "telco": out.telco_subscribers}, pd.read_csv(out.telco_subscribers)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, telco_rows):
    data, _ = telco_rows
    psi = PsiSender(patience=Patience(start=30.0, idle=30.0))
    w = World(tmp_path_factory.mktemp("world"), handlers={
        # a refusing telco never opens a run: the bank gives up after 10 s
        "bank": BankSegmentSizes(rng=lambda: np.random.default_rng(3), ready_timeout=10.0).handlers(),
        "telco": TelcoSegmentSizes(psi, rng=lambda: np.random.default_rng(4)).handlers()})
    w.register(BANK, "bank", data["bank"], GOVERNANCE / "bank_customers.yaml")
    w.register(TELCO, "telco", data["telco"], GOVERNANCE / "telco_subscribers.yaml")
    yield w
    w.close()


def _run(world: World, job_id: int, text: str) -> dict:
    inputs = [JobInput(dataset_id=BANK, key_fields=["id_number"], feature_fields=["has_fund"]),
              JobInput(dataset_id=TELCO, key_fields=["id_number"])]
    params = JobParams(output_mode="count", min_cell=K, **segment_params(text))
    world.submit(job_id, JobKind.SEGMENT_SIZES, Purpose.MARKETING, inputs, params, title="differencing")
    world.run(timeout=180)
    return world.coordinator.results[job_id]


def _assert_refused(reports: dict, *names: str) -> None:
    telco, bank = reports["telco"], reports["bank"]
    assert telco.status == "failed", f"released: {telco.outputs} / cells {bank.outputs}"
    assert "params.segments" in telco.detail and "params.epsilon" in telco.detail, telco.detail
    assert all(n in telco.detail for n in names), telco.detail
    assert bank.status == "failed" and not bank.outputs


def test_attack_two_segments_one_person_apart_are_refused(world: World, telco_rows) -> None:
    _, telco = telco_rows
    families = telco[telco["has_children"] == 1]
    top = float(families["fund_interest"].max())
    assert (families["fund_interest"] == top).sum() == 1  # the probe removes exactly one person
    text = f"""version: "attack-1"
segments:
  - name: families
    rule: "has_children == 1"
  - name: families_but_one
    rule: "has_children == 1 and fund_interest < {top!r}"
"""
    _assert_refused(_run(world, 1, text), "families", "families_but_one")


def test_attack_a_segment_of_all_but_one_is_refused(world: World, telco_rows) -> None:
    _, telco = telco_rows
    top = float(telco["fund_interest"].max())
    assert (telco["fund_interest"] == top).sum() == 1
    text = f"""version: "attack-2"
segments:
  - name: all_but_one
    rule: "fund_interest < {top!r}"
"""
    _assert_refused(_run(world, 2, text), "all_but_one")


def test_refuse_differencing_passes_equal_or_well_separated_segments_only() -> None:
    from node.jobs.marketing._segment_rules import SegmentJobError, refuse_differencing  # noqa: PLC0415

    a, b = [f"a{i}" for i in range(20)], [f"b{i}" for i in range(20)]
    refuse_differencing(["x", "y"], [a, list(a)], 100, K)  # the same members: nothing to subtract
    refuse_differencing(["x", "y"], [a, a[:15]], 100, K)  # 5 apart = k: a released difference of k is allowed
    refuse_differencing(["x"], [[*a, *b]], 40, K)  # everyone: the complement is empty
    with pytest.raises(SegmentJobError, match="x, y"):
        refuse_differencing(["x", "y"], [a, a[:16]], 100, K)
    with pytest.raises(SegmentJobError, match="all but fewer than k=5"):
        refuse_differencing(["x"], [[*a, *b[:16]]], 40, K)
