"""Attacks on ``app_promotion`` through two real nodes: the segment column as a side channel to non-customers.

The bank names the job's ``segment_field``. The telco releases one count per segment label, and the label is
the cell's name, so a ``segment_field`` that is an identifier (the mobile number) or a high-cardinality
column (``arpu``) would put each non-customer candidate's number or feature value into the report the bank
reads, even though every such cell (one person) is suppressed below k. These tests ask for exactly that and
check that the job refuses before scoring anyone, naming the field, and that nothing of a non-customer is
in any output; and that a categorical column with many rare values releases no value fewer than k hold.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tests.node.jobs.marketing.test_app_promotion_job as promo
from node.jobs.marketing.app_promotion import OTHER_SEGMENTS
from protocols.wire.control import JobInput, JobKind, JobParams, Purpose
from tests.node.jobs.marketing.test_app_promotion_job import APP_COLUMNS, MODEL_JOB, K, _world
from tests.support.leaks import Needles, identifier_forms, search, with_hashes
from tests.support.scoring_models import TELCO_FEATURES
from tests.support.world import World


@pytest.fixture
def world(tmp_path: Path):
    w = _world(tmp_path, "hetero_lr")
    yield w
    w.close()


def _submit(world: World, job_id: int, segment: str) -> None:
    params = JobParams(output_mode="count", model_job_id=MODEL_JOB, score_threshold=0.0, bank_app="bank_app",
                       segment_field=segment, holdout_share=0.0, arm_seed=1, min_cell=K)
    fields = list(dict.fromkeys([*TELCO_FEATURES, *APP_COLUMNS, segment]))
    inputs = [JobInput(dataset_id=1, key_fields=["id_number"]),
              JobInput(dataset_id=2, key_fields=["id_number"], feature_fields=fields)]
    world.submit(job_id, JobKind.APP_PROMOTION, Purpose.APP_PROMOTION, inputs, params, title="attack")


def _outputs(world: World, job_id: int) -> bytes:
    return b"".join(json.dumps(r.outputs).encode() for r in world.coordinator.results[job_id].values())


def test_attack_segment_field_msisdn_lists_non_customers(world: World) -> None:
    """segment_field = the mobile number: each candidate's cell would be named by its number."""
    _submit(world, 50, "msisdn")
    world.run(timeout=120)
    telco = world.coordinator.results[50]["telco"]
    customers = set(world.pop.bank["id_number"])  # type: ignore[attr-defined]
    outsiders = world.telco[~world.telco["id_number"].isin(customers)]  # type: ignore[attr-defined]
    needles = {form: "msisdn of a non-customer" for raw in outsiders["msisdn"]
               for form in with_hashes(identifier_forms("msisdn", str(raw)))}
    assert search(Needles(needles), [("reports", _outputs(world, 50))]) == []
    assert telco.status == "failed" and "params.segment_field" in telco.detail, telco.detail
    assert "identifier" in telco.detail


def test_attack_segment_field_high_cardinality_names_feature_values(world: World) -> None:
    """segment_field = arpu (a float feature, distinct per subscriber): cells named by feature values."""
    _submit(world, 51, "arpu")
    world.run(timeout=120)
    telco = world.coordinator.results[51]["telco"]
    customers = set(world.pop.bank["id_number"])  # type: ignore[attr-defined]
    outsiders = world.telco[~world.telco["id_number"].isin(customers)]  # type: ignore[attr-defined]
    labels = {f'"{str(v).strip().lower()}|'.encode(): "arpu of a non-customer" for v in outsiders["arpu"]}
    assert search(Needles(labels), [("reports", _outputs(world, 51))]) == []
    assert telco.status == "failed" and "params.segment_field" in telco.detail, telco.detail


@pytest.fixture
def postcode_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The telco also holds ``postcode``, a string feature: half share one code, the rest one code each."""
    frame, gov = promo._telco_frame, promo._gov

    def telco_frame(pop, extra: int, seed: int):
        telco = frame(pop, extra, seed)
        telco["postcode"] = ["p-big" if i % 2 == 0 else f"p-{i:05d}" for i in range(len(telco))]
        return telco

    def governance(name: str, data):
        out = gov(name, data)
        if "postcode" in out["fields"]:
            out["fields"]["postcode"] = {"type": "string", "category": "feature", "security_level": 2}
        return out

    monkeypatch.setattr(promo, "_telco_frame", telco_frame)
    monkeypatch.setattr(promo, "_gov", governance)
    w = _world(tmp_path, "hetero_lr")
    yield w
    w.close()


def test_attack_high_cardinality_string_segment_labels_are_pooled(postcode_world: World) -> None:
    """A categorical column allowed as a segment still names no value held by fewer than k of the audience."""
    world = postcode_world
    _submit(world, 52, "postcode")
    world.run(timeout=120)
    telco = world.coordinator.results[52]["telco"]
    assert telco.status == "succeeded", telco.detail
    labels = {cell.split("|")[0] for cell in telco.outputs["audience_sizes"]}
    assert labels == {"p-big", OTHER_SEGMENTS}
    rare = {f'"{v}|'.encode(): "rare postcode" for v in world.telco["postcode"] if v != "p-big"}  # type: ignore[attr-defined]
    assert search(Needles(rare), [("reports", _outputs(world, 52))]) == []
