"""Attack on ``app_promotion``: a threshold of 0 turns the exclusion PSI into a full customer list for the telco.

With ``score_threshold`` 0 every subscriber without the bank's app is a candidate, and the output-to-telco
PSI then tells the telco which of them are bank customers. The signed ``params.match_cap`` bounds how many
candidates one job may test: the telco refuses to start the PSI above it, naming the field, and the bank's
own node refuses a larger set at the PSI's first message (``psi.PeerSetTooLarge``; the pure check is
``tests/psi/test_psi_sessions.py::test_a_receiver_refuses_a_sender_set_over_its_cap_before_sending_any_element``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tests.node.jobs.marketing.test_app_promotion_job as promo
from node.jobs.marketing.app_promotion import BankAppPromotion
from protocols.wire.control import JobInput, JobKind, JobParams, Purpose
from tests.node.jobs.marketing.test_app_promotion_job import APP_COLUMNS, MODEL_JOB, K, _world
from tests.support.scoring_models import TELCO_FEATURES
from tests.support.world import World


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # The telco refuses before the PSI, so the bank only waits for a peer that never opens: wait 10 s, not 60.
    monkeypatch.setattr(promo, "BankAppPromotion", lambda ready_timeout: BankAppPromotion(ready_timeout=10.0))
    w = _world(tmp_path, "hetero_lr")
    yield w
    w.close()


def test_attack_threshold_zero_cannot_test_more_candidates_than_the_signed_cap(world: World) -> None:
    params = JobParams(output_mode="count", model_job_id=MODEL_JOB, score_threshold=0.0, bank_app="bank_app",
                       holdout_share=0.0, arm_seed=1, min_cell=K, match_cap=100)
    inputs = [JobInput(dataset_id=1, key_fields=["id_number"]),
              JobInput(dataset_id=2, key_fields=["id_number"], feature_fields=[*TELCO_FEATURES, *APP_COLUMNS])]
    world.submit(60, JobKind.APP_PROMOTION, Purpose.APP_PROMOTION, inputs, params, title="everyone")
    world.run(timeout=150)

    results = world.coordinator.results[60]
    telco, bank = results["telco"], results["bank"]
    assert telco.status == "failed" and "params.match_cap" in telco.detail, telco.detail
    assert "more than the 100" in telco.detail and "params.score_threshold" in telco.detail
    assert bank.status == "failed"  # no PSI ran: nothing told the telco who is a customer
    assert not (world.tmp / "telco" / "marketing" / "60").exists()  # no arms, no audience kept
    assert "customers_matched" not in json.dumps(telco.outputs or {})
