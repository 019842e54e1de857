"""Attacks on ``campaign_evaluation`` through two real nodes, with the arms the telco stored for the campaign.

* Differencing: the bank evaluates the same campaign twice, the second time with one more "converter"
  (a number of its choosing). The two releases are exact, k-suppressed counts; their difference says
  which arm that person was in (messaged or held out), whatever k is. The telco claims each campaign for
  the first evaluation job in its node state and refuses any other, naming ``params.campaign_job_id``.
* Another bank's campaign: the telco's arms record the bank the campaign ran with; an evaluation by any
  other peer is refused by the telco node itself (the coordinator's reference check is not relied on).

Both fail without the fix (the second evaluation succeeds and the treatment conversions differ by one;
the foreign campaign's counts are released).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from node.jobs.marketing.arms import ArmMember, CampaignArms, save_arms
from node.jobs.marketing.evaluation import BankCampaignEvaluation, TelcoCampaignEvaluation
from node.jobs.psi import Patience, PsiSender
from protocols.wire.control import JobInput, JobKind, JobParams, Purpose
from tests.node.jobs.marketing._evaluation_world import (
    CAMPAIGN_JOB,
    CONVERSION_GOVERNANCE,
    Campaign,
    campaign,
    submit_evaluation,
    write_campaign,
)
from tests.support.world import World

K = 20


def _world(tmp: Path, c: Campaign, *, campaign_peer: str) -> World:
    """Real nodes whose telco reads the arms app_promotion would have stored (ran with ``campaign_peer``)."""
    psi = PsiSender(patience=Patience(start=30.0, idle=30.0))
    world = World(tmp, handlers={
        # a refusing telco never opens its side: the bank gives up after 10 s rather than 30
        "bank": BankCampaignEvaluation(rng=lambda: np.random.default_rng(3), ready_timeout=10.0).handlers(),
        "telco": TelcoCampaignEvaluation(psi).handlers()})
    write_campaign(world, tmp / "data", c)
    members = tuple(ArmMember(f"k{m}", m, "all", arm) for arm in ("treatment", "holdout")  # type: ignore[arg-type]
                    for m in c.arms[arm])
    save_arms(world.runtimes["telco"].settings.state_path,
              CampaignArms(CAMPAIGN_JOB, "id_number", 7, 1 / 3, "outbox", members, peer=campaign_peer))
    return world


@pytest.fixture
def truth() -> Campaign:
    return campaign(n=1500, sizes=(300, 150), converted=(60, 30), outside=10)


def test_attack_a_second_evaluation_with_one_more_converter_is_refused(tmp_path: Path, truth: Campaign) -> None:
    world = _world(tmp_path, truth, campaign_peer="bank")
    try:
        submit_evaluation(world, 1, k=K)
        world.run(timeout=120)
        first = world.coordinator.results[1]
        assert first["telco"].status == "succeeded", first["telco"].detail
        assert first["bank"].outputs["arms"]["treatment"]["conversions"] == 60

        # the same conversions plus one person the bank wants to know about (a treatment member, not a converter)
        target = truth.arms["treatment"][-1]
        probe = tmp_path / "data" / "probe.csv"
        pd.DataFrame({"mobile": [*truth.converters, target], "app_registered": 1}).to_csv(probe, index=False)
        gov = tmp_path / "data" / "probe.yaml"
        gov.write_text(CONVERSION_GOVERNANCE)
        world.register(3, "bank", probe, gov)
        world.submit(2, JobKind.CAMPAIGN_EVALUATION, Purpose.APP_PROMOTION,
                     [JobInput(dataset_id=1, key_fields=["msisdn"]), JobInput(dataset_id=3, key_fields=["mobile"])],
                     JobParams(output_mode="count", min_cell=K, campaign_job_id=CAMPAIGN_JOB), title="again")
        world.run(timeout=120)
        second = world.coordinator.results[2]
        assert second["telco"].status == "failed", "a second evaluation of the campaign ran: " + str(
            second["bank"].outputs)
        assert "params.campaign_job_id" in second["telco"].detail and "already evaluated by job 1" in \
            second["telco"].detail
        assert second["bank"].status == "failed" and not second["bank"].outputs

    finally:
        world.close()


def test_attack_evaluating_another_banks_campaign_is_refused_by_the_telco(tmp_path: Path, truth: Campaign) -> None:
    world = _world(tmp_path, truth, campaign_peer="bank-a")  # the campaign ran with another bank
    try:
        submit_evaluation(world, 1, k=K)
        world.run(timeout=120)
        reports = world.coordinator.results[1]
        assert reports["telco"].status == "failed", "another bank's campaign was evaluated: " + str(
            reports["bank"].outputs)
        assert "params.campaign_job_id" in reports["telco"].detail and "another bank" in reports["telco"].detail
        assert reports["bank"].status == "failed" and not reports["bank"].outputs
        claim = world.runtimes["telco"].settings.state_path / "marketing" / str(CAMPAIGN_JOB) / "evaluated_by.json"
        assert not claim.exists()  # refused before anything was claimed or served
    finally:
        world.close()


@pytest.mark.parametrize("kind", ["campaign_evaluation", "app_promotion"])
def test_policy_r16_holds_marketing_releases_to_the_per_job_epsilon_maximum(kind: str) -> None:
    from coordinator.policy import load_policy  # noqa: PLC0415
    from tests.coordinator.test_policy import denials, overlap_job, run  # noqa: PLC0415

    policy = load_policy()

    def r16(epsilon: float) -> list[str]:
        job = overlap_job(kind=kind, purpose="app_promotion",
                          params={"output_mode": "count", "min_cell": 50, "epsilon": epsilon})
        return [f"{r.field}: {r.message}" for r in denials(run(job, policy), "R16")]

    over = r16(policy.epsilon_max_per_job * 2)
    assert len(over) == 1 and over[0].startswith("params.epsilon:") and "per-job maximum" in over[0]
    assert r16(policy.epsilon_max_per_job) == []
