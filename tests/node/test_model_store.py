"""ModelStore and ModelCard: round trips, atomic writes, card validation, part codecs."""

from __future__ import annotations

import os

import numpy as np
import pytest
from pydantic import ValidationError

from node import model_store as models_mod
from node.model_store import ModelNotFound, ModelStore
from protocols.vfl import LrActiveModel, SbActiveModel, SbConfig, SbPassiveModel, TreeNode
from protocols.vfl.model_parts import (
    DataDigests,
    FallbackModel,
    FeatureColumn,
    FeatureScaling,
    LrPart,
    ModelCard,
    SbActivePart,
    SbPassivePart,
    feature_schema_digest,
    key_list_digest,
)
from protocols.wire.errors import ConfigError


def card(job_id: int = 7, role: str = "active", **extra: object) -> ModelCard:
    base: dict[str, object] = {
        "job_id": job_id, "kind": "train_risk", "algo": "hetero_lr", "party": "bank" if role == "active" else "telco",
        "peer_party": "telco" if role == "active" else "bank", "role": role,
        "features": [{"name": "age", "type": "integer"}, {"name": "balance", "type": "float"}],
        "label": "default" if role == "active" else None,
        "data": {"keys_sha256": key_list_digest(["a", "b"]), "dataset_schema_digest": "x" * 8},
        "policy_version": "2025-01",
    }
    base.update(extra)
    return ModelCard.model_validate(base)


def test_card_fills_model_id_and_schema_digest() -> None:
    c = card(42)
    assert c.model_id == "m42"
    cols = [FeatureColumn(name="age", type="integer"), FeatureColumn(name="balance", type="float")]
    assert c.feature_schema_digest == feature_schema_digest(cols)
    assert feature_schema_digest(cols) != feature_schema_digest(cols[::-1])


@pytest.mark.parametrize(
    "bad",
    [
        {"role": "passive", "label": "default"},
        {"label": None},
        {"feature_schema_digest": "0" * 64},
        {"features": [{"name": "a"}, {"name": "a"}]},
        {"kind": "score"},
        {"role": "passive", "label": None, "fallback": {"algo": "hetero_lr", "features": [{"name": "age"}]}},
    ],
)
def test_card_rejects_inconsistent_fields(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        card(**bad)


def test_save_load_list_delete(tmp_path) -> None:
    store = ModelStore(tmp_path)
    part = LrPart(weights=[0.5, -1.0], intercept=0.1, scaling=FeatureScaling(mean=[1.0, 2.0], scale=[1.0, 4.0]))
    path = store.save(card(1), part)
    store.save(card(2, role="passive"), b"\x00opaque")
    assert path == tmp_path / "models" / "1"
    got_card, got_part = store.load(1)
    assert got_card == card(1).model_copy(update={"created_at": got_card.created_at})
    assert LrPart.model_validate(got_part) == part
    assert store.load(2)[1] == b"\x00opaque"
    assert [c.job_id for c in store.list()] == [1, 2]
    assert store.find("m2").role == "passive"
    store.delete(1)
    assert [c.job_id for c in store.list()] == [2]
    with pytest.raises(ModelNotFound):
        store.load(1)
    with pytest.raises(ModelNotFound):
        store.delete(1)


def test_refuses_overwrite_unless_replace(tmp_path) -> None:
    store = ModelStore(tmp_path)
    store.save(card(3), {"w": [1.0]})
    with pytest.raises(ConfigError, match="already stored"):
        store.save(card(3), {"w": [2.0]})
    store.save(card(3), {"w": [2.0]}, replace=True)
    assert store.load(3)[1] == {"w": [2.0]}


def test_crash_while_writing_leaves_no_partial_model(tmp_path, monkeypatch) -> None:
    store = ModelStore(tmp_path)
    real = models_mod._fsync_write
    calls = []

    def failing(path, data):
        calls.append(path.name)
        if path.name.startswith("part"):
            raise OSError("disk full")
        real(path, data)

    monkeypatch.setattr(models_mod, "_fsync_write", failing)
    with pytest.raises(OSError, match="disk full"):
        store.save(card(4), {"w": [1.0]})
    assert calls == ["card.json", "part.json"]
    assert store.list() == []
    assert os.listdir(store.root) == []
    with pytest.raises(ModelNotFound):
        store.load(4)


def test_crash_during_replace_keeps_old_model(tmp_path, monkeypatch) -> None:
    store = ModelStore(tmp_path)
    store.save(card(5), {"w": [1.0]})
    monkeypatch.setattr(models_mod.ModelStore, "_write_part",
                        staticmethod(lambda tmp, part: (_ for _ in ()).throw(OSError("boom"))))
    with pytest.raises(OSError):
        store.save(card(5), {"w": [9.0]}, replace=True)
    assert store.load(5)[1] == {"w": [1.0]}


def test_non_json_part_is_refused_and_leaves_nothing(tmp_path) -> None:
    store = ModelStore(tmp_path)
    with pytest.raises(ConfigError, match="JSON"):
        store.save(card(6), {"w": float("nan")})
    assert os.listdir(store.root) == []


def test_list_skips_temporary_and_broken_entries(tmp_path) -> None:
    store = ModelStore(tmp_path)
    store.save(card(8), {"w": []})
    (store.root / ".tmp-9-abc").mkdir()
    (store.root / "10").mkdir()
    (store.root / "10" / "card.json").write_text("{not json")
    assert [c.job_id for c in store.list()] == [8]
    with pytest.raises(ConfigError, match="invalid"):
        store.card(10)


def test_fallback_on_active_card(tmp_path) -> None:
    fb = FallbackModel(algo="hetero_lr", features=[FeatureColumn(name="age", type="integer")], auc=0.6)
    c = card(11, fallback=fb.model_dump())
    assert c.fallback is not None and c.fallback.feature_names == ["age"]


def test_part_codecs_round_trip() -> None:
    lr = LrActiveModel(np.array([0.25, -2.0]), 0.5, (1.0,), 3, True)
    part = LrPart.from_active(lr)
    assert np.array_equal(part.active_model().weights, lr.weights) and part.active_model().intercept == 0.5
    trees = ((TreeNode(0, "passive_party"), TreeNode(1, "leaf", weight=0.1),
              TreeNode(2, "active_party", feature=1, threshold=2.5), TreeNode(5, "leaf", weight=-0.2),
              TreeNode(6, "leaf", weight=0.3)),)
    sb = SbActiveModel(0.1, trees)
    sb_part = SbActivePart.from_model(sb, SbConfig(n_trees=1, max_depth=2))
    assert SbActivePart.model_validate_json(sb_part.model_dump_json()).model() == sb
    assert sb_part.passive_refs() == {(0, 0)}
    passive = SbPassiveModel({(0, 0): (3, 1.5)})
    assert SbPassivePart.model_validate(SbPassivePart.from_model(passive).model_dump()).model() == passive


def test_scaling_fit_apply() -> None:
    x = np.array([[1.0, 5.0], [3.0, 5.0]])
    s = FeatureScaling.fit(x)
    assert s.scale == [1.0, 1.0]
    assert np.allclose(s.apply(x), [[-1.0, 0.0], [1.0, 0.0]])


def test_data_digests_require_hex() -> None:
    with pytest.raises(ValidationError):
        DataDigests(keys_sha256="nothex", dataset_schema_digest="d")
