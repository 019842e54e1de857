"""The batch ``score`` job through both nodes' job runners over the real data plane."""

from __future__ import annotations

import csv

import pytest

from node.jobs.scoring.jobs import BatchPatience, TelcoBatchScoring, bank_score
from tests.support.scoring_models import governance, write_dataset
from tests.support.world import ScoringWorld


@pytest.fixture
def world(tmp_path, pop, trained_sb):
    w = ScoringWorld(tmp_path, pop, trained_sb)
    yield w
    w.close()


def handlers(chunk_rows: int = 50) -> dict[str, dict]:
    telco = TelcoBatchScoring(patience=BatchPatience(start=20.0, idle=10.0))
    return {"bank": {"score": lambda ctx: bank_score(ctx, chunk_rows=chunk_rows)}, "telco": telco.handlers()}


def test_batch_scores_match_realtime_and_only_aggregates_leave(world, pop) -> None:
    world.submit_score(20)
    outcomes = world.run(handlers())
    assert [o.state for o in outcomes["bank"]] == ["succeeded"], outcomes
    assert [o.state for o in outcomes["telco"]] == ["succeeded"], outcomes
    out = world.coordinator.results[20]["bank"].outputs
    n_unknown = len(pop.bank) // 5
    assert out["rows"] == len(pop.bank) and out["no_telco_data"] == n_unknown
    assert out["scored"] == len(pop.bank) - n_unknown and out["without_score"] == 0
    assert len(out["score_deciles"]) == 9 and out["score_deciles"] == sorted(out["score_deciles"])
    assert world.coordinator.results[20]["telco"].outputs == {"model_id": "m7", "requests": 4, "rows_answered": 160}
    with (world.tmp / "bank" / "jobs" / "20" / "scores.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["customer_id"] for r in rows] == pop.bank["customer_id"].tolist()
    for r in rows[:25]:
        score, outcome = world.bank_scoring.score("m7", customer_id=r["customer_id"])
        assert r["outcome"] == outcome and float(r["score"]) == pytest.approx(score, abs=1e-6)
    reported = repr([p.model_dump() for _, _, p in world.coordinator.progress]) + repr(out)
    assert pop.bank["customer_id"].iloc[0] not in reported


def test_mismatched_feature_schema_fails_with_a_clear_reason(world, pop) -> None:
    gov = governance("telco_subscribers", pop.telco)
    gov["fields"]["arpu"]["type"] = "integer"
    retyped = pop.telco.assign(arpu=pop.telco["arpu"].round().astype(int))
    world.register(3, "telco", *write_dataset(world.tmp / "data2", "telco_subscribers", retyped, gov))
    world.submit_score(21, telco_dataset=3)
    outcomes = world.run(handlers())
    telco = outcomes["telco"][0]
    assert telco.state == "failed"
    assert "re-typed columns: arpu (float at training, integer now)" in telco.detail
    assert world.coordinator.results[21]["bank"].status == "failed"
    assert not (world.tmp / "bank" / "jobs" / "21").exists()


def test_missing_model_fails_cleanly(world) -> None:
    world.model_job = 99
    world.submit_score(22)
    outcomes = world.run(handlers())
    assert {o.state for o in outcomes["bank"] + outcomes["telco"]} == {"failed"}
    assert "no model of job 99" in outcomes["bank"][0].detail
