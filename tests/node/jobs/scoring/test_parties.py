"""The sans-I/O scoring core: equal to in-process ``score_local_*``, fallback, validation."""

from __future__ import annotations

import numpy as np
import pytest

from node.jobs.scoring import derive_pseudonym_key
from node.jobs.scoring._features import SchemaMismatch, check_schema
from protocols.crypto.sealing import generate_sealing_key, sealing_public_hex
from protocols.vfl import score_local_lr, score_local_secureboost
from protocols.vfl.model_parts import FeatureColumn
from protocols.vfl.scoring import ActiveScorer, PassiveScorer
from protocols.wire.errors import ConfigError, RemoteProtocolError
from protocols.wire.scoring import ScoreReply
from tests.support.scoring_models import BANK_FEATURES, TELCO_FEATURES, TYPES, cards, id_number, parts


@pytest.fixture(scope="module")
def keys():
    bank, telco = generate_sealing_key(), generate_sealing_key()
    return bank, telco


def scorers(trained, pop, keys, model_job: int = 5):
    bank_key, telco_key = keys
    bank_card, telco_card = cards(model_job, trained.algo, 1, 2)
    a, p = parts(trained, pop)
    kb = derive_pseudonym_key(bank_key, sealing_public_hex(telco_key), bank_card.model_id)
    kt = derive_pseudonym_key(telco_key, sealing_public_hex(bank_key), telco_card.model_id)
    passive = PassiveScorer(telco_card, p, kt, pop.telco["id_number"].tolist(),
                            pop.telco[TELCO_FEATURES].to_numpy(float))
    return ActiveScorer(bank_card, a, kb), passive


def roundtrip(active, passive, ids, x):
    request, sent = active.request(ids)
    reply = ScoreReply.model_validate_json(passive.answer(request).model_dump_json())
    return active.combine(x, sent, reply)


def test_both_sides_derive_the_same_key(keys) -> None:
    bank, telco = keys
    kb = derive_pseudonym_key(bank, sealing_public_hex(telco), "m5")
    kt = derive_pseudonym_key(telco, sealing_public_hex(bank), "m5")
    other = derive_pseudonym_key(bank, sealing_public_hex(telco), "m6")
    some = id_number(7)
    assert kb.pseudonym(some) == kt.pseudonym(some) == kt.pseudonym(some[:6] + " " + some[6:].lower())
    assert kb.pseudonym(some) != other.pseudonym(some)


def test_lr_scores_equal_in_process_scoring(pop, trained_lr, keys) -> None:
    active, passive = scorers(trained_lr, pop, keys)
    xa = pop.aligned_bank[BANK_FEATURES].to_numpy(float)
    xp = pop.aligned_telco[TELCO_FEATURES].to_numpy(float)
    expected = score_local_lr(trained_lr.active, (xa - xa.mean(0)) / xa.std(0), (xp - xp.mean(0)) / xp.std(0))
    got = roundtrip(active, passive, pop.aligned_bank["id_number"].tolist(), xa)
    assert got.outcomes == ["scored"] * len(xa)
    np.testing.assert_allclose(got.scores, expected, rtol=1e-12, atol=1e-12)


def test_secureboost_scores_equal_in_process_scoring(pop, trained_sb, keys) -> None:
    active, passive = scorers(trained_sb, pop, keys)
    xa = pop.aligned_bank[BANK_FEATURES].to_numpy(float)
    xp = pop.aligned_telco[TELCO_FEATURES].to_numpy(float)
    expected = score_local_secureboost(trained_sb.active, trained_sb.config, xa, xp)
    got = roundtrip(active, passive, pop.aligned_bank["id_number"].tolist(), xa)
    assert got.outcomes == ["scored"] * len(xa)
    np.testing.assert_array_equal(got.scores, expected)


@pytest.mark.parametrize("algo", ["hetero_lr", "secureboost"])
def test_unknown_customers_get_no_telco_data_and_the_fallback(pop, trained_lr, trained_sb, keys, algo) -> None:
    trained = trained_lr if algo == "hetero_lr" else trained_sb
    active, passive = scorers(trained, pop, keys)
    ids = pop.bank["id_number"].tolist() + ["not-an-id", None]
    x = np.vstack([pop.bank[BANK_FEATURES].to_numpy(float), np.ones((2, 3))])
    got = roundtrip(active, passive, ids, x)
    known = set(pop.telco["id_number"])
    assert got.outcomes == ["scored" if i in known else "no_telco_data" for i in ids]
    unknown = np.array([o == "no_telco_data" for o in got.outcomes])
    assert unknown.sum() == len(pop.bank) // 5 + 2
    assert np.isfinite(got.scores).all()
    fallback_only = active._fallback_proba(x[unknown])
    np.testing.assert_array_equal(got.scores[unknown], fallback_only)


def test_without_fallback_unknown_rows_have_no_score(pop, trained_lr, keys) -> None:
    active, passive = scorers(trained_lr, pop, keys)
    card = active.card.model_copy(update={"fallback": None})
    bare = ActiveScorer(card, {k: v for k, v in parts(trained_lr, pop)[0].items() if k != "fallback"}, active._key)
    got = roundtrip(bare, passive, ["garbage"], np.ones((1, 3)))
    assert got.outcomes == ["no_telco_data"] and np.isnan(got.scores[0])


def test_passive_refuses_other_model_and_bad_sizes(pop, trained_lr, keys) -> None:
    active, passive = scorers(trained_lr, pop, keys)
    request, _ = active.request(pop.bank["id_number"].tolist()[:3])
    with pytest.raises(RemoteProtocolError):
        passive.answer(request.model_copy(update={"model_id": "m99"}))
    with pytest.raises(RemoteProtocolError):
        passive.answer(request.model_copy(update={"pseudonyms": request.pseudonyms[:-1]}))


def test_active_refuses_mismatched_reply(pop, trained_sb, keys) -> None:
    active, passive = scorers(trained_sb, pop, keys)
    ids = pop.bank["id_number"].tolist()[:4]
    request, sent = active.request(ids)
    reply = passive.answer(request)
    x = pop.bank[BANK_FEATURES].to_numpy(float)[:4]
    with pytest.raises(RemoteProtocolError):
        active.combine(x, sent, reply.model_copy(update={"n_rows": 3}))
    with pytest.raises(RemoteProtocolError):
        active.combine(x, sent, reply.model_copy(update={"share": reply.share.model_copy(update={"routes": []})}))
    with pytest.raises(ConfigError):
        active.combine(x[:, :2], sent, reply)


def test_schema_mismatch_is_a_clear_error(trained_lr) -> None:
    bank_card, _ = cards(5, "hetero_lr", 1, 2)
    ok = {n: TYPES[n] for n in BANK_FEATURES}
    check_schema(bank_card, ok)
    with pytest.raises(SchemaMismatch, match="missing feature columns: balance"):
        check_schema(bank_card, {k: v for k, v in ok.items() if k != "balance"})
    with pytest.raises(SchemaMismatch, match=r"re-typed columns: age \(integer at training, string now\)"):
        check_schema(bank_card, {**ok, "age": "string"})
    assert FeatureColumn(name="age", type="integer") in bank_card.features
