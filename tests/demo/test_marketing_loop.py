"""The demo's marketing loop over two real in-process nodes on a small synthetic population.

The campaign step stands in for app_promotion (which needs a trained propensity model: its own tests
run it): the audience is the telco's subscribers who are not bank customers and lack the bank's app,
split 70/30 with a seed and stored with app_promotion's own arm store (``node.jobs.marketing.arms``).
From there the loop is the demo's: the simulator draws the bank's conversions with the generator's
documented TRUE uplift (``demo.marketing.simulate_campaign``), ``campaign_evaluation`` measures it —
the per-arm counts equal the realised ones and the 95 % interval covers the TRUE uplift — then
``churn_warning`` gives bands to bank customers only, and ``win_back`` relays to the top-ranked lost
customers through the telco's outbox. Everything about non-customers is a count: no list, no file.
"""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest

from demo.marketing import (
    GOVERNANCE,
    WIN_BACK_DATASET,
    churn_warning_job,
    evaluation_job,
    simulate_campaign,
    uplift_verdict,
    win_back_job,
    win_back_table,
)
from demo.synthetic import generate
from node.jobs.marketing.arms import ArmMember, CampaignArms, save_arms
from node.jobs.marketing.evaluation import BankCampaignEvaluation, TelcoCampaignEvaluation
from node.jobs.marketing.retention import BANDS_FILE, BankRetention, TelcoRetention
from node.jobs.psi import OutboxChannel, Patience, PsiSender
from node.node_db import NODE_DB
from node.runner import family_handlers
from protocols.marketing.bands import SIGNALS, bands
from protocols.wire.control import JobCreate, KeyType
from psi import InvalidIdentifier, normalise
from tests.support.world import World

CAMPAIGN = 40
DS = {"telco_subscribers": 1, "bank_customers": 2, WIN_BACK_DATASET: 3, "bank_conversions": 4}


def _canonical(key_type: KeyType, raw: str) -> str | None:
    try:
        return normalise(key_type, raw)
    except InvalidIdentifier:
        return None


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("loop")
    data = tmp / "data"
    generate(data, n=8000, seed=7, progress=False)
    psi = PsiSender(patience=Patience(start=60.0, idle=60.0))
    world = World(tmp, handlers={
        "bank": family_handlers([BankCampaignEvaluation(ready_timeout=60.0), BankRetention(ready_timeout=60.0)]),
        "telco": family_handlers([TelcoCampaignEvaluation(psi), TelcoRetention(psi)])})
    telco = pd.read_csv(data / "telco_subscribers.csv", dtype=str)
    bank = pd.read_csv(data / "bank_customers.csv", dtype=str)
    world.register(1, "telco", data / "telco_subscribers.csv", GOVERNANCE / "telco_subscribers.yaml")
    world.register(2, "bank", data / "bank_customers.csv", GOVERNANCE / "bank_customers.yaml")
    world.register(3, "bank", *win_back_table(data))

    # the campaign (app_promotion's part): non-customers without the bank's app, seeded 70/30 split, kept at the telco
    customers = {_canonical(KeyType.ID_NUMBER, v) for v in bank["id_number"].dropna()}
    audience = telco[(telco["bank_app_installed"] == "0")
                     & ~telco["id_number"].map(lambda v: _canonical(KeyType.ID_NUMBER, v)).isin(customers)]
    held = np.random.default_rng(7).random(len(audience)) < 0.3
    members = tuple(ArmMember(str(i), str(m), "all", "holdout" if h else "treatment")
                    for i, m, h in zip(audience["id_number"], audience["msisdn"], held, strict=True))
    telco_state = world.runtimes["telco"].settings.state_path
    save_arms(telco_state, CampaignArms(CAMPAIGN, "id_number", 7, 0.3, "outbox", members))
    conversions, conv_csv = simulate_campaign(data, telco_state, CAMPAIGN)
    world.register(4, "bank", conv_csv, GOVERNANCE / "bank_conversions.yaml")

    jobs = {"evaluation": evaluation_job(DS, CAMPAIGN, min_cell=20), "churn": churn_warning_job(DS, min_cell=20),
            "win_back": win_back_job(DS, top=60)}
    for job_id, body in enumerate(jobs.values(), start=1):
        spec = JobCreate.model_validate(body)
        world.submit(job_id, spec.kind, spec.purpose, spec.inputs, spec.params, title=spec.title)
        world.run(timeout=300)
    reports = {name: world.coordinator.results[job_id] for job_id, name in enumerate(jobs, start=1)}
    yield world, reports, conversions, telco, bank
    world.close()


def test_every_step_succeeded(loop) -> None:
    _, reports, *_ = loop
    for name, by_party in reports.items():
        for party, report in by_party.items():
            assert report.status == "succeeded", (name, party, report.detail)


def test_the_evaluation_measures_the_realised_counts_and_covers_the_true_uplift(loop) -> None:
    _, reports, conversions, *_ = loop
    bank = reports["evaluation"]["bank"].outputs
    assert bank["arms"]["treatment"]["size"] == conversions.n_treated
    assert bank["arms"]["treatment"]["conversions"] == conversions.converted_treated
    assert bank["arms"]["holdout"]["size"] == conversions.n_holdout
    assert bank["arms"]["holdout"]["conversions"] == conversions.converted_holdout
    verdict = uplift_verdict(bank, conversions)
    print(verdict.line())
    assert verdict.measured == pytest.approx(verdict.realised_uplift, abs=1e-6)
    assert verdict.inside, verdict.line()
    assert conversions.true_uplift > 0 and verdict.ci is not None and verdict.ci[0] > 0  # the campaign worked


def test_bands_reach_bank_customers_only(loop) -> None:
    world, reports, _, telco, bank = loop
    by_id = {_canonical(KeyType.ID_NUMBER, v): b
             for v, b in zip(telco["id_number"], bands({s: telco[s].astype(int).to_numpy() for s in SIGNALS}),
                             strict=True)}
    path = world.runtimes["bank"].settings.state_path / "jobs" / "2" / BANDS_FILE
    with path.open() as f:
        got = {r["customer_id"]: r["band"] for r in csv.DictReader(f)}
    expected = {c: by_id[k] for c, v in zip(bank["customer_id"], bank["id_number"], strict=True)
                if (k := _canonical(KeyType.ID_NUMBER, v)) is not None and k in by_id}
    assert got == expected and set(got) <= set(bank["customer_id"])
    assert len(expected) < len(by_id)  # the telco's other subscribers got no band anywhere
    assert reports["churn"]["bank"].outputs["customers_matched"] == len(expected)


def test_non_customers_appear_as_counts_only(loop) -> None:
    world, reports, *_ = loop
    for name in ("evaluation", "churn", "win_back"):
        for party, report in reports[name].items():
            flat = str(report.outputs)
            assert not any(ch.isdigit() and len(ch) == 11 for ch in flat.replace(",", " ").split()), (name, party)
    bank_job = world.runtimes["bank"].settings.state_path / "jobs" / "1"
    assert not bank_job.exists() or not any(bank_job.iterdir())  # the evaluation keeps no rows at the bank


def test_win_back_relays_to_the_top_ranked_through_the_telco(loop) -> None:
    world, reports, *_ = loop
    bank = reports["win_back"]["bank"].outputs
    assert bank["chosen"] == 60 and bank["ranked_by"] == "win_back_propensity" and bank["relayed"] > 0
    outbox = OutboxChannel(world.runtimes["telco"].settings.state_path / NODE_DB)
    try:
        assert outbox.count("3") == bank["relayed"]
    finally:
        outbox.close()
