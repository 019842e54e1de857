"""Real-time scoring between two real nodes over pinned mutual TLS, and the bank's HTTP API."""

from __future__ import annotations

import base64
import hashlib

import httpx
import numpy as np
import pytest
from pydantic import SecretStr

from node.jobs.scoring.api import ScoringApiServer, build_scoring_api
from node.model_store import ModelNotFound
from node.peer import PeerError
from protocols.vfl import score_local_lr, score_local_secureboost
from psi.identifiers import normalise
from tests.support.scoring_models import BANK_FEATURES, TELCO_FEATURES
from tests.support.world import ScoringWorld

API_KEY = "a-long-test-api-key-0123"


@pytest.fixture(params=["hetero_lr", "secureboost"])
def world(request, tmp_path, pop, trained_lr, trained_sb):
    trained = trained_lr if request.param == "hetero_lr" else trained_sb
    w = ScoringWorld(tmp_path, pop, trained)
    w.trained = trained
    yield w
    w.close()


def expected_scores(world, pop):
    xa = pop.aligned_bank[BANK_FEATURES].to_numpy(float)
    xp = pop.aligned_telco[TELCO_FEATURES].to_numpy(float)
    t = world.trained
    if t.algo == "hetero_lr":
        return score_local_lr(t.active, (xa - xa.mean(0)) / xa.std(0), (xp - xp.mean(0)) / xp.std(0))
    return score_local_secureboost(t.active, t.config, xa, xp)


def test_realtime_scores_equal_in_process_scoring(world, pop) -> None:
    expected = expected_scores(world, pop)
    customers = pop.aligned_bank["customer_id"].tolist()
    got = [world.bank_scoring.score(world.bank_card.model_id, customer_id=c) for c in customers[:40]]
    assert [o for _, o in got] == ["scored"] * 40
    np.testing.assert_allclose([s for s, _ in got], expected[:40], rtol=1e-12, atol=1e-12)


def test_realtime_by_id_number_and_features(world, pop) -> None:
    expected = expected_scores(world, pop)
    row = pop.aligned_bank.iloc[3]
    features = {n: row[n].item() for n in BANK_FEATURES}
    score, outcome = world.bank_scoring.score(world.bank_card.model_id, id_number=row["id_number"], features=features)
    assert outcome == "scored" and score == pytest.approx(expected[3], rel=1e-12)


def test_non_subscriber_gets_no_telco_data_with_fallback(world, pop) -> None:
    unknown = pop.bank[~pop.bank["id_number"].isin(pop.telco["id_number"])].iloc[0]
    score, outcome = world.bank_scoring.score(world.bank_card.model_id, customer_id=unknown["customer_id"])
    assert outcome == "no_telco_data"
    assert score is not None and 0.0 < score < 1.0


def test_every_scoring_byte_is_free_of_identifiers(world, pop) -> None:
    before = {k: len(v) for k, v in world.sent.items()}
    for c in pop.bank["customer_id"].tolist()[:30]:
        world.bank_scoring.score(world.bank_card.model_id, customer_id=c)
    sent = world.sent["bank"][before["bank"]:] + world.sent["telco"][before["telco"]:]
    assert len(sent) >= 2 * 30
    wire = b"\n".join(sent)
    for _, row in pop.bank.head(30).iterrows():
        ident = normalise("id_number", row["id_number"]).encode()
        forms = [ident, row["customer_id"].encode()]
        for algo in (hashlib.sha256, hashlib.sha1, hashlib.md5):
            digest = algo(ident).digest()
            forms += [digest, digest.hex().encode(), base64.b64encode(digest)]
        for form in forms:
            assert form not in wire


def test_unknown_model_and_wrong_sender(world) -> None:
    with pytest.raises(ModelNotFound):
        world.bank_scoring.score("m999", customer_id="C000001")
    with pytest.raises(PeerError, match="HTTP 404"):
        world.bank_scoring.caller("telco").call("score", b'{"kind":"score_request","model_id":"m999",'
                                                         b'"pseudonyms":""}', kind="score_request")
    with pytest.raises(PeerError, match="HTTP 400"):
        world.bank_scoring.caller("telco").call("score", b"not json", kind="score_request")


def test_http_api(world, pop) -> None:
    server = ScoringApiServer(build_scoring_api(world.bank_scoring, SecretStr(API_KEY)), "127.0.0.1", 0)
    server.start()
    url = f"http://127.0.0.1:{server.port}/score/v1/{world.bank_card.model_id}"
    auth = {"Authorization": f"Bearer {API_KEY}"}
    try:
        with httpx.Client(trust_env=False) as http:
            customer = pop.aligned_bank["customer_id"].iloc[0]
            ok = http.post(url, json={"customer_id": customer}, headers=auth)
            assert ok.status_code == 200, ok.text
            body = ok.json()
            assert body["outcome"] == "scored" and body["model_id"] == "m7" and body["latency_ms"] > 0
            assert body["score"] == pytest.approx(expected_scores(world, pop)[0], rel=1e-12)
            assert http.post(url, json={"customer_id": customer}).status_code == 401
            assert http.post(url, json={"customer_id": customer}, headers={"Authorization": "Bearer x"}
                             ).status_code == 401
            assert http.post(url.replace("m7", "m8"), json={"customer_id": customer}, headers=auth).status_code == 404
            assert http.post(url, json={"customer_id": "nobody"}, headers=auth).status_code == 404
            bad = http.post(url, json={"id_number": "x", "features": {"age": 1}}, headers=auth)
            assert bad.status_code == 422 and "missing" in bad.json()["detail"]
            assert http.post(url, json={"customer": 1}, headers=auth).status_code == 422
    finally:
        server.stop()
