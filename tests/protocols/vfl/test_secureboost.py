import numpy as np
import pytest
import xgboost as xgb
from sklearn.metrics import roc_auc_score

from protocols.vfl import (
    SbActiveParty,
    SbActiveStage,
    SbConfig,
    SbPassiveParty,
    SbPassiveStage,
    run_local_secureboost,
    score_local_secureboost,
    train_plain_secureboost,
)
from protocols.vfl._sb_tree import predict_margin
from protocols.wire.errors import LocalProtocolError, RemoteProtocolError
from protocols.wire.training import (
    SbHistograms,
    SbLevelSplits,
    SbNodeDecision,
    SbPredictRequest,
    SbTrainingDone,
    SbTreeStart,
    VflRole,
)

CONFIG = SbConfig(n_trees=3, max_depth=3, n_bins=16, allow_insecure_test_key=True)


@pytest.fixture(scope="module")
def trained(breast):
    xa, y, xp = breast
    seen = []
    result = run_local_secureboost(
        CONFIG, xa, y, xp, key_bits=512, observer=lambda r, m: seen.append((r, m)), passive_rng=np.random.default_rng(1)
    )
    return result, seen


def test_federated_trees_equal_plain_reference(breast, trained):
    xa, y, xp = breast
    result, _ = trained

    plain_active, plain_passive = train_plain_secureboost(CONFIG, xa, y, xp)

    assert result.active.trees == plain_active.trees  # same splits, thresholds and leaf weights, bit for bit
    assert result.passive.splits == plain_passive.splits
    assert result.passive.splits, "the telco's features should win some splits"
    routes = {k: xp[:, f] <= t for k, (f, t) in plain_passive.splits.items()}
    plain_p = 1 / (1 + np.exp(-predict_margin(plain_active, xa, routes, CONFIG)))
    np.testing.assert_array_equal(score_local_secureboost(result, CONFIG, xa, xp), plain_p)


def test_split_ids_are_shuffled_per_node(breast, small_keypair):
    xa, y, xp = breast
    active = SbActiveParty(CONFIG, xa, y, small_keypair[1])
    start = active.start()[0]
    lookups = []
    for seed in (1, 2):
        passive = SbPassiveParty(CONFIG, xp, rng=np.random.default_rng(seed))
        reply = passive.handle(start)[0]
        ids = np.frombuffer(reply.histograms[0].split_ids, dtype=">u4")
        assert sorted(ids.tolist()) == list(range(len(ids)))  # opaque handles, nothing else
        lookups.append(passive._lookup[0])
    # the handle -> (feature, bin) table is the telco's secret and changes with its shuffle
    assert lookups[0] != lookups[1]
    assert sorted(lookups[0].values()) == sorted(lookups[1].values())


def test_close_to_xgboost_with_same_settings(breast):
    xa, y, xp = breast
    config = SbConfig(n_trees=10, max_depth=3, n_bins=32, allow_insecure_test_key=True)
    idx = np.random.default_rng(0).permutation(len(y))
    tr, te = idx[:400], idx[400:]
    ours_a, ours_p = train_plain_secureboost(config, xa[tr], y[tr], xp[tr])
    routes = {k: xp[te][:, f] <= t for k, (f, t) in ours_p.splits.items()}
    ours = roc_auc_score(y[te], predict_margin(ours_a, xa[te], routes, config))
    model = xgb.XGBClassifier(
        n_estimators=10,
        max_depth=3,
        learning_rate=0.3,
        max_bin=32,
        tree_method="hist",
        reg_lambda=1.0,
        min_child_weight=1.0,
        base_score=float(y[tr].mean()),
        n_jobs=1,
    ).fit(np.hstack([xa[tr], xp[tr]]), y[tr])
    theirs = roc_auc_score(y[te], model.predict_proba(np.hstack([xa[te], xp[te]]))[:, 1])
    assert abs(ours - theirs) < 0.02


def test_messages_per_tree_and_no_plain_gradients_to_passive(trained):
    result, seen = trained
    to_passive = [m for r, m in seen if r is VflRole.PASSIVE_PARTY]
    to_active = [m for r, m in seen if r is VflRole.ACTIVE_PARTY]
    assert sum(isinstance(m, SbTreeStart) for m in to_passive) == CONFIG.n_trees
    # one histogram message per level: at most depth + 1 round trips per tree
    assert len(to_active) <= CONFIG.n_trees * (CONFIG.max_depth + 1)
    assert {type(m) for m in to_passive} <= {SbTreeStart, SbLevelSplits, SbTrainingDone}


def _parties(breast, small_keypair):
    xa, y, xp = breast
    _, sk = small_keypair
    return SbActiveParty(CONFIG, xa, y, sk), SbPassiveParty(CONFIG, xp, rng=np.random.default_rng(0))


def test_out_of_stage_messages_raise(breast, small_keypair):
    active, passive = _parties(breast, small_keypair)
    splits = SbLevelSplits(tree=0, depth=0, decisions=[])
    hist = SbHistograms(tree=0, depth=0, left_sets=[], histograms=[])
    for stage in SbPassiveStage:
        passive.stage = stage
        for msg in (
            splits,
            SbTreeStart(tree=0, encrypted_gh=b""),
            SbTrainingDone(n_trees=0),
            SbPredictRequest(n_rows=1),
        ):
            if (stage, msg.kind) not in passive._TRANSITIONS:
                with pytest.raises(RemoteProtocolError):
                    passive.handle(msg)
    for stage in SbActiveStage:
        active.stage = stage
        if (stage, hist.kind) not in active._TRANSITIONS:
            with pytest.raises(RemoteProtocolError):
                active.handle(hist)
    active.stage = SbActiveStage.START
    active.start()
    with pytest.raises(LocalProtocolError):
        active.start()
    with pytest.raises(LocalProtocolError):
        active.result()


def test_bad_input_rejected(breast, small_keypair):
    active, passive = _parties(breast, small_keypair)
    start = active.start()[0]
    with pytest.raises(RemoteProtocolError):  # gh vector that fails to decode
        passive.handle(start.model_copy(update={"encrypted_gh": start.encrypted_gh[:-5]}))
    reply = passive.handle(start)[0]
    assert isinstance(reply, SbHistograms)
    # unknown split id and malformed bitmap
    with pytest.raises(RemoteProtocolError):
        passive.handle(
            SbLevelSplits(tree=0, depth=0, decisions=[SbNodeDecision(node=0, owner="passive_party", split_id=10**6)])
        )
    with pytest.raises(RemoteProtocolError):
        passive.handle(
            SbLevelSplits(tree=0, depth=0, decisions=[SbNodeDecision(node=0, owner="active_party", left_bits=b"\xff")])
        )
    # histograms for a node that is not open
    h = reply.histograms[0].model_copy(update={"node": 5})
    with pytest.raises(RemoteProtocolError):
        active.handle(reply.model_copy(update={"histograms": [h]}))
    # tampered ciphertexts that decode to garbage slots
    for forged in (int(active._public_key.n) + 1, 2):  # a valid [[1]]; a unit decrypting to noise
        data = bytearray(reply.histograms[0].encrypted_sums)
        data[-128:] = forged.to_bytes(128, "big")
        bad = reply.histograms[0].model_copy(update={"encrypted_sums": bytes(data)})
        with pytest.raises(RemoteProtocolError):
            active.handle(reply.model_copy(update={"histograms": [bad]}))
    # the genuine reply still works afterwards
    out = active.handle(reply)
    assert out and out[0].kind in ("sb_level_splits", "sb_tree_start")
