"""A small campaign for the evaluation tests: subscribers, two arms stored "at the telco", the bank's conversions.

Numbers are random 11-digit mobiles; the arms and conversions are chosen exactly, so every per-arm
count the evaluation must find is known. The arm reader injected into the telco's role stands in
for the app_promotion job's store (it is what that store hands the job).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from node.jobs.marketing.evaluation import BankCampaignEvaluation, TelcoCampaignEvaluation
from node.jobs.psi import Patience, PsiSender
from node.runner import JobContext
from protocols.marketing.uplift import ArmCounts
from protocols.wire.control import JobInput, JobKind, JobParams, Purpose
from tests.support.world import World

CAMPAIGN_JOB = 41
_MOBILE = {"type": "string", "category": "identifier", "security_level": 4, "desensitisation": "mask",
           "purposes": ["marketing", "app_promotion"], "key_type": "mobile"}
CONVERSION_GOVERNANCE = yaml.safe_dump({"dataset": "bank_conversions", "fields": {
    "mobile": _MOBILE, "app_registered": {"type": "integer", "category": "label", "security_level": 2,
                                          "purposes": ["marketing", "app_promotion"]}}})
SUBSCRIBER_GOVERNANCE = yaml.safe_dump({"dataset": "telco_subscribers", "fields": {
    "msisdn": _MOBILE, "age": {"type": "integer", "category": "feature", "security_level": 2,
                               "purposes": ["marketing", "app_promotion"]}}})


@dataclass
class Campaign:
    """The campaign's truth: arms (numbers), the bank's converters, the exact counts per arm."""

    subscribers: list[str]
    arms: dict[str, list[str]]
    converters: list[str]
    exact: dict[str, ArmCounts]


def campaign(seed: int = 5, *, n: int = 3000, sizes: tuple[int, int] = (900, 450),
             converted: tuple[int, int] = (225, 68), outside: int = 40) -> Campaign:
    """Subscribers, a treatment and a holdout arm of ``sizes``, ``converted`` of each converting, plus others."""
    rng = np.random.default_rng(seed)
    numbers = sorted({f"13{x:09d}" for x in rng.choice(10**9, size=n, replace=False)})
    order = rng.permutation(len(numbers))
    treat = [numbers[i] for i in order[: sizes[0]]]
    hold = [numbers[i] for i in order[sizes[0]: sizes[0] + sizes[1]]]
    rest = [numbers[i] for i in order[sizes[0] + sizes[1]:]]
    converters = treat[: converted[0]] + hold[: converted[1]] + rest[:outside]
    exact = {"treatment": ArmCounts(sizes[0], converted[0]), "holdout": ArmCounts(sizes[1], converted[1])}
    return Campaign(numbers, {"treatment": treat, "holdout": hold}, converters, exact)


def write_campaign(world: World, data: Path, c: Campaign) -> None:
    """Register the telco's subscribers (dataset 1) and the bank's conversions (dataset 2)."""
    data.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"msisdn": c.subscribers, "age": 30}).to_csv(data / "telco_subscribers.csv", index=False)
    pd.DataFrame({"mobile": c.converters, "app_registered": 1}).to_csv(data / "bank_conversions.csv", index=False)
    (data / "telco.yaml").write_text(SUBSCRIBER_GOVERNANCE)
    (data / "conversions.yaml").write_text(CONVERSION_GOVERNANCE)
    world.register(1, "telco", data / "telco_subscribers.csv", data / "telco.yaml")
    world.register(2, "bank", data / "bank_conversions.csv", data / "conversions.yaml")


def evaluation_world(tmp: Path, c: Campaign, *, rng_seed: int = 3) -> World:
    """Two nodes whose telco reads ``c``'s arms for job ``CAMPAIGN_JOB`` (none for any other job)."""
    def arms(ctx: JobContext, campaign_job_id: int) -> dict[str, list[str]]:
        from node.jobs.marketing.evaluation import EvaluationError  # noqa: PLC0415
        if campaign_job_id != CAMPAIGN_JOB:
            raise EvaluationError(f"params.campaign_job_id: job {campaign_job_id} left no campaign arms")
        return c.arms

    psi = PsiSender(patience=Patience(start=30.0, idle=30.0))
    world = World(tmp, handlers={
        "bank": BankCampaignEvaluation(rng=lambda: np.random.default_rng(rng_seed), ready_timeout=30.0).handlers(),
        "telco": TelcoCampaignEvaluation(psi, arms=arms).handlers()})
    write_campaign(world, tmp / "data", c)
    return world


def submit_evaluation(world: World, job_id: int, *, k: int = 20, epsilon: float | None = None,
                      campaign_job_id: int = CAMPAIGN_JOB) -> None:
    """An approved campaign_evaluation of ``campaign_job_id``."""
    inputs = [JobInput(dataset_id=1, key_fields=["msisdn"]), JobInput(dataset_id=2, key_fields=["mobile"])]
    params = JobParams(output_mode="count", min_cell=k, epsilon=epsilon, campaign_job_id=campaign_job_id)
    world.submit(job_id, JobKind.CAMPAIGN_EVALUATION, Purpose.APP_PROMOTION, inputs, params, title="evaluation")
