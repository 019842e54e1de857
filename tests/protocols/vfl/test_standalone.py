"""Telco-alone scoring (:mod:`protocols.vfl.standalone`) against a plain computation from the model parts.

LR: ``sigmoid(intercept + mean bank contribution + telco part)``. SecureBoost: the expectation of every
tree's leaf value over the bank customers reaching each bank split, computed row by row with explicit
recursion (no code shared with the module), and the release's rounding bounded. Also: what the release
holds (no bank threshold or feature index), mismatched releases refused, streaming equals one batch.
"""

from __future__ import annotations

import numpy as np
import pytest

from protocols.vfl import SbConfig, train_plain_secureboost
from protocols.vfl.model_parts import (
    DataDigests,
    FeatureColumn,
    LrPart,
    ModelCard,
    SbActivePart,
    SbPassivePart,
    key_list_digest,
)
from protocols.vfl.standalone import (
    LrRelease,
    SbRelease,
    iter_standalone_scores,
    release_for,
    release_lr,
    release_sb,
    score_standalone,
    standalone_part,
)
from protocols.wire.control import JobKind
from protocols.wire.errors import ConfigError, RemoteProtocolError


def _card(role: str, algo: str, n: int) -> ModelCard:
    return ModelCard(job_id=3, kind=JobKind.TRAIN_PROPENSITY, algo=algo, party=role, peer_party="x", role=role,
                     features=[FeatureColumn(name=f"f{i}") for i in range(n)],
                     label="app_registered" if role == "active" else None,
                     data=DataDigests(keys_sha256=key_list_digest(["k"]), dataset_schema_digest="s"),
                     policy_version="t")


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    n = 3000
    xa, xp = rng.normal(size=(n, 3)), rng.normal(size=(n, 4))
    y = ((0.8 * xa[:, 0] + xp[:, 1] - 0.7 * xp[:, 2] + rng.normal(size=n)) > 0).astype(float)
    return xa, xp, y


def test_lr_scores_equal_the_formula(data) -> None:
    xa, xp, _ = data
    rng = np.random.default_rng(1)
    bank = LrPart(weights=[0.5, -0.3, 0.2], intercept=-0.7,
                  scaling={"mean": [0.1, 0.0, -0.2], "scale": [1.0, 2.0, 0.5]})
    telco = LrPart(weights=[0.4, 1.1, -0.9, 0.05], scaling={"mean": [0, 0, 0, 1.0], "scale": [1, 1, 2, 3.0]})
    release = release_lr("m3", bank, xa)
    offset = -0.7 + (((xa - [0.1, 0.0, -0.2]) / [1.0, 2.0, 0.5]).mean(0) * [0.5, -0.3, 0.2]).sum()
    assert release.offset == pytest.approx(offset, rel=1e-12)
    part = standalone_part(_card("passive", "hetero_lr", 4), telco.model_dump(mode="json"), release)
    x = rng.normal(size=(500, 4))
    x[3, 2] = np.nan  # a missing cell is the training mean: contributes 0
    expected = offset + (np.nan_to_num((x - [0, 0, 0, 1.0]) / [1, 1, 2, 3.0])) @ [0.4, 1.1, -0.9, 0.05]
    np.testing.assert_allclose(score_standalone(part, x), 1 / (1 + np.exp(-expected)), rtol=1e-12)


def _expected_sb(active: SbActivePart, passive: SbPassivePart, xa: np.ndarray, row: np.ndarray) -> float:
    splits = {(s.tree, s.node): (s.feature, s.threshold) for s in passive.splits}

    def value(t: int, nodes: dict, nid: int, reach: np.ndarray) -> float:
        n = nodes[nid]
        if n.kind == "leaf":
            return float(n.weight)
        if n.kind == "passive_party":
            f, thr = splits[(t, nid)]
            return value(t, nodes, 2 * nid + 1 if row[f] <= thr else 2 * nid + 2, reach)
        left = xa[:, n.feature] <= n.threshold
        p = (reach & left).sum() / reach.sum() if reach.sum() else 0.5
        return p * value(t, nodes, 2 * nid + 1, reach & left) + (1 - p) * value(t, nodes, 2 * nid + 2, reach & ~left)

    margin = active.base_margin
    for t, tree in enumerate(active.trees):
        margin += value(t, {n.node: n for n in tree}, 0, np.ones(len(xa), bool))
    return 1 / (1 + np.exp(-margin))


