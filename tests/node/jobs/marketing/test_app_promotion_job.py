"""``app_promotion`` between two real nodes (mutual TLS, egress captured), checked against a direct computation.

The bank's release, the telco's standalone scoring, install screening, PSI exclusion of bank customers, the
seeded treatment/holdout split kept at the telco, outreach through the embedded outbox, and the k-suppressed
sizes the bank reads. Then: nothing of a non-customer on the wire or in any output (with a planted-leak twin),
and bad params failing with the field named.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from node.channels import ChannelOutreach, ChannelSettings, OutboxFileChannel
from node.jobs.marketing._screening import SUPPRESSED
from node.jobs.marketing.app_promotion import BankAppPromotion, TelcoAppPromotion
from node.jobs.marketing.arms import load_arms
from node.jobs.psi._sender import Patience
from node.model_store import ModelStore
from protocols.vfl.model_parts import LrPart, SbActivePart, SbPassivePart
from protocols.wire.control import JobInput, JobKind, JobParams, Purpose
from tests.support.leaks import Needles, identifier_forms, plant, search, with_hashes
from tests.support.scoring_models import BANK_FEATURES, TELCO_FEATURES, cards, id_number, parts, population, train
from tests.support.world import World

K = 5
MODEL_JOB = 7
APP_COLUMNS = ["bank_app_installed", "bank_app_days30", "peer_app_days30", "competitor_app_days30"]


def _gov(name: str, frame: pd.DataFrame) -> dict:
    fields: dict[str, dict] = {}
    for col in frame.columns:
        if col == "id_number":
            fields[col] = {"type": "string", "category": "identifier", "security_level": 3, "key_type": "id_number"}
        elif col == "msisdn":
            fields[col] = {"type": "string", "category": "identifier", "security_level": 3, "key_type": "mobile"}
        elif col == "customer_id":
            fields[col] = {"type": "string", "category": "identifier", "security_level": 3,
                           "key_type": "customer_id"}
        elif col in ("bank_app_installed", "white_collar_high"):
            fields[col] = {"type": "boolean", "category": "feature", "security_level": 2}
        elif col == "default_flag":
            fields[col] = {"type": "integer", "category": "label", "security_level": 3}
        else:
            fields[col] = {"type": "float", "category": "feature", "security_level": 2}
    return {"dataset": name, "fields": fields}


def _write(dir_: Path, name: str, frame: pd.DataFrame) -> tuple[Path, Path]:
    dir_.mkdir(parents=True, exist_ok=True)
    csv, gov = dir_ / f"{name}.csv", dir_ / f"{name}.yaml"
    frame.to_csv(csv, index=False)
    gov.write_text(yaml.safe_dump(_gov(name, frame)))
    return csv, gov


def _telco_frame(pop, extra: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_known = len(pop.telco)
    first = len(pop.bank) + 60
    more = pd.DataFrame({
        "id_number": [id_number(i) for i in range(first, first + extra)],
        "tenure_months": rng.integers(1, 120, extra), "arpu": np.round(rng.gamma(2.0, 30.0, extra), 2),
        "data_usage_gb": np.round(rng.gamma(1.5, 4.0, extra), 2)})
    telco = pd.concat([pop.telco, more], ignore_index=True)
    m = len(telco)
    telco["msisdn"] = [f"139{i:08d}" for i in range(m)]
    telco["bank_app_installed"] = rng.random(m) < 0.3
    telco["bank_app_days30"] = np.where(telco["bank_app_installed"], rng.integers(0, 31, m), 0)
    telco["peer_app_days30"] = rng.integers(0, 31, m) * (rng.random(m) < 0.5)
    telco["competitor_app_days30"] = rng.integers(0, 31, m) * (rng.random(m) < 0.4)
    telco["white_collar_high"] = rng.random(m) < 0.4
    assert len(telco) == n_known + extra
    return telco


@pytest.fixture(params=["hetero_lr", "secureboost"])
def setup(request, tmp_path: Path):
    world = _world(tmp_path, request.param)
    yield world
    world.close()


@pytest.fixture
def lr_world(tmp_path: Path):
    world = _world(tmp_path, "hetero_lr")
    yield world
    world.close()


def _world(tmp_path: Path, algo: str) -> World:
    pop = population(n_bank=200, seed=5)
    trained = train(pop, algo)
    telco = _telco_frame(pop, extra=700, seed=9)
    patience = Patience(start=60.0, idle=30.0)
    channel = ChannelSettings(quiet_hours="", rate_per_s=10_000.0, receipt_wait_s=0.0)  # embedded outbox, any hour
    telco_family = TelcoAppPromotion(patience=patience, batch_rows=128, rng=lambda: np.random.default_rng(4),
                                     outreach=lambda ctx: ChannelOutreach(ctx.settings.state_path,
                                                                          channel_settings=channel))
    world = World(tmp_path, handlers={"bank": BankAppPromotion(ready_timeout=60.0).handlers(),
                                      "telco": telco_family.handlers()}, poll_interval=0.1)
    world.register(1, "bank", *_write(tmp_path / "data", "bank_customers", pop.bank))
    world.register(2, "telco", *_write(tmp_path / "data", "telco_subscribers", telco))
    bank_card, telco_card = cards(MODEL_JOB, trained.algo, 1, 2)
    bank_card = bank_card.model_copy(update={"kind": JobKind.TRAIN_PROPENSITY})
    telco_card = telco_card.model_copy(update={"kind": JobKind.TRAIN_PROPENSITY})
    a, p = parts(trained, pop)
    ModelStore(tmp_path / "bank").save(bank_card, a)
    ModelStore(tmp_path / "telco").save(telco_card, p)
    world.pop, world.telco, world.parts = pop, telco, (a, p)  # type: ignore[attr-defined]
    return world


def _direct_scores(algo: str, a: dict, p: dict, bank: pd.DataFrame, telco: pd.DataFrame) -> np.ndarray:
    """Telco-alone scores computed here from the parts, without the module under test."""
    xt = telco[TELCO_FEATURES].to_numpy(float)
    xb = bank[BANK_FEATURES].to_numpy(float)
    if algo == "hetero_lr":
        act, pas = LrPart.model_validate({k: v for k, v in a.items() if k != "fallback"}), LrPart.model_validate(p)
        offset = act.intercept + ((xb - act.scaling.mean) / act.scaling.scale).mean(0) @ np.array(act.weights)
        z = offset + ((xt - pas.scaling.mean) / pas.scaling.scale) @ np.array(pas.weights)
        return 1 / (1 + np.exp(-z))
    act = SbActivePart.model_validate({k: v for k, v in a.items() if k != "fallback"})
    splits = {(s.tree, s.node): (s.feature, s.threshold) for s in SbPassivePart.model_validate(p).splits}
    margin = np.full(len(xt), act.base_margin)
    for t, tree in enumerate(act.trees):
        nodes = {n.node: n for n in tree}
        for r in range(len(xt)):  # expectation over the bank side, row by row (slow and plain)
            stack = [(0, 1.0, np.ones(len(xb), bool))]
            while stack:
                nid, w, rows = stack.pop()
                n = nodes[nid]
                if n.kind == "leaf":
                    margin[r] += w * n.weight
                elif n.kind == "passive_party":
                    f, thr = splits[(t, nid)]
                    stack.append((2 * nid + 1 if xt[r, f] <= thr else 2 * nid + 2, w, rows))
                else:
                    left = xb[:, n.feature] <= n.threshold
                    pl = (rows & left).sum() / rows.sum() if rows.sum() else 0.5
                    stack += [(2 * nid + 1, w * pl, rows & left), (2 * nid + 2, w * (1 - pl), rows & ~left)]
    return 1 / (1 + np.exp(-margin))


def _threshold_in_a_gap(scores: np.ndarray, min_gap: float) -> float:
    """A threshold mid-way in the widest gap between distinct scores of the middle 20-80 %: the released
    (rounded) tree values cannot move a score across it."""
    lo, hi = np.quantile(scores, [0.2, 0.8])
    values = np.unique(scores[(scores >= lo) & (scores <= hi)])
    gaps = np.diff(values)
    i = int(np.argmax(gaps))
    assert gaps[i] > min_gap, "no clear gap to put the threshold in"
    return float((values[i] + values[i + 1]) / 2)


def _submit(world: World, job_id: int, **over) -> None:
    params = {"output_mode": "relay", "model_job_id": MODEL_JOB, "score_threshold": 0.0, "bank_app": "bank_app",
              "peer_apps": ["peer_app"], "competitor_apps": ["competitor_app"], "segment_field": "white_collar_high",
              "holdout_share": 0.2, "arm_seed": 42, "channel": "outbox", "min_cell": K,
              "message_template": "Try our app", **over}
    fields = [*TELCO_FEATURES, *APP_COLUMNS, "white_collar_high"]
    inputs = [JobInput(dataset_id=1, key_fields=["id_number"]),
              JobInput(dataset_id=2, key_fields=["id_number"], feature_fields=fields)]
    world.submit(job_id, JobKind.APP_PROMOTION, Purpose.APP_PROMOTION, inputs, JobParams(**params), title="promo")


def test_app_promotion_end_to_end_matches_a_direct_computation(setup: World) -> None:
    world = setup
    pop, telco, (a, p) = world.pop, world.telco, world.parts  # type: ignore[attr-defined]
    algo = "hetero_lr" if "weights" in p else "secureboost"
    scores = _direct_scores(algo, a, p, pop.bank, telco)
    threshold = _threshold_in_a_gap(scores, 1e-9 if algo == "hetero_lr" else 0.005)  # LR releases no rounding
    _submit(world, 30, score_threshold=threshold)
    world.run(timeout=120)
    reports = world.coordinator.results[30]
    assert reports["telco"].status == "succeeded", reports["telco"].detail
    assert reports["bank"].status == "succeeded", reports["bank"].detail
    customers = set(pop.bank["id_number"])
    expected = telco[(scores >= threshold - 1e-9) & ~telco["bank_app_installed"] & ~telco["id_number"].isin(customers)]
    arms = load_arms(world.runtimes["telco"].settings.state_path, 30)
    assert {m.key for m in arms.members} == set(expected["id_number"])
    assert not customers & {m.key for m in arms.members}
    n = len(expected)
    assert len(arms.arm("holdout")) == round(n * 0.2) and len(arms.arm("treatment")) == n - round(n * 0.2)
    out = reports["telco"].outputs
    exact = Counter(f"{str(w).lower()}|outbox|{arm}" for w, arm in
                    ((expected.set_index("id_number").loc[m.key, "white_collar_high"], m.arm) for m in arms.members))
    assert out["audience_sizes"] == {c: (v if v >= K else SUPPRESSED) for c, v in sorted(exact.items())}
    competitor = int((expected["competitor_app_days30"] > 0).sum())
    assert out["audience_app_usage_30d"]["competitor_app"] == (competitor if competitor >= K else SUPPRESSED)
    # the embedded outbox holds one message per treated subscriber, no one else
    outbox = OutboxFileChannel(world.runtimes["telco"].settings.state_path / "channel_outbox.db")
    try:
        sent_to = [recipient for _, recipient, _ in outbox.messages()]
    finally:
        outbox.close()
    assert sorted(sent_to) == sorted(arms.mobiles("treatment")) and len(set(sent_to)) == len(sent_to)
    assert out["deliveries"]["submitted"] == len(sent_to) == out["deliveries"]["delivered"]
    bank = reports["bank"].outputs
    assert bank["release_sha256"] == out["release_sha256"]
    assert bank["customers_keys_sent"] == len(customers)
    # the same seed draws the same arms: run it again as a new job
    _submit(world, 31, score_threshold=threshold)
    world.run(timeout=120)
    again = load_arms(world.runtimes["telco"].settings.state_path, 31)
    assert [m.arm for m in again.members] == [m.arm for m in arms.members]
    outsider = ~telco["id_number"].isin(customers)
    _no_non_customer_leaks(world, telco[outsider], scores[outsider.to_numpy()])


def _no_non_customer_leaks(world: World, outsiders: pd.DataFrame, outsider_scores: np.ndarray) -> None:
    needles: dict[bytes, str] = {}
    for column in ("id_number", "msisdn"):
        for raw in outsiders[column]:
            for form in with_hashes(identifier_forms(column, str(raw))):
                needles[form] = f"{column} of a non-customer"
    for value in outsider_scores:
        needles[np.float64(value).tobytes()] = "score (f64)"
        needles[repr(float(value)).encode()] = "score (text)"
    for column in TELCO_FEATURES:
        for value in outsiders[column].to_numpy(float):
            needles[np.float64(value).tobytes()] = f"{column} (f64)"
    finder = Needles(needles)
    capture = [(f"{party} sent #{i}", blob) for party, blobs in world.sent.items() for i, blob in enumerate(blobs)]
    capture += [(f"{party} report", json.dumps(r.outputs).encode())
                for job in world.coordinator.results.values() for party, r in job.items()]
    assert search(finder, capture) == []
    leak = next(iter(outsiders["id_number"]))
    assert search(finder, plant(capture, [leak.encode()])), "the search must find a planted identifier"


@pytest.mark.parametrize(("over", "field", "fix"), [
    ({"bank_app": "no_such_app"}, "params.bank_app", "name an app the telco records usage of"),
    ({"model_job_id": 99}, "params.model_job_id", "train_propensity"),
    ({"message_template": None}, "params.message_template", "approved message"),
])
def test_bad_params_fail_naming_the_field(lr_world: World, over: dict, field: str, fix: str) -> None:
    world = lr_world
    _submit(world, 40, **over)
    world.run(timeout=120)
    telco = world.coordinator.results[40]["telco"]
    assert telco.status == "failed" and field in telco.detail and fix in telco.detail, telco.detail
    assert not (world.runtimes["telco"].settings.state_path / "marketing" / "40").exists()
