"""``campaign_evaluation`` between two real nodes: one cardinality-PSI run per arm, the uplift released.

Checked against a campaign whose per-arm counts are known exactly: the exact release (Newcombe
interval), the ε-noised release (the seeded noise reproduced, the interval widened by the noise),
k-suppression of an arm, no mobile number (in any form or hash) in anything either node sent, and a
campaign that left no arms failing at both nodes with the field named.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from node.jobs.marketing.arms import ArmMember, CampaignArms, save_arms
from node.jobs.marketing.evaluation import stored_arms
from node.jobs.sites.demand import two_sided_geometric_noise
from protocols.marketing.uplift import (
    SUPPRESSED,
    ArmCounts,
    newcombe_interval,
    noise_variance,
    noisy_wald_interval,
    z_of,
)
from protocols.wire.errors import ConfigError
from tests.node.jobs.marketing._evaluation_world import campaign, evaluation_world, submit_evaluation
from tests.support.leaks import Needles, identifier_forms, plant, search, with_hashes
from tests.support.world import World


@pytest.fixture
def truth():
    return campaign()


@pytest.fixture
def world(tmp_path: Path, truth):
    w = evaluation_world(tmp_path, truth)
    yield w
    w.close()


def _reports(world: World, job_id: int) -> dict:
    world.run(timeout=120)
    return world.coordinator.results[job_id]


def test_exact_counts_per_arm_and_the_newcombe_interval(world: World, truth) -> None:
    submit_evaluation(world, 1, k=20)
    reports = _reports(world, 1)
    assert reports["telco"].status == "succeeded", reports["telco"].detail
    assert reports["bank"].status == "succeeded", reports["bank"].detail
    bank, telco = reports["bank"].outputs, reports["telco"].outputs
    assert bank["arms"]["treatment"] == {"size": 900, "conversions": 225, "rate": 0.25}
    assert bank["arms"]["holdout"] == {"size": 450, "conversions": 68, "rate": round(68 / 450, 6)}
    assert bank["uplift"] == round(0.25 - 68 / 450, 6)
    low, high = newcombe_interval(truth.exact["treatment"], truth.exact["holdout"], z_of(0.95))
    assert (bank["ci_low"], bank["ci_high"]) == (round(low, 6), round(high, 6))
    assert bank["ci_method"] == "newcombe" and bank["epsilon"] is None and bank["k"] == 20
    # the telco learns how many converters the bank asked about (the same for both arms), nothing else
    assert telco["bank_queries"] == {"treatment": len(truth.converters), "holdout": len(truth.converters)}
    assert "size" not in str(telco)


def test_noised_release_reproduces_the_seeded_noise_and_widens_the_interval(world: World, truth) -> None:
    submit_evaluation(world, 2, k=20, epsilon=1.0)
    bank = _reports(world, 2)["bank"]
    assert bank.status == "succeeded", bank.detail
    out = bank.outputs
    noise = two_sided_geometric_noise(1.0, 4, np.random.default_rng(3), sensitivity=2).tolist()
    t = ArmCounts(900 + noise[0], 225 + noise[1])
    h = ArmCounts(450 + noise[2], 68 + noise[3])
    assert out["arms"]["treatment"]["size"] == t.size and out["arms"]["holdout"]["conversions"] == h.conversions
    low, high = noisy_wald_interval(t, h, z_of(0.95), noise_variance(1.0))
    assert (out["ci_low"], out["ci_high"]) == (round(low, 6), round(high, 6))
    assert out["ci_method"] == "wald+noise" and out["epsilon"] == 1.0
    exact_low, exact_high = newcombe_interval(truth.exact["treatment"], truth.exact["holdout"], z_of(0.95))
    assert high - low > (exact_high - exact_low) * 0.99


def test_an_arm_below_k_is_suppressed_and_no_uplift_is_released(world: World) -> None:
    submit_evaluation(world, 3, k=100)  # holdout converters 68 < 100
    out = _reports(world, 3)["bank"].outputs
    assert out["arms"]["holdout"] == {"size": SUPPRESSED, "conversions": SUPPRESSED, "rate": None}
    assert out["arms"]["treatment"]["size"] == 900
    assert out["uplift"] is None and out["ci_low"] is None and out["ci_high"] is None


def test_no_mobile_number_on_the_wire(world: World, truth) -> None:
    submit_evaluation(world, 4, k=20)
    reports = _reports(world, 4)
    assert {r.status for r in reports.values()} == {"succeeded"}
    needles = Needles({b: f"mobile {m[:3]}…" for m in truth.subscribers[:3000]
                       for b in with_hashes(identifier_forms("mobile", m))})
    for party, sent in world.sent.items():
        capture = [(f"{party}#{i}", blob) for i, blob in enumerate(sent)]
        assert len(capture) > 4
        assert search(needles, capture) == [], party
        planted = plant(capture, [truth.arms["treatment"][0].encode()])
        assert search(needles, planted), "the search must find a planted number"


def test_a_campaign_without_arms_fails_with_the_field_named(world: World) -> None:
    submit_evaluation(world, 5, campaign_job_id=999)
    reports = _reports(world, 5)
    assert reports["telco"].status == "failed"
    assert "params.campaign_job_id" in reports["telco"].detail and "999" in reports["telco"].detail
    assert reports["bank"].status == "failed"


def test_the_telco_reads_the_arms_app_promotion_stored(tmp_path: Path) -> None:
    members = (ArmMember("k1", "13800000001", "all", "treatment"), ArmMember("k2", None, "all", "treatment"),
               ArmMember("k3", "13800000003", "all", "holdout"))
    save_arms(tmp_path, CampaignArms(41, "id_number", 7, 0.2, "outbox", members))
    ctx = SimpleNamespace(settings=SimpleNamespace(state_path=tmp_path), peer_party=lambda: "bank")
    assert stored_arms(ctx, 41) == {"treatment": ["13800000001"], "holdout": ["13800000003"]}  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="campaign_job_id"):
        stored_arms(ctx, 42)  # type: ignore[arg-type]