def test_secureboost_scores_equal_the_expectation_over_the_bank_side(data) -> None:
    xa, xp, y = data
    config = SbConfig(n_trees=6, max_depth=3, n_bins=16)
    am, pm = train_plain_secureboost(config, xa, y, xp)
    active, passive = SbActivePart.from_model(am, config), SbPassivePart.from_model(pm)
    assert passive.splits and any(n.kind == "active_party" for t in active.trees for n in t)
    exact = release_sb("m3", active, xa, weight_decimals=12, share_decimals=12)
    part = standalone_part(_card("passive", "secureboost", 4), passive.model_dump(mode="json"), exact)
    rows = np.random.default_rng(2).normal(size=(300, 4))
    got = score_standalone(part, rows)
    want = np.array([_expected_sb(active, passive, xa, r) for r in rows])
    np.testing.assert_allclose(got, want, rtol=1e-9)
    # the default release rounds; the scores move by little
    rounded = standalone_part(_card("passive", "secureboost", 4), passive.model_dump(mode="json"),
                              release_sb("m3", active, xa))
    assert np.max(np.abs(score_standalone(rounded, rows) - want)) < 0.02
    # and the telco alone still ranks: AUC of the telco-alone score on the training rows is well above chance
    s = score_standalone(rounded, xp)
    pos, neg = s[y == 1], s[y == 0]
    auc = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert auc > 0.7


def test_the_sb_release_holds_no_bank_split_or_feature(data) -> None:
    xa, xp, y = data
    config = SbConfig(n_trees=4, max_depth=3, n_bins=16)
    am, pm = train_plain_secureboost(config, xa, y, xp)
    active = SbActivePart.from_model(am, config)
    release = release_sb("m3", active, xa)
    body = release.model_dump(mode="json")
    assert set(body) == {"algo", "model_id", "base_margin", "trees"}
    for tree in body["trees"]:
        for node in tree:
            assert set(node) == {"node", "kind", "weight", "p_left"}  # no feature, no threshold
            if node["p_left"] is not None:
                assert round(node["p_left"], 2) == node["p_left"]
    bank_thresholds = {n.threshold for t in active.trees for n in t if n.kind == "active_party"}
    assert not bank_thresholds & {n["weight"] for t in body["trees"] for n in t}


def test_streaming_equals_one_batch_and_widths_are_checked(data) -> None:
    xa, xp, y = data
    config = SbConfig(n_trees=3, max_depth=2, n_bins=8)
    am, pm = train_plain_secureboost(config, xa, y, xp)
    part = standalone_part(_card("passive", "secureboost", 4), SbPassivePart.from_model(pm).model_dump(mode="json"),
                           release_sb("m3", SbActivePart.from_model(am, config), xa))
    whole = score_standalone(part, xp)
    streamed = np.concatenate(list(iter_standalone_scores(part, (xp[i : i + 700] for i in range(0, len(xp), 700)))))
    np.testing.assert_array_equal(whole, streamed)
    with pytest.raises(ConfigError, match="4 feature columns, got 3"):
        score_standalone(part, xp[:, :3])


def test_mismatched_releases_are_refused(data) -> None:
    xa, xp, y = data
    telco = LrPart(weights=[0.1, 0.2, 0.3, 0.4]).model_dump(mode="json")
    with pytest.raises(RemoteProtocolError, match="release is for model m9"):
        standalone_part(_card("passive", "hetero_lr", 4), telco, LrRelease(model_id="m9", offset=0.1))
    with pytest.raises(RemoteProtocolError, match="LR model needs an LR release"):
        standalone_part(_card("passive", "hetero_lr", 4), telco, SbRelease(model_id="m3", base_margin=0, trees=[]))
    config = SbConfig(n_trees=2, max_depth=2, n_bins=8)
    am, pm = train_plain_secureboost(config, xa, y, xp)
    release = release_sb("m3", SbActivePart.from_model(am, config), xa)
    other = SbPassivePart(splits=[]).model_dump(mode="json")
    if release.telco_splits():
        with pytest.raises(RemoteProtocolError, match="telco splits this part does not hold"):
            standalone_part(_card("passive", "secureboost", 4), other, release)
    with pytest.raises(ConfigError, match="only the active party"):
        release_for(_card("passive", "hetero_lr", 4), telco, xa)
